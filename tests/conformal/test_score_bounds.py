"""Score bounds are sound: every score of every point of the region lies inside them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from conformal import scores
from conformal.attacks import pgd_attack
from conformal.score_bounds import (
    aps_score_bounds,
    certified_score_bounds,
    margin_bounds_from_logits,
    score_bounds_from_logits,
    score_bounds_from_margins,
    thr_score_bounds,
)

SCORE_FNS = {"thr": scores.thr, "aps": scores.aps, "raps": scores.raps}
TOL = 1e-9  # float64 rounding


def _box(n: int, k: int, seed: int, width: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = 2 * torch.randn(n, k, generator=g, dtype=torch.float64)
    w = width * torch.rand(n, k, generator=g, dtype=torch.float64)
    return c - w, c + w


def _all_label_scores(score: str, z: torch.Tensor) -> torch.Tensor:
    return SCORE_FNS[score](torch.softmax(z, -1))  # type: ignore[no-any-return]


@pytest.mark.parametrize("score", ["thr", "aps", "raps"])
def test_bounds_contain_scores_of_sampled_logits(score: str) -> None:
    lo, hi = _box(300, 6, seed=1)
    b = score_bounds_from_logits(score, lo, hi)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(2)
    for t in range(400):
        u = torch.rand(lo.shape, generator=g, dtype=torch.float64)
        if t % 2:  # vertices, where the extrema of THR are attained
            u = (u > 0.5).to(torch.float64)
        s = _all_label_scores(score, lo + (hi - lo) * u)
        assert bool((s >= b.lower - TOL).all()) and bool((s <= b.upper + TOL).all())


def test_thr_bounds_are_attained_at_vertices() -> None:
    lo, hi = _box(50, 4, seed=3)
    b = score_bounds_from_logits("thr", lo, hi)
    smin = torch.full((50, 4), math.inf, dtype=torch.float64)
    smax = torch.full((50, 4), -math.inf, dtype=torch.float64)
    for v in itertools.product([0.0, 1.0], repeat=4):
        z = lo + (hi - lo) * torch.tensor(v, dtype=torch.float64)
        s = _all_label_scores("thr", z)
        smin, smax = torch.minimum(smin, s), torch.maximum(smax, s)
    torch.testing.assert_close(b.lower, smin, atol=1e-12, rtol=0)
    torch.testing.assert_close(b.upper, smax, atol=1e-12, rtol=0)


def test_aps_bounds_are_exact_over_the_margin_box() -> None:
    # Margins relative to y = 0 in a box: the bound is the sup/inf over the box, approached at corners
    # (with r_k -> 0^- for the lower bound), so a fine search gets within a small gap.
    g = torch.Generator().manual_seed(4)
    k = 4
    m_lo = torch.randn(20, k, generator=g, dtype=torch.float64)
    m_hi = m_lo + torch.rand(20, k, generator=g, dtype=torch.float64) * 2
    m_lo[:, 0] = m_hi[:, 0] = 0
    b = aps_score_bounds(m_lo, m_hi)
    grid = torch.linspace(0, 1, 31, dtype=torch.float64)
    combos = torch.cartesian_prod(*[grid] * (k - 1))  # (C, k - 1)
    m = m_lo[:, None, 1:] + (m_hi - m_lo)[:, None, 1:] * combos[None]  # (20, C, k - 1)
    m = torch.cat([torch.zeros(*m.shape[:2], 1, dtype=torch.float64), m], dim=2).reshape(-1, k)
    s = scores.aps(torch.softmax(-m, -1), torch.zeros(len(m), dtype=torch.long)).reshape(20, -1)
    best_lo, best_hi = s.min(1).values, s.max(1).values
    assert bool((b.lower <= best_lo + TOL).all()) and bool((b.upper >= best_hi - TOL).all())
    assert float((best_hi - b.upper).abs().max()) < 1e-9  # the upper bound is attained
    assert float((best_lo - b.lower).max()) < 0.05  # the lower bound is a supremum approached at r -> 0^-


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_bounds_hold_under_ties_either_way(score: str) -> None:
    # Zero-width box with tied logits: certkit's APS ranks ties by label index; bounds must hold anyway.
    z = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    b = score_bounds_from_logits(score, z, z)  # type: ignore[arg-type]
    s = _all_label_scores(score, z)
    assert bool((s >= b.lower - TOL).all()) and bool((s <= b.upper + TOL).all())


def test_zero_width_box_gives_exact_thr() -> None:
    lo, _ = _box(20, 5, seed=5)
    b = score_bounds_from_logits("thr", lo, lo)
    torch.testing.assert_close(b.lower, _all_label_scores("thr", lo))
    torch.testing.assert_close(b.upper, _all_label_scores("thr", lo))


@pytest.mark.parametrize("score", ["thr", "aps"])
def test_large_logits_are_stable(score: str) -> None:
    lo = torch.tensor([[1e4, -1e4, 0.0], [500.0, 499.0, -800.0]], dtype=torch.float64)
    b = score_bounds_from_logits(score, lo, lo + 1)  # type: ignore[arg-type]
    for t in (b.lower, b.upper):
        assert bool(torch.isfinite(t).all()) and bool((t >= 0).all()) and bool((t <= 1 + 1e-12).all())
    assert bool((b.lower <= b.upper).all())


@pytest.mark.parametrize("score", ["thr", "aps"])
def test_margin_bounds_only_tighten(score: str) -> None:
    lo, hi = _box(100, 5, seed=6)
    m_lo, m_hi = margin_bounds_from_logits(lo, hi)
    # any tighter box of margins, e.g. shrunk towards the centre
    mid = (m_lo + m_hi) / 2
    t_lo, t_hi = (m_lo + mid) / 2, (m_hi + mid) / 2
    loose = score_bounds_from_logits(score, lo, hi)  # type: ignore[arg-type]
    tight = score_bounds_from_logits(score, lo, hi, margin_lower=t_lo, margin_upper=t_hi)  # type: ignore[arg-type]
    assert bool((tight.lower >= loose.lower - TOL).all()) and bool((tight.upper <= loose.upper + TOL).all())
    assert float((tight.upper - tight.lower).mean()) < float((loose.upper - loose.lower).mean())
    # (N, K) margins of given labels agree with the rows of the (N, K, K) form
    y = torch.arange(100) % 5
    rows = torch.arange(100)
    per_label = score_bounds_from_logits(score, lo, hi, y, margin_lower=t_lo[rows, y],  # type: ignore[arg-type]
                                         margin_upper=t_hi[rows, y])
    torch.testing.assert_close(per_label.lower, tight.lower[rows, y])
    torch.testing.assert_close(per_label.upper, tight.upper[rows, y])


def test_thr_formula_of_the_issue() -> None:
    # min softmax_y = exp(l_y) / (exp(l_y) + sum_{j != y} exp(u_j))
    lo, hi = _box(10, 4, seed=7)
    b = score_bounds_from_logits("thr", lo, hi)
    for y in range(4):
        others = [j for j in range(4) if j != y]
        p_min = lo[:, y].exp() / (lo[:, y].exp() + hi[:, others].exp().sum(1))
        torch.testing.assert_close(b.upper[:, y], 1 - p_min)


# -- on a model: random and PGD points inside the ball ------------------------------------------


@pytest.fixture(scope="module")
def cnn_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    d = load_digits_split("test")
    return digits_cnn(), d.images[:40], d.labels[:40]


@pytest.mark.parametrize("method,eps", [("ibp", 0.005), ("crown", 0.03), ("crown-ibp", 0.01)])
@pytest.mark.parametrize("score", ["thr", "aps"])
def test_certified_bounds_contain_random_and_pgd_points(
    cnn_batch: tuple[torch.nn.Module, torch.Tensor, torch.Tensor], method: str, eps: float, score: str
) -> None:
    model, x, y = cnn_batch
    b = certified_score_bounds(model, x, eps, score=score, method=method, domain=(0, 1))  # type: ignore[arg-type]
    b_y = certified_score_bounds(model, x, eps, score=score, labels=y, method=method, domain=(0, 1))  # type: ignore[arg-type]
    rows = torch.arange(len(y))
    torch.testing.assert_close(b_y.upper, b.upper[rows, y])
    torch.testing.assert_close(b_y.lower, b.lower[rows, y])
    g = torch.Generator().manual_seed(8)
    points = [pgd_attack(model, x, y, eps, steps=10, generator=torch.Generator().manual_seed(8))]
    points += [(x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1) for _ in range(10)]
    fn = SCORE_FNS[score]
    tol = 1e-5  # the certifier computes in float32
    for xp in points:
        assert float((xp - x).abs().max()) <= eps + 1e-7
        with torch.no_grad():
            s = fn(torch.softmax(model(xp).double(), -1))
        assert bool((s >= b.lower - tol).all()) and bool((s <= b.upper + tol).all())
    assert float((b.upper - b.lower).mean()) < 1.0  # not vacuous
    if method == "crown":
        assert float((b.upper - b.lower).mean()) < 0.1


def test_l2_bounds_contain_l2_points(cnn_batch: tuple[torch.nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = cnn_batch
    eps = 0.1
    b = certified_score_bounds(model, x, eps, score="thr", norm=2.0, method="crown", domain=(0, 1))
    xp = pgd_attack(model, x, y, eps, norm=2.0)
    assert float((xp - x).flatten(1).norm(dim=1).max()) <= eps + 1e-6
    with torch.no_grad():
        s = scores.thr(torch.softmax(model(xp).double(), -1))
    assert bool((s >= b.lower - 1e-5).all()) and bool((s <= b.upper + 1e-5).all())


# -- bad input ------------------------------------------------------------------------------


def test_bad_input() -> None:
    lo, hi = _box(4, 3, seed=10)
    with pytest.raises(ValueError, match="`score`"):
        score_bounds_from_logits("lac2", lo, hi)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lower <= upper"):
        score_bounds_from_logits("thr", hi, lo)
    with pytest.raises(ValueError, match="shape"):
        score_bounds_from_logits("thr", lo, hi[:, :2])
    with pytest.raises(ValueError, match="finite"):
        score_bounds_from_logits("thr", lo * math.nan, hi)
    with pytest.raises(TypeError, match="torch tensor"):
        score_bounds_from_logits("thr", lo.numpy(), hi)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`margin_lower`"):
        score_bounds_from_logits("thr", lo, hi, margin_lower=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="`labels`"):
        score_bounds_from_logits("thr", lo, hi, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="margin_lower <= margin_upper"):
        thr_score_bounds(torch.ones(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="shape"):
        score_bounds_from_margins("aps", torch.zeros(2, 3), torch.zeros(2, 3))


def test_margin_route_is_tighter_than_logit_route(cnn_batch: tuple[torch.nn.Module, torch.Tensor, torch.Tensor]) -> None:
    import certify

    model, x, _ = cnn_batch
    x = x[:20]
    lb = certify.bounds(model, x, 0.02, method="crown", domain=(0, 1))
    via_logits = score_bounds_from_logits("thr", lb.lower.detach().double(), lb.upper.detach().double())
    via_margins = certified_score_bounds(model, x, 0.02, score="thr", method="crown", domain=(0, 1))
    assert bool((via_margins.upper <= via_logits.upper + 1e-6).all())
    assert bool((via_margins.lower >= via_logits.lower - 1e-6).all())
    assert float((via_margins.upper - via_margins.lower).mean()) < float((via_logits.upper - via_logits.lower).mean())
