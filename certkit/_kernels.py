"""Compiled verdict of :func:`certkit._validation.check_probs` (numba, the optional extra ``certkit[fast]``).

Imported only by :func:`certkit._validation._compiled_checks`, which returns None when numba is not installed,
the environment variable ``CERTKIT_NO_NUMBA`` is set (non-empty, not ``0``) or the matrix is below the size floor
(the rule of ``conformal.scores``' kernels: N * K >= 2^20). Compiled on the first call for the dtype and memory
layout it gets (under a second; nothing is cached on disk) and run on one thread.

:func:`probs_verdict` reads the (N, K) matrix once: per row the float64 sum (NaN and +-inf propagate into it),
the row minimum and ``|sum - 1|``. A row is decided only when ``|sum - 1|`` is beyond the tolerance by more than
the error bound of a float64 sum of K terms in any order; the undecided rows are returned so that the caller sums
them again with numpy (``sum(1, dtype=float64)``, the float64 check of the numpy path). The verdict is therefore
the numpy path's: the matrix passes iff every row sum is finite, every entry is >= 0 and every row sums to 1
within the tolerance. It stops at the first failing row; the caller then runs the numpy path, which raises the
error with its usual message. :func:`probs_verdict_t` is the same verdict for an F-ordered matrix (given its
C-contiguous transpose), read in memory order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["probs_verdict", "probs_verdict_t"]


_BLOCK = 2048  # columns of the transposed matrix summed together (their float64 sums stay in cache)


@njit(cache=False)
def _decide(s: float, tol: float, ku: float) -> int:  # pragma: no cover - compiled
    """0: the row with float64 sum ``s`` surely passes; 1: undecided (within the rounding bound); -1: fails."""
    err = abs(s - 1.0)
    if not (err <= np.inf):  # NaN or +inf sum
        return -1
    bound = ku * (1.0 + err)
    if err - bound > tol:
        return -1
    return 1 if err + bound > tol else 0


@njit(fastmath={"reassoc", "nsz"}, cache=False)
def probs_verdict(p: np.ndarray, tol: float, unsure: np.ndarray) -> int:  # pragma: no cover - compiled
    """-1 when a row surely fails (a non-finite float64 sum, an entry < 0, or ``|sum - 1|`` beyond ``tol`` by
    more than the rounding bound); else the number m of undecided rows, whose indices are ``unsure[:m]``.
    ``p`` (N, K) is read row by row (C order).

    Only reassociation and no-signed-zero are allowed to the compiler (so that the sums vectorise): NaN and
    +-inf still propagate into the sums and the comparisons keep their IEEE meaning.
    """
    n, k = p.shape
    # |float64 sum of K terms in any order - exact sum| <= (K - 1) u sum|p|, u = 2^-53; with entries >= 0 (checked)
    # sum|p| = sum p <= |s - 1| + 1 + the error itself: a bound of 2 K u (1 + |s - 1|), rounding of |s - 1| included
    ku = 2.0 * (k + 2) * 2.0**-53
    m = 0
    for i in range(n):
        s = 0.0
        neg = False
        for j in range(k):  # branch-free, so that it vectorises
            v = float(p[i, j])
            s += v
            neg |= v < 0.0
        if neg:
            return -1
        d = _decide(s, tol, ku)
        if d < 0:
            return -1
        if d:
            unsure[m] = i
            m += 1
    return m


@njit(fastmath={"reassoc", "nsz"}, cache=False)
def probs_verdict_t(pt: np.ndarray, tol: float, unsure: np.ndarray) -> int:  # pragma: no cover - compiled
    """:func:`probs_verdict` of the (N, K) matrix whose transpose (K, N) is ``pt`` (an F-ordered matrix's ``.T``,
    C-contiguous): the row sums accumulated column by column over blocks of rows, so that memory is read in order."""
    k, n = pt.shape
    ku = 2.0 * (k + 2) * 2.0**-53
    sums = np.empty(_BLOCK, dtype=np.float64)
    m = 0
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        sums[: b - a] = 0.0
        neg = False
        w = b - a
        for j in range(k):
            col = pt[j, a:b]
            for i in range(w):
                v = float(col[i])
                sums[i] += v
                neg |= v < 0.0
        if neg:
            return -1
        for i in range(a, b):
            d = _decide(sums[i - a], tol, ku)
            if d < 0:
                return -1
            if d:
                unsure[m] = i
                m += 1
    return m
