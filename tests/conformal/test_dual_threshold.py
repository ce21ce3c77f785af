"""Dual-threshold abstention: label-free at test time; the LTT variant's guarantee holds over many splits."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from certkit.errors import NotCalibratedError
from conformal.dual_threshold import (
    DualThreshold,
    DualThresholdReport,
    abstention_risk,
    ltt_threshold,
    youden_threshold,
)


def _mixture(n: int, rng: np.random.Generator, frac: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated model on 75% of inputs; on 25% ('corrupted') flat probabilities and a uniform label."""
    z = rng.normal(size=(n, 10)) * 3
    bad = rng.random(n) < frac
    z = np.where(bad[:, None], 0.4 * z, z)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.where(bad[:, None], 0.1, p)
    y = (q.cumsum(1) > rng.random((n, 1))).argmax(1)
    return p, y


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {"cal": _mixture(400, rng), "fit": _mixture(400, rng), "test": _mixture(4000, rng)}


def test_predict_takes_no_labels_and_ignores_test_labels(data: dict) -> None:
    assert list(inspect.signature(DualThreshold.predict).parameters) == ["self", "probs", "radius", "generator"]
    dt = DualThreshold(alpha=0.1, statistic="entropy").calibrate(*data["cal"], *data["fit"])
    p, y = data["test"]
    perm = np.random.default_rng(1).permutation(len(y))
    a, b = dt.predict(p), dt.predict(p)
    assert np.array_equal(a.abstain, b.abstain) and np.array_equal(a.sets.mask, b.sets.mask)
    r1, r2 = dt.evaluate(p, y), dt.evaluate(p, y[perm])
    assert r1.abstention_rate == r2.abstention_rate
    # the abstention threshold depends on the calibration and fit splits only
    dt2 = DualThreshold(alpha=0.1, statistic="entropy").calibrate(*data["cal"], *data["fit"])
    assert dt2.abstain_threshold_ == dt.abstain_threshold_


def test_youden_maximises_j_and_abstention_helps(data: dict) -> None:
    dt = DualThreshold(alpha=0.1, statistic="entropy").calibrate(*data["cal"], *data["fit"])
    fp, fy = data["fit"]
    out = dt.predict(fp)
    miss = ~out.sets.contains(fy)
    t = dt.abstain_threshold_
    assert t is not None

    def j(th: float) -> float:
        return float((out.risk[miss] >= th).mean() - (out.risk[~miss] >= th).mean())

    assert all(j(t) >= j(c) - 1e-12 for c in np.append(np.unique(out.risk), np.inf))
    assert dt.fit_auroc_ == pytest.approx(roc_auc_score(miss.astype(int), out.risk))
    rep = dt.evaluate(*data["test"])
    assert isinstance(rep, DualThresholdReport) and rep.n == 4000
    assert 0 < rep.abstention_rate < 1
    assert rep.auroc > 0.6  # entropy detects the corrupted inputs
    assert rep.coverage_accepted > rep.coverage + 0.02  # abstaining removes misses


def test_youden_threshold_is_the_largest_maximiser_of_j_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        risk = rng.integers(0, 5, n).astype(float)  # many ties
        miss = rng.random(n) < 0.4
        if miss.all() or not miss.any():
            continue
        cands = np.append(np.unique(risk), np.inf)
        j = np.array([(risk[miss] >= c).mean() - (risk[~miss] >= c).mean() for c in cands])
        assert youden_threshold(risk, miss) == cands[np.flatnonzero(j == j.max())[-1]]


def test_youden_degenerate_fit_split_never_abstains() -> None:
    assert youden_threshold(np.array([0.1, 0.2]), np.array([False, False])) == math.inf


@pytest.mark.parametrize("statistic", ["set_size", "top_prob", "entropy", "margin", "outside_mass"])
@pytest.mark.parametrize("score", ["thr", "aps", "raps"])
def test_every_statistic_and_score_runs(data: dict, statistic: str, score: str) -> None:
    dt = DualThreshold(score=score, alpha=0.1, statistic=statistic).calibrate(*data["cal"], *data["fit"])  # type: ignore[arg-type]
    # randomised APS/RAPS (the default): the same generator state gives evaluate and predict the same u
    rep = dt.evaluate(*data["test"], generator=torch.Generator().manual_seed(5))
    out = dt.predict(data["test"][0], generator=torch.Generator().manual_seed(5))
    assert rep.abstention_rate == pytest.approx(float(np.mean(out.abstain)))
    assert bool((out.abstain == (out.risk >= dt.abstain_threshold_)).all())


def test_torch_input_and_certified_radius(data: dict) -> None:
    (pc, yc), (pf, yf), (pt, _) = data["cal"], data["fit"], data["test"]
    rad = {k: v[0].max(1) for k, v in data.items()}  # any label-free per-input radius
    dt = DualThreshold(alpha=0.1, statistic="certified_radius", rule="ltt", target=0.08).calibrate(
        torch.from_numpy(pc), torch.from_numpy(yc), torch.from_numpy(pf), torch.from_numpy(yf),
        radius=rad["cal"], fit_radius=rad["fit"])
    out = dt.predict(torch.from_numpy(pt), radius=rad["test"])
    np.testing.assert_allclose(out.risk, -rad["test"])
    with pytest.raises(ValueError, match="`radius`"):
        dt.predict(torch.from_numpy(pt))


def test_ltt_fixed_sequence_stops_at_first_failure() -> None:
    risk = np.arange(100, dtype=float)
    miss = np.zeros(100, dtype=bool)
    miss[50:] = True
    t = ltt_threshold(risk, miss, np.array([40.0, 50.0, 60.0, 20.0, 200.0]), target=0.1, delta=0.1)
    assert t == 50.0  # 50 clean accepted: p = 0.9^50 < 0.1; at 60 the 10 misses fail, and testing stops
    assert ltt_threshold(risk, miss, np.array([1.0, 200.0]), 0.1, 0.1) == -math.inf  # 1 point cannot reject


def _ltt_violation_rate(n_trials: int, target: float, delta: float, naive: bool) -> tuple[float, float]:
    rng = np.random.default_rng(5)
    ref_p, ref_y = _mixture(100_000, rng)
    ref_s = 1 - ref_p[np.arange(len(ref_y)), ref_y]
    ref_u = abstention_risk(ref_p, np.zeros_like(ref_p, dtype=bool), "entropy")
    viol, abstain = 0, []
    for _ in range(n_trials):
        cal, fit = _mixture(300, rng), _mixture(300, rng)
        dt = DualThreshold(alpha=0.2, statistic="entropy", rule="ltt", target=target, delta=delta).calibrate(*cal, *fit)
        t = dt.abstain_threshold_
        assert t is not None and dt.threshold_ is not None
        if naive:  # the laxest grid point whose empirical risk is <= target: no multiplicity control
            out = dt.predict(fit[0])
            miss = ~out.sets.contains(fit[1])
            ok = [g for g in dt.grid_ if (out.risk < g).any() and miss[out.risk < g].mean() <= target]
            t = max(ok) if ok else -math.inf
        acc = ref_u < t
        abstain.append(1 - acc.mean())
        if acc.any() and (ref_s[acc] > dt.threshold_).mean() > target:
            viol += 1
    return viol / n_trials, float(np.mean(abstain))


def test_ltt_guarantee_holds_over_many_splits() -> None:
    n, delta = 200, 0.1
    rate, abstain = _ltt_violation_rate(n, target=0.12, delta=delta, naive=False)
    tol = 3 * math.sqrt(delta * (1 - delta) / n)
    assert rate <= delta + tol
    assert abstain < 0.9  # not vacuous: most trials certify a threshold that accepts inputs
    naive_rate, _ = _ltt_violation_rate(n, target=0.12, delta=delta, naive=True)
    assert naive_rate > delta + tol  # the test can fail: without LTT the guarantee breaks


def test_bad_input(data: dict) -> None:
    with pytest.raises(ValueError, match="`rule`"):
        DualThreshold(rule="roc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`statistic`"):
        DualThreshold(statistic="nll")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`target`"):
        DualThreshold(rule="ltt")
    with pytest.raises(ValueError, match="`target`"):
        DualThreshold(rule="youden", target=0.1)
    with pytest.raises(ValueError, match="`delta`"):
        DualThreshold(rule="ltt", target=0.1, delta=0)
    with pytest.raises(ValueError, match="`n_grid`"):
        DualThreshold(n_grid=1)
    dt = DualThreshold()
    with pytest.raises(NotCalibratedError):
        dt.predict(data["test"][0])
    (pc, yc), (pf, yf) = data["cal"], data["fit"]
    with pytest.raises(ValueError, match="`fit_probs`"):
        dt.calibrate(pc, yc, pf[:, :5] / pf[:, :5].sum(1, keepdims=True), yf % 5)
    with pytest.raises(ValueError, match="`fit_labels`"):
        dt.calibrate(pc, yc, pf, yf[:10])
    with pytest.raises(ValueError, match="`radius`"):
        DualThreshold(statistic="certified_radius").calibrate(pc, yc, pf, yf)
    dt.calibrate(pc, yc, pf, yf)
    with pytest.raises(ValueError, match="columns"):
        dt.predict(np.full((3, 4), 0.25))


def test_radii_are_checked_up_front_and_named() -> None:
    # audit-inputs: a string calibration radius passed silently (read only by rule='ltt'), bool radii were read as
    # 0/1, and a radius given for another statistic was refused by predict but accepted by calibrate
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(40, 4, generator=g, dtype=torch.float64), 1)
    y = torch.randint(0, 4, (40,), generator=g)
    dt = DualThreshold(statistic="certified_radius")
    with pytest.raises(TypeError, match="`radius`"):
        dt.calibrate(p, y, p, y, radius="x", fit_radius=np.ones(40))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`fit_radius`"):
        dt.calibrate(p, y, p, y, radius=np.ones(40), fit_radius=np.ones(40, dtype=bool))
    with pytest.raises(ValueError, match="`radius` to be None"):
        DualThreshold().calibrate(p, y, p, y, radius=np.ones(40))
    dt.calibrate(p, y, p, y, radius=np.full(40, np.inf), fit_radius=np.ones(40))  # +inf radii (p = 1) are fine
