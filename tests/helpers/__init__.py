"""Helpers the tests import (fixtures live in conftest files, which nothing imports)."""
