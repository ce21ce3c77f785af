"""Every layer or operation the built-in bound propagation does not support is refused with
``UnsupportedLayerError`` naming the layer and its location (module path or fx node), with and without
``sound=True`` (the graph conversion refuses, so every method does): never an internal error, never a
silently wrong bound."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import certify

# (module, per-sample input shape, what the message must name)
_MODULES: list[tuple[Callable[[], nn.Module], tuple[int, ...], str]] = [
    (nn.Mish, (2, 4, 4), "Mish"),
    (nn.Hardswish, (2, 4, 4), "Hardswish"),
    (nn.Hardsigmoid, (2, 4, 4), "Hardsigmoid"),
    (nn.Hardtanh, (2, 4, 4), "Hardtanh"),
    (nn.ReLU6, (2, 4, 4), "ReLU6"),
    (nn.SELU, (2, 4, 4), "SELU"),
    (nn.CELU, (2, 4, 4), "CELU"),
    (nn.LogSigmoid, (2, 4, 4), "LogSigmoid"),
    (nn.Softsign, (2, 4, 4), "Softsign"),
    (nn.Tanhshrink, (2, 4, 4), "Tanhshrink"),
    (nn.Softmin, (8,), "Softmin"),
    (lambda: nn.GLU(dim=1), (2, 4, 4), "GLU"),
    (lambda: nn.GroupNorm(1, 2), (2, 4, 4), "GroupNorm"),
    (lambda: nn.InstanceNorm2d(2), (2, 4, 4), "InstanceNorm2d"),
    (lambda: nn.LocalResponseNorm(2), (2, 4, 4), "LocalResponseNorm"),
    (lambda: nn.BatchNorm3d(2), (2, 2, 2, 2), "BatchNorm3d"),
    (lambda: nn.Conv3d(2, 2, 1), (2, 2, 2, 2), "Conv3d"),
    (lambda: nn.ConvTranspose1d(2, 2, 2), (2, 4), "ConvTranspose1d"),
    (lambda: nn.PixelShuffle(2), (4, 2, 2), "PixelShuffle"),
    (lambda: nn.LPPool2d(2, 2), (2, 4, 4), "LPPool2d"),
    (lambda: nn.FractionalMaxPool2d(2, output_size=2), (2, 4, 4), "FractionalMaxPool2d"),
    (lambda: nn.AvgPool1d(2), (2, 4), "AvgPool1d"),
    (lambda: nn.MaxPool3d(2), (2, 2, 2, 2), "MaxPool3d"),
    (lambda: nn.Bilinear(4, 4, 2), (4,), "Bilinear"),
    (lambda: nn.LSTM(4, 3, batch_first=True), (2, 4), "LSTM"),
    (lambda: nn.GRU(4, 3, batch_first=True), (2, 4), "GRU"),
    (lambda: nn.RNN(4, 3, batch_first=True), (2, 4), "RNN"),
    (lambda: nn.Softmax2d(), (2, 4, 4), "Softmax2d"),
    (lambda: nn.ChannelShuffle(2), (2, 4, 4), "ChannelShuffle"),
    (lambda: nn.Fold((3, 3), 2), (8, 4), "Fold"),
    (lambda: nn.Unfold(2), (2, 4, 4), "Unfold"),
    (lambda: nn.Upsample(scale_factor=2, mode="bicubic"), (2, 4, 4), "bicubic"),
    (lambda: nn.Threshold(0.1, 0.0), (4,), "Threshold"),
]


class Fn(nn.Module):
    """A traced forward applying one torch function after a linear layer."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.fc(x))


_FUNCTIONS: list[tuple[str, Callable[[Tensor], Tensor]]] = [
    ("abs", torch.abs),
    ("sin", torch.sin),
    ("cos", torch.cos),
    ("sqrt", torch.sqrt),
    ("clamp", lambda t: torch.clamp(t, -1, 1)),
    ("max", lambda t: t.max(dim=1, keepdim=True).values),
    ("amax", lambda t: t.amax(dim=1, keepdim=True)),
    ("min", lambda t: torch.min(t, dim=1).values),
    ("sort", lambda t: torch.sort(t, dim=1).values),
    ("topk", lambda t: torch.topk(t, 2, dim=1).values),
    ("where", lambda t: torch.where(t > 0, t, 0.5 * t)),
    ("norm", lambda t: t / t.norm(dim=1, keepdim=True)),
    ("cumsum", lambda t: torch.cumsum(t, dim=1)),
    ("flip", lambda t: torch.flip(t, dims=[1])),
    ("roll", lambda t: torch.roll(t, 1, dims=1)),
    ("sign", torch.sign),
    ("floor", torch.floor),
    ("hardtanh", F.hardtanh),
    ("relu6", F.relu6),
    ("mish", F.mish),
    ("logsigmoid", F.logsigmoid),
    ("pow", lambda t: t ** 3),
    ("index_select", lambda t: torch.index_select(t, 1, torch.tensor([0, 2]))),
    ("std", lambda t: t.std(dim=1, keepdim=True)),
    ("var", lambda t: t.var(dim=1, keepdim=True)),
    ("logsumexp", lambda t: torch.logsumexp(t, dim=1, keepdim=True)),
    ("div_floor", lambda t: torch.div(t, 0.3, rounding_mode="floor")),  # not c * (1 / x): named, not a probe error
    ("div_trunc", lambda t: torch.div(t, 1.6, rounding_mode="trunc")),
]


@pytest.mark.parametrize(("make", "shape", "name"), _MODULES, ids=[m[2] for m in _MODULES])
def test_unsupported_modules_are_refused_with_name_and_location(make: Callable[[], nn.Module],
                                                               shape: tuple[int, ...], name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), make(), nn.Flatten()).eval()
    x = torch.rand((2, *shape))
    for method, sound in (("crown", False), ("crown", True)):  # (the conversion refuses, for every method)
        with pytest.raises(certify.UnsupportedLayerError) as err:
            certify.bounds(model, x.double() if sound else x, 0.01, method=method, sound=sound)
        msg = str(err.value)
        assert name in msg, msg
        assert "'1'" in msg or "at '1" in msg, msg  # the module path inside the Sequential


@pytest.mark.parametrize(("name", "fn"), _FUNCTIONS, ids=[f[0] for f in _FUNCTIONS])
def test_unsupported_functions_are_refused_with_name_and_location(name: str, fn: Callable[[Tensor], Tensor]) -> None:
    torch.manual_seed(0)
    model = Fn(fn).eval()
    x = torch.rand(2, 6)
    for method, sound in (("crown", False), ("crown", True)):
        with pytest.raises(certify.UnsupportedLayerError) as err:
            certify.bounds(model, x.double() if sound else x, 0.01, method=method, sound=sound)
        msg = str(err.value)
        assert "(at '" in msg, msg  # the fx node
        if name.startswith("div_"):
            assert "rounding_mode" in msg, msg


def test_supported_layers_are_not_in_the_refused_list() -> None:
    """A guard against stale entries: each refused module really computes something (its forward runs)."""
    for make, shape, name in _MODULES:
        if name == "Bilinear":  # two inputs
            continue
        m = nn.Sequential(make(), nn.Flatten()).eval()
        x = torch.rand((2, *shape))
        with torch.no_grad():
            out = m(x) if name not in ("LSTM", "GRU", "RNN") else m[0](x)[0]
        assert isinstance(out, Tensor)
