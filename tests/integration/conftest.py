"""Integration tests: the real service against the real engine (fixtures in tests/conftest.py)."""
