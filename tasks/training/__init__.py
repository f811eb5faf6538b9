"""Training: augmentation, the networks, fitting, drift detectors, metadata, registration and the training cache key."""
