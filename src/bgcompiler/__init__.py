"""bg-compiler: runs untrusted code over HTTP, each run in a fresh hardened container."""

__version__ = "0.1.0"
