"""Regression tests for issue 13 (continued): conformal's model layer, attacks, RCT and code sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from conformal import pgd_attack, predict_proba, python_tree, train_rct
from conformal.code import bottom_up_dp


def test_predict_proba_refuses_nan() -> None:
    model = nn.Linear(2, 3).eval()
    with pytest.raises(ValueError, match="`inputs`"):
        predict_proba(model, torch.tensor([[math.nan, 0.0]]))
    with pytest.raises(ValueError, match="`temperature`"):
        predict_proba(model, torch.zeros(1, 2), temperature=math.nan)


def test_pgd_and_rct_labels_out_of_range() -> None:
    model = nn.Sequential(nn.Linear(2, 3)).eval()
    with pytest.raises(ValueError, match="`labels`"):
        pgd_attack(model, torch.rand(4, 2), torch.tensor([0, 1, 2, 9]), 0.1)
    with pytest.raises(ValueError, match="`labels`"):
        train_rct(model, torch.rand(4, 2), torch.tensor([0, 1, 2, 9]))
    with pytest.raises(TypeError, match="`labels`"):
        train_rct(model, torch.rand(4, 2), torch.tensor([0.0, 1.0, 2.0, 1.0]))


def test_huge_hole_budget_is_clamped_not_allocated() -> None:
    tree = python_tree("def f(x):\n    return x + 1\n")
    c = np.ones(tree.size)
    taus = np.array([1.0, 3.0])
    assert np.array_equal(bottom_up_dp(tree, c, taus, 10**9), bottom_up_dp(tree, c, taus, tree.size))


def test_too_few_calibration_scores_warn_with_their_own_class() -> None:
    from certkit.warnings import SmallCalibrationSetWarning
    from conformal import conformal_quantile, pac_quantile

    with pytest.warns(SmallCalibrationSetWarning):
        assert conformal_quantile(np.arange(5.0), 0.1) == math.inf
    with pytest.warns(SmallCalibrationSetWarning):
        assert pac_quantile(np.arange(5.0), 0.1, 0.05) == math.inf
