import math
import warnings
from typing import Any

import pytest
import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import rct_digits_model
from conformal import conformal_quantile
from conformal.rct import (
    RCTConfig,
    rct_loss,
    soft_quantile,
    soft_rank,
    soft_set_size,
    train_rct,
)
from conformal.rscp import RSCPPlus, smoothed_score_fn
from smoothing.scores import smoothed_scores


def test_soft_rank_tends_to_ordinal_ranks() -> None:
    x = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(soft_rank(x, 1e-4), torch.tensor([2.0, 1.0, 4.0, 3.0], dtype=torch.float64))
    # ties share the average rank
    torch.testing.assert_close(soft_rank(torch.tensor([1.0, 1.0]), 1e-3), torch.tensor([1.5, 1.5]))


@pytest.mark.parametrize("n", [19, 99, 250])
def test_soft_quantile_tends_to_the_conformal_order_statistic(n: int) -> None:
    s = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    hard = conformal_quantile(s, 0.1)
    soft = soft_quantile(s, 0.9, temperature=1e-5, bandwidth=0.05)
    assert float(soft) == pytest.approx(hard, abs=1e-9)
    # smooth and differentiable at the training temperature
    s.requires_grad_(True)
    (g,) = torch.autograd.grad(soft_quantile(s, 0.9, temperature=0.1), s)
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0


def test_soft_set_size_tends_to_set_size() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.9], [0.6, 0.7, 0.8]], dtype=torch.float64)
    torch.testing.assert_close(soft_set_size(scores, 0.55, 1e-6), torch.tensor([2.0, 0.0], dtype=torch.float64))


def test_loss_is_finite_and_penalises_large_sets() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (40,), generator=g)
    sharp = torch.nn.functional.one_hot(labels, 10).double()[:, None, :].expand(40, 4, 10) * 12
    flat = torch.randn(40, 4, 10, generator=g, dtype=torch.float64) * 0.1
    kw: dict[str, Any] = {"alpha": 0.1, "sigma": 0.25, "eps": 0.125, "temperature": 0.1, "size_weight": 1.0}
    assert float(rct_loss(sharp, labels, **kw)) < float(rct_loss(flat, labels, **kw))


def test_train_rct_changes_only_the_head_and_copies() -> None:
    from certkit_app.digits import digits_base_model

    base = digits_base_model(0.25)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    d = load_digits_split("train")
    m = train_rct(base, d.images[:200], d.labels[:200], RCTConfig(epochs=3, batch_size=100, n_bank=8))
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k])  # input model untouched
    new = m.state_dict()
    last = [k for k in new if k.startswith(str(len(m) - 1) + ".")]
    assert last and all(not torch.equal(new[k], before[k]) for k in last)
    assert all(torch.equal(new[k], before[k]) for k in new if k not in last)
    assert not m.training


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="alpha"):
        RCTConfig(alpha=0.0)
    with pytest.raises(ValueError, match="n_bank"):
        RCTConfig(n_noise=8, n_bank=4)
    with pytest.raises(ValueError, match="eps"):
        RCTConfig(eps=-1.0)
    with pytest.raises(TypeError, match="Sequential"):
        train_rct(torch.nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))  # type: ignore[arg-type]


def test_rct_shrinks_rscp_plus_sets_on_digits() -> None:
    """RSCP+ (sigma 0.25, eps 0.125, n_mc 128) with the RCT head gives smaller sets than the base model, same coverage."""
    from certkit_app.digits import digits_base_model

    cal, test = load_digits_split("calibration"), load_digits_split("test")
    fn = smoothed_score_fn("thr")
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in (("base", digits_base_model(0.25)), ("rct", rct_digits_model(0.25, 0.125, 0.1))):
            g = torch.Generator().manual_seed(0)
            sc = smoothed_scores(model, cal.images, fn, sigma=0.25, n_mc=128, generator=g)
            st = smoothed_scores(model, test.images, fn, sigma=0.25, n_mc=128, generator=g)
            sets = RSCPPlus(alpha=0.1, sigma=0.25, eps=0.125, n_mc=128).calibrate(sc, cal.labels).predict(st)
            res[name] = (float(sets.sizes.double().mean()), float(sets.contains(test.labels).double().mean()))
    assert res["rct"][0] < res["base"][0] - 0.05, res
    assert res["rct"][1] >= 0.9, res


# --- randomised APS / RAPS inside the smoothed score (issue 16) -------------------------------------------


def test_rct_score_config_errors() -> None:
    with pytest.raises(ValueError, match="randomized"):
        RCTConfig(score="thr", randomized=True)
    with pytest.raises(ValueError, match="score"):
        RCTConfig(score="saps")
    with pytest.raises(ValueError, match="k_reg"):
        RCTConfig(score="aps", k_reg=2)
    with pytest.raises(ValueError, match="k_reg"):
        RCTConfig(score="raps", k_reg=-1)
    with pytest.raises(ValueError, match="lam"):
        RCTConfig(score="raps", lam=-0.1)
    assert RCTConfig(score="aps").is_randomized and not RCTConfig(score="aps", randomized=False).is_randomized
    assert not RCTConfig().is_randomized and RCTConfig().score_kwargs == {}
    assert RCTConfig(score="raps", k_reg=2).score_kwargs == {"k_reg": 2, "lam": 0.01}
    logits, labels = torch.zeros(6, 2, 3), torch.zeros(6, dtype=torch.long)
    kw: dict[str, Any] = {"alpha": 0.1, "sigma": 0.25, "eps": 0.125, "temperature": 0.1, "size_weight": 1.0}
    with pytest.raises(ValueError, match=r"`u`.*thr"):
        rct_loss(logits, labels, u=torch.zeros(6), **kw)
    with pytest.raises(ValueError, match=r"`u`.*\(B,\)"):
        rct_loss(logits, labels, score="aps", u=torch.zeros(5), **kw)
    with pytest.raises(ValueError, match=r"`u`.*\[0, 1\]"):
        rct_loss(logits, labels, score="aps", u=torch.full((6,), 1.5), **kw)


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_rct_smoothed_score_shares_each_inputs_u_across_its_noise_draws(score: str) -> None:
    """Phi^-1 of the mean over noise draws of the score with input i's own u (certkit's aps / unit_raps)."""
    from functools import partial

    from conformal.rct import _smoothed_phi
    from conformal.rscp import unit_raps
    from conformal.scores import aps

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(5, 7, 10, generator=g, dtype=torch.float64), -1)
    u = torch.rand(5, generator=g, dtype=torch.float64)
    fn = partial(aps, validate=False) if score == "aps" else partial(unit_raps, k_reg=2, lam=0.05, validate=False)
    kr, la = (None, None) if score == "aps" else (2, 0.05)
    got = _smoothed_phi(probs, score, u, kr, la)
    for i in range(5):
        ref = torch.stack([fn(probs[i, j : j + 1], u=u[i : i + 1])[0] for j in range(7)]).mean(0)
        torch.testing.assert_close(got[i], torch.special.ndtri(ref.clamp(1e-4, 1 - 1e-4)))
    # u = None is the u = 0 (inclusive) form; a different u changes the score
    torch.testing.assert_close(_smoothed_phi(probs, score, None, kr, la), _smoothed_phi(probs, score, 0 * u, kr, la))
    assert not torch.allclose(got, _smoothed_phi(probs, score, 1 - u, kr, la))


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_rct_loss_gradient_is_the_fixed_order_gradient(score: str) -> None:
    """Autograd through the sort equals central finite differences (steps too small to change any order)."""
    g = torch.Generator().manual_seed(1)
    logits = (3 * torch.randn(12, 4, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    labels = torch.randint(0, 6, (12,), generator=g)
    u = torch.rand(12, generator=g, dtype=torch.float64)
    kw: dict[str, Any] = {"alpha": 0.2, "sigma": 0.25, "eps": 0.125, "temperature": 0.1, "size_weight": 1.0, "score": score, "u": u}
    if score == "raps":
        kw |= {"k_reg": 1, "lam": 0.1}
    (grad,) = torch.autograd.grad(rct_loss(logits, labels, **kw), logits)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
    h = 1e-6
    for idx in [(0, 0, 0), (3, 1, 2), (7, 3, 5), (11, 2, 4)]:
        d = torch.zeros_like(logits)
        d[idx] = h
        with torch.no_grad():
            fd = (rct_loss(logits + d, labels, **kw) - rct_loss(logits - d, labels, **kw)) / (2 * h)
        assert float(grad[idx]) == pytest.approx(float(fd), rel=1e-4, abs=1e-7)


def _noisy_features(model: torch.nn.Sequential, x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return torch.stack([model[:-1](x + 0.25 * torch.randn(x.shape, generator=g)) for _ in range(n)], dim=1)


def test_train_rct_randomised_aps_is_reproducible_and_uses_u() -> None:
    from certkit_app.digits import digits_base_model

    base = digits_base_model(0.25)
    d = load_digits_split("train")
    cfg = RCTConfig(epochs=5, batch_size=100, n_bank=8, score="aps")
    m = train_rct(base, d.images[:200], d.labels[:200], cfg, generator=torch.Generator().manual_seed(0))
    m2 = train_rct(base, d.images[:200], d.labels[:200], cfg, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values(), strict=True))
    fixed = train_rct(base, d.images[:200], d.labels[:200], RCTConfig(epochs=5, batch_size=100, n_bank=8,
                      score="aps", randomized=False), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(m.state_dict()[f"{len(m) - 1}.weight"], fixed.state_dict()[f"{len(m) - 1}.weight"])


@pytest.mark.slow
def test_rct_randomised_aps_covers_under_pgd_and_shrinks_ptt_sets() -> None:
    """Digits, sigma 0.25, eps 0.125, alpha 0.1: RCT trained through the randomised APS smoothed score (one u per
    input shared by its noise draws), then RSCP+ with randomised APS (fresh per-input u on the pool, 10-step PGD on
    the smoothed score with each input's own u, 50 half/half splits of 400 points): coverage under attack
    >= 1 - alpha - 3 SE (200 test points) with PTT (n_mc 256) and without (n_mc 1024, where RSCP+ APS is not
    trivial); the held-out RCT loss drops and PTT sets are smaller than the untrained base model's."""
    from certkit_app.datasets import load_digits_split as load
    from certkit_app.demos.rscp import _Scored, _split_rows
    from certkit_app.digits import digits_base_model
    from conformal.attacks import smoothed_score_pgd
    from conformal.ptt import PTT, holdout_scores
    from conformal.rscp import per_input_score

    sigma, eps, alpha = 0.25, 0.125, 0.1
    base = digits_base_model(sigma)
    tr = load("train")
    rct = train_rct(base, tr.images, tr.labels, RCTConfig(alpha=alpha, sigma=sigma, eps=eps, score="aps"),
                    generator=torch.Generator().manual_seed(0))
    cal, test = load("calibration"), load("test")
    # it trains: the RCT loss (same score, fresh noise, fixed u) on the held-out calibration images drops
    f = _noisy_features(base, cal.images, 8, 1)
    u = torch.rand(cal.images.shape[0], generator=torch.Generator().manual_seed(2))
    kw: dict[str, Any] = {"alpha": alpha, "sigma": sigma, "eps": eps, "temperature": 0.1, "size_weight": 1.0, "score": "aps", "u": u}
    with torch.no_grad():
        before, after = (float(rct_loss(m[-1](f), cal.labels, **kw)) for m in (base, rct))
    print(f"held-out RCT loss: base {before:.3f} rct {after:.3f}")
    assert after < before - 0.1, (before, after)
    x_hold, y_hold = cal.images[:197], cal.labels[:197]
    x_all, y_all = torch.cat([cal.images[197:], test.images]), torch.cat([cal.labels[197:], test.labels])
    pick = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(0))[:400]
    x, y = x_all[pick], y_all[pick]
    fn = per_input_score("aps", torch.rand(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    u_hold = torch.rand(197, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in (("base", base), ("rct", rct)):
            x_adv = smoothed_score_pgd(model, x, y, fn, sigma=sigma, eps=eps, steps=10, n_noise=8,
                                       generator=torch.Generator().manual_seed(2))
            ptt = PTT(alpha=alpha).fit(holdout_scores(model, x_hold, y_hold, score="aps", sigma=sigma, u=u_hold,
                                                      generator=torch.Generator().manual_seed(4)))
            for form, n_mc, transform in (("RSCP+", 1024, None), ("RSCP+ PTT", 256, ptt)):
                scored = [smoothed_scores(model, inputs, fn, sigma=sigma, n_mc=n_mc, transform=transform,
                                          generator=torch.Generator().manual_seed(5)) for inputs in (x, x_adv)]
                rows[(name, form)] = _split_rows(form, RSCPPlus(alpha=alpha, sigma=sigma, eps=eps, n_mc=n_mc,
                                                                score="aps"), _Scored(*scored), y, 50, 6)
    for key, r in rows.items():
        print(key, f"coverage {r.coverage:.3f} clean {r.clean_coverage:.3f} size {r.size:.2f}")
    tol = 3 * math.sqrt(alpha * (1 - alpha) / 200)
    for form in ("RSCP+", "RSCP+ PTT"):
        assert rows[("rct", form)].coverage >= 1 - alpha - tol, form
        assert rows[("rct", form)].size < 10, form  # informative sets
    assert rows[("rct", "RSCP+ PTT")].size < rows[("base", "RSCP+ PTT")].size
