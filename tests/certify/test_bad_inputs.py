"""Regression tests for issue 13: certify's entry points refuse bad input before doing anything."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import certify
from certify.attacks import pgd_attack
from certkit.warnings import LowPrecisionWarning


def _mlp(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(dtype).eval()


def test_bounds_sound_must_be_bool() -> None:
    with pytest.raises(TypeError, match="`sound`"):
        certify.bounds(_mlp(), torch.zeros(2, 4), 0.1, sound="no")  # type: ignore[arg-type]


def test_bounds_in_bfloat16_warn() -> None:
    with pytest.warns(LowPrecisionWarning, match="bfloat16"):
        certify.bounds(_mlp(torch.bfloat16), torch.zeros(2, 4, dtype=torch.bfloat16), 0.1, method="ibp")


class _Sort(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x, dim=1).values


def test_certified_train_checks_support_before_changing_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), _Sort(), nn.Linear(8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(16, 4), torch.randint(0, 3, (16,))
    with pytest.raises(certify.UnsupportedLayerError, match="sort"):
        certify.certified_train(model, x, y, epochs=2, warmup_epochs=1, ramp_epochs=1, eps=0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_trainer_and_pgd_labels_out_of_range_are_named() -> None:
    model = _mlp().train()
    x = torch.rand(8, 4)
    with pytest.raises(ValueError, match=r"`labels`.*\[0, 2\]"):
        certify.certified_train(model, x, torch.full((8,), 5), epochs=2, warmup_epochs=1, ramp_epochs=1)
    assert model.training  # the probe for the number of classes restores the mode
    with pytest.raises(TypeError, match=r"`labels`.*not truncated"):
        certify.certified_train(model, x, torch.zeros(8), epochs=2, warmup_epochs=1, ramp_epochs=1)
    with pytest.raises(ValueError, match="`y`"):
        pgd_attack(_mlp(), x, torch.full((8,), 3), 0.1)
    with pytest.raises(ValueError, match="`inputs`"):
        certify.certified_train(model, torch.full((8, 4), math.nan), torch.zeros(8, dtype=torch.long), epochs=2, warmup_epochs=1, ramp_epochs=1)
