"""Exception types shared by certkit's packages."""

__all__ = ["BudgetExceededError", "NotCalibratedError"]


class NotCalibratedError(ValueError, AttributeError):
    """Raised when a calibrator or fitted object is used before ``calibrate()``/``fit()``."""


class BudgetExceededError(ValueError):
    """The closed-form cost of a call (subsequences, samples, holes) exceeds the caller's budget.

    Raised before anything is enumerated or allocated; the message names the count and the budget.
    """
