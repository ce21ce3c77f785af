"""The one validation layer (``certkit._validation``) and the warning classes (``certkit.warnings``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from certkit import _validation as v
from certkit.errors import BudgetExceededError
from certkit.warnings import (
    CertkitWarning,
    LowPrecisionWarning,
    SmallCalibrationSetWarning,
    TrivialSetWarning,
)


def test_warning_classes_are_distinct_user_warnings() -> None:
    classes = [LowPrecisionWarning, SmallCalibrationSetWarning, TrivialSetWarning]
    assert len(set(classes)) == 3
    for c in classes:
        assert issubclass(c, CertkitWarning) and issubclass(c, UserWarning)


@pytest.mark.parametrize("bad", [np.random.default_rng(0), np.random.RandomState(0)])
def test_numpy_generator_is_named(bad: object) -> None:
    with pytest.raises(TypeError, match=r"`generator`.*numpy generators are not accepted"):
        v.check_generator(bad)
    with pytest.raises(TypeError, match=r"`generator`.*not a seed"):
        v.check_generator(0)
    g = torch.Generator()
    assert v.check_generator(g) is g and v.check_generator(None) is None


@pytest.mark.parametrize("x, kind, err", [
    (torch.tensor([True, False]), "float", TypeError),
    (torch.tensor([1 + 2j]), "float", TypeError),
    (np.array(["a"]), "float", TypeError),
    (torch.tensor([1, 2]), "float", TypeError),
    (torch.tensor([0.5, math.nan]), "float", ValueError),
    (np.array([math.inf]), "float", ValueError),
    (torch.tensor([1.5]), "int", TypeError),
    ([1.0, 2.0], "float", TypeError),
])
def test_check_array_refuses(x: object, kind: str, err: type) -> None:
    with pytest.raises(err, match="`x`"):
        v.check_array(x, "x", kind=kind)


def test_check_array_type_and_ndim() -> None:
    v.check_array(torch.zeros(2, 3), "x", ndim=2, tensor=True)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        v.check_array(np.zeros(2), "x", tensor=True)
    with pytest.raises(TypeError, match="numpy array"):
        v.check_array(torch.zeros(2), "x", tensor=False)
    with pytest.raises(ValueError, match="2 dimensions"):
        v.check_array(torch.zeros(2), "x", ndim=2)


def test_float_labels_are_refused_not_truncated() -> None:
    with pytest.raises(TypeError, match="not truncated"):
        v.check_labels(torch.tensor([0.0, 1.0]), 2, 3)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        v.check_labels(torch.tensor([0, 3]), 2, 3)
    with pytest.raises(ValueError, match=">= 0"):
        v.check_labels(np.array([-1, 0]), None, None)
    v.check_labels(np.array([0, 2]), None, 3)


def test_fp16_probabilities_accepted_and_logits_named() -> None:
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    v.check_probs(torch.softmax(logits, 1).half(), "probs")  # fp16 rounding: rows off by ~K eps / 2
    with pytest.raises(ValueError, match="not logits"):
        v.check_probs(logits, "probs")
    bad = torch.softmax(logits, 1).double()
    bad[0, 0] += 0.01
    with pytest.raises(ValueError, match="sum to 1") as e:
        v.check_probs(bad, "probs")
    assert "logits" not in str(e.value)
    with pytest.raises(TypeError, match="`probs`"):
        v.check_probs(torch.ones(2, 2, dtype=torch.long), "probs")
    assert v.probs_atol(torch.float16, 10) > v.probs_atol(torch.float64, 10) == 1e-4


def test_scalars() -> None:
    with pytest.raises(TypeError, match="`sound`"):
        v.check_bool("no", "sound")
    assert v.check_bool(np.bool_(True), "sound") is True
    for bad in [math.nan, math.inf]:
        with pytest.raises(ValueError, match="`t`"):
            v.check_real(bad, "t")
    with pytest.raises(ValueError, match="`u`"):
        v.check_unit_interval(1.5, "u")
    with pytest.raises(ValueError, match="`u`"):
        v.check_unit_interval(math.nan, "u")
    with pytest.raises(ValueError, match="`alpha`"):
        v.check_probability(5, "alpha")


@pytest.mark.parametrize("bad, err, match", [
    (b"hi", TypeError, "decode"),
    ("", ValueError, "visible"),
    ("  \n\t", ValueError, "visible"),
    ("\u200b\u200c\u2060\ufeff", ValueError, "visible"),
    ("ok\x00", ValueError, "control"),
    ("ok\ud800", ValueError, "surrogate"),
    (3, TypeError, "str"),
])
def test_check_text(bad: object, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        v.check_text(bad, "prompt")


def test_check_text_accepts_ordinary_text() -> None:
    assert v.check_text("héllo\tworld\n日本", "prompt")
    assert not v.has_visible("\u200b ") and v.has_visible("\u200ba")


def test_check_token_ids() -> None:
    assert v.check_token_ids([1, np.int64(2)], "ids") == (1, 2)
    assert v.check_token_ids(torch.tensor([0, 3]), "ids", vocab_size=4) == (0, 3)
    for bad, err in [(b"\x01\x02", TypeError), ([-1], ValueError), ([1.0], TypeError), ([True], TypeError),
                     ([5], ValueError), ("ab", TypeError)]:
        with pytest.raises(err, match="`ids`"):
            v.check_token_ids(bad, "ids", vocab_size=5)


def test_check_budget_names_count_and_budget() -> None:
    v.check_budget(10, 10, "thing")
    v.check_budget(10**30, None, "thing")
    with pytest.raises(BudgetExceededError, match=r"thing needs at least 11, which exceeds the budget of 10"):
        v.check_budget(11, 10, "thing", at_least=True)


def test_check_model_input() -> None:
    model = torch.nn.Linear(2, 2)
    v.check_model_input(model, torch.zeros(1, 2))
    with pytest.raises(TypeError, match=r"`x`.*float32"):
        v.check_model_input(model, torch.zeros(1, 2, dtype=torch.float64))


def test_warnings() -> None:
    with pytest.warns(LowPrecisionWarning, match="`x`"):
        v.warn_low_precision(torch.bfloat16, "x")
    with pytest.warns(SmallCalibrationSetWarning, match="n=8"):
        v.warn_small_calibration(8, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v.warn_low_precision(torch.float32, "x")
        v.warn_small_calibration(9, 0.1)  # n = 1/alpha - 1: the rank is exactly n, still finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probs_row_sum_check_has_the_float64_verdict(dtype: type) -> None:
    """check_probs sums rows with a low-precision BLAS product and re-sums the rows it cannot decide: rows off by
    just under / just over the tolerance (within the BLAS rounding of it), overflowing rows, NaN and inf give the
    float64 check's verdict."""
    k, tol = 50, 1e-4
    base = np.full((4, k), 1.0 / k)
    for off, ok in ((tol * (1 - 1e-9), True), (tol * (1 + 1e-9), False), (tol / 2, True), (3 * tol, False)):
        p = base.copy()
        p[:, 0] += off  # float64 rows off by `off`
        p = p.astype(dtype)
        exact_ok = bool(np.abs(p.sum(1, dtype=np.float64) - 1).max() <= tol)
        if dtype == np.float64:
            assert exact_ok == ok
        if exact_ok:
            v.check_probs(p, "probs", atol=tol)
        else:
            with pytest.raises(ValueError, match="sum to 1"):
                v.check_probs(p, "probs", atol=tol)
    huge = np.full((2, 4), np.finfo(dtype).max / 2, dtype=dtype)  # the BLAS sum overflows; entries finite
    overflow64 = not np.isfinite(huge.sum(1, dtype=np.float64)).all()  # float64: as before, "NaN or inf"
    with pytest.raises(ValueError, match="NaN or inf" if overflow64 else r"probabilities in \[0, 1\]"):
        v.check_probs(huge, "probs")
    for bad in (np.nan, np.inf):
        p = np.full((3, 4), 0.25, dtype=dtype)
        p[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            v.check_probs(p, "probs")
    neg = np.full((3, 4), 0.25, dtype=dtype)
    neg[0, 0], neg[0, 1] = -0.5, 1.0  # row sums to 1: the minimum decides
    with pytest.raises(ValueError, match=r"\[-0.5, 1\]"):
        v.check_probs(neg, "probs")


def test_nan_checks_see_nan_in_every_float_dtype_and_device_path() -> None:
    """check_no_nan / check_scores_1d read CPU tensors through numpy (one thread) and others through torch: NaN is
    found in float16/32/64 and bfloat16 tensors and in arrays, and finite input passes."""
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = torch.zeros(1000, dtype=dtype)
        v.check_no_nan(x, "x")
        v.check_scores_1d(x)
        x[700] = float("nan")
        with pytest.raises(ValueError, match="`x` to hold no NaN"):
            v.check_no_nan(x, "x")
        with pytest.raises(ValueError, match="`scores` to hold no NaN"):
            v.check_scores_1d(x)
    with pytest.raises(ValueError, match="NaN"):
        v.check_no_nan(np.array([0.0, np.nan, np.inf]), "x")
    v.check_no_nan(np.array([0.0, -np.inf, np.inf]), "x")


def test_check_model_labels_names_the_inputs_when_the_model_fails_on_them() -> None:
    """A model that cannot take the inputs (4 features expected, 5 given) fails with torch's own shape message,
    which names no argument: the probe names the inputs, their shape and dtype instead; the model's mode stays."""

    from certkit._validation import check_model_labels

    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).train()
    with pytest.raises(ValueError, match=r"`inputs`.*shape \(5,\)"):
        check_model_labels(model, torch.rand(2, 5), torch.tensor([0, 1]), "labels", "inputs")
    assert model.training
    check_model_labels(model, torch.rand(2, 4), torch.tensor([0, 2]))  # the right shape passes


def test_check_seed_refuses_seeds_beyond_64_bits() -> None:
    from certkit._validation import check_seed

    assert check_seed(2**64 - 1) == 2**64 - 1
    with pytest.raises(ValueError, match=r"`seed`.*2\*\*64 - 1"):
        check_seed(2**64)
