"""Networks written the way users write them (custom ``forward`` methods, functional calls, in-place ops), not the
project's zoo: sound bounds with every method, clear refusals, no mutation of the model or of torch's RNG, and
every API under ``torch.inference_mode()`` (an audit of session 16)."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import certify

METHODS = ("ibp", "crown", "crown-ibp", "alpha-crown")


class NormalizedConvNet(nn.Module):
    """``(x - mean) / std`` with (1, C, 1, 1) buffers, convolutions with stride/dilation/groups/no bias, a
    ``view(x.size(0), -1)`` flatten and a bias-free Linear."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
        self.c1 = nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=False)
        self.c2 = nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=3)
        self.fc = nn.Linear(6 * 4 * 4, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = torch.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(x.view(x.size(0), -1))


class BasicBlock(nn.Module):
    """torchvision's ResNet block: ``ReLU(inplace=True)``, ``out += identity``, an optional downsample."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(4, 4, 1)
        self.layer2 = BasicBlock(4, 8, 2)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.drop(torch.flatten(x, 1)))


class PoolNet(nn.Module):
    """MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), BatchNorm2d, Dropout and ``F.dropout(training=self.training)``."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.c(x))), 2)
        x = F.dropout(F.avg_pool2d(x, 2), 0.5, training=self.training)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Branches(nn.Module):
    """``torch.cat`` of a tanh and a sigmoid branch, LayerNorm, BatchNorm1d, a residual ``x - f(x)``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 6)
        self.b = nn.Linear(10, 4)
        self.ln = nn.LayerNorm(10)
        self.bn = nn.BatchNorm1d(10)
        self.out = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([torch.tanh(self.a(x)), torch.sigmoid(self.b(x))], dim=1)
        h = self.bn(self.ln(h))
        return self.out(h - F.relu(h) * 0.5)


class Activations(nn.Module):
    """LeakyReLU, GELU (both forms), ELU, Softplus, SiLU and a PReLU whose learned slopes left [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(10, 10) for _ in range(6)])
        self.prelu = nn.PReLU(10)
        with torch.no_grad():
            self.prelu.weight.copy_(torch.linspace(-1.5, 2.5, 10))
        self.out = nn.Linear(10, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.layers[0](x), 0.1)
        x = F.gelu(self.layers[1](x), approximate="tanh")
        x = F.elu(self.layers[2](x), 2.0)
        x = F.softplus(self.layers[3](x), beta=2.0)
        x = self.prelu(self.layers[4](x))
        return self.out(F.silu(self.layers[5](x)))


def _randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial running statistics and affine parameters (a fresh BatchNorm is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model.eval()


def _user_model(name: str) -> tuple[nn.Module, tuple[int, ...], tuple[float, float] | None]:
    torch.manual_seed(0)
    models: dict[str, tuple[nn.Module, tuple[int, ...], tuple[float, float] | None]] = {
        "normalized_conv": (NormalizedConvNet(), (3, 8, 8), (0.0, 1.0)),
        "tiny_resnet": (TinyResNet(), (3, 8, 8), (0.0, 1.0)),
        "pools": (PoolNet(), (3, 8, 8), (0.0, 1.0)),
        "branches": (Branches(), (10,), None),
        "activations": (Activations(), (10,), None),
    }
    model, shape, domain = models[name]
    return _randomize_batchnorm(model, 1), shape, domain


def _inputs(shape: tuple[int, ...], domain: tuple[float, float] | None, n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    if domain is None:
        return torch.randn(n, *shape, generator=g)
    return torch.rand(n, *shape, generator=g) * 0.9 + 0.05


def _region_points(x: torch.Tensor, eps: float, domain: tuple[float, float] | None, n: int) -> torch.Tensor:
    """``n`` points of the clipped L-inf box around ``x`` (1, ...): half at random corners, half uniform."""
    lo, hi = x - eps, x + eps
    if domain is not None:
        lo, hi = lo.clamp(min=domain[0]), hi.clamp(max=domain[1])
    g = torch.Generator().manual_seed(11)
    u = torch.rand(n, *x.shape[1:], generator=g)
    u[: n // 2] = (u[: n // 2] < 0.5).to(u.dtype)
    return lo + (hi - lo) * u


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool], list[int]]:
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()])


@pytest.mark.parametrize("name", ["normalized_conv", "tiny_resnet", "pools", "branches", "activations"])
def test_user_models_get_sound_bounds_and_are_left_unchanged(name: str) -> None:
    model, shape, domain = _user_model(name)
    x = _inputs(shape, domain)
    eps = 0.05
    before, rng = _snapshot(model), torch.get_rng_state()
    with torch.no_grad():
        points = torch.cat([_region_points(x[i:i + 1], eps, domain, 1000) for i in range(len(x))])
        outs = model(points).view(len(x), 1000, -1)
    for method in METHODS:
        with torch.no_grad():
            b = certify.bounds(model, x, eps, method=method, domain=domain)
        tol = 1e-5 * (1 + float(b.upper.abs().max()))
        assert bool((b.lower[:, None] <= outs + tol).all()), (name, method)
        assert bool((outs <= b.upper[:, None] + tol).all()), (name, method)
        assert bool((b.lower <= b.upper).all())
    after = _snapshot(model)
    assert before[1] == after[1] and before[2] == after[2]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert torch.equal(rng, torch.get_rng_state())


def test_user_model_margins_verify_and_radius_agree() -> None:
    model, shape, domain = _user_model("tiny_resnet")
    x = _inputs(shape, domain, 3)
    with torch.no_grad():
        y = model(x).argmax(1)
    r = certify.certified_radius(model, x, y, domain=domain, max_eps=0.5, tol=1e-3)
    assert bool((r > 0).all())
    assert bool(certify.verify(model, x, y, r, domain=domain).all())
    m = certify.margin_bounds(model, x, y, r, domain=domain)
    assert bool(((m.lower > 0) | F.one_hot(y, 3).bool()).all())


@pytest.mark.parametrize("build, message", [
    (lambda: nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU(),
                           nn.Linear(8, 3)), "track_running_stats=False"),
    (lambda: nn.Sequential(nn.Linear(10, 8), nn.ReLU6(), nn.Linear(8, 3)), "ReLU6"),
], ids=["batchnorm_without_running_stats", "relu6"])
def test_unsupported_user_layers_are_refused_by_name(build: Callable[[], nn.Module], message: str) -> None:
    model = build().eval()
    with pytest.raises(certify.UnsupportedLayerError, match=message):
        certify.bounds(model, torch.randn(2, 10), 0.1)


class _FunctionalDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(F.dropout(x, 0.5))  # training=True by default: random even in eval mode


def test_functional_dropout_in_training_mode_is_refused_by_name() -> None:
    with pytest.raises(certify.UnsupportedLayerError, match="dropout with training=True"):
        certify.bounds(_FunctionalDropout().eval(), torch.randn(2, 10), 0.1)


def test_a_model_left_in_train_mode_names_the_modules() -> None:
    model, shape, domain = _user_model("tiny_resnet")
    bn = model.get_submodule("layer1.bn1").train()
    with pytest.raises(ValueError, match=r"training mode: layer1\.bn1"):
        certify.bounds(model, _inputs(shape, domain), 0.01, domain=domain)
    assert bn.training and not model.training


# Under torch.inference_mode() (a common way to run evaluation code) the autograd-based routines failed with torch's
# "element 0 of tensors does not require grad and does not have a grad_fn" from deep inside (audit of session 16).
def _inference_calls(model: nn.Module, domain: tuple[float, float]) -> dict[str, Callable[[torch.Tensor, torch.Tensor], Any]]:
    return {
        "bounds_alpha": lambda x, y: certify.bounds(model, x, 0.03, method="alpha-crown", domain=domain).lower,
        "margin_bounds_alpha": lambda x, y: certify.margin_bounds(model, x, y, 0.03, method="alpha-crown",
                                                                  domain=domain).lower,
        "verify_alpha": lambda x, y: certify.verify(model, x, y, 0.03, method="alpha-crown", domain=domain),
        "pgd_attack": lambda x, y: certify.attacks.pgd_attack(model, x, y, 0.03, domain=domain)[0],
        "pgd_margins": lambda x, y: certify.attacks.pgd_margins(model, x, y, 0.03, domain=domain)[0],
        "tightness": lambda x, y: torch.tensor(certify.tightness(model, x, 0.03, domain=domain)),
        "verify_complete": lambda x, y: torch.tensor(
            certify.verify_complete(model, x[:1], int(y[0]), 0.05, domain=domain, timeout=5).verdict == "verified"),
        "verify_nap": lambda x, y: torch.tensor(certify.verify_nap(
            model, next(p for p in certify.mine_naps(model, x, y, num_classes=3).patterns if p is not None), x[:1],
            lower=x[:1] - 0.05, upper=x[:1] + 0.05, timeout=5).verdict == "verified"),
    }


@pytest.mark.parametrize("call", ["bounds_alpha", "margin_bounds_alpha", "verify_alpha", "pgd_attack", "pgd_margins",
                                  "tightness", "verify_complete", "verify_nap"])
def test_autograd_based_routines_work_under_inference_mode(call: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = _inputs((3, 8, 8), (0.0, 1.0), 3)
    with torch.no_grad():
        y = model(x).argmax(1)
    f = _inference_calls(model, (0.0, 1.0))[call]
    expected = f(x, y)
    with torch.inference_mode():
        got = f(x, y)
        got_inference_x = f(x.clone(), y.clone())  # inputs that are inference tensors themselves
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_inference_x, expected, rtol=1e-5, atol=1e-6)


def test_onnx_export_of_a_user_resnet_gives_the_torch_bounds() -> None:
    pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime (tests of the 'onnx' extra) is not installed")
    model, shape, domain = _user_model("tiny_resnet")
    x = _inputs(shape, domain)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x[:1],), path, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        loaded = certify.load_onnx(path)
    for method in ("ibp", "crown"):
        a = certify.bounds(model, x, 0.02, method=method, domain=domain)
        b = certify.bounds(loaded, x, 0.02, method=method, domain=domain)
        torch.testing.assert_close(b.lower, a.lower, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.upper, a.upper, rtol=1e-5, atol=1e-5)


def _robustness_vnnlib(path: str, x0: torch.Tensor, eps: float, label: int, k: int) -> certify.VnnlibProperty:
    flat = x0.flatten().tolist()
    lines = [f"(declare-const X_{i} Real)" for i in range(len(flat))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(k)]
    for i, v in enumerate(flat):
        lines += [f"(assert (>= X_{i} {max(0.0, v - eps):.8f}))", f"(assert (<= X_{i} {min(1.0, v + eps):.8f}))"]
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(k) if j != label) + "))")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return certify.load_vnnlib(path, num_inputs=len(flat), num_outputs=k)


def test_verify_property_on_a_cnn_without_its_input_shape_names_input_shape() -> None:
    # before: torch's "mat1 and mat2 shapes cannot be multiplied" from inside the model (audit of session 16)
    model, shape, domain = _user_model("normalized_conv")
    x0 = _inputs(shape, domain, 1)
    with torch.no_grad():
        label = int(model(x0).argmax())
    with tempfile.TemporaryDirectory() as d:
        prop = _robustness_vnnlib(os.path.join(d, "p.vnnlib"), x0, 0.001, label, 5)
    with pytest.raises(ValueError, match=r"could not evaluate the model on an input of shape \(1, 192\).*input_shape"):
        certify.verify_property(model, prop, timeout=10)
    res = certify.verify_property(model, prop, input_shape=shape, timeout=10)
    assert res.verdict == "verified"
    assert certify.verify_complete(model, x0, label, 0.001, domain=domain, timeout=10).verdict == "verified"


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("padding_mode, padding, kernel", [
    ("reflect", 1, 3), ("replicate", (2, 1), 3), ("circular", 1, 3), ("zeros", "same", (4, 2)),
    ("reflect", "same", (2, 3)),
])
def test_conv2d_padding_modes_and_asymmetric_same_equal_explicit_padding(padding_mode: str, padding: Any,
                                                                         kernel: Any) -> None:
    # Conv2d(padding_mode=...) and an even kernel with padding='same' were refused, though Conv1d's and the padding
    # layers' are supported (audit of session 16): bounded now as torch computes them, F.pad and then the conv
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, kernel, padding=padding, padding_mode=padding_mode)  # type: ignore[arg-type]
    x = _inputs((3, 6, 6), (0.0, 1.0))
    with torch.no_grad():
        model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(conv(x[:1]).numel(), 3)).eval()
    kh, kw = conv.kernel_size
    if padding == "same":
        pad = ((kw - 1) // 2, kw - 1 - (kw - 1) // 2, (kh - 1) // 2, kh - 1 - (kh - 1) // 2)
    else:
        ph, pw = nn.modules.utils._pair(padding)
        pad = (pw, pw, ph, ph)
    mode = "constant" if padding_mode == "zeros" else padding_mode
    plain = nn.Conv2d(3, 4, kernel)
    plain.load_state_dict(conv.state_dict())

    class Explicit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.rest = plain, model[1:]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rest(self.conv(F.pad(x, pad, mode=mode)))

    explicit = Explicit().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), explicit(x))
        points = _region_points(x[:1], 0.05, (0.0, 1.0), 1000)
        outs = model(points)
        for method in ("ibp", "crown"):
            a = certify.bounds(model, x, 0.05, method=method, domain=(0.0, 1.0))
            b = certify.bounds(explicit, x, 0.05, method=method, domain=(0.0, 1.0))
            torch.testing.assert_close(a.lower, b.lower, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.upper, b.upper, rtol=1e-5, atol=1e-6)
            assert bool((a.lower[:1] <= outs + 1e-5).all() and (outs <= a.upper[:1] + 1e-5).all())
        s = certify.bounds(model, x, 0.05, domain=(0.0, 1.0), sound=True)
        assert bool((s.lower[:1] <= outs).all() and (outs <= s.upper[:1]).all())


class _PReLUNet(nn.Module):
    def __init__(self, conv: bool, slopes: int) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1) if conv else nn.Linear(10, 4)
        self.prelu = nn.PReLU(slopes)
        with torch.no_grad():
            self.prelu.weight.copy_(torch.linspace(-1.5, 2.5, slopes))
        self.fc = nn.Linear(4 * 8 * 8 if conv else 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.prelu(self.body(x)).flatten(1))


@pytest.mark.parametrize("conv, slopes", [(True, 1), (True, 4), (False, 1), (False, 4)])
def test_onnx_prelu_gives_the_torch_bounds(conv: bool, slopes: int) -> None:
    # ONNX PRelu (onnx2torch's OnnxPReLU) was refused with torch.fx's "symbolically traced variables cannot be used
    # as inputs to control flow", though nn.PReLU is supported (audit of session 16)
    pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime (tests of the 'onnx' extra) is not installed")
    torch.manual_seed(0)
    model = _PReLUNet(conv, slopes).eval()
    x = _inputs((3, 8, 8) if conv else (10,), None)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prelu.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        loaded = certify.load_onnx(path)
    with torch.no_grad():
        for method in ("ibp", "crown", "alpha-crown"):
            a = certify.bounds(model, x, 0.05, method=method)
            b = certify.bounds(loaded, x, 0.05, method=method)
            torch.testing.assert_close(b.lower, a.lower, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(b.upper, a.upper, rtol=1e-5, atol=1e-6)


class _WithCall(nn.Module):
    def __init__(self, call: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.call = call
        self.a = nn.Linear(10, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.relu(self.call(self, self.a(x))))


@pytest.mark.parametrize("call", [
    lambda m, h: h.float(), lambda m, h: h.double().float(), lambda m, h: h.to(m.a.weight.dtype),
    lambda m, h: h.to(m.a.weight.device), lambda m, h: h.to(torch.float32), lambda m, h: h.clone(),
    lambda m, h: h.type_as(m.a.weight),
], ids=["float", "double_float", "to_param_dtype", "to_param_device", "to_float32", "clone", "type_as"])
def test_value_preserving_casts_and_copies_in_forward_are_identities(call: Any) -> None:
    # x.float(), x.to(dtype / device), x.clone() and x.type_as(w), common in users' forward methods, were refused
    # (audit of session 16); they leave the values unchanged, so the bounds equal those without the call
    torch.manual_seed(0)
    model = _WithCall(call).eval()
    plain = _WithCall(lambda m, h: h).eval()
    plain.load_state_dict(model.state_dict())
    x = _inputs((10,), None)
    with torch.no_grad():
        for method in ("ibp", "crown"):
            a = certify.bounds(model, x, 0.1, method=method)
            b = certify.bounds(plain, x, 0.1, method=method)
            torch.testing.assert_close(a.lower, b.lower, rtol=0, atol=0)
            torch.testing.assert_close(a.upper, b.upper, rtol=0, atol=0)


@pytest.mark.parametrize("call, name", [
    (lambda m, h: h.to(torch.float16).float(), "'to' to torch.float16"),
    (lambda m, h: h.half().float(), "'half'"),
], ids=["to_float16", "half"])
def test_lossy_casts_in_forward_are_refused_by_name(call: Any, name: str) -> None:
    model = _WithCall(call).eval()
    with pytest.raises(certify.UnsupportedLayerError, match=name):
        certify.bounds(model, _inputs((10,), None), 0.1)


def _one_logit() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).eval()


@pytest.mark.parametrize("call", [
    lambda m, x, y: certify.verify(m, x, y, 100.0),
    lambda m, x, y: certify.margin_bounds(m, x, y, 100.0),
    lambda m, x, y: certify.certified_radius(m, x, y, max_eps=5.0),
    lambda m, x, y: certify.verified_accuracy(m, x, y, 100.0, progress=False),
    lambda m, x, y: certify.verify_complete(m, x[:1], 0, 100.0, timeout=5),
], ids=["verify", "margin_bounds", "certified_radius", "verified_accuracy", "verify_complete"])
def test_a_one_logit_binary_classifier_is_refused_not_verified_vacuously(call: Any) -> None:
    # before: verify() was True at eps = 100 for every input, certified_radius returned max_eps, verified_accuracy 1.0
    # (no other class to compare with), and verify_complete raised an IndexError (audit of session 16)
    x = _inputs((4,), None, 3)
    with pytest.raises(ValueError, match="at least 2 class scores"):
        call(_one_logit(), x, torch.zeros(3, dtype=torch.long))


def test_the_suggested_two_score_head_certifies_a_one_logit_classifier() -> None:
    logit = _one_logit()
    head = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    model = nn.Sequential(logit, head).eval()
    x = _inputs((4,), None, 3)
    with torch.no_grad():
        y = (logit(x)[:, 0] > 0).long()
        b = certify.bounds(logit, x, 0.05)
    sign_certain = torch.where(y == 1, b.lower[:, 0] > 0, b.upper[:, 0] < 0)
    assert bool(sign_certain.any())
    assert torch.equal(certify.verify(model, x, y, 0.05), sign_certain)


class _SoftmaxWithoutDim(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.a(x))  # the deprecated implicit dim


def test_functional_softmax_without_dim_is_refused_by_name() -> None:
    # the message named the function as '<function softmax at 0x...>' (audit of session 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(certify.UnsupportedLayerError, match=r"'softmax' without dim"):
            certify.bounds(_SoftmaxWithoutDim().eval(), torch.randn(2, 10), 0.1)
