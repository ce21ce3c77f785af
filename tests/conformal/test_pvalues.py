"""Conformal p-values: exact ranks, equality of {p > alpha} with the threshold sets, validity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conformal import SplitConformal
from conformal.pvalues import conformal_pvalues, pvalue_mask


def _data(n: int, k: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(3 * torch.randn(n, k, generator=g, dtype=dtype), -1)
    return p, torch.multinomial(p, 1, generator=g).squeeze(1)


def test_pvalue_definition() -> None:
    cal = np.array([0.1, 0.2, 0.2, 0.5])
    p = conformal_pvalues(cal, np.array([0.0, 0.2, 0.3, 0.6]))
    np.testing.assert_allclose(p, [5 / 5, 4 / 5, 2 / 5, 1 / 5])
    pt = conformal_pvalues(torch.from_numpy(cal), torch.tensor([[0.0, 0.2], [0.3, 0.6]]))
    np.testing.assert_allclose(pt.numpy().ravel(), [5 / 5, 4 / 5, 2 / 5, 1 / 5])
    ps = conformal_pvalues(cal, np.array([0.2]), smoothed=True, generator=torch.Generator().manual_seed(0))
    assert 1 / 5 <= ps[0] <= 4 / 5  # (#{>} + U (1 + #{=})) / (n + 1) = (1 + 3U) / 5


@pytest.mark.parametrize(("n", "alpha"), [(999, 0.059), (99, 0.1), (50, 0.2), (9, 0.1), (500, 0.013)])
@pytest.mark.parametrize("score", ["thr", "aps", "raps"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_pvalue_sets_equal_threshold_sets(n: int, alpha: float, score: str, kind: str) -> None:
    cal, y = _data(n, 10, 0, torch.float32)
    test, _ = _data(400, 10, 1, torch.float32)
    if score == "raps":  # coarse probabilities: many tied scores
        cal, test = (torch.round(cal * 8) + 1e-3), torch.round(test * 8) + 1e-3
        cal, test = cal / cal.sum(1, keepdim=True), test / test.sum(1, keepdim=True)
    if kind == "numpy":
        cal, y, test = cal.numpy(), y.numpy(), test.numpy()  # type: ignore[assignment]
    cp = SplitConformal(score=score, alpha=alpha).calibrate(cal, y)
    # randomised APS/RAPS (the default): the same generator gives predict and predict_p the same u
    sets = cp.predict(test, generator=torch.Generator().manual_seed(7)).mask
    p = cp.predict_p(test, generator=torch.Generator().manual_seed(7))
    via_p = pvalue_mask(p, alpha, cp.n_calibration_)
    assert type(via_p) is type(sets)
    np.testing.assert_array_equal(np.asarray(via_p), np.asarray(sets))


def test_smoothed_pvalues_uniform_for_true_label() -> None:
    """The smoothed p-value of the true label is U(0, 1): check P[p <= a] = a at a few levels."""
    g = torch.Generator().manual_seed(5)
    ps = []
    for s in range(300):
        cal, y = _data(60, 5, 2 * s + 10)
        test, yt = _data(20, 5, 2 * s + 11)
        cp = SplitConformal(score="thr", alpha=0.1).calibrate(cal, y)
        ps.append(cp.predict_p(test, smoothed=True, generator=g)[torch.arange(20), yt])
    p = torch.cat(ps).numpy()
    for a in (0.1, 0.3, 0.5, 0.9):
        assert abs((p <= a).mean() - a) < 0.03, a


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="both numpy arrays or both torch tensors"):
        conformal_pvalues(np.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="`calibration_scores`"):
        conformal_pvalues(np.array([]), np.ones(3))
    with pytest.raises(ValueError, match="`alpha`"):
        pvalue_mask(np.ones(3), 1.5, 10)


# crepes 0.9.1 (pip install --target /tmp/peers crepes==0.9.1): ConformalClassifier().fit(CAL);
# predict_p(TEST, smoothing=False) and predict_set(TEST, confidence=0.8, smoothing=False). Fixed numbers.
CAL = np.array([0.09, 0.24, 0.8, 0.58, 0.09, 0.43, 0.48, 0.16, 0.73, 0.11, 0.39, 0.52, 0.43, 0.59, 0.74])
TEST = np.array([[0.96, 0.09, 0.65, 0.7], [0.29, 0.0, 0.97, 0.3]])
CREPES_P = [[0.0625, 1.0, 0.25, 0.25], [0.6875, 1.0, 0.0625, 0.6875]]
CREPES_SET_08 = [[0, 1, 1, 1], [1, 1, 0, 1]]


def test_pvalues_and_sets_equal_crepes() -> None:
    p = conformal_pvalues(CAL, TEST)
    np.testing.assert_allclose(p, CREPES_P, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(pvalue_mask(p, 0.2, len(CAL)), np.array(CREPES_SET_08, dtype=bool))


def test_pvalue_mask_refuses_values_that_are_not_pvalues() -> None:
    # audit-inputs: NaN compared False (the label silently left out) and 2.0 was accepted
    for bad in (np.full((2, 3), 2.0), np.full((2, 3), -0.5), torch.full((2, 3), 1.5)):
        with pytest.raises(ValueError, match=r"`pvalues`.*\[0, 1\]"):
            pvalue_mask(bad, 0.1, 39)
    with pytest.raises(ValueError, match="`pvalues`"):
        pvalue_mask(np.full((2, 3), np.nan), 0.1, 39)
    with pytest.raises(ValueError, match="`test_scores`"):  # a NaN test score got p = 1/(n+1)
        conformal_pvalues(np.arange(10.0), np.array([[0.5, np.nan]]))


def test_smoothed_pvalues_without_a_generator_leave_the_global_rng_alone() -> None:
    # audit-inputs: smoothed=True with generator=None drew U from torch's global RNG; predict_p took any K
    state = torch.get_rng_state()
    a = conformal_pvalues(np.arange(10.0), np.array([[0.5, 3.0]]), smoothed=True)
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(a, conformal_pvalues(np.arange(10.0), np.array([[0.5, 3.0]]), smoothed=True))
    probs = torch.softmax(torch.randn(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 1)
    sc = SplitConformal(score="thr").calibrate(probs, torch.arange(40) % 4)
    with pytest.raises(ValueError, match="`probs` to have 4 columns"):
        sc.predict_p(probs[:, :3] / probs[:, :3].sum(1, keepdim=True))
