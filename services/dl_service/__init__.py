"""The serving service: predictions with Grad-CAM, a durable prediction log, feedback, hot reload."""
