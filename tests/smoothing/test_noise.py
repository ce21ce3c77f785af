"""Threat models beyond L2-Gaussian: L1 with uniform and Laplace noise, L-inf (and L1) derived from L2.

Each certificate is tested as a guarantee on a classifier whose smoothed radius is known exactly:
f(x) = [x_0 > 0] (one coordinate through a threshold) for every noise, and a diagonal half-space for
the L-inf radius derived from L2. The fraction of certificates that overstate the exact radius (or name
the wrong class) must be <= alpha up to binomial tolerance.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, kstest, laplace, norm
from torch import nn

from certkit.threat import LpBall
from smoothing import Smooth, certificate_from_counts
from smoothing.noise import GaussianNoise, LaplaceNoise, Noise, UniformNoise, convert_radius, norm_label

ALPHA, TRIALS = 0.05, 2000
LIMIT = int(binom.isf(1e-4, TRIALS, ALPHA))  # P[Bin(2000, 0.05) > LIMIT] < 1e-4


def threshold_model(dim: int = 4) -> nn.Module:
    """f(x) = argmax[x_0, 0]: class 0 iff x_0 > 0. g's decision boundary is {x_0 = 0}, so the exact
    L1, L2 and L-inf radius of g at x is |x_0| (whenever g(x) is the side x lies on)."""
    model = nn.Linear(dim, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 0] = 1.0
    return model.eval()


def diagonal_model(dim: int) -> nn.Module:
    """f(x) = [w·x > 0] with w = (1, ..., 1)/√d. Under N(0, σ² I), p_A = Φ(|w·x|/σ); the exact L2 radius
    is |w·x| and the exact L-inf radius is |w·x| / ||w||_1 = |w·x| / √d."""
    model = nn.Linear(dim, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0] = 1.0 / math.sqrt(dim)
    return model.eval()


def exact_p(noise: Noise, t: float) -> float:
    """P[f(x + δ) = 0] for the threshold model at x_0 = t >= 0: P[δ_0 > -t]."""
    if isinstance(noise, UniformNoise):
        return min(1.0, (noise.half_width + t) / (2 * noise.half_width))
    if isinstance(noise, LaplaceNoise):
        return float(laplace.cdf(t, scale=noise.scale))
    assert isinstance(noise, GaussianNoise)
    return float(norm.cdf(t / noise.sigma))


NOISES = [UniformNoise(0.5), LaplaceNoise(0.25), GaussianNoise(0.25)]


@pytest.mark.parametrize("noise", NOISES, ids=lambda n: type(n).__name__)
def test_radius_formula_is_exact_on_the_threshold_classifier(noise: Noise) -> None:
    for t in (0.0, 0.05, 0.2, 0.4):
        p = exact_p(noise, t)
        assert noise.radius(p) == pytest.approx(t, abs=1e-12)
        assert noise.p_for_radius(t) == pytest.approx(p, abs=1e-12)


def test_reference_values_and_norms() -> None:
    assert UniformNoise(0.5).radius(0.9) == pytest.approx(0.4)  # 2 λ (p - 1/2)
    assert LaplaceNoise(1.0).radius(0.75) == pytest.approx(math.log(2))  # -λ log(2 (1 - p))
    assert LaplaceNoise(1.0).radius(0.5) == 0.0
    # Teng et al.'s other branch, λ/2 log(p / (1 - p)), is never larger with p_B = 1 - p_A.
    for p in (0.51, 0.75, 0.99, 0.99999):
        assert LaplaceNoise(1.0).radius(p) >= 0.5 * math.log(p / (1 - p)) - 1e-12
    assert [UniformNoise(1).norm, LaplaceNoise(1).norm, GaussianNoise(1).norm] == [1.0, 1.0, 2.0]
    assert UniformNoise(math.sqrt(3)).std == pytest.approx(1.0) and LaplaceNoise(1 / math.sqrt(2)).std == pytest.approx(1.0)
    assert [norm_label(1), norm_label("l2"), norm_label(math.inf)] == ["L1", "L2", "L-inf"]


def test_convert_radius_dimension_factors() -> None:
    assert convert_radius(1.0, 2, math.inf, 64) == pytest.approx(1 / 8)  # L2 -> L-inf: / √d
    assert convert_radius(1.0, 2, 1, 64) == 1.0  # an L1 ball of radius r lies in the L2 ball of radius r
    assert convert_radius(1.0, 1, 2, 64) == pytest.approx(1 / 8)
    assert convert_radius(1.0, 1, "linf", 64) == pytest.approx(1 / 64)
    assert convert_radius(0.3, "l2", "l2", 64) == 0.3
    # Tight: the corner (ε, ..., ε) of the L-inf ball of radius R/√d has L2 norm exactly R.
    d, r = 64, 0.7
    assert np.linalg.norm(np.full(d, convert_radius(r, 2, math.inf, d))) == pytest.approx(r)
    with pytest.raises(ValueError, match="`to_norm`"):
        convert_radius(1.0, 2, 3, 4)
    with pytest.raises(ValueError, match="`radius`"):
        convert_radius(-1.0, 2, 1, 4)
    with pytest.raises(ValueError, match="`dim`"):
        convert_radius(1.0, 2, 1, 0)


@pytest.mark.parametrize("noise", [UniformNoise(0.5), LaplaceNoise(0.25)], ids=lambda n: type(n).__name__)
def test_sampler_draws_the_stated_law(noise: Noise) -> None:
    out = noise.sample_(torch.empty(20_000), torch.Generator().manual_seed(0)).double().numpy()
    if isinstance(noise, UniformNoise):
        assert out.min() >= -0.5 and out.max() <= 0.5
        cdf = lambda v: np.clip((v + 0.5) / 1.0, 0, 1)  # noqa: E731
    else:
        cdf = lambda v: laplace.cdf(v, scale=0.25)  # noqa: E731
    assert kstest(out, cdf).pvalue > 1e-4
    assert out.std() == pytest.approx(noise.std, rel=0.05)


@pytest.mark.parametrize("shape", [(3, 6667), (6667, 3)])
def test_laplace_sampler_in_place_on_odd_and_strided_buffers(shape: tuple[int, int]) -> None:
    # The sampler pairs halves of the buffer in place (E1 - E2); the law, and independence of the entries
    # it paired, must hold for an odd size and for a non-contiguous view too.
    buf = torch.empty(shape)
    target = buf if shape[0] == 3 else buf.T  # (3, 6667) both times; the second is a strided view
    out = LaplaceNoise(0.25).sample_(target, torch.Generator().manual_seed(1))
    assert out.data_ptr() == target.data_ptr()
    flat = out.reshape(-1).double().numpy()
    assert kstest(flat, lambda v: laplace.cdf(v, scale=0.25)).pvalue > 1e-4
    for half in (len(flat) // 2, len(flat) // 4):
        r = np.corrcoef(flat[:half], flat[half : 2 * half])[0, 1]
        assert abs(r) < 4 / math.sqrt(half)


# -- guarantees, simulated from the exact p_A (binomial draws = the counts certify would see) ----------


@pytest.mark.parametrize("noise", [UniformNoise(0.5), LaplaceNoise(0.25)], ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("t", [0.05, 0.2])
def test_l1_certificate_overstates_the_exact_radius_at_most_alpha_often(noise: Noise, t: float) -> None:
    p, n0, n = exact_p(noise, t), 10, 500
    rng = np.random.default_rng(0)
    selection, hits = rng.binomial(n0, p, TRIALS), rng.binomial(n, p, TRIALS)
    certs = [certificate_from_counts([s, n0 - s], [k, n - k], ALPHA, noise) for s, k in zip(selection, hits)]
    assert all(c.norm == 1.0 for c in certs)
    wrong = sum(c.label is not None and (c.label != 0 or c.radius > t) for c in certs)
    assert wrong <= LIMIT
    assert sum(c.label == 0 for c in certs) > 0.5 * TRIALS  # power: most runs certify class 0
    # The check can fail: certifying with the point estimate k/n instead of the lower bound overshoots often.
    assert sum(noise.radius(k / n) > t for k in hits) > 4 * LIMIT


@pytest.mark.parametrize("noise", [UniformNoise(0.5), LaplaceNoise(0.25)], ids=lambda n: type(n).__name__)
def test_l1_certificate_end_to_end_through_the_sampler(noise: Noise) -> None:
    t = 0.1
    x = torch.zeros(4)
    x[0] = t
    smooth = Smooth(threshold_model(), 2, noise)
    assert smooth.norm == 1.0 and smooth.sigma == pytest.approx(noise.std)
    certs = smooth.certify_batch(x.repeat(TRIALS, 1), 10, 200, ALPHA, 200_000, torch.Generator().manual_seed(1))
    wrong = sum(c.label is not None and (c.label != 0 or c.radius > t) for c in certs)
    assert wrong <= LIMIT
    assert sum(c.label == 0 for c in certs) > 0.5 * TRIALS
    assert all(c.norm == 1.0 for c in certs)


def test_l1_certificate_is_tight_at_large_n() -> None:
    x = torch.zeros(4)
    x[0] = -0.3
    for noise in (UniformNoise(0.5), LaplaceNoise(0.25)):
        cert = Smooth(threshold_model(), 2, noise).certify(x, 100, 100_000, 1e-3, 50_000, torch.Generator().manual_seed(2))
        assert cert.label == 1 and 0.9 * 0.3 <= cert.radius <= 0.3


@pytest.mark.parametrize("dim", [16, 64])
def test_linf_from_l2_overstates_the_exact_linf_radius_at_most_alpha_often(dim: int) -> None:
    sigma, n0, n = 0.25, 10, 500
    l2 = sigma * float(norm.ppf(0.95))  # w·x, so p_A = 0.95
    exact_linf = l2 / math.sqrt(dim)
    rng = np.random.default_rng(dim)
    selection, hits = rng.binomial(n0, 0.95, TRIALS), rng.binomial(n, 0.95, TRIALS)
    certs = [certificate_from_counts([s, n0 - s], [k, n - k], ALPHA, sigma).to_norm("linf", dim)
             for s, k in zip(selection, hits)]
    assert all(c.norm == math.inf for c in certs)
    wrong = sum(c.label is not None and (c.label != 0 or c.radius > exact_linf) for c in certs)
    assert wrong <= LIMIT
    assert sum(c.label == 0 for c in certs) > 0.9 * TRIALS
    # Without the dimension factor the L2 radius overstates the L-inf radius almost always.
    assert sum(c.label == 0 and c.radius * math.sqrt(dim) > exact_linf for c in certs) > 0.9 * TRIALS


def test_linf_from_l2_end_to_end_and_tight_on_the_diagonal_half_space() -> None:
    dim, sigma = 16, 0.25
    w_x = 0.3
    x = torch.full((dim,), w_x / math.sqrt(dim))  # w·x = 0.3, exact L-inf radius 0.3 / √16 = 0.075
    smooth = Smooth(diagonal_model(dim), 2, sigma)
    certs = smooth.certify_batch(x.repeat(TRIALS, 1), 10, 200, ALPHA, 200_000, torch.Generator().manual_seed(3))
    linf = [c.to_norm(math.inf, dim) for c in certs]
    assert sum(c.label is not None and (c.label != 0 or c.radius > w_x / 4) for c in linf) <= LIMIT
    big = smooth.certify(x, 100, 100_000, 1e-3, 50_000, torch.Generator().manual_seed(4)).to_norm(math.inf, dim)
    assert big.label == 0 and 0.9 * w_x / 4 <= big.radius <= w_x / 4
    # The L-inf ball really stays on g's side: its worst corner x - ε·1 has w·x' = 0.3 - ε√d >= 0.
    assert w_x - big.radius * math.sqrt(dim) >= 0


def test_noise_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="`half_width`"):
        UniformNoise(0.0)
    with pytest.raises(ValueError, match="`scale`"):
        LaplaceNoise(-1.0)
    with pytest.raises(ValueError, match="`sigma`"):
        Smooth(threshold_model(), 2, "gaussian")  # type: ignore[arg-type]
    assert "UniformNoise" in repr(Smooth(threshold_model(), 2, UniformNoise(0.5)))
    cert = certificate_from_counts([10, 0], [100, 0], 1e-3, UniformNoise(0.5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cert.norm = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="`norm`"):
        cert.to_norm(3, 4)
    assert cert.ball == LpBall(1, cert.radius) and cert.to_norm("linf", 4).ball.norm == math.inf


def test_sampling_leaves_global_rng_alone() -> None:
    smooth = Smooth(threshold_model(), 2, LaplaceNoise(0.25))
    state = torch.get_rng_state()
    smooth.certify(torch.zeros(4), 10, 100, 1e-3, 50)
    assert torch.equal(state, torch.get_rng_state())
