"""Regression tests for issue 13: smoothing's trainers refuse NaN inputs and out-of-range labels up front."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from smoothing import train_consistency, train_noise_augmented


@pytest.mark.parametrize("train", [train_noise_augmented, train_consistency])
def test_trainers_refuse_bad_data_before_training(train: object) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3))
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.rand(6, 2)
    with pytest.raises(ValueError, match="`labels`"):
        train(model, x, torch.tensor([0, 1, 2, 3, 0, 1]), sigma=0.1, epochs=1)  # type: ignore[operator]
    with pytest.raises(ValueError, match="`inputs`"):
        train(model, torch.full((6, 2), math.nan), torch.zeros(6, dtype=torch.long), sigma=0.1, epochs=1)  # type: ignore[operator]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
