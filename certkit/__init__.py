"""certkit: the ground floor shared by the ``certify``, ``smoothing`` and ``conformal`` packages.

This package holds what all three need and none may own: input validation, errors, the threat-model
types (``certkit.threat``) and the on-disk model cache. Layering is one-directional
(``tests/test_architecture.py`` enforces it)::

    certkit_app (demo, CLI, digits data and reference models)
        ->  conformal  ->  certify, smoothing  ->  certkit

``certkit`` imports none of the packages above it; ``certify`` and ``smoothing`` never import each
other; nothing in the library imports ``certkit_app``. See ``docs/architecture.md``.
"""

from certkit._version import __version__
from certkit.errors import NotCalibratedError
from certkit.threat import LpBall, ThreatModel

__all__ = ["LpBall", "NotCalibratedError", "ThreatModel", "__version__"]
