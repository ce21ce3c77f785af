"""The certifier protocol: (model, inputs, threat model) -> certified quantities of the scores.

A certifier is a small object that knows *how* to certify (bound propagation with a method, Gaussian
smoothing with a noise level, ...); a threat model (:class:`certkit.threat.LpBall`) says *against
what*. The robust calibrators of ``conformal`` (``VRCP``, ``RobustPAC``, ``RSCP``, ``RSCPPlus``,
``SmoothedRobustPAC``, ``certified_sets``) consume certifiers only through this protocol, so a new
one plugs in without touching them. Two kinds exist:

* ``kind == "bounds"``: :meth:`Certifier.certify` returns :class:`MarginBounds`, deterministic
  bounds on the logit margins ``z_y - z_k`` over the threat model around each input (e.g.
  ``certify.BoundCertifier``: IBP, CROWN, CROWN-IBP). ``conformal`` turns them into bounds on any
  conformity score (``conformal.score_bounds``).
* ``kind == "smoothing"``: it returns :class:`SmoothedScores`, Monte Carlo estimates of a smoothed
  score at the input, with the noise level ``sigma`` that makes ``Phi^-1`` of the smoothed score
  ``1/sigma``-Lipschitz (e.g. ``smoothing.SmoothingCertifier``); ``conformal`` accounts for the
  radius and the Monte Carlo error.

Regression has its own, smaller protocol, :class:`OutputCertifier`: ``output_bounds(model, x,
threat)`` returns :class:`OutputBounds` on a scalar regressor's output over the threat model
(``certify.BoundCertifier``: deterministic; ``smoothing.SmoothedRegressionCertifier``: with
probability >= 1 - beta per input). ``conformal.regression.RobustConformalRegressor`` consumes it.

The base imports none of ``certify``, ``smoothing``, ``conformal``: all result types live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from certkit.threat import LpBall

__all__ = ["Certifier", "CertifierKind", "MarginBounds", "OutputBounds", "OutputCertifier", "ScoreFn", "SmoothedScores",
           "squeeze_output"]

CertifierKind = Literal["bounds", "smoothing"]

#: A score of every label from softmax probabilities: ``(M, K) -> (M, K)``.
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MarginBounds:
    """Deterministic bounds on the logit margins ``z_y - z_k`` over the threat model around each input.

    Guarantee (as sound as the certifier): for every ``x'`` in the region around ``x_n``,
    ``lower[n, ...] <= z_y(x') - z_k(x') <= upper[n, ...]``.

    Attributes:
        lower: ``(N, K)`` bounds of the margins of ``labels`` (entry ``[n, k]`` bounds
            ``z_{labels[n]} - z_k``; 0 at ``k = labels[n]``), or ``(N, K, K)`` when ``labels`` is None
            (entry ``[n, y, k]`` bounds ``z_y - z_k``; zero diagonal). float64.
        upper: same shape as ``lower``.
        labels: the ``(N,)`` labels of the rows, or None for all pairs.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    labels: torch.Tensor | None = None


@dataclass(frozen=True)
class SmoothedScores:
    """Monte Carlo estimate of a smoothed score.

    Attributes:
        mean: ``(N, K)`` float64, S_hat(x, y) = (1/n_mc) sum_i S(x + delta_i, y).
        variance: ``(N, K)`` float64, the unbiased sample variance of S(x + delta_i, y) over i.
        n_mc: number of noise samples behind each entry.
        sigma: the Gaussian noise level of the samples (``Phi^-1(S_bar)`` is ``1/sigma``-Lipschitz in
            L2), or None when unknown (then the calibrator's own ``sigma`` is used).
    """

    mean: torch.Tensor
    variance: torch.Tensor
    n_mc: int
    sigma: float | None = None

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def __getitem__(self, index: torch.Tensor | slice | int) -> SmoothedScores:
        """Rows ``index`` of the estimate (any tensor index or slice over inputs)."""
        mean, var = self.mean[index], self.variance[index]
        if mean.ndim == 1:
            mean, var = mean.unsqueeze(0), var.unsqueeze(0)
        return SmoothedScores(mean, var, self.n_mc, self.sigma)


@runtime_checkable
class Certifier(Protocol):
    """What the robust calibrators need from a certifier.

    Attributes:
        kind: ``"bounds"`` (``certify`` returns :class:`MarginBounds`) or ``"smoothing"`` (it returns
            :class:`SmoothedScores`).
        name: a short display name used in guarantees, e.g. ``"CROWN"``.
    """

    @property
    def kind(self) -> CertifierKind:
        """``"bounds"`` or ``"smoothing"``: which result type :meth:`certify` returns."""
        ...

    @property
    def name(self) -> str:
        """A short display name used in guarantees."""
        ...

    def check_threat(self, threat: LpBall) -> LpBall:
        """Return ``threat`` if this certifier can certify it, else raise ValueError saying why."""
        ...

    def certify(
        self,
        model: nn.Module,
        x: torch.Tensor,
        threat: LpBall,
        *,
        labels: torch.Tensor | None = None,
        score_fn: ScoreFn | None = None,
    ) -> MarginBounds | SmoothedScores:
        """Certified quantities for the ``(N, ...)`` inputs ``x`` under ``threat``.

        Args:
            model: eval-mode classifier returning ``(N, K)`` logits.
            x: ``(N, ...)`` inputs.
            threat: the threat model (checked by :meth:`check_threat`).
            labels: ``(N,)`` labels to certify (bound certifiers; None: every label).
            score_fn: per-sample score of every label, probs ``(M, K) -> (M, K)`` (smoothing
                certifiers; bound certifiers ignore it).
        """
        ...


@dataclass(frozen=True)
class OutputBounds:
    """Certified bounds of a scalar regressor over the threat model around each input.

    Attributes:
        predictions: ``(N,)`` the regressor's output at the inputs themselves (for smoothing: the
            Monte Carlo estimate of the smoothed regressor there).
        lower, upper: ``(N,)`` ``lower <= f(x') <= upper`` for every ``x'`` in the ball around each
            input: deterministically (bound propagation), or with probability >= 1 - beta per input
            (smoothing, where ``f(x')`` is a fresh Monte Carlo estimate at ``x'``).
    """

    predictions: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor


@runtime_checkable
class OutputCertifier(Protocol):
    """What ``conformal.regression.RobustConformalRegressor`` needs from a certifier of regressor outputs.

    Guarantee of :meth:`output_bounds`: for every ``x'`` in ``threat`` around ``x_n``,
    ``lower[n] <= f(x') <= upper[n]``, deterministically (e.g. ``certify.BoundCertifier``) or with
    probability >= 1 - beta per input (e.g. ``smoothing.SmoothedRegressionCertifier``, which says so
    in its docstring); the conformal coverage is then >= 1 - alpha, resp. >= 1 - alpha - beta.

    Attributes:
        name: a short display name, e.g. ``"CROWN"``.
    """

    @property
    def name(self) -> str:
        """A short display name used in guarantees."""
        ...

    def output_bounds(self, model: nn.Module, x: torch.Tensor, threat: LpBall) -> OutputBounds:
        """Bounds of the regressor's ``(N,)`` or ``(N, 1)`` output over ``threat`` around each ``(N, ...)`` input.

        Raises ValueError when ``threat`` cannot be certified (e.g. an L-inf ball for smoothing).
        """
        ...


def squeeze_output(out: torch.Tensor, name: str = "model") -> torch.Tensor:
    """``(N,)`` from a regressor output of shape ``(N,)`` or ``(N, 1)``; ValueError otherwise."""
    if out.dim() == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.dim() == 1:
        return out
    raise ValueError(f"Expected `{name}` to output (N,) or (N, 1) predictions, but got shape {tuple(out.shape)}")
