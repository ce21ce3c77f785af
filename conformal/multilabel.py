"""Multi-label conformal prediction by label powerset, without enumerating the powerset.

Maltoudoglou, Paisios, Lenc, Martínek, Král, Papadopoulos (2022), "Well-calibrated confidence measures
for multi-label text classification with a large number of labels" (Pattern Recognition 122; arXiv
2312.09304). Label powerset inductive conformal prediction (LP-ICP) treats every label set Y ⊆ {1..K},
a 0/1 vector, as one class. With per-label probabilities p(x) ∈ [0, 1]^K (e.g. sigmoid outputs) the
nonconformity of a candidate label set is its distance to p:

    manhattan:  a(x, Y) = sum_k |Y_k - p_k(x)|          euclidean:  a(x, Y) = sqrt(sum_k (Y_k - p_k(x))^2)

and the p-value of Y against the n calibration scores a_i = a(x_i, Y_i) is
p(x, Y) = (1 + #{i : a_i >= a(x, Y)}) / (n + 1). The region {Y : p(x, Y) > alpha} contains the true label
set with probability >= 1 - alpha (exchangeable data), and equals {Y : a(x, Y) <= a_(k)},
k = ceil((n + 1)(1 - alpha)) (``conformal.pvalues``).

The pruning. Both distances are sums of per-label terms (euclidean after squaring), so
a(x, Y) = a_min + sum_{k flipped} d_k: a_min is the score of the closest label set Y* (p_k > 1/2), and
flipping label k away from Y* costs d_k = |c_k(1) - c_k(0)| (|1 - 2 p_k| for manhattan). A label whose
flip alone costs more than the slack a_(k) - a_min can never be flipped inside the region: every label
set that flips it has a p-value surely <= alpha and is dropped without being scored. Only the remaining
m "free" labels are explored, and only their flip subsets whose cost fits the slack (enumerated cheapest
first). Before any label set is built, the size of the region is bounded: with the free costs sorted,
at most r of them fit, so at most sum_{j <= r} C(m, j) label sets survive; when that bound exceeds
``max_size`` the exact count (sums only, stopped at ``max_size``) decides, and a region larger than
``max_size`` is refused with a ValueError. Every surviving candidate is then scored with the same
function as a brute-force enumeration and kept by the same exact p-value comparison, so the regions
equal brute force exactly (tested for K <= 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from certkit._validation import (
    Array,
    check_array,
    check_calibrated,
    check_positive_int,
    check_probability,
    to_numpy,
)
from conformal._base import Calibrator
from conformal.functional import conformal_rank
from conformal.pvalues import conformal_pvalues, pvalue_mask

__all__ = [
    "ForcedPrediction",
    "LabelPowersetICP",
    "LabelSetRegions",
    "label_powerset_regions",
    "label_set_scores",
]

Score = Literal["manhattan", "euclidean"]
SCORES: tuple[str, ...] = ("manhattan", "euclidean")
_DEFAULT_MAX_SIZE = 100_000



def _check_score(score: Any) -> Score:
    if score not in SCORES:
        raise ValueError(f"Expected argument `score` to be one of {list(SCORES)}, but got {score!r}")
    return score  # type: ignore[no-any-return]


def _check_label_probs(probs: Any, name: str = "probs") -> np.ndarray:
    check_array(probs, name, kind="float", ndim=2)
    p = to_numpy(probs).astype(np.float64)
    if p.shape[1] == 0:
        raise ValueError(f"Expected argument `{name}` to have shape (N, K) with K >= 1, but got {p.shape}")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"Expected argument `{name}` to hold per-label probabilities in [0, 1], but got values in "
                         f"[{p.min():.4g}, {p.max():.4g}]; pass sigmoid probabilities, not logits")
    return p


def _check_label_sets(label_sets: Any, k: int, name: str = "label_sets") -> np.ndarray:
    if not isinstance(label_sets, np.ndarray | torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a numpy array or a torch tensor of 0/1 label indicators, "
                        f"but got {type(label_sets).__name__}")
    if label_sets.dtype not in (np.bool_, torch.bool):  # bool masks are label sets too
        check_array(label_sets, name, kind="real", ndim=(2, 3))
    y = to_numpy(label_sets)
    if y.ndim not in (2, 3) or y.shape[-1] != k:
        raise ValueError(f"Expected argument `{name}` to have shape (M, {k}) or (N, M, {k}) (0/1 per label), "
                         f"but got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"Expected argument `{name}` to hold 0/1 label indicators, but got other values")
    return y.astype(np.float64)


def label_set_scores(probs: Array, label_sets: Array, *, score: Score = "manhattan") -> np.ndarray:
    """Nonconformity scores a(x, Y) of candidate label sets: the distance between Y and p(x).

    Args:
        probs: (N, K) per-label probabilities in [0, 1].
        label_sets: (M, K) 0/1 label sets scored for every input, or (N, M, K) one list per input.
        score: ``"manhattan"`` (sum_k |Y_k - p_k|) or ``"euclidean"`` (sqrt of sum_k (Y_k - p_k)^2).

    Returns:
        (N, M) float64 scores.

    Examples:
        >>> label_set_scores(np.array([[0.9, 0.2]]), np.array([[1, 0], [1, 1]])).round(3).tolist()
        [[0.3, 0.9]]
    """
    score = _check_score(score)
    p = _check_label_probs(probs)
    y = _check_label_sets(label_sets, p.shape[1])
    diff = np.abs((y[None] if y.ndim == 2 else y) - p[:, None, :])
    if score == "manhattan":
        return diff.sum(-1)  # type: ignore[no-any-return]
    return np.sqrt((diff * diff).sum(-1))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ForcedPrediction:
    """LP-ICP forced prediction: the one label set of largest p-value, with its confidence and credibility
    (Maltoudoglou et al. 2022, after Vovk, Gammerman and Shafer's forced prediction).

    Attributes:
        label_sets: (N, K) bool, the label set of largest p-value: the closest to p (p_k > 1/2 for manhattan and
            euclidean alike).
        credibility: (N,) its p-value; small when the input is unlike the calibration data whatever its labels.
        confidence: (N,) 1 - the second largest p-value over every other label set: how surely all the others
            are rejected (the forced set is alone in the region at every alpha in [1 - confidence, credibility)).
    """

    label_sets: np.ndarray
    credibility: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class LabelSetRegions:
    """LP-ICP prediction regions: for each input, the label sets with p-value > alpha.

    Stored flat: the label sets of input i are ``label_sets[offsets[i]:offsets[i + 1]]`` (sorted by
    score, best first) with p-values ``pvalues[offsets[i]:offsets[i + 1]]``.

    Attributes:
        label_sets: (M_total, K) bool, every region's label sets, input after input.
        pvalues: (M_total,) their conformal p-values (> alpha).
        offsets: (N + 1,) int64 start of each input's label sets.
        alpha: the significance level.
    """

    label_sets: np.ndarray
    pvalues: np.ndarray
    offsets: np.ndarray
    alpha: float

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def sizes(self) -> np.ndarray:
        """(N,) number of label sets in each region (0: no label set reaches the significance level)."""
        return np.diff(self.offsets)  # type: ignore[no-any-return]

    def region(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(label_sets (M_i, K) bool, pvalues (M_i,))`` of input ``i``."""
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < len(self):
            raise ValueError(f"Expected argument `i` to be an input index in [0, {len(self) - 1}], but got {i!r}")
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.label_sets[a:b], self.pvalues[a:b]

    def contains(self, labels: Array) -> np.ndarray:
        """(N,) bool: whether each region holds the given label set (labels (N, K) 0/1)."""
        y = to_numpy(labels)
        if y.shape != (len(self), self.label_sets.shape[1]) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"Expected argument `labels` to be 0/1 of shape ({len(self)}, {self.label_sets.shape[1]}), "
                             f"but got shape {y.shape}")
        y = y.astype(bool)
        out = np.zeros(len(self), dtype=bool)
        owner = np.repeat(np.arange(len(self)), self.sizes)
        hit = (self.label_sets == y[owner]).all(1)
        np.logical_or.at(out, owner[hit], True)
        return out


def _flip_costs(p: np.ndarray, score: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(best label set Y* (K,) bool, flip costs d (K,), additive score of Y*) on the additive scale."""
    c1, c0 = (1.0 - p, p) if score == "manhattan" else ((1.0 - p) ** 2, p * p)
    best = c1 < c0
    return best, np.abs(c1 - c0), float(np.minimum(c1, c0).sum())


def _size_bound(d_sorted: np.ndarray, slack: float) -> int:
    """sum_{j <= r} C(m, j), r = how many of the (ascending) costs fit the slack together: a bound on the count."""
    m = d_sorted.shape[0]
    r = int(np.searchsorted(np.cumsum(d_sorted), slack, side="right"))
    return sum(math.comb(m, j) for j in range(r + 1))


def _count_subsets(d_sorted: np.ndarray, slack: float, cap: int) -> int:
    """The number of subsets of the costs with sum <= slack, counting sums only; stops once it exceeds ``cap``."""
    sums = np.zeros(1)
    for dj in d_sorted:
        ext = sums[sums + dj <= slack] + dj
        if ext.size == 0:
            break  # ascending costs: no later one fits either
        sums = np.concatenate([sums, ext])
        if sums.shape[0] > cap:
            return sums.shape[0]
    return int(sums.shape[0])


def _enumerate_flips(d_sorted: np.ndarray, slack: float) -> np.ndarray:
    """(C, m) bool: every subset of the (ascending) costs with sum <= slack."""
    m = d_sorted.shape[0]
    sums, flips = np.zeros(1), np.zeros((1, m), dtype=bool)
    for j, dj in enumerate(d_sorted):
        fit = sums + dj <= slack
        if not fit.any():
            break
        new = flips[fit].copy()
        new[:, j] = True
        sums, flips = np.concatenate([sums, sums[fit] + dj]), np.concatenate([flips, new])
    return flips


def label_powerset_regions(probs: Array, calibration_scores: Array, alpha: float, *, score: Score = "manhattan",
                           max_size: int = _DEFAULT_MAX_SIZE) -> LabelSetRegions:
    """LP-ICP regions {Y : p(x, Y) > alpha} with the paper's pruning: the 2^K label sets are never enumerated.

    Guarantee (Vovk et al. 2005; Maltoudoglou et al. 2022): if the calibration points and the test point
    are exchangeable, P[Y_test in region(x_test)] >= 1 - alpha. No failure probability: marginal over
    calibration and test draws.

    Args:
        probs: (N, K) per-label probabilities of the test inputs, in [0, 1].
        calibration_scores: (n,) scores a(x_i, Y_i) of the calibration points' true label sets
            (:func:`label_set_scores` with the same ``score``).
        alpha: significance level in (0, 1).
        score: ``"manhattan"`` or ``"euclidean"``.
        max_size: the most label sets one region may hold; checked before any label set is built.

    Returns:
        LabelSetRegions.

    Raises:
        ValueError: a region would exceed ``max_size`` label sets (raise it, use a larger alpha, or more
            calibration data).
    """
    score = _check_score(score)
    alpha = check_probability(alpha, "alpha")
    max_size = check_positive_int(max_size, "max_size")
    p = _check_label_probs(probs)
    check_array(calibration_scores, "calibration_scores", kind="real", ndim=1)
    cal = to_numpy(calibration_scores).astype(np.float64)
    if cal.shape[0] == 0 or np.isnan(cal).any():
        raise ValueError("Expected argument `calibration_scores` to be a non-empty NaN-free (n,) array")
    n, k = cal.shape[0], p.shape[1]
    rank = conformal_rank(n, alpha)
    threshold = float(np.partition(cal, rank - 1)[rank - 1]) if rank <= n else math.inf
    t_add = threshold if score == "manhattan" else threshold * threshold
    sets, pvals, offsets = [], [], [0]
    for i in range(p.shape[0]):
        best, d, a_min = _flip_costs(p[i], score)
        # a tolerance keeps the candidates a superset of the region under rounding; the exact test follows
        slack = t_add - a_min + 1e-9 * (1.0 + k + (t_add if math.isfinite(t_add) else 0.0))
        if slack < 0:
            offsets.append(offsets[-1])
            continue
        free = np.flatnonzero(d <= slack)  # the pruning: flipping any other label leaves the region surely
        order = free[np.argsort(d[free], kind="stable")]
        d_sorted = d[order]
        if _size_bound(d_sorted, slack) > max_size:
            count = _count_subsets(d_sorted, slack, max_size)
            if count > max_size:
                raise ValueError(
                    f"Expected each region to hold at most `max_size`={max_size} label sets, but input {i} has more "
                    f"than {max_size} candidates "
                    f"({order.shape[0]} of {k} labels undecided at alpha={alpha}); raise `max_size`, use a larger "
                    "alpha or more calibration data"
                )
        flips = _enumerate_flips(d_sorted, slack)
        cand = np.repeat(best[None, :], flips.shape[0], axis=0)
        cand[:, order] ^= flips
        s = label_set_scores(p[i : i + 1], cand, score=score)[0]  # exactly as a brute-force enumeration scores
        pv = conformal_pvalues(cal, s)
        keep = pvalue_mask(pv, alpha, n)
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(s[idx], kind="stable")]
        sets.append(cand[idx])
        pvals.append(pv[idx])
        offsets.append(offsets[-1] + idx.shape[0])
    return LabelSetRegions(
        label_sets=np.concatenate(sets) if sets else np.zeros((0, k), dtype=bool),
        pvalues=np.concatenate(pvals) if pvals else np.zeros(0),
        offsets=np.asarray(offsets, dtype=np.int64),
        alpha=alpha,
    )


class LabelPowersetICP(Calibrator):
    """Label powerset inductive conformal prediction for multi-label classification (LP-ICP).

    Guarantee: for exchangeable calibration and test points, P[Y_test in region(x_test)] >= 1 - alpha,
    where Y is the whole label set (all K labels right at once). Maltoudoglou et al. (2022).

    Args:
        alpha: significance level in (0, 1).
        score: nonconformity of a label set, ``"manhattan"`` (sum_k |Y_k - p_k|) or ``"euclidean"``.
        max_size: the most label sets one region may hold (checked before they are built).
    """

    threshold_: float | None

    def __init__(self, *, alpha: float = 0.1, score: Score = "manhattan", max_size: int = _DEFAULT_MAX_SIZE) -> None:
        self.alpha = check_probability(alpha, "alpha")
        self.score = _check_score(score)
        self.max_size = check_positive_int(max_size, "max_size")
        self.threshold_ = None

    def calibrate(self, probs: Array, labels: Array) -> LabelPowersetICP:
        """Score the true label sets of (N, K) calibration probabilities and (N, K) 0/1 labels. Returns self."""
        p = _check_label_probs(probs)
        if p.shape[0] == 0:
            raise ValueError("Expected argument `probs` to hold at least one calibration point, but it is empty")
        y = _check_label_sets(labels, p.shape[1], "labels")
        if y.shape != p.shape:
            raise ValueError(f"Expected argument `labels` to have shape {p.shape} like `probs`, but got {y.shape}")
        self.calibration_scores_ = label_set_scores(p, y[:, None, :], score=self.score)[:, 0]  # type: ignore[arg-type]
        self.num_labels_ = int(p.shape[1])
        self.n_calibration_ = int(p.shape[0])
        rank = conformal_rank(self.n_calibration_, self.alpha)
        self.threshold_ = (float(np.sort(self.calibration_scores_)[rank - 1]) if rank <= self.n_calibration_
                           else math.inf)
        return self

    def _check_width(self, p: np.ndarray) -> None:
        if p.shape[1] != self.num_labels_:
            raise ValueError(f"Expected argument `probs` to have {self.num_labels_} columns (as at calibration), "
                             f"but got shape {p.shape}")

    def pvalues(self, probs: Array, label_sets: Array) -> np.ndarray:
        """(N, M) conformal p-values of (M, K) or (N, M, K) candidate label sets for (N, K) probabilities."""
        check_calibrated(self, "threshold_")
        p = _check_label_probs(probs)
        self._check_width(p)
        return np.asarray(conformal_pvalues(self.calibration_scores_, label_set_scores(p, label_sets, score=self.score)))

    def predict(self, probs: Array) -> LabelSetRegions:
        """The regions {Y : p(x, Y) > alpha} of (N, K) probabilities (pruned; see the module docstring)."""
        check_calibrated(self, "threshold_")
        p = _check_label_probs(probs)
        self._check_width(p)
        return label_powerset_regions(p, self.calibration_scores_, self.alpha, score=self.score,  # type: ignore[arg-type]
                                      max_size=self.max_size)

    def forced_prediction(self, probs: Array) -> ForcedPrediction:
        """The label set of largest p-value of each input, its credibility and confidence, without enumeration.

        The score is a_min plus the flip costs of the labels flipped away from the closest set Y* (module
        docstring), so Y* has the smallest score and the second smallest is that of Y* with its cheapest label
        flipped (a set that flips more labels adds more non-negative costs); both are scored by
        :func:`label_set_scores` and turned into p-values exactly as :meth:`pvalues` does, so the numbers equal
        those of enumerating all 2^K label sets (tested for K <= 6).

        Args:
            probs: (N, K) per-label probabilities.

        Returns:
            :class:`ForcedPrediction` with (N, K) label sets and (N,) credibility and confidence.
        """
        check_calibrated(self, "threshold_")
        p = _check_label_probs(probs)
        self._check_width(p)
        best, d, _ = _flip_costs(p, self.score)
        runner = best.copy()
        rows = np.arange(p.shape[0])
        runner[rows, np.argmin(d, axis=1)] ^= True
        s = label_set_scores(p, np.stack([best, runner], axis=1), score=self.score)  # type: ignore[arg-type]
        pv = np.asarray(conformal_pvalues(self.calibration_scores_, s), dtype=np.float64)
        return ForcedPrediction(label_sets=best, credibility=pv[:, 0], confidence=1.0 - pv[:, 1])

    def contains(self, probs: Array, labels: Array) -> np.ndarray:
        """(N,) bool: whether the region of each input holds its label set, without building the regions."""
        check_calibrated(self, "threshold_")
        p = _check_label_probs(probs)
        self._check_width(p)
        y = _check_label_sets(labels, p.shape[1], "labels")
        if y.shape != p.shape:  # one label set per input (else numpy's broadcast error names nothing)
            raise ValueError(f"Expected argument `labels` to have shape {p.shape} like `probs`, but got {y.shape}")
        s = label_set_scores(p, y[:, None, :], score=self.score)[:, 0]  # type: ignore[arg-type]
        return np.asarray(pvalue_mask(conformal_pvalues(self.calibration_scores_, s), self.alpha, self.n_calibration_))
