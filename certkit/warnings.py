"""Warning classes for inputs that are legal but risky; each its own class, so each can be filtered.

>>> import warnings
>>> from certkit.warnings import LowPrecisionWarning
>>> warnings.simplefilter("error", LowPrecisionWarning)   # make low-precision bounds an error

All derive from :class:`CertkitWarning` (a ``UserWarning``).
"""

from __future__ import annotations

__all__ = ["CertkitWarning", "LowPrecisionWarning", "SmallCalibrationSetWarning", "TrivialSetWarning"]


class CertkitWarning(UserWarning):
    """Base class of certkit's warnings."""


class LowPrecisionWarning(CertkitWarning):
    """A guarantee is computed in a low-precision dtype (float16, bfloat16) whose rounding it does not cover."""


class SmallCalibrationSetWarning(CertkitWarning):
    """The calibration set is too small for the requested level: with n < 1/alpha - 1 every set is trivial."""


class TrivialSetWarning(CertkitWarning):
    """Every prediction set is trivial (all classes, or an infinite interval): the guarantee holds vacuously."""
