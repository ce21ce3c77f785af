"""Learn then Test: risk control as multiple testing (Angelopoulos, Bates, Candès, Jordan, Lei 2021).

A finite grid of parameters lambda_1..lambda_L is fixed before the calibration data are seen. For
each lambda_j the null hypothesis ``H_j: R(lambda_j) > alpha`` (the risk is too high) is tested with a
p-value computed from the n calibration losses; a family-wise-error-rate (FWER) controlling procedure
rejects some of them, and the rejected lambdas are the *valid* ones:

    P[ there is a valid lambda with R(lambda) > alpha ] <= delta      (over the calibration draw)

so every valid lambda (in particular the one you pick among them, by any rule) has risk <= alpha
with probability >= 1 - delta. No monotonicity of the risk in lambda is needed.

p-values (losses in [0, 1], risk estimate r = mean loss over n points):

* ``"hoeffding_bentkus"``: p = min( exp(-n h(min(r, alpha), alpha)), e * P[Binom(n, alpha) <= ceil(n r)] ),
  h(a, b) = a log(a / b) + (1 - a) log((1 - a) / (1 - b)) (Bates et al. 2021, "Distribution-free,
  risk-controlling prediction sets", Prop. 3; LTT eq. (7)). Valid for any loss in [0, 1].
* ``"binomial"``: p = P[Binom(n, alpha) <= n r], exact for 0/1 losses (n r misses among n).

FWER procedures: ``"bonferroni"`` rejects ``p_j <= delta / L``; ``"fixed_sequence"`` tests the grid
in the order given (put the most conservative lambda first) and rejects while ``p_j <= delta``,
stopping at the first non-rejection. Both control the FWER at delta for any dependence between the
p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import binom

from certkit._validation import Array, check_array, check_probability, to_numpy

__all__ = ["LTTResult", "binomial_pvalue", "hoeffding_bentkus_pvalue", "learn_then_test"]

Method = Literal["fixed_sequence", "bonferroni"]
PValue = Literal["hoeffding_bentkus", "binomial"]
METHODS: tuple[str, ...] = ("fixed_sequence", "bonferroni")
PVALUES: tuple[str, ...] = ("hoeffding_bentkus", "binomial")


@dataclass(frozen=True)
class LTTResult:
    """The outcome of :func:`learn_then_test`.

    Attributes:
        lambdas: (L,) the grid, in the order it was tested.
        pvalues: (L,) p-values of ``H_j: R(lambda_j) > alpha``.
        valid: (L,) bool, True for the rejected nulls (the lambdas certified to have risk <= alpha).
        valid_lambdas: the lambdas with ``valid`` True, in grid order (empty when none is certified).
        method: the FWER procedure, ``"fixed_sequence"`` or ``"bonferroni"``.
        delta: the family-wise error level.
    """

    lambdas: np.ndarray
    pvalues: np.ndarray
    valid: np.ndarray
    valid_lambdas: np.ndarray
    method: str
    delta: float


def _h(a: np.ndarray, b: float) -> np.ndarray:
    """Bernoulli KL divergence h(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b)), with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(a > 0, a * np.log(a / b), 0.0)
        t2 = np.where(a < 1, (1 - a) * np.log((1 - a) / (1 - b)), 0.0)
    return t1 + t2  # type: ignore[no-any-return]


def hoeffding_bentkus_pvalue(risk: Any, n: int, alpha: float) -> np.ndarray:
    """Hoeffding-Bentkus p-values of ``H: R > alpha`` from empirical risks of n losses in [0, 1].

    p = min(exp(-n h(min(r, alpha), alpha)), e * BinomCDF(ceil(n r); n, alpha)), capped at 1.

    Args:
        risk: empirical risk(s) r in [0, 1] (scalar or array).
        n: number of losses behind each risk, >= 1.
        alpha: the risk level tested, in (0, 1).

    Returns:
        p-values of ``risk``'s shape (float64).

    Examples:
        >>> float(hoeffding_bentkus_pvalue(0.05, 1000, 0.1)) < 1e-6
        True
        >>> float(hoeffding_bentkus_pvalue(0.2, 1000, 0.1))
        1.0
    """
    alpha = check_probability(alpha, "alpha")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"Expected argument `n` to be an integer >= 1, but got {n!r}")
    r = np.asarray(risk, dtype=np.float64)
    if np.isnan(r).any() or (r < 0).any() or (r > 1).any():
        raise ValueError("Expected argument `risk` to hold empirical risks in [0, 1], but got values outside it")
    hoeffding = np.exp(-n * _h(np.minimum(r, alpha), alpha))
    # ceil(n r) with a tolerance: n r is an integer up to rounding for 0/1 losses
    k = np.ceil(n * r - 1e-9)
    bentkus = math.e * binom.cdf(k, n, alpha)
    return np.minimum(np.minimum(hoeffding, bentkus), 1.0)  # type: ignore[no-any-return]


def binomial_pvalue(errors: Any, n: Any, alpha: float) -> np.ndarray:
    """Exact binomial p-values ``BinomCDF(errors; n, alpha)`` of ``H: R > alpha`` for 0/1 losses.

    ``errors`` of ``n`` i.i.d. Bernoulli(R) losses; under ``R > alpha`` the chance of seeing this few
    errors is at most the binomial CDF at alpha. ``n = 0`` gives p = 1 (no evidence).

    Args:
        errors: number(s) of losses equal to 1 (integers >= 0).
        n: number(s) of losses (integers >= errors), broadcast with ``errors``.
        alpha: the risk level tested, in (0, 1).

    Returns:
        p-values (float64), broadcast shape of ``errors`` and ``n``.

    Examples:
        >>> round(float(binomial_pvalue(0, 50, 0.1)), 6)   # 0.9^50
        0.005154
    """
    alpha = check_probability(alpha, "alpha")
    k, m = np.asarray(errors), np.asarray(n)
    if k.dtype.kind not in "iu" or m.dtype.kind not in "iu":
        raise TypeError("Expected arguments `errors` and `n` to be integer counts, "
                        f"but got dtypes {k.dtype} and {m.dtype}")
    if (k < 0).any() or (k > m).any():
        raise ValueError("Expected 0 <= `errors` <= `n`, but got counts outside it")
    return np.where(m == 0, 1.0, binom.cdf(k, np.maximum(m, 1), alpha))  # type: ignore[no-any-return]



def learn_then_test(
    losses: Array | None = None,
    alpha: float | None = None,
    delta: float = 0.1,
    *,
    pvalues: Array | None = None,
    lambdas: Array | None = None,
    method: Method = "fixed_sequence",
    pvalue: PValue = "hoeffding_bentkus",
) -> LTTResult:
    """Learn then Test: the lambdas of a grid whose risk is certified <= alpha, with FWER <= delta.

    Guarantee (Angelopoulos et al. 2021, Theorem 1): if the n calibration points are i.i.d. and the
    grid was fixed before seeing them, ``P[some valid lambda has R(lambda) > alpha] <= delta``.

    Give either ``losses`` (and ``alpha``), from which p-values are computed, or ready ``pvalues``
    (valid p-values of ``H_j: R(lambda_j) > alpha``, e.g. :func:`binomial_pvalue` of conditional
    counts).

    Args:
        losses: (n, L) losses L_i(lambda_j) in [0, 1] of n calibration points at L grid points
            (``pvalue="binomial"``: 0/1 losses).
        alpha: the risk level in (0, 1) (with ``losses``).
        delta: the family-wise error level in (0, 1).
        pvalues: (L,) p-values, instead of ``losses``.
        lambdas: (L,) the grid values (default ``0, 1, ..., L-1``), in testing order for
            ``method="fixed_sequence"`` (most conservative first).
        method: ``"fixed_sequence"`` or ``"bonferroni"``.
        pvalue: ``"hoeffding_bentkus"`` (any bounded loss) or ``"binomial"`` (0/1 losses).

    Returns:
        LTTResult (``valid`` mask, ``valid_lambdas``, ``pvalues``).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> risks = np.array([0.02, 0.05, 0.1, 0.2, 0.3])      # the true risks, most conservative first
        >>> miss = rng.random((2000, 1)) < risks                # (2000, 5) 0/1 losses
        >>> res = learn_then_test(miss.astype(float), alpha=0.1, delta=0.1, lambdas=[0.9, 0.8, 0.7, 0.6, 0.5])
        >>> res.valid_lambdas.tolist()    # risks 0.02 and 0.05 certified; 0.1 is not (<= alpha is needed)
        [0.9, 0.8]
    """
    delta = check_probability(delta, "delta")
    if method not in METHODS:
        raise ValueError(f"Expected argument `method` to be one of {list(METHODS)}, but got {method!r}")
    if pvalue not in PVALUES:
        raise ValueError(f"Expected argument `pvalue` to be one of {list(PVALUES)}, but got {pvalue!r}")
    if (losses is None) == (pvalues is None):
        raise ValueError("Expected exactly one of arguments `losses` (with `alpha`) and `pvalues`, "
                         f"but got {'both' if losses is not None else 'neither'}")
    if losses is not None:
        if alpha is None:
            raise ValueError("Expected argument `alpha` (the risk level in (0, 1)) with `losses`, but got None")
        alpha = check_probability(alpha, "alpha")
        check_array(losses, "losses", kind="real", ndim=2)
        loss = to_numpy(losses).astype(np.float64)
        if loss.shape[0] == 0 or loss.shape[1] == 0:
            raise ValueError(f"Expected argument `losses` to have shape (n, L) with n, L >= 1, but got {loss.shape}")
        if loss.min() < 0 or loss.max() > 1:
            raise ValueError("Expected argument `losses` to hold losses in [0, 1], but got values in "
                             f"[{loss.min():.4g}, {loss.max():.4g}] (rescale a bounded loss by its bound)")
        n = loss.shape[0]
        if pvalue == "binomial":
            if not np.isin(loss, (0.0, 1.0)).all():
                raise ValueError("Expected argument `losses` to hold 0/1 losses for pvalue='binomial', "
                                 "but got other values (use pvalue='hoeffding_bentkus')")
            p = binomial_pvalue(loss.sum(0).astype(np.int64), n, alpha)
        else:
            p = hoeffding_bentkus_pvalue(loss.mean(0), n, alpha)
    else:
        if alpha is not None:
            check_probability(alpha, "alpha")
        assert pvalues is not None
        check_array(pvalues, "pvalues", kind="real", ndim=1)
        p = to_numpy(pvalues).astype(np.float64)
        if p.shape[0] == 0 or p.min() < 0 or p.max() > 1:
            raise ValueError("Expected argument `pvalues` to be a non-empty (L,) array of p-values in [0, 1]")
    size = p.shape[0]
    if lambdas is None:
        grid = np.arange(size)
    else:
        grid = to_numpy(lambdas) if isinstance(lambdas, torch.Tensor | np.ndarray) else np.asarray(lambdas)
        if grid.shape != (size,):
            raise ValueError(f"Expected argument `lambdas` to have shape ({size},) like the grid of losses/p-values, "
                             f"but got shape {grid.shape}")
    if method == "bonferroni":
        valid = p <= delta / size
    else:
        failed = p > delta
        first = int(np.argmax(failed)) if failed.any() else size  # test in order, stop at the first failure
        valid = np.arange(size) < first
    return LTTResult(lambdas=grid, pvalues=p, valid=valid, valid_lambdas=grid[valid], method=method, delta=delta)
