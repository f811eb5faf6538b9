"""Prefect flows: each wires tasks together, applies gates and returns a small typed result."""
