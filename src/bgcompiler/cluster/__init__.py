"""Distributed mode: API nodes and worker nodes sharing a store (PostgreSQL) and a queue (Redis)."""
