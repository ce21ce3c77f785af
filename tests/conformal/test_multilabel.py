"""LP-ICP: the pruned regions equal brute-force enumeration; the budget is checked first; validity on digits."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from certkit.errors import NotCalibratedError
from conformal.multilabel import LabelPowersetICP, LabelSetRegions, label_powerset_regions, label_set_scores
from conformal.pvalues import conformal_pvalues, pvalue_mask


def _all_sets(k: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=k)), dtype=bool)


def _brute_force(probs: np.ndarray, cal: np.ndarray, alpha: float, score: str) -> list[dict[bytes, float]]:
    """Every one of the 2^K label sets scored, p-valued and compared: {label set bytes: p-value} per input."""
    everything = _all_sets(probs.shape[1])
    s = label_set_scores(probs, everything, score=score)  # type: ignore[arg-type]
    pv = conformal_pvalues(cal, s)
    keep = pvalue_mask(pv, alpha, cal.shape[0])
    return [{everything[j].tobytes(): float(pv[i, j]) for j in np.flatnonzero(keep[i])} for i in range(len(probs))]


def _draw(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label probabilities of mixed sharpness and label sets drawn from them."""
    sharp = rng.uniform(0.2, 3.0, size=(n, 1))
    p = 1 / (1 + np.exp(-sharp * rng.normal(size=(n, k)) * 2))
    return p, (rng.random((n, k)) < p).astype(np.int64)


@pytest.mark.parametrize("score", ["manhattan", "euclidean"])
def test_pruned_regions_equal_brute_force_enumeration(score: str) -> None:
    rng = np.random.default_rng(0)
    cases = 0
    for _ in range(60):
        k = int(rng.integers(1, 9))
        n = int(rng.integers(5, 80))
        p_cal, y_cal = _draw(rng, n, k)
        p_test, _ = _draw(rng, 12, k)
        alpha = float(rng.choice([0.02, 0.05, 0.1, 0.2, 0.4, 0.7]))
        icp = LabelPowersetICP(alpha=alpha, score=score).calibrate(p_cal, y_cal)  # type: ignore[arg-type]
        regions = icp.predict(p_test)
        brute = _brute_force(p_test, icp.calibration_scores_, alpha, score)
        for i in range(len(p_test)):
            sets, pv = regions.region(i)
            got = {s.tobytes(): float(v) for s, v in zip(sets, pv, strict=True)}
            assert got == brute[i]
            assert len(got) == sets.shape[0]  # no duplicates
            cases += 1
    assert cases == 720


def test_ties_and_saturated_probabilities_equal_brute_force() -> None:
    rng = np.random.default_rng(1)
    for _ in range(40):
        k = int(rng.integers(2, 7))
        p = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(30, k))  # exact ties everywhere
        y = (rng.random((30, k)) < p).astype(int)
        icp = LabelPowersetICP(alpha=float(rng.choice([0.1, 0.3]))).calibrate(p[:20], y[:20])
        regions = icp.predict(p[20:])
        brute = _brute_force(p[20:], icp.calibration_scores_, icp.alpha, "manhattan")
        for i in range(10):
            sets, pv = regions.region(i)
            assert {s.tobytes(): float(v) for s, v in zip(sets, pv, strict=True)} == brute[i]


def test_regions_hold_labels_as_contains_says_and_pvalues_match() -> None:
    rng = np.random.default_rng(2)
    p, y = _draw(rng, 300, 6)
    icp = LabelPowersetICP(alpha=0.1).calibrate(p[:200], y[:200])
    regions = icp.predict(p[200:])
    assert isinstance(regions, LabelSetRegions) and len(regions) == 100
    assert np.array_equal(regions.contains(y[200:]), icp.contains(p[200:], y[200:]))
    sets, pv = regions.region(3)
    assert np.allclose(icp.pvalues(p[203:204], sets)[0], pv) and (pv > 0.1).all()
    assert np.all(np.diff(label_set_scores(p[203:204], sets)[0]) >= 0)  # best label set first
    # torch inputs give the same regions
    icp_t = LabelPowersetICP(alpha=0.1).calibrate(torch.from_numpy(p[:200]), torch.from_numpy(y[:200]))
    rt = icp_t.predict(torch.from_numpy(p[200:]))
    assert np.array_equal(rt.label_sets, regions.label_sets) and np.array_equal(rt.offsets, regions.offsets)


def test_many_labels_without_enumerating_the_powerset() -> None:
    """K = 200 labels (2^200 label sets): each input has 4 undecided labels, the regions are found at once."""
    rng = np.random.default_rng(3)
    k, n = 200, 400
    p = np.where(rng.random((n, k)) < 0.1, 1 - 1e-5, 1e-5)
    unsure = np.argsort(rng.random((n, k)), axis=1)[:, :4]
    np.put_along_axis(p, unsure, rng.uniform(0.2, 0.8, size=(n, 4)), axis=1)
    y = (rng.random((n, k)) < p).astype(int)
    icp = LabelPowersetICP(alpha=0.1, max_size=1000).calibrate(p[:300], y[:300])
    regions = icp.predict(p[300:])
    assert regions.sizes.max() <= 1000 and np.median(regions.sizes) <= 16 and regions.sizes.mean() > 1
    assert np.array_equal(regions.contains(y[300:]), icp.contains(p[300:], y[300:]))
    assert regions.contains(y[300:]).mean() > 0.8


def test_budget_is_refused_before_enumeration() -> None:
    rng = np.random.default_rng(4)
    k = 40
    p = np.full((60, k), 0.5) + rng.normal(scale=0.01, size=(60, k))  # every label undecided
    y = (rng.random((60, k)) < 0.5).astype(int)
    icp = LabelPowersetICP(alpha=0.1, max_size=1000).calibrate(p[:50], y[:50])
    with pytest.raises(ValueError, match="max_size"):
        icp.predict(p[50:])
    # too few calibration points for alpha: the region is every label set, refused for K = 40
    with pytest.raises(ValueError, match="max_size"):
        label_powerset_regions(p[50:], np.array([1.0, 2.0]), 0.1)
    # ... and built for K = 3 (all 8 label sets)
    small = label_powerset_regions(p[50:, :3], np.array([1.0, 2.0]), 0.1)
    assert small.sizes.tolist() == [8] * 10


def test_bad_inputs() -> None:
    p, y = _draw(np.random.default_rng(5), 20, 3)
    with pytest.raises(NotCalibratedError):
        LabelPowersetICP().predict(p)
    with pytest.raises(ValueError, match="score"):
        LabelPowersetICP(score="hamming")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="logits"):
        LabelPowersetICP().calibrate(p * 4 - 2, y)
    with pytest.raises(ValueError, match="labels"):
        LabelPowersetICP().calibrate(p, y * 3)
    with pytest.raises(ValueError, match="labels"):
        LabelPowersetICP().calibrate(p, y[:, :2])
    with pytest.raises(ValueError, match="columns"):
        LabelPowersetICP().calibrate(p, y).predict(p[:, :2])
    with pytest.raises(ValueError, match="i"):
        LabelPowersetICP().calibrate(p, y).predict(p).region(20)


def _digits_task() -> tuple[np.ndarray, np.ndarray]:
    from certkit_app.digits_multilabel import digits_attribute_probs

    task = digits_attribute_probs(("calibration", "test"))
    return task.probs, task.labels


def test_digits_attributes_tell_the_digits_apart() -> None:
    from certkit_app.digits_multilabel import DIGITS_LABEL_ATTRIBUTES, attribute_labels

    sets = attribute_labels(np.arange(10))
    assert sets.shape == (10, len(DIGITS_LABEL_ATTRIBUTES)) and len({tuple(r) for r in sets}) == 10


def test_coverage_of_the_true_label_set_on_digits_over_500_splits() -> None:
    """Digits CNN, 10 attributes (1024 label sets), n = 398 calibration points, alpha = 0.1: measured 0.9013."""
    probs, labels = _digits_task()
    rng = np.random.default_rng(0)
    alpha, n = 0.1, len(probs) // 2
    cov = []
    for _ in range(500):
        perm = rng.permutation(len(probs))
        cal, test = perm[:n], perm[n:]
        icp = LabelPowersetICP(alpha=alpha).calibrate(probs[cal], labels[cal])
        cov.append(icp.contains(probs[test], labels[test]).mean())
    c = np.array(cov)
    se = c.std(ddof=1) / math.sqrt(len(c))
    assert c.mean() >= 1 - alpha - 3 * se, (c.mean(), se)
    assert c.mean() <= 1 - alpha + 1 / (n + 1) + 3 * se, (c.mean(), se)  # not conservative (no ties in the scores)
    # a few splits through the pruned regions themselves
    for _ in range(5):
        perm = rng.permutation(len(probs))
        icp = LabelPowersetICP(alpha=alpha).calibrate(probs[perm[:n]], labels[perm[:n]])
        t = perm[n:]
        assert np.array_equal(icp.predict(probs[t]).contains(labels[t]), icp.contains(probs[t], labels[t]))


def test_size_bound_then_exact_count_decide_the_budget() -> None:
    from conformal.multilabel import _count_subsets, _size_bound

    d = np.array([0.5, 0.5, 0.9, 0.9, 0.9, 0.9])
    assert _size_bound(d, 1.0) == 1 + 6 + 15  # at most two costs fit together
    assert _count_subsets(d, 1.0, cap=100) == 8  # {}, six singletons, {0.5, 0.5}
    assert _count_subsets(d, 1.0, cap=3) > 3  # stops early once over the cap
    rng = np.random.default_rng(6)
    for _ in range(20):
        p, y = _draw(rng, 60, 8)
        icp = LabelPowersetICP(alpha=0.05).calibrate(p[:50], y[:50])
        largest = int(icp.predict(p[50:]).sizes.max())
        if largest < 2:
            continue
        same = LabelPowersetICP(alpha=0.05, max_size=largest).calibrate(p[:50], y[:50]).predict(p[50:])
        assert np.array_equal(same.label_sets, icp.predict(p[50:]).label_sets)
        with pytest.raises(ValueError, match="max_size"):
            LabelPowersetICP(alpha=0.05, max_size=largest - 1).calibrate(p[:50], y[:50]).predict(p[50:])


@pytest.mark.parametrize("score", ["manhattan", "euclidean"])
def test_forced_prediction_equals_brute_force(score: str) -> None:
    """Forced prediction (largest p-value), credibility and confidence (1 - the second largest) equal those of
    enumerating every label set, on random and tied/saturated probabilities."""
    rng = np.random.default_rng(7)
    for trial in range(60):
        k = int(rng.integers(1, 7))
        p_cal, y_cal = _draw(rng, int(rng.integers(5, 60)), k)
        p_test = _draw(rng, 10, k)[0] if trial % 2 else rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(10, k))
        icp = LabelPowersetICP(alpha=0.1, score=score).calibrate(p_cal, y_cal)  # type: ignore[arg-type]
        forced = icp.forced_prediction(p_test)
        pv = icp.pvalues(p_test, _all_sets(k))
        top2 = -np.sort(-pv, axis=1)[:, :2]
        np.testing.assert_array_equal(forced.credibility, top2[:, 0])
        np.testing.assert_array_equal(forced.confidence, 1.0 - top2[:, 1])
        mine = icp.pvalues(p_test, forced.label_sets[:, None, :])[:, 0]
        np.testing.assert_array_equal(mine, top2[:, 0])  # the forced set has the largest p-value


def test_forced_prediction_without_enumerating_many_labels() -> None:
    rng = np.random.default_rng(8)
    p_cal, y_cal = _draw(rng, 200, 200)
    icp = LabelPowersetICP(alpha=0.1).calibrate(p_cal, y_cal)
    forced = icp.forced_prediction(_draw(rng, 5, 200)[0])
    assert forced.label_sets.shape == (5, 200)
    assert ((forced.credibility > 0) & (forced.credibility <= 1) & (forced.confidence >= 0)).all()
    assert (forced.confidence >= 1 - forced.credibility).all()  # the runner-up's p-value is at most the forced one's


def test_contains_refuses_labels_of_another_length() -> None:
    # audit-inputs: numpy's broadcast error named no argument
    rng = np.random.default_rng(0)
    icp = LabelPowersetICP(alpha=0.2).calibrate(rng.random((40, 4)), (rng.random((40, 4)) > 0.5).astype(int))
    with pytest.raises(ValueError, match="`labels` to have shape \\(3, 4\\)"):
        icp.contains(rng.random((3, 4)), np.zeros((2, 4), dtype=int))
