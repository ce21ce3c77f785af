"""Exception types shared by certkit's packages."""

__all__ = ["BudgetExceededError", "InvalidPathError", "NotCalibratedError"]


class NotCalibratedError(ValueError, AttributeError):
    """Raised when a calibrator or fitted object is used before ``calibrate()``/``fit()``."""


class BudgetExceededError(ValueError):
    """The closed-form cost of a call (subsequences, samples, holes) exceeds the caller's budget.

    Raised before anything is enumerated or allocated; the message names the count and the budget.
    """


class InvalidPathError(ValueError, FileNotFoundError):
    """A path argument names no file or directory of the expected kind.

    Both a ``ValueError`` (the input contract) and a ``FileNotFoundError`` (what ``open`` would raise);
    the message names the argument.
    """
