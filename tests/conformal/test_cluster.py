"""Clustered conformal (Ding et al. 2023): the functional core, the calibrator protocol, and coverage per class."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from conformal import ClusteredConformal, SplitConformal, conformal_quantile
from conformal.cluster import (
    cluster_thresholds,
    clustering_parameters,
    min_class_size,
    quantile_embeddings,
    weighted_kmeans,
)
from conformal.functional import conformal_rank

STRENGTH = (4.0, 2.0, 0.7)  # three groups of classes: easy, medium, hard


def _grouped(n: int, k: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes in three groups whose model confidence differs (class c is in group c % 3)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    logits[torch.arange(n), y] += torch.tensor(STRENGTH, dtype=torch.float64)[y % 3]
    return torch.softmax(logits, 1), y


def test_min_class_size_is_exact() -> None:
    for alpha in (0.1, 0.05, 0.059, 0.2, 0.33, 0.01):
        n = min_class_size(alpha)
        assert conformal_rank(n, alpha) <= n and conformal_rank(n - 1, alpha) > n - 1 if n > 1 else True
    assert min_class_size(0.1) == 9


def test_heuristic_parameters() -> None:
    # n_min = 100, R = 30: n_clustering = floor(3000 / 105) = 28 -> 14 clusters, gamma = 0.28
    assert clustering_parameters(np.full(30, 100), 0.1) == (14, 0.28)
    m, frac = clustering_parameters(np.array([3, 100, 100]), 0.1)  # n_min raised to 9; R = 2
    assert (m, frac) == (0, 0.0)


def test_embeddings_and_kmeans_recover_groups() -> None:
    p, y = _grouped(6000)
    s = 1 - p[torch.arange(len(y)), y]
    emb, counts = quantile_embeddings(s, y, 30)
    assert emb.shape == (30, 5) and counts.sum() == 6000
    sc0 = np.sort(s[y == 0].numpy())
    assert emb[0, 0] == sc0[math.ceil(len(sc0) * 0.5) - 1]
    assign = weighted_kmeans(emb, np.sqrt(counts), 3, generator=torch.Generator().manual_seed(0))
    groups = np.arange(30) % 3
    for gi in range(3):  # every group is one cluster
        assert len(set(assign[groups == gi].tolist())) == 1
    assert len(set(assign.tolist())) == 3
    again = weighted_kmeans(emb, np.sqrt(counts), 3, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(assign, again)


def test_cluster_thresholds_by_hand() -> None:
    s = np.arange(1, 41) / 40
    y = np.arange(40) % 4
    cl = np.array([0, 0, 1, 2])  # class 3 in the null cluster (index 2 = n_clusters)
    t = cluster_thresholds(s, y, cl, 2, 0.1)
    assert t[0] == t[1] == conformal_quantile(s[y < 2], 0.1)
    assert t[2] == conformal_quantile(s[y == 2], 0.1)
    assert t[3] == conformal_quantile(s, 0.1)  # null cluster: marginal
    assert math.isinf(cluster_thresholds(s[:5], y[:5], cl, 2, 0.1)[0])


def test_protocol_and_learned_state() -> None:
    p, y = _grouped(3000)
    cc = ClusteredConformal(score="thr", alpha=0.1)
    assert repr(cc) == "ClusteredConformal(score='thr')"
    assert cc.calibrate(p, y) is cc
    assert cc.threshold_.shape == (30,) and cc.cluster_of_class_.shape == (30,)
    assert cc.n_clusters_ == 14 or cc.n_clusters_ >= 2
    assert 0 < cc.clustering_fraction_ < 1 and cc.n_calibration_ < 3000
    sets = cc.predict(p[:10])
    assert sets.mask.shape == (10, 30)
    a = ClusteredConformal(alpha=0.1).calibrate(p, y).predict(p[:50]).mask
    b = ClusteredConformal(alpha=0.1).calibrate(p, y).predict(p[:50]).mask
    assert torch.equal(a, b)  # seeded default
    with pytest.raises(ValueError, match="`n_clusters`"):
        ClusteredConformal(n_clusters=0)
    with pytest.raises(ValueError, match="`clustering_fraction`"):
        ClusteredConformal(clustering_fraction=1.0)
    with pytest.raises(TypeError, match="`generator`"):
        ClusteredConformal().calibrate(p, y, generator=3)
    # too few points for any cluster: everything null, with the marginal threshold
    small = ClusteredConformal(score="thr", alpha=0.1).calibrate(p[:40], y[:40])
    assert small.n_clusters_ == 0 and small.rare_classes_.all()


def _per_class_coverage(method: str, reps: int, n_cal: int = 3000, n_test: int = 3000) -> np.ndarray:
    """(reps, 30) coverage of every class, each repetition on a fresh draw of calibration and test data."""
    cov = np.zeros((reps, 30))
    for r in range(reps):
        p, y = _grouped(n_cal + n_test, seed=1000 + r)
        cal, test = torch.arange(n_cal), torch.arange(n_cal, n_cal + n_test)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "cluster":
                cp = ClusteredConformal(score="thr", alpha=0.1)
                cp.calibrate(p[cal], y[cal], generator=torch.Generator().manual_seed(r))
            else:
                cp = SplitConformal(score="thr", alpha=0.1).calibrate(p[cal], y[cal])
        hit = cp.predict(p[test]).contains(y[test]).double().numpy()
        yt = y[test].numpy()
        cov[r] = np.bincount(yt, weights=hit, minlength=30) / np.bincount(yt, minlength=30)
    return cov


def test_class_coverage_few_splits() -> None:
    """Fast: the hard classes, under-covered by the marginal threshold, are covered by clustering."""
    cl, sp = _per_class_coverage("cluster", 20), _per_class_coverage("split", 20)
    hard = np.arange(30) % 3 == 2
    assert sp.mean(0)[hard].mean() < 0.8  # marginal split conformal: hard classes well under 0.9
    assert cl.mean(0)[hard].mean() > 0.87
    assert abs(cl.mean() - 0.9) < 0.02


@pytest.mark.slow
def test_class_coverage_over_500_splits() -> None:
    """Every class's mean coverage over 500 draws is >= 1 - alpha within 4 standard errors (classes of one
    group share their score distribution, so each cluster is homogeneous and the cluster guarantee is a
    class guarantee); marginal split conformal fails it on the hard classes."""
    reps, alpha = 500, 0.1
    cov = _per_class_coverage("cluster", reps)
    # ~70 proper-calibration points per class, ~100 test points: per-split spread of one class's coverage
    se = math.sqrt(alpha * (1 - alpha) * (1 / 70 + 1 / 100) / reps)
    assert (cov.mean(0) >= 1 - alpha - 4 * se).all(), cov.mean(0)
    assert abs(cov.mean() - (1 - alpha)) < 0.01
    split = _per_class_coverage("split", 100)
    assert (split.mean(0) < 1 - alpha - 0.05).any()
