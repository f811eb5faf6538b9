"""Experiment configuration: YAML files validated by the pydantic schema in ``configs.schema``."""
