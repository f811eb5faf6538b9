"""Evaluation: a published version on a held-out split in one aligned pass, its metrics, plots and quality gate."""
