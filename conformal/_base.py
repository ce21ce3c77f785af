"""The calibration protocol shared by every calibrator, and the machinery of the score calibrators.

Every calibrator in ``conformal`` follows one protocol (:class:`Calibrator`):

* hyperparameters are keyword arguments of the constructor, validated there; ``get_params()`` returns
  them and ``repr`` shows those that differ from their defaults (as scikit-learn does);
* ``calibrate(data, labels, *, model=None)`` fits on calibration data and returns ``self``; ``data``
  is what the calibrator scores (probabilities, scores, smoothed scores), or, with ``model=``, the
  raw inputs the model (and the calibrator's certifier) turn into those;
* ``predict(data, *, model=None)`` returns the prediction sets of test data (no labels);
* learned state ends in ``_`` (``threshold_``, ``n_calibration_``); using it before ``calibrate``
  raises :class:`certkit.NotCalibratedError`;
* randomness is drawn only from a ``generator: torch.Generator | None``.

numpy arrays and torch tensors are both accepted where the data are probabilities or scores.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from certkit._params import Params
from certkit._validation import (
    Array,
    check_array_pair,
    check_bool,
    check_calibrated,
    check_generator,
    check_labels,
    check_probs,
)
from certkit.certifier import Certifier, CertifierKind
from certkit.threat import LpBall, threat_arguments
from certkit.warnings import TrivialSetWarning
from conformal.functional import at_least, prediction_mask
from conformal.scores import (
    _BUILTIN_SCORES,
    RANDOMIZABLE_SCORES,
    ScoreFunction,
    aps,
    aps_set_mask,
    get_score,
    margin,
    rank_set_mask,
    raps,
    saps,
    thr,
    thr_probability_cut,
    topk,
)
from conformal.sets import PredictionSets

__all__ = ["Calibrator", "ScoreCalibrator", "resolve_certifier", "resolve_threat", "softmax_rows"]

_FULL_SETS_MIN_N = 10  # predict warns when every one of at least this many sets is full
_DEFAULT_SEED = 0  # the documented default source of u for randomised scores
_CUT_DTYPES = (torch.float16, torch.float32, torch.float64, np.float16, np.float32, np.float64)


class Calibrator(Params):
    """Base of every calibrator: ``get_params``, a scikit-learn style ``repr``, the calibrated-state check.

    See the module docstring for the protocol (``calibrate(data, labels, *, model=None) -> self``,
    ``predict(data, *, model=None)``, learned state ending in ``_``).
    """

    threshold_: Any = None

    @property
    def is_calibrated(self) -> bool:
        """Whether :meth:`calibrate` has run."""
        return getattr(self, "threshold_", None) is not None

    def _check_calibrated(self) -> None:
        check_calibrated(self, "threshold_")


def resolve_threat(threat: Any, *, eps: Any, norm: Any, domain: Any, default_norm: float = math.inf,
                   default_eps: float | None = None) -> LpBall:
    """The threat model from ``threat=LpBall(...)`` or from the convenience arguments ``eps``/``norm``/``domain``.

    Raises:
        ValueError: both spellings given, or neither (and no ``default_eps``).
    """
    if threat is None and eps is None and default_eps is not None:
        eps = default_eps
    eps, norm, domain = threat_arguments(threat, eps, norm, domain, default_norm=default_norm)  # the one check
    return threat if threat is not None else LpBall(norm, eps, domain)  # type: ignore[no-any-return]


def resolve_certifier(certifier: Any, kind: CertifierKind, owner: str, default: Callable[..., Any],
                      **convenience: Any) -> Certifier:
    """The certifier from ``certifier=...`` or built by ``default(**convenience)``; checked to be of ``kind``.

    ``convenience`` holds the constructor's convenience arguments (None when not given); they may not
    be combined with a certifier object.
    """
    given = {k: v for k, v in convenience.items() if v is not None}
    if certifier is None:
        return default(**given)  # type: ignore[no-any-return]
    if given:
        raise ValueError(
            f"Expected either argument `certifier` or {', '.join(f'`{g}`' for g in given)}, but got both; "
            "configure the certifier object instead"
        )
    if not isinstance(certifier, Certifier):
        raise TypeError(
            "Expected argument `certifier` to implement certkit.certifier.Certifier (attributes `kind`, `name`, "
            f"methods `check_threat`, `certify`), but got {type(certifier).__name__}"
        )
    if certifier.kind != kind:
        raise ValueError(
            f"Expected argument `certifier` to be of kind {kind!r} for {owner}, but got a {certifier.kind!r} "
            f"certifier {certifier!r}"
        )
    return certifier


class ScoreCalibrator(Calibrator):
    """Base of the calibrators: holds the score function and turns thresholds into sets.

    Subclasses implement ``_fit_threshold(cal_scores, labels, num_classes)``.

    Randomised scores. APS, RAPS, SAPS and TopK are randomised by default (``randomized=None`` resolves to
    True for them): each input gets its own u ~ U(0, 1), drawn from the ``generator`` passed to ``calibrate``/
    ``predict`` or, when none is given, from a generator seeded with 0 at ``calibrate`` (kept in
    ``generator_``, so the test draws continue the calibration draws and are independent of them).
    On a confident model the non-randomised APS score (u = 0) of the true label is 1.0 up to
    rounding for most inputs, its conformal threshold lands at the score's maximum and every set
    holds every label; randomisation removes that atom. A threshold at the score's maximum raises
    :class:`certkit.warnings.TrivialSetWarning`.
    """

    threshold_: float | Array | None

    def __init__(self, *, score: str | ScoreFunction = "aps", score_kwargs: dict[str, Any] | None = None,
                 validate: bool = True, randomized: bool | None = None) -> None:
        self.score = score
        self.score_kwargs = dict(score_kwargs or {})
        self.validate = check_bool(validate, "validate")
        self._score_fn = get_score(score)
        self.randomized = randomized
        self._randomize = _resolve_randomized(self._score_fn, randomized, self.score_kwargs)
        self.threshold_ = None

    def _draw_u(self, n: int, generator: torch.Generator | None) -> dict[str, Any]:
        """``{"u": (n,) uniforms}`` for a randomised score (from ``generator`` or ``generator_``), else ``{}``."""
        if not self._randomize:
            return {}
        g = check_generator(generator)
        if g is None:
            g = getattr(self, "generator_", None)
            if g is None:  # scores asked for before calibrate: a fresh seeded stream
                g = self.generator_ = torch.Generator().manual_seed(_DEFAULT_SEED)
        return {"u": torch.rand(n, generator=g, dtype=torch.float64, device=g.device)}

    def scores(self, probs: Array, labels: Array | None = None, *,
               generator: torch.Generator | None = None) -> Array:
        """Nonconformity scores of ``labels`` (N,) or of every label (N, K) (randomised ones draw u from ``generator``)."""
        return self._score_fn(probs, labels, **self.score_kwargs, **self._draw_u(probs.shape[0], generator))

    def _checked_scores(self, probs: Array, labels: Array | None = None,
                        generator: torch.Generator | None = None) -> Array:
        extra = self._draw_u(probs.shape[0], generator)
        # inputs were validated by the caller (or validation is off): skip the built-in scores' own checks
        if self._score_fn in _BUILTIN_SCORES:
            return self._score_fn(probs, labels, validate=False, **self.score_kwargs, **extra)
        return self._score_fn(probs, labels, **self.score_kwargs, **extra)

    def _inputs(self, probs: Any, model: torch.nn.Module | None, from_logits: bool) -> Array:
        # a truthy string (from_logits="no") would silently softmax probabilities a second time
        from_logits = check_bool(from_logits, "from_logits")
        if model is not None:
            if from_logits:
                raise ValueError("Expected at most one of `model=` and `from_logits=True`, but got both "
                                 "(with `model=` the probabilities are the model's softmax)")
            return _model_probs(model, probs)
        if from_logits:
            return softmax_rows(probs)
        if self.validate:
            _check_probs_hint(probs)
        return probs  # type: ignore[no-any-return]

    def calibrate(self, probs: Array, labels: Array, *, model: torch.nn.Module | None = None,
                  from_logits: bool = False, generator: torch.Generator | None = None) -> ScoreCalibrator:
        """Fit the threshold on calibration probabilities (N, K) and true labels (N,). Returns self.

        With ``model=``, ``probs`` are the (N, ...) calibration inputs and the probabilities are
        ``conformal.predict_proba(model, inputs)``; with ``from_logits=True``, ``probs`` are (N, K)
        logits and their softmax is used. ``generator`` is the source of the u of randomised
        scores (default: a generator seeded with 0, kept in ``generator_`` for ``predict``).
        """
        check_generator(generator)  # checked even when the score is not randomised (a seed is never ignored)
        probs = self._inputs(probs, model, from_logits)
        if self.validate:
            check_array_pair(probs, labels, "probs", "labels")
            check_labels(labels, probs.shape[0], probs.shape[1])
        if probs.shape[0] == 0:
            raise ValueError("Expected argument `probs` to hold at least one calibration point, but it is empty")
        self.num_classes_ = int(probs.shape[1])
        self.n_calibration_ = int(probs.shape[0])
        if self._randomize:
            g = check_generator(generator)
            self.generator_ = g if g is not None else torch.Generator().manual_seed(_DEFAULT_SEED)
        self.threshold_ = self._fit_threshold(self._checked_scores(probs, labels), labels, self.num_classes_)
        self._warn_if_trivial()
        return self

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> float | Array:
        raise NotImplementedError

    def score_maximum(self) -> float | None:
        """The largest value the score can take on this calibrator's K labels (None for an unknown callable)."""
        if self._score_fn in (thr, aps, margin):
            return 1.0
        if self._score_fn is raps:
            lam = float(self.score_kwargs.get("lam", 0.01))
            k_reg = int(self.score_kwargs.get("k_reg", 5))
            return 1.0 + lam * max(0, self.num_classes_ - k_reg)
        if self._score_fn is saps:  # p_max + (K - 1) lam <= 1 + (K - 1) lam
            return 1.0 + float(self.score_kwargs.get("lam", 0.2)) * (self.num_classes_ - 1)
        if self._score_fn is topk:
            return float(self.num_classes_)
        if self._score_fn in _BUILTIN_SCORES:  # cross-entropy: only +inf is trivial
            return math.inf
        return None

    def _sorted_values_path(self, probs: Array, threshold: Any) -> bool:
        own = {aps: {"k_reg", "lam"}, raps: {"k_reg", "lam"}, saps: {"lam"}, topk: set()}.get(self._score_fn)
        if own is None or not set(self.score_kwargs) <= own:
            return False
        if isinstance(threshold, np.ndarray | torch.Tensor) and np.ndim(threshold) > 0:
            return False
        if isinstance(probs, torch.Tensor):
            return probs.device.type == "cpu" and probs.dtype in (torch.float32, torch.float64)
        return isinstance(probs, np.ndarray) and probs.dtype in (np.float32, np.float64)

    def _trivial_hint(self) -> str:
        if self._score_fn in RANDOMIZABLE_SCORES and not self._randomize:
            return ("On a confident model the non-randomised APS/RAPS/SAPS score of the true label is 1.0 for most "
                    "inputs: use the randomised score (randomized=True, the default for APS/RAPS) or score='thr'.")
        return "Use more calibration data, a larger alpha, or a score that separates the labels (e.g. score='thr')."

    def _warn_if_trivial(self) -> None:
        t = self.threshold_
        values = np.atleast_1d(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=float))
        top = self.score_maximum()
        trivial = bool(np.all(np.isinf(values))) or (top is not None and bool(np.all(values >= top - 1e-6)))
        if not trivial:
            return
        warnings.warn(
            f"{type(self).__name__}: the threshold {float(values.max()):.6g} sits at the maximum "
            f"{top if top is not None else 'inf'} of the score, so every prediction set holds (almost) every label "
            f"and the coverage guarantee is vacuous. {self._trivial_hint()}",
            TrivialSetWarning,
            stacklevel=3,
        )

    def predict(self, probs: Array, *, model: torch.nn.Module | None = None, from_logits: bool = False,
                generator: torch.Generator | None = None) -> PredictionSets:
        """Prediction sets {y : s(x, y) <= threshold_} for (N, K) probabilities (or inputs, with ``model=``;
        logits, with ``from_logits=True``); randomised scores draw u from ``generator`` (default ``generator_``)."""
        check_calibrated(self, "threshold_")
        check_generator(generator)  # checked even when the score is not randomised (a seed is never ignored)
        probs = self._inputs(probs, model, from_logits)
        if probs.ndim != 2 or probs.shape[1] != self.num_classes_:
            raise ValueError(
                f"Expected argument `probs` to have {self.num_classes_} columns (as at calibration), "
                f"but got shape {tuple(probs.shape)}"
            )
        assert self.threshold_ is not None
        threshold = self.threshold_
        if isinstance(probs, torch.Tensor) and isinstance(threshold, np.ndarray):
            threshold = torch.from_numpy(threshold)
        if self._score_fn is thr and not self.score_kwargs and probs.dtype in _CUT_DTYPES:
            # one pass: 1 - p <= t  <=>  p >= p*(t), exactly (conformal.scores.thr_probability_cut)
            mask = at_least(probs, thr_probability_cut(threshold, probs.dtype))
        elif self._sorted_values_path(probs, threshold):
            # APS/RAPS/SAPS/TopK sets are top-m prefixes: sorted values + one comparison, no argsort (identical sets)
            kw = dict(self.score_kwargs)
            u = self._draw_u(probs.shape[0], generator).get("u")
            if self._score_fn in (saps, topk):
                mask = rank_set_mask(probs, float(threshold), score=self._score_fn, u=u, lam=kw.get("lam", 0.2))
            else:
                if self._score_fn is raps:
                    kw = {"k_reg": kw.get("k_reg", 5), "lam": kw.get("lam", 0.01)}
                mask = aps_set_mask(probs, float(threshold), u=u, **kw)
        else:
            mask = prediction_mask(self._checked_scores(probs, generator=generator), threshold)
        # the first row first: torch's all() reads the whole (N, K) mask even when an early set is not full
        if mask.shape[0] >= _FULL_SETS_MIN_N and bool(mask[0].all()) and bool(mask.all()):
            warnings.warn(
                f"{type(self).__name__}: every prediction set of these {mask.shape[0]} inputs holds all "
                f"{mask.shape[1]} labels (threshold {threshold}); the coverage guarantee is vacuous. "
                + self._trivial_hint(),
                TrivialSetWarning,
                stacklevel=2,
            )
        return PredictionSets(mask, threshold)


def softmax_rows(logits: Array) -> Array:
    """Row softmax of (N, K) logits, same array type, float64 for numpy input of integer dtype."""
    if isinstance(logits, torch.Tensor):
        if logits.ndim != 2 or not logits.is_floating_point():
            raise ValueError(f"Expected argument `probs` to be (N, K) floating-point logits with from_logits=True, "
                             f"but got shape {tuple(logits.shape)} dtype {logits.dtype}")
        return torch.softmax(logits, dim=1)
    z = np.asarray(logits)
    if z.ndim != 2 or not np.issubdtype(z.dtype, np.number):
        raise ValueError(f"Expected argument `probs` to be (N, K) numeric logits with from_logits=True, "
                         f"but got shape {z.shape} dtype {z.dtype}")
    z = z if np.issubdtype(z.dtype, np.floating) else z.astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)  # type: ignore[no-any-return]


def _check_probs_hint(probs: Any) -> None:
    try:
        check_probs(probs)
    except ValueError as err:
        if "from_logits" in str(err):
            raise
        try:
            looks_like_logits = probs.ndim == 2 and (float(probs.min()) < 0 or float(probs.max()) > 1)
        except Exception:  # pragma: no cover - not an array at all; the original error says so
            looks_like_logits = False
        if looks_like_logits:
            raise ValueError(f"{err} (these look like logits: pass from_logits=True)") from None
        raise


def _resolve_randomized(score_fn: ScoreFunction, randomized: bool | None, score_kwargs: dict[str, Any]) -> bool:
    """Whether the calibrator draws u itself: APS/RAPS by default, unless ``score_kwargs`` fixes u or randomized."""
    if randomized is not None and not isinstance(randomized, bool):
        raise TypeError(f"Expected argument `randomized` to be True, False or None, but got {randomized!r}")
    own = {"u", "randomized", "generator"} & set(score_kwargs)
    if own:
        if randomized:
            raise ValueError(f"Expected either argument `randomized=True` or score_kwargs {sorted(own)}, but got both")
        return False
    randomizable = score_fn in RANDOMIZABLE_SCORES
    if randomized and not randomizable:
        raise ValueError("Expected argument `randomized` to be False or None for a score other than "
                         "'aps'/'raps'/'saps'/'topk' (only they have a randomised form), but got True")
    return randomizable if randomized is None else randomized


def _model_probs(model: torch.nn.Module, inputs: Any) -> torch.Tensor:
    from conformal.model import predict_proba

    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"Expected the inputs to be a torch tensor with `model=`, but got {type(inputs).__name__}")
    return predict_proba(model, inputs)
