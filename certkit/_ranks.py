"""Order-statistic ranks shared by certify (prompt filters) and conformal (PAC sets); neither imports the other."""

from __future__ import annotations

from scipy.stats import binom

from certkit._validation import check_positive_int, check_probability

__all__ = ["pac_rank"]


def pac_rank(n: int, epsilon: float, delta: float) -> int | None:
    """k* = max{k : BinomCDF(k; n, epsilon) <= delta}, the number of calibration errors a PAC set may make
    (Park et al., ICLR 2020); None when even k = 0 is infeasible ((1 - epsilon)^n > delta)."""
    n = check_positive_int(n, "n", minimum=1)
    epsilon = check_probability(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    if binom.cdf(0, n, epsilon) > delta:
        return None
    k = int(binom.ppf(delta, n, epsilon))  # smallest k with cdf(k) >= delta
    while k > 0 and binom.cdf(k, n, epsilon) > delta:
        k -= 1
    while k < n and binom.cdf(k + 1, n, epsilon) <= delta:
        k += 1
    return k
