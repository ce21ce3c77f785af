"""Noise distributions for randomized smoothing and the Lp radius each one certifies.

Smoothing with noise δ certifies g(x) = argmax_c P[f(x + δ) = c] on a ball whose norm depends on the
noise. Given a lower bound p̲_A > 1/2 on the top-class probability (and p_B <= 1 - p̲_A):

=================  =====  =====================================  ==========================================
noise              norm   radius                                 paper
=================  =====  =====================================  ==========================================
N(0, σ² I)         L2     σ Φ⁻¹(p̲_A)                            Cohen et al. 2019, Theorem 1
U[-λ, λ]^d         L1     2λ (p̲_A - 1/2)                        Yang et al. 2020, "Randomized Smoothing of
                                                                  All Shapes and Sizes", Theorem for uniform
                                                                  noise (also Lee et al. 2019)
Laplace(0, λ)^d    L1     -λ log(2 (1 - p̲_A))                   Teng et al. 2020, "ℓ1 adversarial robustness
                                                                  certificates: a randomized smoothing
                                                                  approach", Theorem 1 with p_B = 1 - p̲_A
=================  =====  =====================================  ==========================================

Laplace: Teng et al.'s radius is max(λ/2 log(p_A/p_B), -λ log(1 - p_A + p_B)). With only a lower bound
on p_A the tightest choice is p_B = 1 - p̲_A, and then the second term, -λ log(2(1 - p̲_A)), is the
larger one for every p̲_A in [1/2, 1) (their difference is -log 2 - ½ log(p(1 - p)) >= 0); it is the
one used here. Every radius above is exact for a classifier that thresholds one coordinate,
f(x) = [x_0 > 0]: P[f(x + δ) = 1] at x_0 = t inverts to the formula with p_A in place of p̲_A and
radius t (this is what the tests use).

A certificate in one norm implies one in another norm at a dimension-dependent cost, since
||v||_p <= d^(1/p - 1/q) ||v||_q for p <= q: see :func:`convert_radius` (L2 -> L-inf divides by √d).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm as normal

from certkit._validation import check_positive, check_positive_int
from certkit.threat import norm_name, parse_norm

__all__ = ["GaussianNoise", "LaplaceNoise", "Noise", "UniformNoise", "convert_radius", "gaussian_sigma", "norm_label"]


def _check_norm(value: object, name: str) -> float:
    return parse_norm(value, name)


def norm_label(norm: float | str) -> str:
    """Display name of a norm: ``"L1"``, ``"L2"`` or ``"L-inf"`` (``certkit.threat.norm_name``)."""
    return norm_name(parse_norm(norm, "norm"))


def convert_radius(radius: float, from_norm: float | str, to_norm: float | str, dim: int) -> float:
    """The largest radius r' such that the ``to_norm`` ball of radius r' lies inside the ``from_norm``
    ball of radius ``radius`` in R^dim: r' = radius / dim^max(0, 1/p - 1/q) (p = from, q = to).

    So an L2 certificate of radius R gives L-inf radius R/√d and L1 radius R; an L1 certificate gives
    L2 radius R/√d and L-inf radius R/d. The factor is tight (attained by v = (1, ..., 1) or by a
    basis vector), so nothing better follows from the radius alone.
    """
    p, q = _check_norm(from_norm, "from_norm"), _check_norm(to_norm, "to_norm")
    dim = check_positive_int(dim, "dim")
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not radius >= 0:
        raise ValueError(f"Expected argument `radius` to be a number >= 0, but got {radius!r}")
    exponent = max(0.0, 1.0 / p - 1.0 / q)  # 1/inf = 0
    return float(radius) / dim**exponent


class Noise(ABC):
    """A noise distribution for smoothing: how to sample it and which Lp radius a bound p̲_A certifies.

    Subclasses are frozen dataclasses with one scale parameter. ``norm`` is 1.0, 2.0 or ``math.inf``.
    """

    norm: float

    @property
    @abstractmethod
    def std(self) -> float:
        """Standard deviation of one coordinate of δ."""

    @abstractmethod
    def sample_(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fill ``out`` in place with i.i.d. noise drawn with ``generator``; return it."""

    @abstractmethod
    def radius(self, p_lower: float) -> float:
        """Certified radius (in ``self.norm``) for p̲_A >= 1/2; 0 at p̲_A = 1/2."""

    @abstractmethod
    def p_for_radius(self, radius: float) -> float:
        """The smallest p̲_A whose radius is >= ``radius`` (the inverse of ``radius``)."""


@dataclass(frozen=True)
class GaussianNoise(Noise):
    """δ ~ N(0, σ² I): certifies L2 radius σ Φ⁻¹(p̲_A) (Cohen et al. 2019)."""

    sigma: float
    norm: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_positive(self.sigma, "sigma"))
        if self.norm != 2.0:
            raise ValueError(f"Expected GaussianNoise `norm` to be 2.0 (use convert_radius for others), got {self.norm!r}")

    @property
    def std(self) -> float:
        return self.sigma

    def sample_(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return out.normal_(0.0, self.sigma, generator=generator)

    def radius(self, p_lower: float) -> float:
        return float(self.sigma * normal.ppf(p_lower))

    def p_for_radius(self, radius: float) -> float:
        return float(normal.cdf(radius / self.sigma))


def gaussian_sigma(value: object, name: str = "sigma") -> float:
    """σ of Gaussian noise given as a number > 0 or a ``GaussianNoise``; other noise is refused.

    For the procedures whose guarantee is specific to N(0, σ² I): Monte Carlo smoothed scores and the
    robust conformal sets built on them (Φ⁻¹ of a smoothed score in [0, 1] is 1/σ-Lipschitz in L2,
    Salman et al. 2019), and the smoothed regressor's bounds.
    """
    if isinstance(value, GaussianNoise):
        return value.sigma
    if isinstance(value, Noise):
        raise ValueError(
            f"Expected argument `{name}` to be a Gaussian noise level (a number > 0 or a GaussianNoise), but got "
            f"{value!r}: smoothed scores and the robust conformal sets on them rely on Phi^-1 of a smoothed score "
            "being 1/sigma-Lipschitz in L2, which holds for Gaussian noise only (for uniform or Laplace noise, "
            "certify L1 radii with smoothing.Smooth instead)"
        )
    return check_positive(value, name)


@dataclass(frozen=True)
class UniformNoise(Noise):
    """δ ~ U[-λ, λ]^d: certifies L1 radius 2λ (p̲_A - 1/2) (Yang et al. 2020)."""

    half_width: float
    norm: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "half_width", check_positive(self.half_width, "half_width"))
        if self.norm != 1.0:
            raise ValueError(f"Expected UniformNoise `norm` to be 1.0 (use convert_radius for others), got {self.norm!r}")

    @property
    def std(self) -> float:
        return self.half_width / math.sqrt(3.0)

    def sample_(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return out.uniform_(-self.half_width, self.half_width, generator=generator)

    def radius(self, p_lower: float) -> float:
        return float(2.0 * self.half_width * (p_lower - 0.5))

    def p_for_radius(self, radius: float) -> float:
        return float(0.5 + radius / (2.0 * self.half_width))


@dataclass(frozen=True)
class LaplaceNoise(Noise):
    """δ_i ~ Laplace(0, λ) i.i.d.: certifies L1 radius -λ log(2 (1 - p̲_A)) (Teng et al. 2020)."""

    scale: float
    norm: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))
        if self.norm != 1.0:
            raise ValueError(f"Expected LaplaceNoise `norm` to be 1.0 (use convert_radius for others), got {self.norm!r}")

    @property
    def std(self) -> float:
        return self.scale * math.sqrt(2.0)

    def sample_(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # E1 - E2 for i.i.d. E1, E2 ~ Exp(1/λ) is Laplace(0, λ). In place, without a second tensor: fill
        # the unfinished tail with exponentials and subtract its second half from its first half, which
        # finishes half of it; repeat (log2 of the size rounds). The last odd entry pairs with a scalar.
        if not out.is_contiguous():
            return out.copy_(self.sample_(torch.empty(out.shape, dtype=out.dtype, device=out.device), generator))
        flat = out.view(-1)
        done = 0
        while flat.numel() - done > 1:
            rest = flat[done:].exponential_(1.0 / self.scale, generator=generator)
            half = rest.numel() // 2
            rest[:half].sub_(rest[half : 2 * half])
            done += half
        if done < flat.numel():
            pair = torch.empty(2, dtype=out.dtype, device=out.device).exponential_(1.0 / self.scale, generator=generator)
            flat[done:] = pair[0] - pair[1]
        return out

    def radius(self, p_lower: float) -> float:
        if p_lower >= 1.0:
            return math.inf
        return float(-self.scale * np.log(2.0 * (1.0 - p_lower)))

    def p_for_radius(self, radius: float) -> float:
        return float(1.0 - 0.5 * math.exp(-radius / self.scale))
