import math

import numpy as np
import pytest
import torch

from certkit.errors import NotCalibratedError
from conformal import PACPredictionSet, SplitConformal, conformal_quantile, metrics, scores

ALPHA = 0.1


def random_splits(n_total: int, n_cal: int, reps: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        perm = rng.permutation(n_total)
        yield perm[:n_cal], perm[n_cal:]


@pytest.mark.parametrize("score", ["thr", "aps", "raps", "raps_randomised"])
def test_coverage_over_random_splits(digits_pool, score: str) -> None:  # type: ignore[no-untyped-def]
    """Mean coverage over 500 splits sits in [1 - alpha, 1 - alpha + 1/(n+1)] within 4 standard errors (the upper
    bound for the randomised, tie-free APS and RAPS, the calibrators' defaults)."""
    probs, labels = digits_pool
    n_cal, reps = 397, 500
    randomised = score in ("aps", "raps_randomised")
    kwargs = {"randomized": True, "generator": torch.Generator().manual_seed(0)} if randomised else {}
    all_scores = scores.get_score(score.removesuffix("_randomised"))(probs, **kwargs)  # (N, K), one u per input
    true_scores = all_scores[torch.arange(len(labels)), labels]
    covs = []
    for cal, test in random_splits(len(labels), n_cal, reps):
        t = conformal_quantile(true_scores[cal], ALPHA)
        covs.append(float((true_scores[test] <= t).double().mean()))
    covs_a = np.array(covs)
    n_test = len(labels) - n_cal
    se = math.sqrt(ALPHA * (1 - ALPHA) * (1 / (n_cal + 2) + 1 / n_test) / reps)
    assert covs_a.mean() >= 1 - ALPHA - 4 * se
    # non-randomised scores tie on digits (many probabilities are exactly 1.0 in float32), which only adds coverage
    upper = 1 - ALPHA + 1 / (n_cal + 1) + 4 * se
    if randomised:
        assert covs_a.mean() <= upper
    # never below beyond tolerance: per-split coverage rarely dips under 1 - alpha - 3 sd
    sd = math.sqrt(ALPHA * (1 - ALPHA) * (1 / (n_cal + 2) + 1 / n_test))
    assert (covs_a < 1 - ALPHA - 3 * sd).mean() <= 0.01


def test_pac_failure_rate_on_digits(digits_pool) -> None:  # type: ignore[no-untyped-def]
    probs, labels = digits_pool
    eps, delta, reps = 0.1, 0.1, 500
    s = scores.thr(probs, labels)
    n_cal = 397
    fails = 0
    for cal, test in random_splits(len(labels), n_cal, reps, seed=1):
        t = PACPredictionSet(score="thr", epsilon=eps, delta=delta).calibrate(probs[cal], labels[cal]).threshold_
        fails += float((s[test] > t).double().mean()) > eps
    assert fails / reps <= delta + 3 * math.sqrt(delta * (1 - delta) / reps)


def test_pac_failure_rate_exact_population() -> None:
    """Scores ~ U(0, 1): the true miscoverage of threshold t is 1 - t, so the guarantee is checked exactly."""
    rng = np.random.default_rng(0)
    eps, delta, n, reps = 0.1, 0.05, 200, 4000
    fails = sum((1 - PACPredictionSet(score="thr", epsilon=eps, delta=delta)._fit_threshold(
        rng.random(n), np.zeros(n, int), 2)) > eps for _ in range(reps))
    rate = fails / reps
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / reps)
    assert rate >= 0.2 * delta  # not vacuous: the rule uses its failure budget


def test_split_conformal_api() -> None:
    p = torch.softmax(torch.randn(200, 4, generator=torch.Generator().manual_seed(0)), -1)
    y = torch.multinomial(p, 1, generator=torch.Generator().manual_seed(1)).squeeze(1)
    cp = SplitConformal(score="thr", alpha=0.2)
    with pytest.raises(NotCalibratedError, match="not calibrated"):
        cp.predict(p)
    assert cp.calibrate(p[:100], y[:100]) is cp
    sets = cp.predict(p[100:])
    assert sets.mask.shape == (100, 4) and sets.mask.dtype == torch.bool
    assert torch.equal(sets.sizes, sets.mask.sum(1))
    assert sets.threshold == cp.threshold_
    assert metrics.coverage(sets, y[100:]) == float(sets.contains(y[100:]).double().mean())
    np_sets = SplitConformal(score="thr", alpha=0.2).calibrate(p[:100].numpy(), y[:100].numpy()).predict(p[100:].numpy())
    assert isinstance(np_sets.mask, np.ndarray)
    np.testing.assert_array_equal(np_sets.mask, sets.mask.numpy())


def test_bad_hyperparameters_and_inputs() -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        SplitConformal(alpha=1.0)
    with pytest.raises(ValueError, match="`epsilon`"):
        PACPredictionSet(epsilon=0.0)
    with pytest.raises(ValueError, match="`score`"):
        SplitConformal(score="bogus")
    p = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="empty"):
        SplitConformal().calibrate(p[:0], np.zeros(0, int))
    cp = SplitConformal(score="thr").calibrate(np.full((20, 2), 0.5), np.zeros(20, int))
    with pytest.raises(ValueError, match="2 columns"):
        cp.predict(np.full((3, 3), 1 / 3))
