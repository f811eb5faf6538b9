"""Monitoring: the window of served predictions, calibrated drift tests, live quality, Evidently reports, alerts."""
