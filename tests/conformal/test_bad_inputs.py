"""Regression tests for issue 13: conformal's exported helpers and calibrators check their arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conformal import RSCP, SafetyThreshold, conformal_rank, pac_rank, prediction_mask
from conformal.scores import aps


def test_safety_threshold_flag_refuses_nan() -> None:
    st = SafetyThreshold(epsilon=0.1, delta=0.1).calibrate(np.linspace(0.05, 1, 200))
    with pytest.raises(ValueError, match="`scores`"):
        st.flag(np.array([0.9, math.nan]))
    with pytest.raises(ValueError, match="`scores`"):
        st.flag(torch.tensor([math.nan]))
    assert st.flag([0.0, 1.0]).tolist() == [False, True]


def test_exported_helpers_check_arguments() -> None:
    for bad in [0, -3]:
        with pytest.raises(ValueError, match="`n`"):
            conformal_rank(bad, 0.1)
        with pytest.raises(ValueError, match="`n`"):
            pac_rank(bad, 0.1, 0.1)
    with pytest.raises(TypeError, match="`n`"):
        conformal_rank(10.5, 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`alpha`"):
        conformal_rank(10, 1.5)
    with pytest.raises(ValueError, match="`threshold`"):
        prediction_mask(np.zeros((2, 3)), math.nan)
    with pytest.raises(TypeError, match="`scores`"):
        prediction_mask([[0.1, 0.2]], 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`threshold`"):
        prediction_mask(np.zeros((2, 3)), np.zeros(4))


def test_rscp_refuses_negative_scores() -> None:
    with pytest.raises(ValueError, match="`scores`"):
        RSCP(alpha=0.1, sigma=0.25, eps=0.0).calibrate(torch.tensor([-0.5, 0.2, 0.3]))


def test_aps_randomized_without_generator_leaves_global_rng() -> None:
    probs = torch.softmax(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), 1)
    state = torch.get_rng_state()
    aps(probs, randomized=True)
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(TypeError, match=r"`generator`.*numpy"):
        aps(probs, randomized=True, generator=np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`randomized`"):
        aps(probs, randomized="yes")  # type: ignore[arg-type]
