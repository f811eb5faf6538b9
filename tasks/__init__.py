"""Plain, unit-tested functions for every stage, and the thin Prefect tasks that wrap them.

Modules named ``*_tasks.py`` hold the Prefect wrappers; every other module is Prefect-free.
"""
