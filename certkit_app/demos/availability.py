"""Availability attacks on certifiers (Lorenz et al., AISec 2023) and the fallback-rate monitor, on digits.

``evaluate_availability`` poisons the digits train split with the 3x3 corner trigger at a given rate
(both attacks of ``certkit.poisoning``), trains the CNN on it (noise-augmented at sigma for smoothing,
plainly for bound verification; cached), and measures the fallback rates on clean and triggered test
inputs: CERTIFY abstentions of the smoothed classifier, unverified CROWN predictions at L-inf eps.
``monitor_stream`` feeds a stream of fallback decisions (clean, then an attacker triggering a fraction
of the inputs) to ``smoothing.FallbackMonitor`` calibrated on clean decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from certify.availability import verification_availability
from certkit.poisoning import AvailabilityReport
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_base_model, digits_cnn, digits_poisoned_model, digits_trigger
from smoothing.availability import FallbackMonitor, smoothing_availability
from smoothing.cohen import Smooth

__all__ = ["AvailabilityRow", "demo_availability", "evaluate_availability", "monitor_stream"]


@dataclass(frozen=True)
class AvailabilityRow:
    """Fallback rates of one certifier on one poisoned model."""

    attack: str
    rate: float
    certifier: str
    report: AvailabilityReport


def evaluate_availability(*, attacks: tuple[str, ...] = ("random-label", "two-label"), rate: float = 0.01,
                          n_test: int = 100, sigma: float = 0.25, n: int = 300, eps: float = 0.01, seed: int = 0,
                          log: Callable[[str], None] | None = None) -> list[AvailabilityRow]:
    """Rows for smoothing (abstain) and CROWN verification (unverified) under each attack ("none": unpoisoned models)."""
    say = log or (lambda _: None)
    test = load_digits_split("test")
    x, y = test.images[:n_test], test.labels[:n_test]
    trig = digits_trigger()
    rows = []
    for attack in attacks:
        t0 = time.perf_counter()
        if attack == "none":  # the same recipes on the clean train split
            smooth_model, plain_model = digits_base_model(sigma), digits_cnn()
        else:
            smooth_model = digits_poisoned_model(attack, rate, sigma)
            plain_model = digits_poisoned_model(attack, rate, None)
        say(f"  poisoned models ({attack}, rate {rate:g}; cached after the first run): {time.perf_counter() - t0:.1f}s")
        rows.append(AvailabilityRow(attack, rate, f"smoothing sigma={sigma:g}", smoothing_availability(
            Smooth(smooth_model, 10, sigma), x, y, trig, n=n, generator=torch.Generator().manual_seed(seed))))
        rows.append(AvailabilityRow(attack, rate, f"CROWN L-inf eps={eps:g}",
                                    verification_availability(plain_model, x, y, trig, eps=eps)))
    return rows


def monitor_stream(clean: torch.Tensor, triggered: torch.Tensor, *, baseline_from: torch.Tensor, n_clean: int = 500,
                   n_attack: int = 2000, attack_fraction: float = 0.5, delta: float = 0.01, seed: int = 0
                   ) -> tuple[FallbackMonitor, int | None]:
    """A stream of ``n_clean`` clean decisions, then ``n_attack`` with a fraction triggered; the alarm time.

    Decisions are resampled from the per-input fallbacks ``clean`` / ``triggered`` (``(N,)`` bool); the
    monitor's baseline comes from ``baseline_from`` (clean decisions on other inputs). Returns the monitor
    and the alarm time counted from the start of the attack (None: no alarm, negative: a false alarm).
    """
    g = torch.Generator().manual_seed(seed)
    monitor = FallbackMonitor.from_calibration(baseline_from, delta=delta)
    pick = torch.randint(0, clean.shape[0], (n_clean + n_attack,), generator=g)
    hit = torch.rand(n_clean + n_attack, generator=g) < attack_fraction
    hit[:n_clean] = False
    stream = torch.where(hit, triggered[pick], clean[pick])
    st = monitor.update(stream)
    return monitor, None if st.alarm_time is None else st.alarm_time - n_clean


def demo_availability() -> None:
    """Poison 1% of the digits train split; fallback rates on clean vs triggered inputs; the monitor's alarm."""
    t0 = time.perf_counter()
    print("availability attacks: 1% of the digits train split poisoned with a 3x3 corner trigger; 100 test images")
    rows = evaluate_availability(attacks=("none", "random-label", "two-label"), log=print)
    print(f"{'attack':<13} {'certifier':<22} {'clean fallback':>15} {'triggered fallback':>19} {'clean cert. acc':>16}")
    for r in rows:
        print(f"{r.attack:<13} {r.certifier:<22} {r.report.clean_rate:>15.3f} {r.report.triggered_rate:>19.3f} "
              f"{r.report.clean_accuracy:>16.3f}")
    smooth_row = rows[2]
    cal = load_digits_split("calibration")
    base = smoothing_availability(Smooth(digits_poisoned_model("random-label", 0.01, 0.25), 10, 0.25),
                                  cal.images, cal.labels, digits_trigger(), n=300,
                                  generator=torch.Generator().manual_seed(1))
    monitor, delay = monitor_stream(smooth_row.report.clean_fallbacks, smooth_row.report.triggered_fallbacks,
                                    baseline_from=base.clean_fallbacks, attack_fraction=1.0)
    print(f"\nFallbackMonitor (delta=0.01, baseline {monitor.baseline:.3f} = 99% upper bound of the clean abstention "
          f"rate on the {base.n} calibration images): 500 clean decisions, then every input triggered")
    print("  no alarm" if delay is None else f"  alarm {delay} decisions after the attack started" if delay >= 0
          else f"  false alarm {-delay} decisions before the attack")
    print(f"({time.perf_counter() - t0:.1f}s)")
