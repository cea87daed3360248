"""Durable jobs: accepted into the store, executed by the node's scheduler, their events
written as they happen, their callers called back when they end."""
