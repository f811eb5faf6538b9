"""Errors raised where a problem is found, each with a message that says what to fix."""


class MlopsError(Exception):
    """Base class: every error the system raises on purpose."""


class ConfigError(MlopsError):
    """A config file is missing, malformed, or holds an unknown or invalid key."""


class DatasetRevisionError(MlopsError):
    """The dataset revision cannot be resolved, or the working copy differs from it."""


class DatasetBuildError(MlopsError):
    """The demo dataset could not be built (no apt, bad source files, ...)."""


class DataValidationError(MlopsError):
    """Configured data-validation conditions failed; the message lists every one."""


class PublishError(MlopsError):
    """A model version could not be published to central storage."""


class IntegrityError(MlopsError):
    """Files in central storage do not match their recorded checksums."""


class QualityGateError(MlopsError):
    """A model broke the configured thresholds; the message lists every violation."""


class ReviewsRefused(MlopsError):
    """Reviewed labels cannot become a dataset revision (too few, or the data validation fails)."""
