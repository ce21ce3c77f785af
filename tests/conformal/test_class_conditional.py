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
