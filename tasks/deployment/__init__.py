"""Deployment: champion against challenger, release (pointer and alias together), reloads, Prefect deployments."""
