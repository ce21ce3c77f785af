"""Learn then Test: p-values, the two FWER procedures, and the family-wise error over many splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from conformal.ltt import LTTResult, binomial_pvalue, hoeffding_bentkus_pvalue, learn_then_test

ALPHA, DELTA = 0.1, 0.1
# true risks of a 12-point grid, most conservative first; the nulls R > alpha start at index 6 (0.1005)
RISKS = np.array([0.02, 0.04, 0.06, 0.08, 0.09, 0.098, 0.1005, 0.103, 0.11, 0.13, 0.16, 0.2])


def _losses(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 12) nested 0/1 losses: point i misses at lambda_j when u_i < R_j (strongly dependent columns)."""
    return (rng.random((n, 1)) < RISKS).astype(np.float64)


def test_hoeffding_bentkus_formula_and_validity() -> None:
    n, r = 500, np.array([0.0, 0.05, 0.08, 0.1, 0.3])
    h = r * np.log(np.where(r > 0, r, 1) / ALPHA) + (1 - r) * np.log((1 - r) / (1 - ALPHA))
    hoeff = np.where(r < ALPHA, np.exp(-n * h), 1.0)
    bentkus = math.e * binom.cdf(np.ceil(n * r), n, ALPHA)
    assert np.allclose(hoeffding_bentkus_pvalue(r, n, ALPHA), np.minimum(np.minimum(hoeff, bentkus), 1))
    # super-uniform under R = alpha (the boundary null): P[p <= d] <= d
    rng = np.random.default_rng(0)
    p = hoeffding_bentkus_pvalue((rng.random((20000, n)) < ALPHA).mean(1), n, ALPHA)
    for d in (0.01, 0.05, 0.1, 0.3):
        assert (p <= d).mean() <= d + 3 * math.sqrt(d * (1 - d) / 20000)


def test_binomial_pvalue_is_the_binomial_cdf_and_one_without_data() -> None:
    assert binomial_pvalue(3, 40, 0.1) == pytest.approx(binom.cdf(3, 40, 0.1))
    assert np.array_equal(binomial_pvalue(np.array([0, 2]), np.array([0, 5]), 0.2), [1.0, binom.cdf(2, 5, 0.2)])
    with pytest.raises(TypeError, match="errors"):
        binomial_pvalue(1.5, 10, 0.1)
    with pytest.raises(ValueError, match="errors"):
        binomial_pvalue(11, 10, 0.1)


def test_fixed_sequence_stops_at_first_failure_and_bonferroni_divides() -> None:
    p = np.array([0.001, 0.05, 0.2, 0.001])
    fs = learn_then_test(pvalues=p, delta=0.1, lambdas=np.array([3.0, 2.0, 1.0, 0.0]))
    assert isinstance(fs, LTTResult) and fs.valid.tolist() == [True, True, False, False]
    assert fs.valid_lambdas.tolist() == [3.0, 2.0]
    bf = learn_then_test(pvalues=p, delta=0.1, method="bonferroni")  # delta / 4 = 0.025
    assert bf.valid.tolist() == [True, False, False, True] and bf.valid_lambdas.tolist() == [0, 3]
    none = learn_then_test(pvalues=np.array([0.5, 0.001]), delta=0.1)
    assert none.valid_lambdas.size == 0 and not none.valid.any()


def test_losses_and_pvalues_spellings_agree_numpy_and_torch() -> None:
    loss = _losses(400, np.random.default_rng(1))
    a = learn_then_test(loss, ALPHA, DELTA, pvalue="binomial")
    b = learn_then_test(pvalues=binomial_pvalue(loss.sum(0).astype(int), 400, ALPHA), delta=DELTA)
    c = learn_then_test(torch.from_numpy(loss), ALPHA, DELTA, pvalue="binomial")
    assert np.array_equal(a.valid, b.valid) and np.array_equal(a.valid, c.valid)
    assert np.allclose(a.pvalues, b.pvalues)
    hb = learn_then_test(loss, ALPHA, DELTA)
    assert hb.valid.sum() <= a.valid.sum()  # HB is more conservative than the exact binomial on 0/1 losses


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "exactly one"),
    ({"losses": np.zeros((3, 2)), "pvalues": np.ones(2)}, "exactly one"),
    ({"losses": np.zeros((3, 2))}, "alpha"),
    ({"losses": np.full((3, 2), 2.0), "alpha": 0.1}, r"\[0, 1\]"),
    ({"losses": np.full((3, 2), 0.5), "alpha": 0.1, "pvalue": "binomial"}, "0/1"),
    ({"losses": np.zeros(3), "alpha": 0.1}, "losses"),
    ({"pvalues": np.array([0.1, 1.5])}, "pvalues"),
    ({"pvalues": np.ones(2), "lambdas": [1.0]}, "lambdas"),
    ({"pvalues": np.ones(2), "method": "holm"}, "method"),
    ({"pvalues": np.ones(2), "pvalue": "clt"}, "pvalue"),
])
def test_bad_inputs_are_refused_naming_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        learn_then_test(**kwargs)


def _fwer(n_splits: int, n: int, method: str, pvalue: str, naive: bool = False) -> float:
    rng = np.random.default_rng(7)
    bad = RISKS > ALPHA
    errors = 0
    for _ in range(n_splits):
        loss = _losses(n, rng)
        if naive:  # every lambda whose empirical risk is <= alpha: no multiple-testing control
            valid = loss.mean(0) <= ALPHA
        else:
            valid = learn_then_test(loss, ALPHA, DELTA, method=method, pvalue=pvalue).valid  # type: ignore[arg-type]
        errors += bool((valid & bad).any())
    return errors / n_splits


@pytest.mark.parametrize(("method", "pvalue"), [("fixed_sequence", "binomial"), ("bonferroni", "binomial"),
                                                ("fixed_sequence", "hoeffding_bentkus")])
def test_family_wise_error_is_at_most_delta_over_many_splits(method: str, pvalue: str) -> None:
    splits = 2000
    rate = _fwer(splits, 300, method, pvalue)
    assert rate <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / splits), rate


def test_the_fwer_test_can_fail_naive_selection_violates() -> None:
    assert _fwer(500, 300, "fixed_sequence", "binomial", naive=True) > 0.3
