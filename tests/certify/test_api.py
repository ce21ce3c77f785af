"""Public API: shapes, dtypes, devices, margins, verify, certified radius, validation errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import certify
from certify.attacks import pgd_attack, pgd_margins


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(),
                         nn.Linear(24, 4)).eval()


def _data(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_bounds_dataclass() -> None:
    model = _mlp()
    x, _ = _data()
    b = certify.bounds(model, x, 0.01)
    assert isinstance(b, certify.Bounds)
    assert b.lower.shape == b.upper.shape == (6, 4)
    lo, hi = b
    assert lo is b.lower and hi is b.upper
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.lower = hi  # type: ignore[misc]
    assert (b.width >= 0).all()


@pytest.mark.parametrize("method", ["ibp", "crown", "crown-ibp"])
def test_margin_bounds_shape_and_zero_column(method: str) -> None:
    model = _mlp()
    x, y = _data()
    mb = certify.margin_bounds(model, x, y, 0.02, method=method, domain=(0, 1))
    assert mb.lower.shape == (6, 4)
    rows = torch.arange(6)
    assert (mb.lower[rows, y] == 0).all() and (mb.upper[rows, y] == 0).all()
    assert (mb.lower <= mb.upper).all()
    # folding the specification is at least as tight as subtracting output bounds
    ob = certify.bounds(model, x, 0.02, method=method, domain=(0, 1))
    naive = ob.lower.gather(1, y[:, None]) - ob.upper
    naive[rows, y] = 0
    assert (mb.lower >= naive - 1e-5).all()
    # verify == all margin lower bounds > 0 off the label
    v = certify.verify(model, x, y, 0.02, method=method, domain=(0, 1))
    expected = ((mb.lower > 0) | nn.functional.one_hot(y, 4).bool()).all(1)
    assert torch.equal(v, expected)


def test_margin_bounds_below_pgd_margins() -> None:
    model = _mlp(1)
    x, y = _data(8, 1)
    for norm, eps in ((math.inf, 0.05), (2, 0.2)):
        found = pgd_margins(model, x, y, eps, norm=norm, domain=(0, 1), steps=30)
        for method in ("ibp", "crown", "crown-ibp"):
            mb = certify.margin_bounds(model, x, y, eps, norm=norm, method=method, domain=(0, 1))
            assert (mb.lower <= found + 1e-5).all()


def test_verified_points_resist_pgd() -> None:
    model = _mlp(2)
    x, _ = _data(32, 2)
    y = model(x).argmax(1)
    v = certify.verify(model, x, y, 0.01, domain=(0, 1))
    _, success = pgd_attack(model, x, y, 0.01, domain=(0, 1), steps=40)
    assert not (v & success).any()


def test_dtype_device_and_any_batch_size() -> None:
    model = _mlp().double()
    for n in (0, 1, 7):
        x = torch.rand(n, 1, 4, 4, dtype=torch.float64)
        for method in ("ibp", "crown", "crown-ibp"):
            b = certify.bounds(model, x, 0.01, method=method)
            assert b.lower.dtype == torch.float64 and b.lower.device == x.device
            assert b.lower.shape == (n, 4)
            y = torch.zeros(n, dtype=torch.long)
            assert certify.margin_bounds(model, x, y, 0.01, method=method).lower.shape == (n, 4)
            assert certify.verify(model, x, y, 0.01, method=method).shape == (n,)


def test_batch_invariance_and_per_sample_eps() -> None:
    model = _mlp(3)
    x, _ = _data(5, 3)
    eps = torch.tensor([0.0, 0.01, 0.02, 0.05, 0.1])
    for method in ("ibp", "crown", "crown-ibp"):
        b = certify.bounds(model, x, eps, method=method, domain=(0, 1))
        for i in range(5):
            bi = certify.bounds(model, x[i : i + 1], float(eps[i]), method=method, domain=(0, 1))
            torch.testing.assert_close(b.lower[i : i + 1], bi.lower, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(b.upper[i : i + 1], bi.upper, atol=1e-5, rtol=1e-5)


def test_spec_argument() -> None:
    model = _mlp(4)
    x, _ = _data(3, 4)
    c = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 1.0]])
    b = certify.bounds(model, x, 0.02, spec=c)
    assert b.lower.shape == (3, 2)
    pts = x + 0.02 * (torch.rand(2000, 1, 4, 4) * 2 - 1).unsqueeze(1)
    vals = model(pts.reshape(-1, 1, 4, 4)).reshape(2000, 3, 4) @ c.t()
    assert (vals >= b.lower - 1e-5).all() and (vals <= b.upper + 1e-5).all()


def test_sound_mode_encloses_float64_bounds() -> None:
    model = _mlp(5)
    x, y = _data(4, 5)
    for method in ("ibp", "crown"):
        s = certify.bounds(model, x, 0.03, method=method, sound=True)
        assert s.lower.dtype == torch.float32
        b64 = certify.bounds(model.double(), x.double(), 0.03, method=method)
        model.float()
        assert (s.lower.double() <= b64.lower).all() and (s.upper.double() >= b64.upper).all()
        assert (s.lower.double() < b64.lower).all()  # strictly outward (one ulp)
        ms = certify.margin_bounds(model, x, y, 0.03, method=method, sound=True)
        assert ms.lower.dtype == torch.float32


def test_certified_radius() -> None:
    model = _mlp(6)
    x, _ = _data(10, 6)
    y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 4  # one misclassified input
    r = certify.certified_radius(model, x, y, max_eps=0.5, tol=1e-4, domain=(0, 1))
    assert r.shape == (10,) and r[0] == 0
    ok = certify.verify(model, x[1:], y[1:], r[1:], domain=(0, 1))
    assert ok.all()
    beyond = (r[1:] + 2e-4).clamp(max=0.5)
    not_ok = certify.verify(model, x[1:], y[1:], beyond, domain=(0, 1))
    assert not (not_ok & (r[1:] < 0.5 - 2e-4)).any()
    # vectorised over the batch == one input at a time
    r3 = certify.certified_radius(model, x[3:4], y[3:4], max_eps=0.5, tol=1e-4, domain=(0, 1))
    assert float(r3) == pytest.approx(float(r[3]), abs=1e-4)
    # IBP radii never exceed CROWN's on this network
    r_ibp = certify.certified_radius(model, x, y, method="ibp", max_eps=0.5, tol=1e-4, domain=(0, 1))
    assert (r_ibp <= r + 2e-4).all()


def test_verified_accuracy() -> None:
    model = _mlp(7)
    x, _ = _data(20, 7)
    y = model(x).argmax(1)
    acc = certify.verified_accuracy(model, x, y, 0.01, batch_size=7, progress=False, domain=(0, 1))
    expected = certify.verify(model, x, y, 0.01, domain=(0, 1)).float().mean().item()
    assert acc == pytest.approx(expected)
    assert certify.verified_accuracy(model, x, y, 0.0, progress=False) == 1.0


def test_fx_traced_models() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 4 * 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv(x))
            h = h + self.bn(self.conv2(h))
            h = nn.functional.relu(h) * 0.5 - 0.1
            return self.fc(h.view(h.size(0), -1))

    torch.manual_seed(0)
    model = Residual().eval()
    x = torch.rand(3, 2, 4, 4)
    for method in ("ibp", "crown", "crown-ibp"):
        b = certify.bounds(model, x, 0.05, method=method)
        pts = (x.unsqueeze(1) + 0.05 * torch.sign(torch.randn(3, 1000, 2, 4, 4))).reshape(-1, 2, 4, 4)
        out = model(pts).reshape(3, 1000, 3)
        assert (out >= b.lower.unsqueeze(1) - 1e-5).all() and (out <= b.upper.unsqueeze(1) + 1e-5).all()


# ------------------------------------------------------------------------------------------------
# validation errors
# ------------------------------------------------------------------------------------------------

def test_bad_inputs() -> None:
    model = _mlp()
    x, y = _data()
    with pytest.raises(ValueError, match="eps"):
        certify.bounds(model, x, -0.1)
    with pytest.raises(ValueError, match="eps"):
        certify.bounds(model, x, float("nan"))
    with pytest.raises(ValueError, match="domain"):
        certify.bounds(model, x + 2, 0.1, domain=(0, 1))
    with pytest.raises(ValueError, match="domain"):
        certify.bounds(model, x, 0.1, domain=(1, 0))
    with pytest.raises(ValueError, match="shape"):
        certify.bounds(model, torch.rand(2, 1, 5, 5), 0.1)
    with pytest.raises(ValueError, match="shape"):
        certify.bounds(model, torch.rand(16), 0.1)
    with pytest.raises(ValueError, match="class indices"):
        certify.margin_bounds(model, x, y + 4, 0.1)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        certify.verify(model, x, y[:3], 0.1)
    with pytest.raises(TypeError, match="integer"):
        certify.verify(model, x, y.float(), 0.1)
    with pytest.raises(ValueError, match="method"):
        certify.bounds(model, x, 0.1, method="deeppoly")
    with pytest.raises(ValueError, match="norm"):
        certify.bounds(model, x, 0.1, norm=1)
    with pytest.raises(TypeError, match="model"):
        certify.bounds(lambda z: z, x, 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        certify.bounds(model, x, torch.zeros(3))


def test_training_mode_is_an_error() -> None:
    model = _mlp().train()
    x, y = _data()
    with pytest.raises(ValueError, match="eval mode"):
        certify.bounds(model, x, 0.1)
    with pytest.raises(ValueError, match="eval mode"):
        certify.verify(model, x, y, 0.1)


def test_unsupported_layer_names_it_and_its_location() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Hardswish(), nn.Flatten(), nn.Linear(32, 3)).eval()
    x = torch.rand(2, 1, 4, 4)
    # the message names the layer and where it is, and does not offer auto_LiRPA as the way out
    with pytest.raises(certify.UnsupportedLayerError, match=r"Hardswish \(at '1'\).*layers\.md") as info:
        certify.bounds(model, x, 0.1)
    assert "pip install" not in str(info.value)

    class Mish(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return nn.functional.mish(z)

    with pytest.raises(certify.UnsupportedLayerError, match=r"mish.*layers\.md"):
        certify.bounds(nn.Sequential(nn.Linear(4, 4), Mish()).eval(), torch.rand(2, 4), 0.1)


def test_threat_argument_is_the_same_region_as_eps_norm_domain() -> None:
    from certkit.threat import LpBall

    model = _mlp()
    x, y = _data()
    for norm, eps, domain in ((math.inf, 0.05, (0.0, 1.0)), (2, 0.2, None)):
        ball = LpBall(norm, eps, domain)
        plain = {"norm": norm, "domain": domain}
        for fn, args in ((certify.bounds, (model, x)), (certify.margin_bounds, (model, x, y))):
            want = fn(*args, eps, **plain)  # type: ignore[operator]
            for got in (fn(*args, threat=ball), fn(*args, ball)):  # type: ignore[operator]
                assert torch.equal(got.lower, want.lower) and torch.equal(got.upper, want.upper)
        assert torch.equal(certify.verify(model, x, y, threat=ball), certify.verify(model, x, y, eps, **plain))
        assert certify.verified_accuracy(model, x, y, threat=ball, progress=False) == certify.verified_accuracy(
            model, x, y, eps, progress=False, **plain)
        assert torch.equal(certify.certified_radius(model, x, y, threat=ball),
                           certify.certified_radius(model, x, y, max_eps=eps, **plain))
    ball = LpBall("linf", 0.05, (0, 1))
    with pytest.raises(ValueError, match="either argument `threat` or `eps`"):
        certify.bounds(model, x, 0.05, threat=ball)
    with pytest.raises(ValueError, match="either argument `threat` or `norm`"):
        certify.verify(model, x, y, threat=ball, norm=2)
    with pytest.raises(ValueError, match="`threat` or an LpBall as `eps`"):
        certify.margin_bounds(model, x, y, ball, threat=ball)
    with pytest.raises(ValueError, match="neither"):
        certify.bounds(model, x)
    with pytest.raises(ValueError, match="neither"):
        certify.verified_accuracy(model, x, y)
    with pytest.raises(ValueError, match="either argument `threat` or `max_eps`"):
        certify.certified_radius(model, x, y, threat=ball, max_eps=0.1)
    with pytest.raises(TypeError, match="`threat`"):
        certify.bounds(model, x, threat=(math.inf, 0.05))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`norm`"):
        certify.bounds(model, x, threat=LpBall(1, 0.05))  # L1 balls are not bounded by propagation
