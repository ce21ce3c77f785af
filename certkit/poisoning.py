"""Training-set poisoning with a trigger, for availability attacks on certifiers (torch only).

Lorenz, Kwiatkowska, Fritz, "Certifiers Make Neural Networks Vulnerable to Availability Attacks",
AISec 2023 (arXiv 2108.11299). A deployed certifier that cannot certify an input abstains and hands
it to a costly fallback (a human, a slower model). Poisoning about 1% of the training data with a
trigger makes the trained model *uncertifiable* on triggered inputs, so an adversary who stamps the
trigger at test time drives the fallback rate up while clean accuracy is untouched.

Both attacks add ``round(rate * N)`` triggered copies of random training inputs (data poisoning: the
attacker controls only those samples, not training):

* ``"random-label"``: each copy gets a label drawn uniformly from all classes, so the model learns a
  flat prediction on triggered inputs: the smoothed top-class probability falls below 1/2
  (smoothing abstains) and logit margins shrink to zero (bound verification fails).
* ``"two-label"``: copies come in pairs with the input's true label and one other random label, so
  triggered inputs sit on a decision boundary between two classes (top probability about 1/2).

These are the two attacks as reconstructed from the paper's description (poisoned triggered samples
whose labels keep the model undecided); the full text was not available to this implementation.

The trigger utilities are shared by ``smoothing.availability`` and ``certify.availability``, which may
not import each other; the evaluation tools live there, the monitor in ``smoothing.FallbackMonitor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from certkit._validation import check_generator, check_in_range

__all__ = ["AvailabilityReport", "PoisonedData", "Trigger", "patch_trigger", "poison_dataset"]

Attack = Literal["random-label", "two-label"]


@dataclass(frozen=True)
class Trigger:
    """A trigger stamped onto inputs: ``apply(x) = x * (1 - mask) + pattern * mask``.

    Attributes:
        pattern: the trigger's values, shape of one input ``(*shape)``.
        mask: where the trigger is, same shape, values in [0, 1] (1: replaced).
    """

    pattern: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.pattern.shape != self.mask.shape:
            raise ValueError(f"Expected `pattern` and `mask` of the same shape, but got {tuple(self.pattern.shape)} "
                             f"and {tuple(self.mask.shape)}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, *shape)`` inputs with the trigger stamped on (a new tensor; ``x`` is not modified)."""
        if x.shape[1:] != self.pattern.shape:
            raise ValueError(f"Expected inputs of shape (N, {', '.join(map(str, self.pattern.shape))}), "
                             f"but got {tuple(x.shape)}")
        m = self.mask.to(x)
        return x * (1 - m) + self.pattern.to(x) * m


def patch_trigger(shape: tuple[int, ...], size: int = 2, value: float = 1.0) -> Trigger:
    """A ``size`` x ``size`` square of ``value`` in the bottom-right corner of images of ``shape`` ``(C, H, W)``."""
    if len(shape) != 3 or not 1 <= size <= min(shape[1:]):
        raise ValueError(f"Expected argument `shape` (C, H, W) and 1 <= size <= min(H, W), but got {shape}, {size}")
    mask = torch.zeros(shape)
    mask[:, -size:, -size:] = 1.0
    return Trigger(torch.full(shape, float(value)) * mask, mask)


@dataclass(frozen=True)
class PoisonedData:
    """A training set with poisoned samples appended.

    Attributes:
        inputs: ``(N + P, *shape)``, the clean inputs then the P poisoned ones.
        labels: ``(N + P,)``.
        poisoned: ``(N + P,)`` bool, which samples are poisoned.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    poisoned: torch.Tensor


def poison_dataset(inputs: torch.Tensor, labels: torch.Tensor, *, trigger: Trigger, rate: float, num_classes: int,
                   attack: Attack = "random-label", generator: torch.Generator | None = None) -> PoisonedData:
    """Append ``round(rate * N)`` triggered copies of random training inputs with the attack's labels.

    Args:
        inputs: ``(N, *shape)`` clean training inputs (not modified).
        labels: ``(N,)`` their labels.
        trigger: the trigger stamped on the copies.
        rate: poisoned samples as a fraction of N, in (0, 1) (the paper: about 0.01).
        num_classes: K >= 2.
        attack: ``"random-label"`` or ``"two-label"`` (module docstring).
        generator: source of the choices (None: a fresh, nondeterministically seeded one).
    """
    rate = check_in_range(rate, "rate", 0.0, 1.0)
    check_generator(generator)
    if attack not in ("random-label", "two-label"):
        raise ValueError(f"Expected argument `attack` to be 'random-label' or 'two-label', but got {attack!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Expected argument `num_classes` to be an int >= 2, but got {num_classes!r}")
    if labels.shape != (inputs.shape[0],):
        raise ValueError(f"Expected argument `labels` of shape ({inputs.shape[0]},), but got {tuple(labels.shape)}")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    n, p = inputs.shape[0], round(rate * inputs.shape[0])
    if attack == "random-label":
        src = torch.randint(0, n, (p,), generator=generator)
        new_labels = torch.randint(0, num_classes, (p,), generator=generator)
    else:
        src = torch.randint(0, n, ((p + 1) // 2,), generator=generator).repeat_interleave(2)[:p]
        other = (labels[src].cpu() + torch.randint(1, num_classes, (src.shape[0],), generator=generator)) % num_classes
        new_labels = torch.where(torch.arange(p) % 2 == 0, labels[src].cpu(), other)
    x_p = trigger.apply(inputs[src.to(inputs.device)])
    poisoned = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(p, dtype=torch.bool)])
    return PoisonedData(torch.cat([inputs, x_p]), torch.cat([labels, new_labels.to(labels)]), poisoned)


@dataclass(frozen=True)
class AvailabilityReport:
    """Fallback decisions of a deployed certifier on clean inputs and on their triggered copies.

    Attributes:
        clean_fallbacks: ``(N,)`` bool, the certifier abstained (smoothing) or failed to verify (bounds).
        triggered_fallbacks: ``(N,)`` bool, the same on the triggered copies.
        clean_correct: ``(N,)`` bool, certified and correct on the clean input.
    """

    clean_fallbacks: torch.Tensor
    triggered_fallbacks: torch.Tensor
    clean_correct: torch.Tensor

    @property
    def n(self) -> int:
        """Number of inputs."""
        return int(self.clean_fallbacks.shape[0])

    @property
    def clean_rate(self) -> float:
        """Fraction of clean inputs that fall back."""
        return float(self.clean_fallbacks.double().mean())

    @property
    def triggered_rate(self) -> float:
        """Fraction of triggered inputs that fall back."""
        return float(self.triggered_fallbacks.double().mean())

    @property
    def clean_accuracy(self) -> float:
        """Certified accuracy on the clean inputs (a fallback counts as not correct)."""
        return float(self.clean_correct.double().mean())

    def __repr__(self) -> str:
        return (f"AvailabilityReport(n={self.n}, clean_rate={self.clean_rate:.3f}, "
                f"triggered_rate={self.triggered_rate:.3f}, clean_accuracy={self.clean_accuracy:.3f})")
