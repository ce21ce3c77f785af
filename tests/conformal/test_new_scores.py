"""SAPS, TopK, margin and cross-entropy scores: values, the one score protocol, coverage over 500 splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from conformal import ClassConditional, PACPredictionSet, SplitConformal, conformal_quantile, scores
from conformal.sklearn import ConformalClassifier

P = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
NEW = ("saps", "topk", "margin", "cross_entropy")


def test_values_by_hand() -> None:
    # SAPS, u = 0 (inclusive): top label p_max, rank r: p_max + (r - 1) lam
    np.testing.assert_allclose(scores.saps(P, lam=0.1)[0], [0.5, 0.6, 0.7, 0.8])
    np.testing.assert_allclose(scores.saps(P, lam=0.1, u=1.0)[1], [0.4 + 0.2, 0.4 + 0.1, 0.4, 0.0], atol=1e-12)
    np.testing.assert_allclose(scores.topk(P)[1], [4, 3, 2, 1])
    np.testing.assert_allclose(scores.topk(P)[2], [1, 2, 3, 4])  # ties ranked by label index
    np.testing.assert_allclose(scores.topk(P, u=0.25)[0], [0.75, 1.75, 2.75, 3.75])
    np.testing.assert_allclose(scores.margin(P)[0], [-0.2, 0.2, 0.35, 0.45])
    np.testing.assert_allclose(scores.margin(P)[2], [0.0, 0.0, 0.0, 0.0])  # a tied top: margin 0
    np.testing.assert_allclose(scores.cross_entropy(P)[1], -np.log(P[1]))
    assert math.isinf(float(scores.cross_entropy(np.array([[1.0, 0.0]]))[0, 1]))


def test_saps_is_the_papers_formula_with_u_reflected() -> None:
    """Huang et al. (2024) eq. 4: u' p_max for the top label, p_max + (r - 2 + u') lam below, u' = 1 - u."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(2 * torch.randn(200, 6, generator=g, dtype=torch.float64), -1)
    u = torch.rand(200, generator=g, dtype=torch.float64)
    ranks = scores.topk(p)  # 1-based ranks
    pmax = p.max(1, keepdim=True).values
    up = (1 - u)[:, None]
    paper = torch.where(ranks == 1, up * pmax, pmax + (ranks - 2 + up) * 0.3)
    torch.testing.assert_close(scores.saps(p, lam=0.3, u=u), paper)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_label_scores_match_matrix_and_type(name: str, kind: str) -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(40, 5, generator=g, dtype=torch.float64), -1)
    y = torch.randint(0, 5, (40,), generator=g)
    fn = scores.get_score(name)
    kw = {"u": torch.rand(40, generator=g, dtype=torch.float64)} if name in ("saps", "topk") else {}
    if kind == "numpy":
        p, y = p.numpy(), y.numpy()
        kw = {k: v.numpy() for k, v in kw.items()}
    full, lab = fn(p, **kw), fn(p, y, **kw)
    assert type(full) is type(p) and full.shape == (40, 5)
    np.testing.assert_allclose(np.asarray(lab), np.asarray(full)[np.arange(40), np.asarray(y)])


@pytest.mark.parametrize("name", NEW)
def test_bad_input(name: str) -> None:
    fn = scores.get_score(name)
    with pytest.raises(ValueError, match="finite"):
        fn(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="sum to 1"):
        fn(np.array([[0.3, 0.3]]))
    with pytest.raises(ValueError, match="class indices in"):
        fn(P, np.array([0, 4, 1]))
    if name == "saps":
        with pytest.raises(ValueError, match="`lam`"):
            fn(P, lam=0.0)


def test_cross_entropy_sets_are_thr_sets() -> None:
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(3 * torch.randn(1000, 10, generator=g, dtype=torch.float64), -1)
    y = torch.multinomial(p, 1, generator=g).squeeze(1)
    a = SplitConformal(score="thr").calibrate(p[:500], y[:500]).predict(p[500:]).mask
    b = SplitConformal(score="entropy").calibrate(p[:500], y[:500]).predict(p[500:]).mask
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NEW)
def test_every_calibrator_takes_the_score(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.softmax(2 * torch.randn(1200, 6, generator=g, dtype=torch.float64), -1)
    y = torch.multinomial(p, 1, generator=g).squeeze(1)
    for cal in (SplitConformal(score=name, alpha=0.2), ClassConditional(score=name, alpha=0.2),
                PACPredictionSet(score=name, epsilon=0.2, delta=0.1)):
        sets = cal.calibrate(p[:600], y[:600], generator=torch.Generator().manual_seed(0)).predict(p[600:])
        assert sets.mask.shape == (600, 6)
        assert 0.7 < float(sets.contains(y[600:]).double().mean()) < 0.95
    assert SplitConformal(score=name)._randomize == (name in ("saps", "topk"))
    X, Y = make_classification(n_samples=900, n_features=6, n_informative=4, n_classes=3, random_state=0)
    est = LogisticRegression(max_iter=300).fit(X[:300], Y[:300])
    clf = ConformalClassifier(est, score=name, alpha=0.2).fit(X[300:600], Y[300:600])
    assert clf.predict_set(X[600:]).shape == (300, 3)


def _pool(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A calibrated model: labels drawn from the probabilities it outputs."""
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(2.5 * torch.randn(n, k, generator=g, dtype=torch.float64), -1)
    return p, torch.multinomial(p, 1, generator=g).squeeze(1)


@pytest.mark.parametrize("name", (*NEW, "saps_fixed_u"))
def test_coverage_over_500_splits(name: str) -> None:
    """Mean coverage over 500 random splits is >= 1 - alpha within 4 standard errors, and (for the randomised,
    tie-free scores) <= 1 - alpha + 1/(n + 1) within 4 standard errors."""
    alpha, n_cal, reps = 0.1, 500, 500
    probs, labels = _pool(2000, 10, seed=4)
    if name == "saps_fixed_u":  # the non-randomised SAPS: ties only add coverage
        true_scores = scores.saps(probs, labels)
    else:
        kw = {"randomized": True, "generator": torch.Generator().manual_seed(0)} if name in ("saps", "topk") else {}
        true_scores = scores.get_score(name)(probs, labels, **kw)
    rng = np.random.default_rng(0)
    covs = np.empty(reps)
    for r in range(reps):
        perm = torch.from_numpy(rng.permutation(len(labels)))
        t = conformal_quantile(true_scores[perm[:n_cal]], alpha)
        covs[r] = float((true_scores[perm[n_cal:]] <= t).double().mean())
    n_test = len(labels) - n_cal
    se = math.sqrt(alpha * (1 - alpha) * (1 / (n_cal + 2) + 1 / n_test) / reps)
    assert covs.mean() >= 1 - alpha - 4 * se
    if name != "saps_fixed_u":
        assert covs.mean() <= 1 - alpha + 1 / (n_cal + 1) + 4 * se


def test_sklearn_predict_set_and_predict_p_share_u() -> None:
    """Issue 16: the randomised default draws the same u's in predict_set and predict_p for the same X."""
    X, Y = make_classification(n_samples=900, n_features=8, n_informative=5, n_classes=4, random_state=0)
    est = LogisticRegression(max_iter=500).fit(X[:300], Y[:300])
    for score in ("aps", "raps", "saps", "topk"):
        clf = ConformalClassifier(est, score=score, alpha=0.1).fit(X[300:600], Y[300:600])
        sets = clf.predict_set(X[600:])
        np.testing.assert_array_equal(clf.sets_from_p(clf.predict_p(X[600:])), sets)
        np.testing.assert_array_equal(clf.predict_set(X[600:]), sets)  # repeatable
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        np.testing.assert_array_equal(clf.sets_from_p(clf.predict_p(X[600:], generator=g1)),
                                      clf.predict_set(X[600:], generator=g2))
    # the u's are really random: another random_state changes some sets
    a = ConformalClassifier(est, score="aps", alpha=0.1).fit(X[300:600], Y[300:600])
    b = ConformalClassifier(est, score="aps", alpha=0.1, random_state=7).fit(X[300:600], Y[300:600])
    assert not np.array_equal(a.predict_set(X[600:]), b.predict_set(X[600:]))
