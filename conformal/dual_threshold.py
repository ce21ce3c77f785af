"""Dual-threshold conformal prediction: a conformal set plus an abstention threshold.

Kumar et al. (2025), "Beyond confidence: adaptive abstention in dual-threshold conformal
prediction" (arXiv 2502.07255), pair the conformal threshold with an abstention threshold on a
second statistic, chosen by ROC analysis (Youden's J) for the event "the true label is not in
the set". Their code uses the test label's own likelihood as that statistic, which no deployed
system has. Here the statistic is label-free (set size, top probability, entropy, top-2 margin,
or a certified radius) and the abstention threshold is fitted on a split disjoint from the
conformal calibration split. Two rules:

* ``rule="youden"``: maximise Youden's J = TPR - FPR on the fit split. A heuristic: no guarantee
  on the coverage of accepted inputs.
* ``rule="ltt"``: Learn then Test (Angelopoulos, Bates, Candès, Jordan, Lei 2021) with fixed-sequence
  testing of binomial p-values. The risk ``R(t) = P[y not in C(x) | accepted at t]`` is tested
  against ``H_t: R(t) > target`` on a grid fixed by the calibration split, from the strictest
  threshold to the laxest, stopping at the first non-rejection (:func:`conformal.ltt.learn_then_test`,
  the one LTT implementation, on :func:`conformal.ltt.binomial_pvalue` of the misses among the accepted
  inputs). Guarantee: with probability >= 1 - delta over the fit split, ``R(t_hat) <= target`` (if
  nothing is certified, every input is abstained on and the statement is vacuous).

Risk convention: each statistic is turned into a *risk* ``u`` (higher = less trustworthy, e.g.
``-top_prob``) and an input is abstained on when ``u >= t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from certkit._validation import (
    Array,
    as_real_array,
    check_array_pair,
    check_calibrated,
    check_generator,
    check_labels,
    check_positive_int,
    check_probability,
    check_probs,
    to_numpy,
)
from conformal._base import Calibrator, _resolve_randomized
from conformal.functional import conformal_quantile, prediction_mask
from conformal.ltt import binomial_pvalue, learn_then_test
from conformal.scores import ScoreFunction, get_score
from conformal.sets import PredictionSets

__all__ = [
    "STATISTICS",
    "AbstainingSets",
    "DualThreshold",
    "DualThresholdReport",
    "abstention_risk",
    "auroc",
    "ltt_threshold",
    "youden_threshold",
]

Statistic = Literal["set_size", "top_prob", "entropy", "margin", "certified_radius", "outside_mass"]
STATISTICS: tuple[str, ...] = ("set_size", "top_prob", "entropy", "margin", "certified_radius", "outside_mass")


@dataclass(frozen=True)
class AbstainingSets:
    """Prediction sets with an abstention flag.

    Attributes:
        sets: the conformal sets, (N, K) mask.
        abstain: (N,) bool, True where the system abstains.
        risk: (N,) float64, the label-free risk statistic (abstain when ``risk >= threshold``).
    """

    sets: PredictionSets
    abstain: np.ndarray
    risk: np.ndarray


@dataclass(frozen=True)
class DualThresholdReport:
    """Evaluation of a dual-threshold predictor on labelled data.

    Attributes:
        coverage_accepted: fraction of accepted inputs whose set holds the label (nan if none accepted).
        abstention_rate: fraction of inputs abstained on.
        auroc: AUROC of the risk statistic for the event "label not in set" (nan if one class only).
        coverage: coverage of the sets over all inputs, accepted or not.
        average_size_accepted: mean set size over accepted inputs (nan if none accepted).
        n: number of inputs.
    """

    coverage_accepted: float
    abstention_rate: float
    auroc: float
    coverage: float
    average_size_accepted: float
    n: int



def _check_radius(radius: Any, n: int, statistic: str, name: str = "radius") -> np.ndarray | None:
    """``radius`` as (n,) float64 for ``statistic="certified_radius"`` (None refused), None otherwise (an array
    refused); strings and bools are refused (``astype`` read them as numbers or failed naming nothing), +inf kept."""
    if statistic != "certified_radius":
        if radius is not None:
            raise ValueError(f"Expected argument `{name}` to be None for statistic={statistic!r}, but got an array")
        return None
    if radius is None:
        raise ValueError(f"Expected argument `{name}` to be an (N,) array for statistic='certified_radius', but got None")
    r = as_real_array(radius, name, allow_inf=True)
    if r.shape != (n,):
        raise ValueError(f"Expected argument `{name}` to be a NaN-free array of shape ({n},), but got {r.shape}")
    return r


def abstention_risk(probs: Array, mask: Array, statistic: str, radius: Array | None = None) -> np.ndarray:
    """The label-free risk statistic ``u`` of each input (higher = abstain sooner).

    Args:
        probs: (N, K) class probabilities.
        mask: (N, K) bool prediction-set mask.
        statistic: ``"set_size"`` (u = |C(x)|), ``"top_prob"`` (u = -max_k p_k), ``"entropy"``
            (u = -sum_k p_k log p_k), ``"margin"`` (u = -(p_(1) - p_(2))) or ``"certified_radius"``
            (u = -radius, with ``radius`` given) or ``"outside_mass"`` (u = 1 - sum_{y in C(x)} p_y, the
            model's own probability that the label is outside the set: an empty set, always a miss, gets
            the highest risk 1; suits randomised APS/RAPS, whose u-driven misses the others cannot see).
        radius: (N,) certified radii, for ``statistic="certified_radius"`` only.

    Returns:
        (N,) float64 risks.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"Expected argument `statistic` to be one of {list(STATISTICS)}, but got {statistic!r}")
    p = to_numpy(probs).astype(np.float64)
    r = _check_radius(radius, p.shape[0], statistic)
    if r is not None:
        return -r
    if statistic == "set_size":
        return to_numpy(mask).sum(1).astype(np.float64)
    if statistic == "outside_mass":
        return 1.0 - (p * to_numpy(mask).astype(bool)).sum(1)
    if statistic == "top_prob":
        return -p.max(1)
    if statistic == "entropy":
        return -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
    top2 = -np.sort(-p, axis=1)[:, :2]
    return -(top2[:, 0] - top2[:, 1])


def auroc(risk: np.ndarray, miss: np.ndarray) -> float:
    """AUROC of ``risk`` for the event ``miss`` (label not in set); nan when only one class is present."""
    if miss.all() or not miss.any():
        return math.nan
    return float(roc_auc_score(miss.astype(int), risk))


def youden_threshold(risk: np.ndarray, miss: np.ndarray) -> float:
    """The abstention threshold t (abstain when ``risk >= t``) maximising Youden's J = TPR - FPR.

    TPR = P[abstain | miss], FPR = P[abstain | covered], empirical on the given (fit) data. Ties
    go to the largest t (least abstention). Returns ``+inf`` (never abstain) when ``miss`` is all
    True or all False. A heuristic: no guarantee.
    """
    if miss.all() or not miss.any():
        return math.inf
    # Every distinct risk value and +inf are candidates, in decreasing order: argmax takes the first
    # maximiser, i.e. the largest t.
    fpr, tpr, thresholds = roc_curve(miss.astype(int), risk, drop_intermediate=False)
    return float(thresholds[int(np.argmax(tpr - fpr))])


def ltt_threshold(risk: np.ndarray, miss: np.ndarray, grid: np.ndarray, target: float, delta: float) -> float:
    """Learn-then-Test abstention threshold with fixed-sequence testing of binomial p-values.

    For each t of ``grid`` (ascending, fixed before seeing ``miss``), accept the inputs with
    ``risk < t``; among the n_t accepted, k_t are misses; the p-value of ``H_t: R(t) > target`` is
    ``BinomCDF(k_t; n_t, target)`` (valid conditionally on n_t, since accepted points are i.i.d.).
    Test from the smallest t upward while p <= delta; return the last rejected t.

    Guarantee: P[R(t_hat) > target] <= delta over the draw of the (fit) data, where
    ``R(t) = P[miss | risk < t]`` (fixed-sequence testing controls the family-wise error rate).

    Returns:
        The threshold, ``-inf`` (abstain on everything) when the first hypothesis is not rejected.
    """
    grid = np.asarray(grid, dtype=np.float64)
    accepted = risk[None, :] < grid[:, None]  # (T, M): who is accepted at each threshold
    n_acc = accepted.sum(1)
    misses = (accepted & miss[None, :]).sum(1)
    # one LTT implementation (conformal.ltt); p = 1 where nothing is accepted
    pvalues = binomial_pvalue(misses, n_acc, target)
    result = learn_then_test(pvalues=pvalues, delta=delta, lambdas=grid, method="fixed_sequence")
    return float(result.valid_lambdas[-1]) if result.valid_lambdas.size else -math.inf


class DualThreshold(Calibrator):
    """Conformal sets plus a label-free abstention threshold (dual-threshold conformal prediction).

    The set threshold is the split-conformal quantile on the calibration split: for exchangeable
    data ``P[y in C(x)] >= 1 - alpha`` over all inputs (accepted or not). The abstention threshold
    is fitted on a second, disjoint split:

    * ``rule="youden"`` (Kumar et al. 2025, with a label-free statistic): maximise Youden's J for
      "label not in set". Heuristic; no guarantee on accepted inputs.
    * ``rule="ltt"``: Learn then Test (Angelopoulos et al. 2021). With probability >= 1 - delta over
      the fit split, ``P[y not in C(x) | accepted] <= target``. The grid is ``n_grid`` quantiles of the
      calibration split's risk, from the one accepting ``min_accept`` of it up to accepting all.

    Args:
        score: conformal score name or callable (``"thr"``, ``"aps"``, ``"raps"``).
        alpha: miscoverage level of the sets in (0, 1).
        statistic: label-free statistic, one of :data:`STATISTICS`.
        rule: ``"youden"`` or ``"ltt"``.
        target: allowed miscoverage among accepted inputs (``rule="ltt"``), in (0, 1).
        delta: failure probability of the LTT guarantee, in (0, 1).
        n_grid: number of LTT grid points (>= 2).
        min_accept: fraction of the calibration split accepted at the strictest LTT threshold.
        score_kwargs: keyword arguments of the score.
        randomized: draw u ~ U(0, 1) per input for APS/RAPS (default None: True for them), from the
            ``generator`` of ``calibrate``/``predict`` or ``generator_`` (seeded with 0). With u = 0 on a
            confident model the APS threshold sits at 1.0 and the misses are the *most* confident inputs
            (float rounding of the cumulative mass), so no label-free statistic ranks them (AUROC ~0).

    Example:
        >>> dt = DualThreshold(alpha=0.1, statistic="entropy").calibrate(p_cal, y_cal, p_fit, y_fit)  # doctest: +SKIP
        >>> out = dt.predict(p_test)          # out.sets, out.abstain; no labels involved  # doctest: +SKIP
    """

    threshold_: float | None
    abstain_threshold_: float | None

    def __init__(
        self,
        *,
        score: str | ScoreFunction = "thr",
        alpha: float = 0.1,
        statistic: Statistic = "entropy",
        rule: Literal["youden", "ltt"] = "youden",
        target: float | None = None,
        delta: float = 0.1,
        n_grid: int = 50,
        min_accept: float = 0.3,
        score_kwargs: dict[str, Any] | None = None,
        randomized: bool | None = None,
    ) -> None:
        self.score = score
        self._score_fn = get_score(score)
        self.score_kwargs = dict(score_kwargs or {})
        self.randomized = randomized
        self._randomize = _resolve_randomized(self._score_fn, randomized, self.score_kwargs)
        self.alpha = check_probability(alpha, "alpha")
        if statistic not in STATISTICS:
            raise ValueError(f"Expected argument `statistic` to be one of {list(STATISTICS)}, but got {statistic!r}")
        self.statistic = statistic
        if rule not in ("youden", "ltt"):
            raise ValueError(f"Expected argument `rule` to be 'youden' or 'ltt', but got {rule!r}")
        self.rule = rule
        if rule == "ltt":
            if target is None:
                raise ValueError("Expected argument `target` to be a float in (0, 1) for rule='ltt', but got None")
            self.target: float | None = check_probability(target, "target")
        else:
            if target is not None:
                raise ValueError(f"Expected argument `target` to be None for rule='youden', but got {target!r}")
            self.target = None
        self.delta = check_probability(delta, "delta")
        self.n_grid = check_positive_int(n_grid, "n_grid", minimum=2)
        self.min_accept = check_probability(min_accept, "min_accept")
        self.threshold_ = None
        self.abstain_threshold_ = None

    def _u(self, n: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        if not self._randomize:
            return {}
        g = check_generator(generator)
        if g is None:
            g = getattr(self, "generator_", None)
            if g is None:
                g = self.generator_ = torch.Generator().manual_seed(0)
        return {"u": torch.rand(n, generator=g, dtype=torch.float64, device=g.device)}

    def _sets(self, probs: Array, generator: torch.Generator | None = None) -> PredictionSets:
        assert self.threshold_ is not None
        scores = self._score_fn(probs, **self.score_kwargs, **self._u(probs.shape[0], generator))
        return PredictionSets(prediction_mask(scores, self.threshold_), self.threshold_)

    def _check_pair(self, probs: Array, labels: Array, name: str) -> None:
        check_probs(probs, name)
        check_array_pair(probs, labels, name, name.replace("probs", "labels"))
        check_labels(labels, probs.shape[0], probs.shape[1], name.replace("probs", "labels"))
        if probs.shape[0] == 0:
            raise ValueError(f"Expected argument `{name}` to hold at least one input, but it is empty")

    def calibrate(
        self,
        probs: Array,
        labels: Array,
        fit_probs: Array,
        fit_labels: Array,
        *,
        radius: Array | None = None,
        fit_radius: Array | None = None,
        generator: torch.Generator | None = None,
    ) -> DualThreshold:
        """Fit the conformal threshold on (``probs``, ``labels``) and the abstention threshold on the fit split.

        Args:
            probs: (N, K) calibration probabilities (conformal threshold; LTT grid).
            labels: (N,) calibration labels.
            fit_probs: (M, K) probabilities of the disjoint fit split (abstention threshold).
            fit_labels: (M,) fit labels.
            radius: (N,) certified radii of the calibration inputs (``statistic="certified_radius"``).
            fit_radius: (M,) certified radii of the fit inputs.
            generator: source of the u of randomised scores (default: seeded with 0, kept as ``generator_``).

        Returns:
            self.
        """
        self._check_pair(probs, labels, "probs")
        self._check_pair(fit_probs, fit_labels, "fit_probs")
        if fit_probs.shape[1] != probs.shape[1]:
            raise ValueError(
                f"Expected argument `fit_probs` to have {probs.shape[1]} columns like `probs`, "
                f"but got shape {tuple(fit_probs.shape)}"
            )
        # both radii checked up front (the calibration one is read only by rule='ltt': a string passed silently)
        _check_radius(radius, int(probs.shape[0]), self.statistic, "radius")
        _check_radius(fit_radius, int(fit_probs.shape[0]), self.statistic, "fit_radius")
        self.num_classes_ = int(probs.shape[1])
        g = check_generator(generator)  # checked even when the score is not randomised
        if self._randomize:
            self.generator_ = g if g is not None else torch.Generator().manual_seed(0)
        self.threshold_ = conformal_quantile(
            self._score_fn(probs, labels, **self.score_kwargs, **self._u(probs.shape[0])), self.alpha)
        fit_sets = self._sets(fit_probs)
        u_fit = abstention_risk(fit_probs, fit_sets.mask, self.statistic, fit_radius)
        miss = ~to_numpy(fit_sets.contains(fit_labels)).astype(bool)
        self.fit_auroc_ = auroc(u_fit, miss)
        if self.rule == "youden":
            self.abstain_threshold_ = youden_threshold(u_fit, miss)
        else:
            assert self.target is not None
            u_cal = abstention_risk(probs, self._sets(probs).mask, self.statistic, radius)
            levels = np.linspace(self.min_accept, 1.0, self.n_grid)[:-1]
            # accept = risk < t: the quantile at level q, nudged up, accepts about a fraction q.
            grid = np.unique(np.nextafter(np.quantile(u_cal, levels, method="higher"), np.inf))
            self.grid_ = np.append(grid, np.inf)
            self.abstain_threshold_ = ltt_threshold(u_fit, miss, self.grid_, self.target, self.delta)
        return self

    def predict(self, probs: Array, *, radius: Array | None = None,
                generator: torch.Generator | None = None) -> AbstainingSets:
        """Sets and abstention flags for (N, K) probabilities. Takes no labels: nothing here can see them.

        Args:
            probs: (N, K) class probabilities.
            radius: (N,) certified radii (``statistic="certified_radius"`` only).
            generator: source of the u of randomised scores (default ``generator_``).

        Returns:
            AbstainingSets (sets, abstain (N,), risk (N,)).
        """
        check_calibrated(self, "threshold_")
        check_generator(generator)  # checked even when the score is not randomised (a seed is never ignored)
        check_probs(probs)
        if probs.shape[1] != self.num_classes_:
            raise ValueError(
                f"Expected argument `probs` to have {self.num_classes_} columns (as at calibration), "
                f"but got shape {tuple(probs.shape)}"
            )
        assert self.abstain_threshold_ is not None
        sets = self._sets(probs, generator)
        u = abstention_risk(probs, sets.mask, self.statistic, radius)
        return AbstainingSets(sets=sets, abstain=u >= self.abstain_threshold_, risk=u)

    def evaluate(self, probs: Array, labels: Array, *, radius: Array | None = None,
                 generator: torch.Generator | None = None) -> DualThresholdReport:
        """Coverage on accepted inputs, abstention rate and AUROC on labelled (N, K) data.

        The labels are used only after :meth:`predict` has produced the sets and abstentions.
        """
        out = self.predict(probs, radius=radius, generator=generator)
        check_array_pair(probs, labels, "probs", "labels")
        check_labels(labels, probs.shape[0], probs.shape[1])
        covered = to_numpy(out.sets.contains(labels)).astype(bool)
        acc = ~out.abstain
        sizes = to_numpy(out.sets.sizes)
        return DualThresholdReport(
            coverage_accepted=float(covered[acc].mean()) if acc.any() else math.nan,
            abstention_rate=float(out.abstain.mean()),
            auroc=auroc(out.risk, ~covered),
            coverage=float(covered.mean()),
            average_size_accepted=float(sizes[acc].mean()) if acc.any() else math.nan,
            n=len(covered),
        )
