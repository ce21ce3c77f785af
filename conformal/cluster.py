"""Clustered conformal prediction (Ding, Angelopoulos, Bates, Jordan, Tibshirani, NeurIPS 2023,
"Class-conditional conformal prediction with many classes").

With many classes, per-class (Mondrian) thresholds have too few calibration points each, and a
single marginal threshold over- and under-covers whole classes. Clustered conformal pools classes
whose score distributions look alike:

1. split the calibration data at random into a clustering part (fraction gamma) and a proper
   calibration part;
2. embed every class with enough clustering points as the quantiles (levels 0.5, 0.6, ..., 0.9)
   of its clustering scores, and group the embeddings by k-means weighted by sqrt(class count);
   the other ("rare") classes go to a null cluster;
3. each cluster gets the split-conformal threshold of the calibration scores of its classes
   (exact rank k = ceil((n_m + 1)(1 - alpha))); the null cluster gets the marginal threshold of
   all calibration scores.

Guarantee: conditional on the clustering (which uses only the clustering part), for every cluster
m, P[y_test in C(x_test) | y_test in cluster m] >= 1 - alpha; classes of the null cluster get the
marginal guarantee. Class-conditional coverage holds approximately, to the extent that the classes
of a cluster share a score distribution.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from certkit._validation import Array, check_generator, check_positive_int, check_probability, to_numpy
from certkit.warnings import SmallCalibrationSetWarning
from conformal._base import _DEFAULT_SEED, ScoreCalibrator
from conformal.functional import conformal_rank, kth_smallest
from conformal.scores import ScoreFunction

__all__ = [
    "ClusteredConformal",
    "cluster_thresholds",
    "clustering_parameters",
    "min_class_size",
    "quantile_embeddings",
    "weighted_kmeans",
]

EMBEDDING_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)



def min_class_size(alpha: float) -> int:
    """The smallest n with a finite conformal threshold: min{n : ceil((n + 1)(1 - alpha)) <= n}, exactly.

    Examples:
        >>> min_class_size(0.1)
        9
    """
    check_probability(alpha, "alpha")
    n = max(1, math.floor((1 - Fraction(repr(float(alpha)))) / Fraction(repr(float(alpha)))) - 1)
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


def clustering_parameters(class_counts: Sequence[int] | np.ndarray, alpha: float) -> tuple[int, float]:
    """``(n_clusters, clustering_fraction)`` of Ding et al.'s heuristic (from the authors' reference code).

    With n_min the smallest class count (raised to :func:`min_class_size`) and R the number of classes
    with at least n_min points: n_clustering = floor(n_min R / (75 + R)) points per class go to
    clustering, M = floor(n_clustering / 2) clusters, gamma = n_clustering / n_min.
    """
    counts = np.asarray(class_counts)
    n_min = max(int(counts.min()), min_class_size(alpha))
    remaining = int((counts >= n_min).sum())
    n_clustering = (n_min * remaining) // (75 + remaining)
    return n_clustering // 2, n_clustering / n_min


def quantile_embeddings(scores: Array, labels: Array, num_classes: int,
                        levels: Sequence[float] = EMBEDDING_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """(K, L) embedding of every class by the ``levels`` quantiles of its scores, and its (K,) counts.

    The q-quantile of n scores is the ceil(n q)-th smallest (exact rank); classes without scores get a row of NaN.
    """
    s, y = to_numpy(scores).astype(np.float64), to_numpy(labels).astype(np.int64)
    emb = np.full((num_classes, len(levels)), np.nan)
    counts = np.bincount(y, minlength=num_classes)
    for c in np.flatnonzero(counts):
        sc = np.sort(s[y == c])
        ranks = [max(1, math.ceil(len(sc) * Fraction(repr(float(q))))) for q in levels]
        emb[c] = sc[np.asarray(ranks) - 1]
    return emb, counts


def _draw(p: np.ndarray, generator: torch.Generator) -> int:
    """An index drawn with probabilities proportional to ``p`` (>= 0, positive sum)."""
    c = np.cumsum(p)
    u = float(torch.rand(1, generator=generator, dtype=torch.float64)) * c[-1]
    return int(min(np.searchsorted(c, u, side="right"), len(p) - 1))


def weighted_kmeans(points: np.ndarray, weights: np.ndarray, n_clusters: int, *, n_init: int = 10,
                    max_iter: int = 100, generator: torch.Generator | None = None) -> np.ndarray:
    """Weighted k-means (Lloyd's iterations from k-means++ seeds, best of ``n_init`` by weighted inertia).

    Args:
        points: (K, L) points.
        weights: (K,) positive weights.
        n_clusters: number of clusters M, 1 <= M <= K.
        n_init: number of restarts.
        max_iter: Lloyd iterations per restart.
        generator: torch generator of the seeds (default: seeded with 0).

    Returns:
        (K,) int64 cluster index in [0, M) of every point.
    """
    x, w = np.asarray(points, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    m = check_positive_int(n_clusters, "n_clusters")
    if m > len(x):
        raise ValueError(f"Expected argument `n_clusters` to be at most the number of points {len(x)}, but got {m}")
    g = check_generator(generator) or torch.Generator().manual_seed(_DEFAULT_SEED)
    best, best_inertia = np.zeros(len(x), dtype=np.int64), math.inf
    for _ in range(check_positive_int(n_init, "n_init")):
        centers = [x[_draw(w, g)]]
        for _ in range(1, m):  # k-means++: the next seed with probability ~ w * squared distance
            d2 = ((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1).min(1)
            centers.append(x[_draw(w * d2, g) if (w * d2).sum() > 0 else _draw(w, g)])
        c = np.asarray(centers)
        for _ in range(max_iter):
            assign = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
            new = c.copy()
            for j in range(m):
                sel = assign == j
                if sel.any():
                    new[j] = (w[sel, None] * x[sel]).sum(0) / w[sel].sum()
            if np.array_equal(new, c):
                break
            c = new
        d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        assign = d2.argmin(1)
        inertia = float((w * d2.min(1)).sum())
        if inertia < best_inertia:
            best, best_inertia = assign.astype(np.int64), inertia
    return best


def cluster_thresholds(scores: Array, labels: Array, cluster_of_class: np.ndarray, n_clusters: int,
                       alpha: float) -> np.ndarray:
    """(K,) per-class thresholds: each class gets its cluster's split-conformal threshold.

    Args:
        scores: (n,) calibration scores of the true labels.
        labels: (n,) their labels.
        cluster_of_class: (K,) cluster index in [0, n_clusters] of every class; ``n_clusters`` is the
            null cluster, whose classes get the marginal threshold of all ``scores``.
        n_clusters: M, the number of (non-null) clusters.
        alpha: miscoverage level in (0, 1).

    Returns:
        (K,) float64 thresholds, +inf for a cluster with too few calibration scores (k > n_m).
    """
    s, y = to_numpy(scores).astype(np.float64), to_numpy(labels).astype(np.int64)
    clusters = np.asarray(cluster_of_class)[y]
    out = np.full(n_clusters + 1, math.inf)
    for j in range(n_clusters + 1):
        sc = s if j == n_clusters else s[clusters == j]  # the null cluster: all calibration scores
        if len(sc) and conformal_rank(len(sc), alpha) <= len(sc):
            out[j] = kth_smallest(sc, conformal_rank(len(sc), alpha))
    return out[np.asarray(cluster_of_class)]


class ClusteredConformal(ScoreCalibrator):
    """Clustered conformal classifier (Ding et al., NeurIPS 2023): one threshold per cluster of classes.

    Guarantee: conditional on the clustering, P[y_test in C(x_test) | y_test in cluster m] >= 1 - alpha
    for every cluster m (exchangeable data); classes too rare to cluster (fewer than
    :func:`min_class_size` clustering points) form a null cluster with the marginal guarantee
    P[y in C(x)] >= 1 - alpha. Class-conditional coverage holds approximately (exactly when the classes of
    a cluster share their score distribution). See the module docstring for the algorithm.

    Args:
        score: score name or callable, as in :class:`conformal.SplitConformal`.
        alpha: miscoverage level in (0, 1), per cluster.
        n_clusters: number of clusters M (default None: the paper's heuristic,
            :func:`clustering_parameters`); clipped to the number of classes that can be clustered.
        clustering_fraction: fraction gamma of the calibration points used for clustering, in (0, 1)
            (default None: the heuristic).
        n_init: k-means restarts.
        score_kwargs: keyword arguments of the score.
        validate: check inputs; skip only for trusted inputs.
        randomized: as in :class:`conformal.SplitConformal` (APS/RAPS/SAPS/TopK are randomised by default).

    The clustering split and the k-means seeds are drawn from the ``generator`` of ``calibrate`` (after
    the u's of a randomised score), default a generator seeded with 0. Learned state: ``threshold_`` (K,),
    ``cluster_of_class_`` (K,) in [0, ``n_clusters_``] (``n_clusters_`` is the null cluster),
    ``rare_classes_`` (K,) bool, ``clustering_fraction_``, ``n_calibration_``.
    """

    def __init__(self, *, score: str | ScoreFunction = "aps", alpha: float = 0.1, n_clusters: int | None = None,
                 clustering_fraction: float | None = None, n_init: int = 10,
                 score_kwargs: dict[str, Any] | None = None, validate: bool = True,
                 randomized: bool | None = None) -> None:
        super().__init__(score=score, score_kwargs=score_kwargs, validate=validate, randomized=randomized)
        self.alpha = check_probability(alpha, "alpha")
        self.n_clusters = None if n_clusters is None else check_positive_int(n_clusters, "n_clusters")
        self.clustering_fraction = (None if clustering_fraction is None
                                    else check_probability(clustering_fraction, "clustering_fraction"))
        self.n_init = check_positive_int(n_init, "n_init")

    def calibrate(self, probs: Array, labels: Array, *, model: torch.nn.Module | None = None,
                  from_logits: bool = False, generator: torch.Generator | None = None) -> ClusteredConformal:
        """Cluster the classes and fit one threshold per cluster on (N, K) probabilities and (N,) labels. Returns self.

        ``model=``, ``from_logits`` and ``generator`` as in :meth:`conformal.SplitConformal.calibrate`.
        """
        self._fit_generator = check_generator(generator)
        super().calibrate(probs, labels, model=model, from_logits=from_logits, generator=generator)
        return self

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> Array:
        g = getattr(self, "generator_", None) if self._randomize else None
        g = g or getattr(self, "_fit_generator", None) or torch.Generator().manual_seed(_DEFAULT_SEED)
        s, y = to_numpy(cal_scores).astype(np.float64), to_numpy(labels).astype(np.int64)
        counts = np.bincount(y, minlength=num_classes)
        m_auto, frac_auto = clustering_parameters(counts, self.alpha)
        frac = self.clustering_fraction if self.clustering_fraction is not None else frac_auto
        in_clustering = torch.rand(len(s), generator=g, dtype=torch.float64).numpy() < frac
        emb, cl_counts = quantile_embeddings(s[in_clustering], y[in_clustering], num_classes)
        rare = cl_counts < min_class_size(self.alpha)
        clusterable = np.flatnonzero(~rare)
        m = self.n_clusters if self.n_clusters is not None else m_auto
        m = min(m, len(clusterable))
        cluster_of_class = np.full(num_classes, m, dtype=np.int64)  # index m: the null cluster
        if m >= 1:
            cluster_of_class[clusterable] = weighted_kmeans(emb[clusterable], np.sqrt(cl_counts[clusterable]), m,
                                                            n_init=self.n_init, generator=g)
        else:
            rare[:] = True
        self.cluster_of_class_ = cluster_of_class
        self.n_clusters_ = int(m)
        self.rare_classes_ = rare
        self.clustering_fraction_ = float(frac)
        thresholds = cluster_thresholds(s[~in_clustering], y[~in_clustering], cluster_of_class, m, self.alpha)
        short = sorted({int(cluster_of_class[c]) for c in np.flatnonzero(np.isinf(thresholds))})
        if short:
            warnings.warn(
                f"ClusteredConformal: clusters {short} (index {m} is the null cluster) have too few calibration "
                f"points for alpha={self.alpha}; their classes get threshold +inf (always included)",
                SmallCalibrationSetWarning,
                stacklevel=3,
            )
        self.n_calibration_ = int((~in_clustering).sum())
        if isinstance(cal_scores, torch.Tensor):
            return torch.from_numpy(thresholds)  # float64: predict rounds it down to the scores' dtype
        return thresholds
