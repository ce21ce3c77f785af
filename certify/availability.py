"""Availability of bound-based verification under a trigger (Lorenz, Kwiatkowska, Fritz, AISec 2023).

A deployment that acts only on *verified* predictions (``certify.verify``: every logit margin of the
predicted class is provably positive over the L-p ball) hands every unverified input to a fallback.
Training-set poisoning with a trigger (:func:`certkit.poisoning.poison_dataset`) makes the model's
margins vanish on triggered inputs, so they go unverified. The fallback-rate monitor is
``smoothing.FallbackMonitor`` (it only consumes booleans; use it for any certifier).
"""

from __future__ import annotations

import torch
from torch import nn

from certify.api import verify
from certkit._validation import (
    check_eval_mode,
    check_inputs,
    check_instance,
    check_model_labels,
    check_nonnegative,
)
from certkit.poisoning import AvailabilityReport, Trigger

__all__ = ["verification_availability"]


def verification_availability(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, trigger: Trigger, *,
                              eps: float, norm: float | str = float("inf"), method: str = "crown",
                              domain: tuple[float, float] | None = (0.0, 1.0)) -> AvailabilityReport:
    """Unverified (fallback) rates of the model's own predictions on ``x`` and on ``trigger.apply(x)``.

    An input falls back when ``certify.verify(model, x, argmax model(x), eps, ...)`` fails: the bounds
    cannot prove that the predicted class is constant on the ball (sound as the bound method is).

    Args:
        model: eval-mode classifier ``(N, ...) -> (N, K)``.
        x: ``(N, ...)`` clean inputs.
        labels: ``(N,)`` their labels (for the clean accuracy).
        trigger: the trigger stamped on the inputs.
        eps: radius of the verification ball, as in ``certify.verify``.
        norm: its norm, as in ``certify.verify``.
        method: the bound method, as in ``certify.verify``.
        domain: the input box intersected with the ball, as in ``certify.verify``.
    """
    check_inputs(model, x, "x")
    check_eval_mode(model)
    check_model_labels(model, x, labels, "labels")
    check_instance(trigger, Trigger, "trigger", "a certkit.poisoning.Trigger")
    check_nonnegative(eps, "eps")

    def unverified(xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            pred = model(xs).argmax(1)
        ok = verify(model, xs, pred, eps, norm=norm, method=method, domain=domain)
        return ~ok.cpu(), pred.cpu()

    fb_clean, pred = unverified(x)
    fb_trig, _ = unverified(trigger.apply(x))
    correct = (pred == labels.cpu()) & ~fb_clean
    return AvailabilityReport(fb_clean, fb_trig, correct)
