"""Hyperparameters of certkit's estimators: ``get_params()`` and a scikit-learn style ``__repr__``.

``repr`` shows only the parameters that differ from their defaults, as scikit-learn does:
``SplitConformal(alpha=0.05)``, ``BoundCertifier(method='ibp', sound=True)``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["Params"]


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if b is None and isinstance(a, dict) and not a:
        return True  # score_kwargs=None is stored as {}
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except Exception:  # pragma: no cover - ragged
            return False
    try:
        eq = a == b
    except Exception:  # pragma: no cover - exotic __eq__
        return False
    return eq if isinstance(eq, bool) else False


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, torch.Generator):
        return f"torch.Generator(device='{value.device}')"
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return value.__qualname__
    return repr(value)


class Params:
    """Mixin: hyperparameters are the keyword parameters of ``__init__``, stored under their names.

    Subclasses may set ``_param_names`` (the canonical parameters, when ``__init__`` also takes
    convenience spellings of them) and override ``_param_defaults`` (defaults that ``__init__``
    resolves from ``None``).
    """

    _param_names: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def _signature_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {n: p.default for n, p in sig.parameters.items()
                if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def _param_defaults(self) -> dict[str, Any]:
        return self._signature_defaults()

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters, ``{name: value}``; ``type(self)(**get_params(deep=False))`` is an equal, uncalibrated copy.

        With ``deep=True``, parameters of nested objects that have ``get_params`` (e.g. a certifier)
        are added as ``"certifier__method"``, as in scikit-learn.
        """
        names = self._param_names if self._param_names is not None else tuple(self._signature_defaults())
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(self, name)
            out[name] = value
            if deep and isinstance(value, Params):
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def __repr__(self) -> str:
        defaults = self._param_defaults()
        shown = [f"{k}={_show(v)}" for k, v in self.get_params(deep=False).items()
                 if k not in defaults or not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(shown)})"
