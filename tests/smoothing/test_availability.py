"""The fallback-rate monitor: anytime false-alarm guarantee, detection under attack; smoothing availability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smoothing.availability import FallbackMonitor, detection_delay
from smoothing.sequential import one_sided_log_wealth


def _false_alarms(baseline: float, delta: float, n_streams: int, horizon: int, seed: int) -> float:
    # vectorised over streams: the alarm is raised iff the log-wealth ever crosses log(1/delta)
    g = torch.Generator().manual_seed(seed)
    f = (torch.rand(n_streams, horizon, generator=g, dtype=torch.float64) < baseline).numpy()
    s, t = np.cumsum(f, axis=1), np.arange(1, horizon + 1)[None, :]
    lw = one_sided_log_wealth(s, np.broadcast_to(t, s.shape), baseline)
    return float((lw >= math.log(1 / delta)).any(axis=1).mean())


def test_monitor_matches_the_vectorised_test_and_batches_equal_single_updates() -> None:
    g = torch.Generator().manual_seed(0)
    f = (torch.rand(500, generator=g) < 0.2).numpy()
    m1, m2 = FallbackMonitor(baseline=0.1, delta=0.05), FallbackMonitor(baseline=0.1, delta=0.05)
    for v in f:
        m1.update(bool(v))
    st = m2.update(f)
    assert st == m1.state
    assert st.alarm and st.alarm_time is not None and st.t == 500 and st.fallbacks == int(f.sum())
    lw = one_sided_log_wealth(np.cumsum(f), np.arange(1, 501), 0.1)
    assert st.alarm_time == int(np.nonzero(lw >= math.log(20))[0][0]) + 1


def test_false_alarms_on_clean_streams_small() -> None:
    # worst case of H0: the clean rate equals the baseline
    assert _false_alarms(0.05, 0.05, 300, 1000, seed=1) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


@pytest.mark.slow
def test_false_alarm_probability_over_2000_clean_streams() -> None:
    for baseline, delta in ((0.05, 0.05), (0.2, 0.01)):
        rate = _false_alarms(baseline, delta, 2000, 2000, seed=2)
        assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / 2000), (baseline, delta, rate)


def test_detection_delay_under_attack() -> None:
    delays = detection_delay(0.05, 0.3, 0.01, n_streams=100, horizon=2000)
    assert (delays <= 2000).all()  # every attacked stream raises the alarm
    kl = 0.3 * math.log(0.3 / 0.05) + 0.7 * math.log(0.7 / 0.95)
    # the mixture pays a log factor over the oracle log(1/delta) / KL
    assert float(np.median(delays)) <= 4 * math.log(100) / kl


def test_from_calibration_and_validation() -> None:
    clean = torch.zeros(1000, dtype=torch.bool)
    clean[:30] = True
    m = FallbackMonitor.from_calibration(clean, delta=0.01, confidence=0.01)
    assert 0.03 < m.baseline < 0.06
    with pytest.raises(ValueError, match="baseline"):
        FallbackMonitor(baseline=1.0)
    with pytest.raises(ValueError, match="delta"):
        FallbackMonitor(baseline=0.1, delta=0.0)
    with pytest.raises(ValueError, match="booleans"):
        FallbackMonitor(baseline=0.1).update(np.array([0.5]))
    with pytest.raises(ValueError, match="empty"):
        FallbackMonitor.from_calibration(np.array([], dtype=bool))
    # zero baseline: the first fallback refutes it
    assert FallbackMonitor(baseline=0.0).update([False, False, True]).alarm_time == 3


def test_poisoning_raises_the_fallback_rate_on_triggered_digits() -> None:
    # 1% of the digits train split poisoned: triggered inputs fall back far more often than clean ones,
    # for smoothing (abstain) and for CROWN verification (unverified), while clean accuracy stays high
    from certkit_app.demos.availability import evaluate_availability

    rows = evaluate_availability(attacks=("random-label", "two-label"), rate=0.01, n_test=100, n=200)
    for r in rows:
        assert r.report.triggered_rate > r.report.clean_rate, r
        assert r.report.clean_accuracy >= 0.9, r
    for r in rows:
        if r.attack == "random-label":
            assert r.report.triggered_rate >= r.report.clean_rate + 0.05, r
