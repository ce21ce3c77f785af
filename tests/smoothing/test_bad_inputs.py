"""Regression tests for issue 13: the exported smoothing helpers check their arguments."""

from __future__ import annotations

import math

import pytest
import torch

from certkit.errors import BudgetExceededError
from smoothing import (
    Smooth,
    binomial_p_value,
    certificate_from_counts,
    certify_dataset,
    clopper_pearson_lower,
    prediction_from_counts,
    randomized_clopper_pearson_lower,
    smoothed_radius,
    smoothed_scores,
)


def _smooth() -> Smooth:
    torch.manual_seed(0)
    return Smooth(torch.nn.Linear(2, 3).eval(), num_classes=3, sigma=0.25)


def test_smoothed_radius_refuses_p_below_half() -> None:
    with pytest.raises(ValueError, match="`p_lower`"):
        smoothed_radius(0.3, 0.25)
    with pytest.raises(ValueError, match="`p_lower`"):
        smoothed_radius(math.nan, 0.25)
    with pytest.raises(ValueError, match="`sigma`"):
        smoothed_radius(0.9, -1.0)
    assert smoothed_radius(0.5, 0.25) == 0.0 and smoothed_radius(1.0, 0.25) == math.inf


def test_certificate_from_counts_refuses_alpha_5() -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        certificate_from_counts([0, 95, 5], [0, 990, 10], alpha=5, sigma=0.25)
    with pytest.raises(ValueError, match="`counts`"):
        certificate_from_counts([0, 95, 5], [0, -990, 10], alpha=0.001, sigma=0.25)
    with pytest.raises(TypeError, match="`counts`"):
        certificate_from_counts([0, 95, 5], [0.0, 990.5, 10.0], alpha=0.001, sigma=0.25)
    with pytest.raises(ValueError, match="same length"):
        certificate_from_counts([0, 95], [0, 990, 10], alpha=0.001, sigma=0.25)
    with pytest.raises(ValueError, match="`alpha`"):
        prediction_from_counts([900, 100], alpha=0.0)


def test_clopper_pearson_checks() -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        clopper_pearson_lower(5, 10, 1.5)
    with pytest.raises(ValueError, match="`successes`"):
        clopper_pearson_lower(11, 10, 0.05)
    with pytest.raises(TypeError, match="`trials`"):
        clopper_pearson_lower(5, 10.5, 0.05)
    with pytest.raises(ValueError, match="`u`"):
        randomized_clopper_pearson_lower(5, 10, 0.05, math.nan)
    with pytest.raises(ValueError, match="`top`"):
        binomial_p_value(-1, 3)


def test_smooth_certify_budget_refuses_before_sampling() -> None:
    with pytest.raises(BudgetExceededError, match=r"1,000,000,000,100.*budget of 1,000,000,000"):
        _smooth().certify(torch.zeros(2), n0=100, n=10**12, alpha=0.001, batch_size=100)
    with pytest.raises(BudgetExceededError, match="budget of 50"):
        _smooth().predict(torch.zeros(2), n=100, alpha=0.01, batch_size=10, budget=50)


def test_smooth_certify_names_x_on_nan() -> None:
    with pytest.raises(ValueError, match="`x`"):
        _smooth().certify(torch.tensor([math.nan, 0.0]), n0=10, n=10, alpha=0.01, batch_size=10)


def test_certify_dataset_labels_out_of_range() -> None:
    with pytest.raises(ValueError, match="`labels`"):
        certify_dataset(_smooth(), torch.zeros(2, 2), torch.tensor([0, 7]), n0=10, n=10, progress=False)
    with pytest.raises(TypeError, match="`labels`"):
        certify_dataset(_smooth(), torch.zeros(2, 2), torch.tensor([0.0, 1.0]), n0=10, n=10, progress=False)


def test_smoothed_scores_refuses_nan_inputs() -> None:
    model = torch.nn.Linear(2, 3).eval()
    with pytest.raises(ValueError, match="`x`"):
        smoothed_scores(model, torch.tensor([[math.nan, 0.0]]), lambda p: p, sigma=0.1, n_mc=4)
    with pytest.raises(TypeError, match=r"`generator`.*numpy"):
        import numpy as np

        smoothed_scores(model, torch.zeros(1, 2), lambda p: p, sigma=0.1, n_mc=4, generator=np.random.default_rng(0))
