"""Sums and differences of two activations of different (broadcastable) per-sample shapes, e.g. the pairwise
differences ``x.unsqueeze(-2) - x.unsqueeze(-1)`` of a hand-written softmax: each operand is repeated along its
size-1 dimensions by an exact 0/1 linear map before the ``add`` node (before: CROWN crashed with a raw reshape
RuntimeError; issue 14, session 10)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import certify
from tests.certify.test_layers import assert_sound
from tests.certify.test_softmax import HandSoftmax, _nets


class PairwiseSoftmax(nn.Module):
    """Softmax over the last dimension as ``1 / sum_j exp(x_j - x_i)``, the differences by broadcasting."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.reciprocal(torch.exp(x.unsqueeze(-2) - x.unsqueeze(-1)).sum(-1))


def _pair() -> tuple[nn.Module, nn.Module]:
    soft, _ = _nets(saturated=False)["softmax"]
    return (nn.Sequential(soft[0], PairwiseSoftmax(), soft[2]).double().eval(),
            nn.Sequential(soft[0], HandSoftmax(8), soft[2]).double().eval())


@pytest.mark.parametrize("sound", [False, True])
def test_broadcast_difference_equals_the_explicit_difference_matrix(sound: bool) -> None:
    """CROWN through the broadcast differences equals CROWN through the same differences written as a constant
    (K^2, K) matrix (to 1e-12, float64; the model outputs agree to 1e-12)."""
    model, hand = _pair()
    x = torch.rand((3, 6), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hand(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model(x), nn.Sequential(model[0], nn.Softmax(-1), model[2])(x), rtol=1e-12,
                                   atol=1e-12)
    for eps in (0.01, 0.1):
        ours = certify.bounds(model, x, eps, method="crown", sound=sound)
        ref = certify.bounds(hand, x, eps, method="crown", sound=sound)
        torch.testing.assert_close(ours.lower, ref.lower, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.upper, ref.upper, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sound", [False, True])
@pytest.mark.parametrize("method", ["ibp", "crown", "crown-ibp"])
def test_broadcast_difference_is_sound(method: str, sound: bool) -> None:
    """10^4 sampled points plus PGD stay inside the bounds (float64, L-inf and L2)."""
    model, _ = _pair()
    x = torch.rand((2, 6), generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for norm, eps in ((math.inf, 0.1), (2.0, 0.3)):
        assert_sound(model, x, eps, norm=norm, method=method, samples=10_000, pgd_steps=10, sound=sound)


def test_sums_of_different_ranks_are_refused() -> None:
    """Per-sample shapes with different numbers of dimensions would broadcast one's batch dimension against the
    other's: refused with UnsupportedLayerError naming the shapes."""

    class Mixed(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return (x.unsqueeze(1) + x).flatten(1)

    with pytest.raises(certify.UnsupportedLayerError, match=r"per-sample shapes \(1, 3\) and \(3,\)"):
        certify.bounds(Mixed().eval(), torch.rand(1, 3), 0.1)
