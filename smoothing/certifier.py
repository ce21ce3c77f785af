"""Gaussian smoothing as a certifier object (the ``certkit.certifier.Certifier`` protocol, ``kind="smoothing"``).

``SmoothingCertifier(sigma=0.25, n_mc=256, generator=g).certify(model, x, LpBall(2, 0.125), score_fn=f)``
returns Monte Carlo smoothed scores of every label (:func:`smoothing.smoothed_scores`); the robust
conformal calibrators (``conformal.RSCP``, ``RSCPPlus``, ``SmoothedRobustPAC``) account for the radius
(``Phi^-1`` of a smoothed score in [0, 1] is ``1/sigma``-Lipschitz, Salman et al. 2019) and for the
Monte Carlo error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from certkit._params import Params
from certkit._validation import check_generator, check_positive_int
from certkit.certifier import CertifierKind, ScoreFn, SmoothedScores
from certkit.threat import LpBall, parse_norm
from smoothing._identity import eq_by_value_except
from smoothing.noise import gaussian_sigma
from smoothing.scores import smoothed_scores

__all__ = ["SmoothingCertifier"]


@eq_by_value_except("generator", "transform")
@dataclass(frozen=True, repr=False, eq=False)
class SmoothingCertifier(Params):
    """Monte Carlo smoothed scores under Gaussian noise N(0, sigma^2 I) (Gendler et al. 2022; Yan et al. 2024).

    The estimate itself carries no confidence statement: the calibrators consuming it add the
    Hoeffding/Bernstein margins (RSCP+) and say with which failure probability.

    Args:
        sigma: noise level > 0, or a ``smoothing.GaussianNoise`` (stored as its σ). Uniform and Laplace
            noise are refused with a ValueError: the calibrators' radius argument (Φ⁻¹ of a smoothed
            score is 1/σ-Lipschitz in L2) holds for Gaussian noise only; in particular the ``sigma``
            of a ``Smooth`` over uniform or Laplace noise is a per-coordinate standard deviation, not
            a Gaussian σ.
        n_mc: noise samples per input, >= 2.
        generator: source of the noise (on the inputs' device); None: a fresh, nondeterministically
            seeded one per call. Torch's global RNG is never used.
        transform: optional fixed map applied to each noisy score before averaging (e.g. a fitted
            :class:`conformal.PTT`); use the same certifier for calibration and test.
        batch_size: forward-pass batch size in samples.

    Example:
        >>> SmoothingCertifier(sigma=0.5, n_mc=64)
        SmoothingCertifier(sigma=0.5, n_mc=64)
    """

    sigma: float = 0.25
    n_mc: int = 256
    generator: torch.Generator | None = None
    transform: ScoreFn | None = None
    batch_size: int = 4096

    kind: ClassVar[CertifierKind] = "smoothing"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", gaussian_sigma(self.sigma, "sigma"))
        object.__setattr__(self, "n_mc", check_positive_int(self.n_mc, "n_mc", minimum=2))
        check_generator(self.generator)
        if self.transform is not None and not callable(self.transform):
            raise TypeError(f"Expected argument `transform` to be callable or None, but got {self.transform!r}")
        object.__setattr__(self, "batch_size", check_positive_int(self.batch_size, "batch_size"))

    @property
    def name(self) -> str:
        return f"Gaussian smoothing sigma={self.sigma:g}, {self.n_mc} samples per input"

    def check_threat(self, threat: LpBall) -> LpBall:
        """Gaussian smoothing certifies L2 balls only (any ``domain`` is ignored: the ball is covered)."""
        if not isinstance(threat, LpBall):
            raise TypeError(f"Expected argument `threat` to be an LpBall, but got {type(threat).__name__}")
        if threat.norm != 2.0:
            raise ValueError(
                "Expected argument `norm` to be 2 with a smoothing certifier (Gaussian randomized smoothing "
                f"certifies L2 balls only), but got {threat.norm!r}; use a bound-propagation certifier "
                "('ibp', 'crown', 'crown-ibp') for L-inf balls"
            )
        parse_norm(threat.norm)
        return threat

    def certify(
        self,
        model: nn.Module,
        x: torch.Tensor,
        threat: LpBall,
        *,
        labels: torch.Tensor | None = None,
        score_fn: ScoreFn | None = None,
    ) -> SmoothedScores:
        """Smoothed scores ``(N, K)`` of every label of the ``(N, ...)`` inputs ``x`` (``labels`` is ignored).

        ``threat`` is checked (L2) but does not change the estimate: the radius enters at calibration.
        """
        self.check_threat(threat)
        if score_fn is None:
            raise ValueError("Expected argument `score_fn` (probs (M, K) -> scores (M, K)) for a smoothing "
                             "certifier, but got None")
        return smoothed_scores(model, x, score_fn, sigma=self.sigma, n_mc=self.n_mc, generator=self.generator,
                               transform=self.transform, batch_size=self.batch_size)


