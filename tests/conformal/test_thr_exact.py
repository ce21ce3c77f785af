"""THR membership is exactly fl(1 - p) <= t in every float dtype (issue 20).

The fast path rewrites ``1 - p <= t`` as ``p >= p*(t)``; these tests compare it with the direct
evaluation on *every* float of the dtype in bands around the threshold (all of float16).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conformal import ClassConditional, PACPredictionSet, SplitConformal
from conformal.functional import at_least, prediction_mask
from conformal.scores import _from_keys, _order_keys, thr_probability_cut

DTYPES = [np.float16, np.float32, np.float64]
THRESHOLDS = [0.999, 0.9871576, 0.5, 0.1, 1e-3, 0.0, 1.0, 1 - 2**-30, 2**-40, 0.75 + 1e-12, -0.25, 1.5]


def _band(center: float, dtype: type, radius: int) -> np.ndarray:
    """Every float of ``dtype`` within ``radius`` ulps-in-order of ``center``."""
    key = _order_keys(np.array([center], dtype=dtype))[0]
    return _from_keys(np.arange(key - radius, key + radius + 1, dtype=np.int64), np.dtype(dtype))


def _all_floats(dtype: type) -> np.ndarray:
    # every finite float16 and +-inf (no NaN)
    bits = np.arange(2**16, dtype=np.uint16).view(np.float16)
    return bits[~np.isnan(bits)].astype(dtype)


def _direct(p: np.ndarray, t: float) -> np.ndarray:
    """fl(1 - p) <= t, with t compared as the real number it is (float64 comparison is exact here)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (p.dtype.type(1) - p).astype(np.float64) <= np.float64(t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", THRESHOLDS)
def test_cut_equals_direct_on_every_float_in_band(dtype: type, t: float) -> None:
    cut = thr_probability_cut(t, dtype)
    if dtype is np.float16:
        p = _all_floats(dtype)
    else:  # every float near p*, near fl(1 - t), and near 0 (where many p share one rounded 1 - p)
        radius = 2**15
        p = np.concatenate([_band(float(cut), dtype, radius), _band(1 - t, dtype, radius), _band(0.0, dtype, radius)])
    np.testing.assert_array_equal(at_least(p, cut), _direct(p, t))
    # the same through the torch fast path and the thr score + prediction_mask path
    pt = torch.from_numpy(p)
    cut_t = thr_probability_cut(torch.tensor(t, dtype=torch.float64), pt.dtype)
    np.testing.assert_array_equal(at_least(pt, cut_t).numpy(), _direct(p, t))
    with np.errstate(over="ignore", invalid="ignore"):
        np.testing.assert_array_equal(prediction_mask(1 - pt, t).numpy(), _direct(p, t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cut_vector_threshold_and_specials(dtype: type) -> None:
    ts = np.array([0.999, 0.5, np.inf, -np.inf, np.nan, 0.25])
    cut = thr_probability_cut(ts, dtype)
    assert cut.dtype == dtype and cut.shape == (6,)
    assert cut[2] == -np.inf and cut[3] == np.inf and np.isnan(cut[4])
    for i, t in enumerate(ts):
        assert cut[i] == thr_probability_cut(t, dtype) or (np.isnan(cut[i]) and np.isnan(t))


def test_cut_rejects_non_float_dtype() -> None:
    with pytest.raises(TypeError, match="`dtype`"):
        thr_probability_cut(0.5, torch.bfloat16)
    with pytest.raises(TypeError, match="`dtype`"):
        thr_probability_cut(0.5, np.int32)


def _two_class(p0: float, n: int, dtype: type) -> np.ndarray:
    return np.array([[p0, 1 - p0]] * n, dtype=dtype)


REPRODUCERS = [  # (dtype, calibration p_y giving threshold t, test p that must be in the set)
    (np.float64, 0.001, 0.0009999999999999955),
    (np.float32, 1 - 0.9871576, 0.012842396),
]


@pytest.mark.parametrize(("dtype", "p_cal", "p_test"), REPRODUCERS)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("method", ["split", "mondrian", "pac"])
def test_issue_reproducers(dtype: type, p_cal: float, p_test: float, kind: str, method: str) -> None:
    cal = _two_class(p_cal, 200, dtype)
    test = np.array([[p_test, 1 - dtype(p_test)]], dtype=dtype)
    labels = np.zeros(200, dtype=np.int64)
    if method == "mondrian":
        cal[100:] = cal[100:, ::-1]
        labels[100:] = 1
    t_direct = dtype(1) - cal[0, 0]  # every calibration score is this value
    assert dtype(1) - dtype(p_test) <= t_direct  # the label belongs to the set by direct evaluation
    cp = {"split": SplitConformal(score="thr", alpha=0.1),
          "mondrian": ClassConditional(score="thr", alpha=0.1),
          "pac": PACPredictionSet(score="thr", epsilon=0.1, delta=0.1)}[method]
    if kind == "torch":
        cal_, test_, labels_ = torch.from_numpy(cal), torch.from_numpy(test), torch.from_numpy(labels)
    else:
        cal_, test_, labels_ = cal, test, labels
    sets = cp.calibrate(cal_, labels_).predict(test_)
    mask = sets.mask.numpy() if isinstance(sets.mask, torch.Tensor) else sets.mask
    assert bool(mask[0, 0])
    direct = prediction_mask(cp.scores(test_), cp.threshold_)
    direct = direct.numpy() if isinstance(direct, torch.Tensor) else direct
    np.testing.assert_array_equal(mask, direct)


def test_threshold_of_other_precision_is_compared_exactly() -> None:
    # a float64 threshold between two float32 scores: rounding it to nearest float32 would include s
    s = np.float32(0.1)  # 0.10000000149...
    t = 0.1  # < s as reals
    for scores in (np.array([[s]]), torch.tensor([[s]])):
        m = prediction_mask(scores, t)
        assert not bool(m[0, 0])
        assert bool(prediction_mask(scores, float(s))[0, 0])
    assert not bool(at_least(torch.tensor([np.float32(0.1)]), 0.10000001)[0])
    assert bool(at_least(np.array([np.float32(0.1)]), 0.1)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_split_thr_sets_equal_direct_on_random_data(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    cal = torch.softmax(6 * torch.randn(3000, 50, generator=g, dtype=dtype), -1)
    test = torch.softmax(6 * torch.randn(3000, 50, generator=g, dtype=dtype), -1)
    y = torch.randint(0, 50, (3000,), generator=g)
    for cp in (SplitConformal(score="thr", alpha=0.05), ClassConditional(score="thr", alpha=0.2),
               PACPredictionSet(score="thr", epsilon=0.05, delta=0.1)):
        cp.calibrate(cal, y)
        fast = cp.predict(test).mask
        direct = prediction_mask(cp.scores(test), cp.threshold_)
        assert torch.equal(fast, direct)


def test_bfloat16_falls_back_to_direct_evaluation() -> None:
    cal, test = torch.softmax(torch.randn(200, 5, generator=torch.Generator().manual_seed(0)), -1), None
    y = torch.zeros(200, dtype=torch.long)
    test = torch.softmax(torch.randn(50, 5, generator=torch.Generator().manual_seed(1)), -1).to(torch.bfloat16)
    cp = SplitConformal(score="thr", alpha=0.1, validate=False).calibrate(cal.to(torch.bfloat16), y)
    mask = cp.predict(test).mask
    assert torch.equal(mask, prediction_mask(1 - test, cp.threshold_))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_thr_label_scores_by_numpy_equal_torch_gather(dtype: torch.dtype) -> None:
    """THR label scores of CPU tensors and arrays come from numpy (one thread) and equal ``1 - p[i, y_i]`` by torch
    bit for bit; non-contiguous input, labels past K and labels -1 keep torch's gather (and its error)."""
    from conformal.scores import thr

    g = torch.Generator().manual_seed(3)
    p = torch.softmax(5 * torch.randn(500, 13, generator=g, dtype=dtype), -1)
    y = torch.randint(0, 13, (500,), generator=g)
    ref = 1 - p.gather(1, y[:, None]).squeeze(1)
    got = thr(p, y)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and torch.equal(got, ref)
    got_np = thr(p.numpy(), y.numpy())
    assert isinstance(got_np, np.ndarray) and np.array_equal(got_np, ref.numpy())
    pt = p.T.contiguous().T  # the same values, column-major
    assert torch.equal(thr(pt, y), ref)
    with pytest.raises((IndexError, RuntimeError)):
        thr(p, torch.full((500,), 13), validate=False)
