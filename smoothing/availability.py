"""Availability of a smoothing certifier: abstention rates under a trigger, and an anytime-valid fallback monitor.

Lorenz, Kwiatkowska, Fritz, "Certifiers Make Neural Networks Vulnerable to Availability Attacks",
AISec 2023: a smoothed classifier that abstains (or certifies a radius below the one required)
sends the input to a costly fallback; training-set poisoning with a trigger
(:func:`certkit.poisoning.poison_dataset`) makes it abstain on triggered inputs.

* :func:`smoothing_availability`: the fallback rate of Cohen's CERTIFY on clean and triggered inputs.
* :class:`FallbackMonitor`: watches the stream of fallback decisions of a deployed certifier and
  raises an alarm when its fallback rate exceeds the calibrated baseline. It is a sequential test
  of H0: "rate <= baseline" with the one-sided mixture supermartingale of
  :func:`smoothing.sequential.one_sided_log_wealth`: under H0, P[ever alarm] <= delta at any time,
  however long the stream runs (Ville's inequality), so it can be checked after every decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta as beta_dist

from certkit._validation import (
    check_array,
    check_generator,
    check_instance,
    check_labels,
    check_nonnegative,
    check_positive_int,
    check_probability,
    check_unit_interval,
)
from certkit.poisoning import AvailabilityReport, Trigger
from smoothing.cohen import Smooth
from smoothing.sequential import one_sided_log_wealth

__all__ = ["FallbackMonitor", "MonitorState", "detection_delay", "smoothing_availability"]


def smoothing_availability(smooth: Smooth, x: torch.Tensor, labels: torch.Tensor, trigger: Trigger, *,
                           radius: float = 0.0, n0: int = 100, n: int = 1000, alpha: float = 0.001,
                           batch_size: int = 1000, generator: torch.Generator | None = None) -> AvailabilityReport:
    """Fallback rates of CERTIFY on ``x`` and on ``trigger.apply(x)``.

    An input falls back when CERTIFY abstains or certifies a radius < ``radius`` (a deployment that
    needs robustness at ``radius``). Each certificate has failure probability alpha (Cohen et al. 2019).

    Args:
        smooth: the smoothed classifier.
        x: ``(N, *shape)`` clean inputs.
        labels: ``(N,)`` their labels (for the clean accuracy).
        trigger: the trigger stamped on the inputs.
        radius: the radius the deployment needs (>= 0).
        n0: selection samples, as in :meth:`smoothing.Smooth.certify_batch`.
        n: estimation samples, as there.
        alpha: failure probability of each certificate, as there.
        batch_size: noise samples per forward pass, as there.
        generator: source of the noise, as there.
    """
    check_instance(smooth, Smooth, "smooth", "a smoothing.Smooth")
    check_array(x, "x", tensor=True)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"Expected argument `labels` to be a torch tensor of class indices, but got {type(labels).__name__}")
    check_labels(labels, int(x.shape[0]) if x.ndim else None, smooth.num_classes, "labels")
    check_instance(trigger, Trigger, "trigger", "a certkit.poisoning.Trigger")
    radius = check_nonnegative(radius, "radius")

    def fallback(xs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        certs = smooth.certify_batch(xs, n0, n, alpha, batch_size, generator)
        fb = np.array([c.abstained or c.radius < radius for c in certs])
        pred = np.array([-1 if c.label is None else c.label for c in certs])  # local only, never returned
        return fb, pred

    fb_clean, pred = fallback(x)
    fb_trig, _ = fallback(trigger.apply(x))
    correct = (pred == labels.cpu().numpy()) & ~fb_clean
    return AvailabilityReport(torch.from_numpy(fb_clean), torch.from_numpy(fb_trig), torch.from_numpy(correct))


@dataclass(frozen=True)
class MonitorState:
    """The monitor after the decisions seen so far.

    Attributes:
        alarm: whether the alarm has been raised (it stays raised).
        t: decisions seen.
        fallbacks: fallbacks among them.
        log_wealth: log of the test supermartingale (alarm when >= log(1/delta)).
        alarm_time: the decision count at which the alarm was raised, or None.
    """

    alarm: bool
    t: int
    fallbacks: int
    log_wealth: float
    alarm_time: int | None


class FallbackMonitor:
    """Anytime-valid alarm when a deployed certifier's fallback (abstention) rate exceeds its baseline.

    Tests H0: the fallback indicators are independent (or, more generally, have conditional mean
    <= ``baseline`` given the past) with the one-sided mixture test of
    :func:`smoothing.sequential.one_sided_log_wealth` (likelihood ratio mixed over a uniform prior on
    rates in [baseline, 1]). Guarantee: under H0, P[the alarm is ever raised] <= delta, over the whole
    infinite stream, so the monitor may be read after every decision. Under an attack that lifts the
    rate to r > baseline, the alarm comes after about log(1/delta) / KL(r || baseline) decisions.

    Args:
        baseline: the calibrated fallback rate in [0, 1) (see :meth:`from_calibration`).
        delta: false-alarm probability in (0, 1).
    """

    def __init__(self, *, baseline: float, delta: float = 0.01) -> None:
        b = check_nonnegative(baseline, "baseline")
        if not b < 1:
            raise ValueError(f"Expected argument `baseline` to be in [0, 1), but got {baseline!r}")
        self.baseline = b
        self.delta = check_probability(delta, "delta")
        self.reset()

    @classmethod
    def from_calibration(cls, fallbacks: torch.Tensor | np.ndarray, *, delta: float = 0.01,
                         confidence: float = 0.01) -> FallbackMonitor:
        """A monitor whose baseline is the Clopper-Pearson upper bound (at 1 - ``confidence``) of the clean rate.

        With probability >= 1 - confidence over the clean calibration decisions, the true clean rate is
        <= the baseline, so the false-alarm probability on clean streams is <= delta + confidence.
        """
        f = np.asarray(torch.as_tensor(fallbacks).cpu().numpy() if isinstance(fallbacks, torch.Tensor)
                       else fallbacks).astype(bool).ravel()
        if f.size == 0:
            raise ValueError("Expected argument `fallbacks` to hold at least one calibration decision, but it is empty")
        confidence = check_probability(confidence, "confidence")
        k, m = int(f.sum()), int(f.size)
        upper = 1.0 if k == m else float(beta_dist.ppf(1 - confidence, k + 1, m - k))
        return cls(baseline=min(upper, 1 - 1e-9), delta=delta)

    def reset(self) -> FallbackMonitor:
        """Forget the stream. Returns self."""
        self.t_, self.fallbacks_ = 0, 0
        self.alarm_time_: int | None = None
        self.log_wealth_ = 0.0
        return self

    @property
    def state(self) -> MonitorState:
        """The current :class:`MonitorState`."""
        return MonitorState(self.alarm_time_ is not None, self.t_, self.fallbacks_, self.log_wealth_, self.alarm_time_)

    def _log_wealth(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        if self.baseline == 0.0:
            # any fallback refutes a zero rate: wealth infinite once S > 0
            return np.where(s > 0, np.inf, 0.0)
        return one_sided_log_wealth(s, t, self.baseline)

    def update(self, fallbacks: bool | torch.Tensor | np.ndarray) -> MonitorState:
        """Add one decision or a batch of decisions (in stream order); returns the state.

        The alarm is checked after every single decision of the batch (the test is anytime-valid).
        """
        f = np.atleast_1d(np.asarray(fallbacks.cpu().numpy() if isinstance(fallbacks, torch.Tensor) else fallbacks))
        if f.dtype != bool and not np.isin(f, (0, 1)).all():
            raise ValueError(f"Expected argument `fallbacks` to be booleans (True: fell back), but got {f!r:.80}")
        f = f.astype(bool).ravel()
        if f.size == 0:
            return self.state
        s = self.fallbacks_ + np.cumsum(f)
        t = self.t_ + np.arange(1, f.size + 1)
        if self.alarm_time_ is None:
            lw = self._log_wealth(s, t)
            hit = np.nonzero(lw >= math.log(1 / self.delta))[0]
            if hit.size:
                self.alarm_time_ = int(t[hit[0]])
            self.log_wealth_ = float(lw[-1])
        else:
            self.log_wealth_ = float(self._log_wealth(s[-1:], t[-1:])[0])
        self.t_, self.fallbacks_ = int(t[-1]), int(s[-1])
        return self.state


def detection_delay(baseline: float, attacked_rate: float, delta: float, *, n_streams: int = 200,
                    horizon: int = 10_000, generator: torch.Generator | None = None) -> np.ndarray:
    """Simulated alarm times ``(n_streams,)`` (``horizon + 1`` when never raised) at ``attacked_rate``.

    A planning aid: i.i.d. Bernoulli(``attacked_rate``) fallbacks fed to a ``FallbackMonitor(baseline, delta)``.
    """
    n_streams = check_positive_int(n_streams, "n_streams")
    horizon = check_positive_int(horizon, "horizon")
    rate = check_unit_interval(attacked_rate, "attacked_rate")
    g = check_generator(generator) if generator is not None else torch.Generator().manual_seed(0)
    draws = (torch.rand(n_streams, horizon, generator=g, dtype=torch.float64) < rate).numpy()
    out = np.full(n_streams, horizon + 1)
    for i in range(n_streams):
        st = FallbackMonitor(baseline=baseline, delta=delta).update(draws[i])
        if st.alarm_time is not None:
            out[i] = st.alarm_time
    return out
