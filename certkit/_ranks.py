"""Order-statistic ranks shared by certify (prompt filters) and conformal (PAC sets); neither imports the other."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binom

from certkit._validation import check_groups, check_positive_int, check_probability

__all__ = ["group_pac_threshold", "kl_mean_admissible", "pac_rank"]

#: relative safety margin of :func:`kl_mean_admissible` (float64 rounding of the KL test is ~1e-14 relative)
KL_MARGIN = 1e-9


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


def _kl_terms(x: float, epsilon: float) -> tuple[float, float]:
    """The two terms of KL(Ber(x) || Ber(epsilon)) = x log(x / eps) + (1 - x) log((1 - x) / (1 - eps))."""
    a = 0.0 if x == 0.0 else x * (math.log(x) - math.log(epsilon))
    b = 0.0 if x == 1.0 else (1.0 - x) * (math.log1p(-x) - math.log1p(-epsilon))
    return a, b


def kl_mean_admissible(mean: float, n: int, epsilon: float, delta: float) -> bool:
    """Whether a mean ``mean`` of n independent [0, 1] variables certifies their expectation <= epsilon at level
    delta by the Chernoff-Hoeffding bound (Hoeffding 1963, Theorem 1): ``mean < epsilon`` and
    ``exp(-n KL(mean || epsilon)) <= delta``, i.e. ``n KL(mean || epsilon) >= log(1 / delta)``.

    Rigorous in floating point: the test is ``n KL - margin >= log(1 / delta)`` with
    ``margin = KL_MARGIN * (1 + n + log(1 / delta))``, far above the float64 rounding of the logs, the products and
    of ``mean`` itself (a few 1e-16 relative per operation, times |log mean| <= 40 for any mean the rule meets), so a
    True answer holds for the exact real numbers; a case within the margin of the boundary is refused (conservative).
    """
    if not mean < epsilon:
        return False
    a, b = _kl_terms(mean, epsilon)
    log_inv_delta = -math.log(delta)
    margin = KL_MARGIN * (1.0 + n + log_inv_delta)
    return n * (a + b) - margin >= log_inv_delta


def group_pac_threshold(harmful_scores: Any, groups: Any, epsilon: float, delta: float) -> float:
    """A PAC threshold on scores clustered in groups: the largest calibration score tau such that flagging
    ``p >= tau`` keeps the groups' mean miss fraction certified below epsilon (Chernoff-Hoeffding over groups).

    Setting (e.g. prompts clustered by act: each act rendered in several frames). The unit of sampling is the group:
    the n groups of the calibration set are i.i.d. draws from a distribution of groups; a group's members (its
    frames) are whatever it holds. The promise is about a fresh group G drawn from that distribution and a member
    drawn uniformly from G's members: with probability >= 1 - delta over the calibration draw of groups,

        R(tau) := E_G[ fraction of G's members with p < tau ] <= epsilon,

    i.e. a fresh harmful prompt (act, then frame) is flagged with probability >= 1 - epsilon. The per-prompt rule
    (:func:`pac_rank`) needs i.i.d. prompts and is optimistic when a group's members are alike (a whole act missed
    counts as up to 4 "independent" misses there).

    Rule: for a candidate tau, each group g has miss fraction m_g(tau) in [0, 1] and their mean
    M(tau) = (1/n) sum_g m_g(tau); tau is admissible when :func:`kl_mean_admissible` (M(tau) < epsilon and
    exp(-n KL(M(tau) || epsilon)) <= delta). The threshold is the largest admissible calibration score (M is
    non-decreasing in tau, so the admissible scores are the ones below a cut, found by bisection);
    ``-inf`` (flag everything) when even the smallest score (M = 0) is not admissible, i.e. (1 - eps)^n > delta.

    Proof of the guarantee (the monotone-family argument of Park et al., ICLR 2020, with Hoeffding's bound in place of
    the binomial one). R and every m_g are non-decreasing and left-continuous in tau. Let t* = sup{t : R(t) <= eps}.
    If t* = +inf the rule cannot fail. Otherwise R(t) > eps for every t > t*, so R+(t*) := lim_{t -> t*+} R(t) =
    E_G[m_g+(t*)] >= eps, where m_g+(t*) is the fraction of members with p <= t*. The rule fails (R(tau) > eps) only
    if tau > t*; then every member with p <= t* has p < tau, so M(tau) >= M+(t*) := (1/n) sum_g m_g+(t*), and since
    admissibility is monotone (KL(x || eps) is decreasing on [0, eps]) M+(t*) passes the test too: M+(t*) <= c with
    c the largest admissible mean. The m_g+(t*) are independent in [0, 1] with mean >= eps at the *fixed* t*, so by
    Hoeffding (1963, Theorem 1, applied to 1 - m_g) P(M+(t*) <= c) <= exp(-n KL(c || R+(t*))) <=
    exp(-n KL(c || eps)) <= delta (KL(c || mu) grows with mu >= eps > c). So P(fail) <= delta.

    Compared with other valid rules: drawing one random frame per act and applying the exact binomial rule
    (:func:`pac_rank` on n i.i.d. Bernoulli misses) is also valid and its allowance is slightly larger (n = 98,
    eps = delta = 0.05: 1 act in 98 against a mean miss fraction of ~0.5%), but the threshold then depends on a
    random draw; this rule is deterministic and uses every frame (docs/certify/erase-and-check.md compares both).
    With one member per group it is the per-prompt order-statistic rule with Chernoff's allowance
    k = max{k : k/n < eps, exp(-n KL(k/n || eps)) <= delta} <= :func:`pac_rank`'s (the binomial tail is below its
    Chernoff bound), so its threshold is <= the per-prompt one.

    Args:
        harmful_scores: (N,) scores p (higher = flagged), finite.
        groups: (N,) group label of each score (integers or strings).
        epsilon: allowed miss rate of a fresh group's member, in (0, 1).
        delta: allowed failure probability of the calibration draw of groups, in (0, 1).

    Returns:
        tau, one of the scores, or ``-inf`` when the n groups are too few ((1 - epsilon)^n > delta).
    """
    p = np.asarray(harmful_scores, dtype=np.float64).reshape(-1)
    epsilon = check_probability(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    g = check_groups(groups, len(p))
    index: dict[Any, int] = {}
    gid = np.fromiter((index.setdefault(v, len(index)) for v in g.tolist()), dtype=np.int64, count=len(p))
    n = len(index)
    sizes = np.bincount(gid, minlength=n)
    weight = [1.0 / (n * int(sizes[j])) for j in gid.tolist()]  # each member's share of the mean M
    order = np.argsort(p, kind="stable")
    values, first = np.unique(p[order], return_index=True)  # candidate tau = values[j]: misses are order[:first[j]]
    sorted_w = [weight[i] for i in order.tolist()]

    def admissible(j: int) -> bool:  # math.fsum: the mean correctly rounded (error far below KL_MARGIN)
        return kl_mean_admissible(math.fsum(sorted_w[: int(first[j])]), n, epsilon, delta)

    if not admissible(0):
        return -math.inf
    lo, hi = 0, len(values) - 1  # admissible(lo) holds; find the last admissible index
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if admissible(mid):
            lo = mid
        else:
            hi = mid - 1
    return float(values[lo])
