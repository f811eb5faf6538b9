"""Prefect flows: each wires tasks together, applies gates and returns a small typed result.

``from flows import run`` runs one from Python (flows/runner.py); importing this package does not
import Prefect.
"""

from flows.runner import run

__all__ = ["run"]
