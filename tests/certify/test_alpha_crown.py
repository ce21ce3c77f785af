"""alpha-CROWN: sound (sampling + PGD), never looser than CROWN, more inputs verified on the digits CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import certify
from certify.attacks import pgd_margins
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(6 * 4 * 4, 20), nn.Tanh(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 5),
    ).eval()


def test_sound_and_never_looser_than_crown() -> None:
    model = _net(3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 1, 8, 8, generator=g)
    eps = 0.2
    u = torch.rand((4, 2000, 1, 8, 8), generator=g) * 2 - 1
    pts = (x.unsqueeze(1) + eps * torch.sign(u) * (torch.rand(u.shape, generator=g) < 0.7) + eps * u * 0.3)
    pts = torch.minimum(torch.maximum(pts, x.unsqueeze(1) - eps), x.unsqueeze(1) + eps).clamp(0, 1)
    with torch.no_grad():
        out = model(pts.reshape(-1, 1, 8, 8)).reshape(4, 2000, -1)
    crown = certify.bounds(model, x, eps, domain=(0, 1))
    crown = certify.Bounds(crown.lower.detach(), crown.upper.detach())
    alpha = certify.bounds(model, x, eps, domain=(0, 1), method="alpha-crown")
    assert (out >= alpha.lower.unsqueeze(1) - 1e-5).all() and (out <= alpha.upper.unsqueeze(1) + 1e-5).all()
    assert (alpha.lower >= crown.lower - 1e-6).all() and (alpha.upper <= crown.upper + 1e-6).all()
    assert float((alpha.lower - crown.lower).max()) > 1e-3  # it does optimise
    # every iterate is sound and the best is kept: more steps never loosen the bound
    one = certify.bounds(model, x, eps, domain=(0, 1), method="alpha-crown", iterations=1)
    zero = certify.bounds(model, x, eps, domain=(0, 1), method="alpha-crown", iterations=0)
    torch.testing.assert_close(zero.lower, crown.lower.detach())
    assert (alpha.lower >= one.lower - 1e-6).all() and (one.lower >= crown.lower - 1e-6).all()


def test_digits_cnn_sound_and_verifies_at_least_crown() -> None:
    model = digits_cnn()
    d = load_digits_split("test")
    x, y = d.images[:48], d.labels[:48]
    gained = 0
    for eps in (0.02, 0.05, 0.1):
        v_crown = certify.verify(model, x, y, eps, domain=(0, 1))
        v_alpha = certify.verify(model, x, y, eps, domain=(0, 1), method="alpha-crown")
        assert bool((v_alpha | ~v_crown).all())
        gained += int(v_alpha.sum() - v_crown.sum())
    assert gained >= 1
    xb, yb = x[:8], y[:8]
    mb = certify.margin_bounds(model, xb, yb, 0.05, domain=(0, 1), method="alpha-crown", iterations=10)
    found = pgd_margins(model, xb, yb, 0.05, domain=(0, 1), steps=20)
    assert (mb.lower <= found + 1e-5).all() and (mb.upper >= found - 1e-5).all()
    acc = certify.verified_accuracy(model, x, y, 0.05, domain=(0, 1), method="alpha-crown", progress=False)
    assert acc >= float(certify.verify(model, x, y, 0.05, domain=(0, 1)).float().mean())
    r = certify.certified_radius(model, x[:4], y[:4], domain=(0, 1), method="alpha-crown", iterations=5, tol=0.01)
    r_crown = certify.certified_radius(model, x[:4], y[:4], domain=(0, 1), tol=0.01)
    assert (r >= r_crown - 0.011).all()


def test_arguments() -> None:
    model = _net(0)
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="iterations"):
        certify.bounds(model, x, 0.1, iterations=5)
    with pytest.raises(ValueError, match="lr"):
        certify.bounds(model, x, 0.1, method="alpha-crown", lr=-1.0)
    with pytest.raises(ValueError, match="sound"):
        certify.bounds(model, x, 0.1, method="alpha-crown", sound=True)
    with pytest.raises((ValueError, TypeError), match="iterations"):
        certify.verify(model, x, torch.zeros(2, dtype=torch.long), 0.1, method="alpha-crown", iterations=-1)


def test_intermediate_slopes_sound_and_never_looser_than_final_only() -> None:
    """``alpha_intermediate=True`` (the slopes of every intermediate bound optimised too, as auto_LiRPA's
    alpha-CROWN): sound by sampling and PGD, never looser than final-only alpha-CROWN nor than CROWN, and
    tighter somewhere; the same option through verify, certified_radius and verified_accuracy."""
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(10, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(),
                        nn.Linear(32, 4)).eval()
    gained = 0.0
    for model, shape, eps in ((mlp, (10,), 0.1), (_net(3), (1, 8, 8), 0.1)):
        g = torch.Generator().manual_seed(5)
        x = torch.rand(4, *shape, generator=g)
        with torch.no_grad():
            y = model(x).argmax(1)
        k = int(model(x).shape[1])
        kw = {"domain": (0, 1), "iterations": 10}
        crown = certify.margin_bounds(model, x, y, eps, domain=(0, 1)).lower.detach()
        final = certify.margin_bounds(model, x, y, eps, method="alpha-crown", **kw).lower
        full = certify.margin_bounds(model, x, y, eps, method="alpha-crown", alpha_intermediate=True, **kw).lower
        assert (full >= final - 1e-6).all() and (full >= crown - 1e-6).all()
        gained += float((full - final).max())
        found = pgd_margins(model, x, y, eps, domain=(0, 1), steps=30, restarts=3,
                            generator=torch.Generator().manual_seed(0))
        assert (full <= found + 1e-5).all()
        pts = (x.unsqueeze(1) + eps * (2 * torch.rand((4, 3000, *shape), generator=g) - 1)).clamp(0, 1)
        with torch.no_grad():
            out = model(pts.reshape(-1, *shape)).reshape(4, 3000, k)
        margins = out.gather(2, y.view(4, 1, 1).expand(4, 3000, 1)) - out
        assert (margins >= full.unsqueeze(1) - 1e-5).all()
        if model is mlp:
            b = certify.bounds(model, x, eps, method="alpha-crown", alpha_intermediate=True, **kw)
            b_final = certify.bounds(model, x, eps, method="alpha-crown", **kw)
            assert (b.lower >= b_final.lower - 1e-6).all() and (b.upper <= b_final.upper + 1e-6).all()
        v = certify.verify(model, x, y, eps, method="alpha-crown", alpha_intermediate=True, **kw)
        v_final = certify.verify(model, x, y, eps, method="alpha-crown", alpha_intermediate=False, **kw)
        assert bool((v | ~v_final).all())
        assert bool((v == ((full > 0) | torch.nn.functional.one_hot(y, k).bool()).all(1)).all())
    assert gained > 1e-3
    model = _net(3)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    y = model(x).argmax(1)
    r = certify.certified_radius(model, x, y, domain=(0, 1), method="alpha-crown", alpha_intermediate=True,
                                 iterations=3, tol=0.05, max_eps=0.4)
    r_final = certify.certified_radius(model, x, y, domain=(0, 1), method="alpha-crown", iterations=3, tol=0.05,
                                       max_eps=0.4, alpha_intermediate=False)
    assert (r >= r_final - 0.051).all()
    acc = certify.verified_accuracy(model, x, y, 0.05, domain=(0, 1), method="alpha-crown", alpha_intermediate=True,
                                    iterations=3, progress=False)
    assert acc >= float(certify.verify(model, x, y, 0.05, domain=(0, 1), method="alpha-crown", iterations=3,
                                       alpha_intermediate=False).float().mean())


def test_staged_verification_matches_each_input_alone() -> None:
    """verify's alpha-CROWN works in stages over the inputs still open (CROWN, final slopes, intermediate
    slopes by default): the verdict of each input is the one it gets alone (inputs are independent), the
    default verifies every input the final-slopes-only optimisation verifies, and a verified input's margin
    is positive at sampled points."""
    model = _net(3)
    g = torch.Generator().manual_seed(7)
    x = torch.rand(12, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    for eps in (0.03, 0.08):
        kw = {"domain": (0, 1), "method": "alpha-crown", "iterations": 8}
        v = certify.verify(model, x, y, eps, **kw)
        alone = torch.cat([certify.verify(model, x[i : i + 1], y[i : i + 1], eps, **kw) for i in range(12)])
        assert bool((v == alone).all())
        v_final = certify.verify(model, x, y, eps, alpha_intermediate=False, **kw)
        v_crown = certify.verify(model, x, y, eps, domain=(0, 1))
        assert bool((v | ~v_final).all()) and bool((v_final | ~v_crown).all())
        pts = (x.unsqueeze(1) + eps * (2 * torch.rand((12, 500, 1, 8, 8), generator=g) - 1)).clamp(0, 1)
        with torch.no_grad():
            pred = model(pts.reshape(-1, 1, 8, 8)).argmax(1).reshape(12, 500)
        assert bool((pred[v] == y[v].unsqueeze(1)).all())
    with pytest.raises(ValueError, match="alpha_intermediate"):
        certify.bounds(model, x, 0.1, alpha_intermediate=True)
    with pytest.raises((ValueError, TypeError), match="alpha_intermediate"):
        certify.verify(model, x, y, 0.1, method="alpha-crown", alpha_intermediate="yes")


def _window_of_rows(t: torch.Tensor, geom, out_hw: tuple[int, int], lidx: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Per-row maps ``t`` (N, S, C, H, W) -> each row's window (N, S, C, kh, kw) at its position ``lidx``."""
    from certify.crown import _window_rows

    n, s = t.shape[:2]
    return _window_rows(t.reshape(n * s, *t.shape[2:]), geom, out_hw, lidx.reshape(n * s, 1)).reshape(
        n, s, *t.shape[2:3], *geom[0])


def _chain() -> nn.Module:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Conv2d(6, 8, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 6 * 6, 12), nn.ReLU(), nn.Linear(12, 4))
    bn = net[1]
    assert isinstance(bn, nn.BatchNorm2d)
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 2)
    return net.double().eval()


def _residual() -> nn.Module:
    from tests.certify.test_crown_patches import _Res

    torch.manual_seed(3)
    net = _Res(nn.ReLU)
    net(torch.zeros(1, 3, 12, 12))
    return net.double().eval()


@pytest.mark.parametrize(("name", "norm"), [("chain", float("inf")), ("residual", float("inf")), ("chain", 2.0)])
def test_intermediate_slopes_in_window_form_equal_the_dense_path(name: str, norm: float,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The intermediate bounds of conv-shaped nodes use window-form coefficients and slopes (one window of
    each earlier ReLU per row): for the same slopes they give the dense backward pass's relaxations and the
    same gradients (float64, to 1e-10), and the whole optimisation gives the same bounds."""
    import certify.alpha_crown as ac
    from certify._graph import cached_graph
    from certify.crown import backward
    from certify.ibp import InputRegion

    net = _chain() if name == "chain" else _residual()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((3, 3, 12, 12), generator=gen, dtype=torch.float64)
    eps = 0.04 if norm == float("inf") else 0.4
    g = cached_graph(net, x, torch.float64)
    region = InputRegion(x, torch.full((3,), eps, dtype=torch.float64), norm, (0.0, 1.0))
    k = g.nodes[g.output].numel
    spec = torch.randn((3, 5, k), generator=gen, dtype=torch.float64)
    st = ac._crown_state(g, region, spec, False, None)
    patched = ac._Intermediate(st.gd, st.ivs, st.relax, region, st.splits, g)
    dense = ac._Intermediate(st.gd, st.ivs, st.relax, region, st.splits, None)
    assert not dense.plans
    # the window form runs on every conv-shaped node (chain: not on the fully connected layer's input; residual:
    # through both residual additions, a ReLU's output reached both directly and through convolutions)
    assert len(patched.plans) == len(patched.nodes) - (1 if name == "chain" else 0) >= 2
    hw = {pre: g.nodes[pre].shape[1:] for pre in patched.plans}
    rows = {pre: idx for _, pre, idx, *_ in patched.nodes}
    for key, al in dense.alpha.items():
        with torch.no_grad():
            al.copy_(torch.rand(al.shape, generator=gen, dtype=al.dtype))
            pre, j = key
            if pre in patched.plans:
                lidx = rows[pre] % (hw[pre][0] * hw[pre][1])
                patched.alpha[key].copy_(_window_of_rows(al, patched.plans[pre][j][1], hw[pre], lidx))
            else:
                patched.alpha[key].copy_(al)
    bounds = []
    for inter in (patched, dense):
        rel = inter.relaxations()
        lo, _ = backward(st.gd, g.output, st.a, st.b0, region, rel, need_lower=True, need_upper=False,
                         start_node_done=st.start_input is not None, start_input=st.start_input)
        assert lo is not None
        grads = torch.autograd.grad(lo.sum(), inter.params, allow_unused=True)
        bounds.append((rel, lo, dict(zip(inter.alpha, grads))))
    (rel_p, lo_p, gr_p), (rel_d, lo_d, gr_d) = bounds
    for kk, r in rel_d.items():
        for attr in ("d_l", "d_u", "b_u"):
            torch.testing.assert_close(getattr(rel_p[kk], attr), getattr(r, attr), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lo_p, lo_d, rtol=1e-10, atol=1e-10)
    moved = 0.0
    for key, gd_ in gr_d.items():
        gp_ = gr_p[key]
        gd_ = torch.zeros_like(dense.alpha[key]) if gd_ is None else gd_
        gp_ = torch.zeros_like(patched.alpha[key]) if gp_ is None else gp_
        pre, j = key
        if pre in patched.plans:
            lidx = rows[pre] % (hw[pre][0] * hw[pre][1])
            win = _window_of_rows(gd_, patched.plans[pre][j][1], hw[pre], lidx)
            torch.testing.assert_close(gp_, win, rtol=1e-10, atol=1e-12)
            # nothing outside the windows: the dense slopes there never move
            torch.testing.assert_close(gd_.abs().sum(), win.abs().sum(), rtol=1e-10, atol=1e-12)
        else:
            torch.testing.assert_close(gp_, gd_, rtol=1e-10, atol=1e-12)
        moved += float(gp_.abs().sum())
    assert moved > 0
    # the whole optimisation (verification stages and the bounds API) gives the same bounds either way
    y = net(x).argmax(1)
    kw = {"domain": (0.0, 1.0), "norm": norm, "method": "alpha-crown", "alpha_intermediate": True, "iterations": 6}
    ours = certify.margin_bounds(net, x, y, eps, **kw).lower
    monkeypatch.setattr(ac, "INTERMEDIATE_PATCHES", False)
    ref = certify.margin_bounds(net, x, y, eps, **kw).lower
    # (to 1e-6, not 1e-10: Adam divides each gradient by its own magnitude + 1e-8, so a gradient that is zero
    # in exact arithmetic and 1e-17 in one summation order moves a slope by ~1e-9 in one path and not the other)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    final = certify.margin_bounds(net, x, y, eps, **{**kw, "alpha_intermediate": False}).lower
    assert float((ours - final).max()) > 1e-6  # the intermediate slopes do tighten the bound here
