"""Contracts shared by every stage and by the serving service; nothing here imports Prefect or a stage."""
