"""Exception types shared by certkit's packages."""

__all__ = ["NotCalibratedError"]


class NotCalibratedError(ValueError, AttributeError):
    """Raised when a calibrator or fitted object is used before ``calibrate()``/``fit()``."""
