"""The safety-filter protocol of erase-and-check: ``predict_proba(list[str]) -> (N,)`` and a ``threshold``.

A prompt is flagged harmful when ``predict_proba >= threshold``. Anything with both attributes is a
filter (:class:`SafetyFilter` is a runtime-checkable protocol); :func:`as_filter` also wraps a plain
callable ``list[str] -> scores`` in :class:`CallableFilter` (e.g. an LLM judge). The threshold can be
chosen with a PAC guarantee on harmful recall by ``conformal.calibrate_filter_threshold``
(``certify`` never imports ``conformal``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from certkit._params import _same, _show
from certkit.errors import NotCalibratedError

__all__ = ["CallableFilter", "FilterBase", "SafetyFilter", "as_filter", "check_texts", "check_threshold"]


@runtime_checkable
class SafetyFilter(Protocol):
    """Harmful-probability scorer; flags a string when ``predict_proba >= threshold``."""

    threshold: float

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Harmful probabilities, shape (N,)."""
        ...


def check_threshold(threshold: Any, name: str = "threshold") -> float:
    """``threshold`` as a float in [0, 1] (or -inf: flag everything); TypeError / ValueError otherwise (NaN too)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `{name}` to be a number in [0, 1], but got {threshold!r}")
    t = float(threshold)
    if not (0.0 <= t <= 1.0) and t != float("-inf"):
        raise ValueError(f"Expected argument `{name}` to be in [0, 1] (or -inf: flag all), but got {threshold!r}")
    return t


def check_texts(texts: Any, name: str = "texts") -> list[str]:
    """``texts`` as a list of strings; TypeError naming argument ``name`` otherwise."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"Expected argument `{name}` to be a list of strings, but got {type(texts).__name__}")
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"Expected argument `{name}` to hold only strings, but got {type(t).__name__}")
    return list(texts)


class FilterBase:
    """Shared behaviour of the built-in filters: ``set_threshold``, ``is_harmful`` and the not-fitted check."""

    threshold: float
    _fitted_attr = "model_"

    def _check_fitted(self) -> None:
        if getattr(self, self._fitted_attr, None) is None:
            raise NotCalibratedError(f"This {type(self).__name__} is not fitted yet: call `fit(harmful, safe)` first")

    def set_threshold(self, threshold: float) -> Any:
        """Set the decision threshold (flag when p >= threshold); returns self."""
        self.threshold = check_threshold(threshold)
        return self

    def is_harmful(self, texts: Sequence[str]) -> np.ndarray:
        """Boolean (N,): ``predict_proba(texts) >= threshold``."""
        return np.asarray(self.predict_proba(texts)) >= self.threshold  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        """scikit-learn style: the constructor's arguments that differ from their defaults, e.g.
        ``EmbeddingFilter(threshold=0.231)``; a function by its name, a model or tokenizer by its type's name."""
        shown = []
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or not hasattr(self, name):
                continue
            value = getattr(self, name)
            if p.default is not p.empty and _same(value, p.default):
                continue
            if isinstance(value, str) and len(value) > 40:  # a chat template or system prompt: its start
                value = value[:37] + "..."
            simple = (value is None or isinstance(value, str | bool | int | float | tuple | list | torch.device)
                      or inspect.isfunction(value) or inspect.isbuiltin(value))
            shown.append(f"{name}={_show(value) if simple else type(value).__name__}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _check_one_argument(fn: Any) -> None:
    """TypeError naming ``filter`` when the callable ``fn`` cannot take one positional argument (e.g. the factory
    ``default_filter`` passed uncalled)."""

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: leave it to the call
        return
    try:
        sig.bind(["text"])
    except TypeError:
        name = getattr(fn, "__name__", type(fn).__name__)
        try:
            sig.bind()
            hint = f" (did you mean {name}()?)"  # a factory such as default_filter, not called
        except TypeError:
            hint = ""
        raise TypeError(
            f"Expected argument `filter` to be a filter (`predict_proba` + `threshold`) or a callable list[str] -> "
            f"scores, but {name}{sig} cannot be called with one list of strings{hint}"
        ) from None


def as_filter(obj: Any) -> SafetyFilter:
    """Return ``obj`` if it has ``predict_proba`` and ``threshold``, wrap a callable, else raise TypeError.

    A class (``TfidfFilter``) or a callable that takes no list of strings (the factory ``default_filter`` not
    called) is refused with a TypeError naming ``filter``."""
    if isinstance(obj, type):
        raise TypeError(f"Expected argument `filter` to be a filter instance or a callable list[str] -> scores, but "
                        f"got the class {obj.__name__} (did you mean {obj.__name__}(...)?)")
    if hasattr(obj, "predict_proba") and hasattr(obj, "threshold"):
        check_threshold(obj.threshold, "filter.threshold")  # a NaN threshold would flag nothing: "certified safe"
        return obj  # type: ignore[no-any-return]
    if callable(obj):
        _check_one_argument(obj)
        return CallableFilter(obj)
    raise TypeError(
        "Expected argument `filter` to have `predict_proba(list[str])` and `threshold`, or to be a callable "
        f"list[str] -> scores, but got {type(obj).__name__}"
    )


class CallableFilter(FilterBase):
    """Wrap ``fn(list[str]) -> (N,)`` scores in [0, 1] (or booleans), e.g. an LLM judge."""

    def __init__(self, fn: Callable[[list[str]], Any], *, threshold: float = 0.5) -> None:
        if not callable(fn):
            raise TypeError(f"Expected argument `fn` to be callable, but got {type(fn).__name__}")
        self.fn = fn
        self.threshold = check_threshold(threshold)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``fn(texts)`` as a float array of shape (N,)."""
        texts = check_texts(texts)
        out = np.asarray(self.fn(texts), dtype=np.float64)
        p = out.reshape(-1)
        if p.shape != (len(texts),):  # report the shape fn returned, not the flattened one
            raise ValueError(f"Expected `fn` to return {len(texts)} scores of shape ({len(texts)},), but got shape "
                             f"{out.shape}")
        return p
