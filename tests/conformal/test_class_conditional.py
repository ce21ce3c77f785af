import math

import numpy as np
import pytest
import torch

from conformal import ClassConditional, metrics


def test_per_class_coverage_over_splits(digits_pool) -> None:  # type: ignore[no-untyped-def]
    probs, labels = digits_pool
    alpha, reps = 0.1, 300
    rng = np.random.default_rng(0)
    per_class = np.zeros((reps, 10))
    for r in range(reps):
        perm = rng.permutation(len(labels))
        cal, test = perm[:397], perm[397:]
        sets = ClassConditional(score="aps", alpha=alpha).calibrate(probs[cal], labels[cal]).predict(probs[test])
        cov = sets.contains(labels[test]).double()
        for c in range(10):
            per_class[r, c] = float(cov[labels[test] == c].mean())
    # ~40 calibration points per class: each class's mean coverage >= 1 - alpha within 4 standard errors
    se = math.sqrt(alpha * (1 - alpha) * (1 / 42 + 1 / 40) / reps)
    assert (per_class.mean(0) >= 1 - alpha - 4 * se).all()


def test_thresholds_per_class_and_inf_warning() -> None:
    p = torch.softmax(torch.randn(60, 3, generator=torch.Generator().manual_seed(0)), -1)
    y = torch.tensor([0] * 30 + [1] * 27 + [2] * 3)
    with pytest.warns(UserWarning, match=r"classes \[2\]"):
        cc = ClassConditional(score="thr", alpha=0.1).calibrate(p, y)
    assert cc.threshold_.shape == (3,) and math.isinf(float(cc.threshold_[2]))
    sets = cc.predict(p)
    assert bool(sets.mask[:, 2].all())
    covered = sets.contains(y).double()
    expected = sum(abs(float(covered[y == c].mean()) - 0.9) for c in range(3)) / 3
    assert metrics.class_coverage_gap(sets, y, 0.1) == pytest.approx(expected)
    assert float(covered[y == 2].mean()) == 1.0


def _rank_score(probs, labels=None, **kw):  # type: ignore[no-untyped-def]
    """An integer-valued score (the 1-based rank of each label), as a user's callable may return."""
    r = torch.argsort(torch.argsort(-probs, dim=1, stable=True), dim=1, stable=True) + 1
    return r if labels is None else r.gather(1, labels[:, None]).squeeze(1)


def test_integer_scores_keep_the_infinite_threshold_of_a_short_class() -> None:
    """A class short of calibration points is always included, also for an integer-valued score (its +inf
    threshold was cast to the scores' dtype: int64's minimum, so the class was never included)."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(200, 3, generator=g), -1)
    y = torch.tensor([0] * 100 + [1] * 97 + [2] * 3)
    with pytest.warns(UserWarning, match=r"classes \[2\]"):
        cc = ClassConditional(score=_rank_score, alpha=0.1).calibrate(p, y)
    assert math.isinf(float(cc.threshold_[2])) and cc.threshold_.dtype == torch.float64
    assert bool(cc.predict(p).mask[:, 2].all())


def test_a_class_absent_from_calibration_is_always_included() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(100, 3, generator=g), -1)
    y = torch.tensor([0] * 50 + [1] * 50)  # no calibration point of class 2
    with pytest.warns(UserWarning, match=r"classes \[2\]"):
        cc = ClassConditional(score="thr", alpha=0.1).calibrate(p, y)
    assert bool(cc.predict(p).mask[:, 2].all())
