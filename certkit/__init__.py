"""certkit: shared foundation of the ``certify``, ``smoothing`` and ``conformal`` packages.

This package holds what all three need and none may own: input validation, the embedded
digits dataset and the cached reference models. Layering is one-directional::

    certkit (data, models, validation)  <-  certify, smoothing  <-  conformal

``certkit.demo`` and ``certkit.cli`` are applications on top of all three and are never
imported by them.
"""

from certkit.errors import NotCalibratedError
from certkit.threat import LpBall, ThreatModel

__version__ = "0.1.0"

__all__ = ["LpBall", "NotCalibratedError", "ThreatModel", "__version__"]
