"""Compiled per-row kernels of the APS/RAPS label scores and prediction sets (numba; the optional extra
``certkit[fast]``).

Imported only by :func:`conformal.scores._compiled`, which returns None when numba is not installed or the
environment variable ``CERTKIT_NO_NUMBA`` is set to a non-empty value other than ``0``: the library then runs
its numpy paths, which give the same scores and the same sets. Each kernel is compiled on its first call for the
dtype it gets (about a second each; nothing is cached on disk, so read-only installs are fine) and runs on one
thread.

Exactness (what the tests compare bit for bit with the full sort and with the numpy paths):

- :func:`label_mass` is the calibration pass: per row one comparison with ``p_y`` in the order of a stable
  descending sort (``p_j > p_y``, or ``p_j == p_y`` and ``j <= y``), the mass of those labels summed in float64
  and their count (the 1-based rank of y). The float64 sum is taken in another order than the full sort's running
  sum (as the numpy path's), so the label scores equal the full sort's up to float64 summation order.
- :func:`aps_sorted_mask` is the prediction pass over rows whose values numpy has sorted: it finds the set size m
  (every APS/RAPS set is the top m labels: the scores are non-decreasing in the rank, also after rounding). When a
  u-free bound puts the cut in the bottom half of the ranks, it walks up from the bottom: the mass of the top r
  ranks is the row total minus the bottom ranks' sum, within ``d = (3K + 8) 2^-53 * total`` of the full sort's
  float64 running sum; a rank is taken out only when its score from ``S - d`` exceeds the threshold and taken as the
  cut only when its score from ``S + d`` does not (every rounded step is monotone). Otherwise (and for a rank
  between the two) it walks down from the top, where the running sum is the full sort's own (same values, same
  order), so those scores are exact. The set is then ``p >= p_(m)``, with ties at the cut broken by label index
  as the stable sort does. Rows with values outside [0, inf) (or -0.0) are flagged for the caller's full sort.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["aps_sorted_mask", "label_mass", "label_rank", "prefix_mask", "row_key_range"]


@njit(fastmath={"reassoc", "nsz"}, cache=False)
def _row_total(a: np.ndarray) -> float:  # pragma: no cover - compiled
    """float64 sum of a row, in any order (vectorised: only its error bound is used)."""
    s = 0.0
    for j in range(a.shape[0]):
        s += float(a[j])
    return s


@njit(fastmath={"reassoc", "nsz"}, cache=False)
def label_mass(p: np.ndarray, y: np.ndarray, mass: np.ndarray, rank: np.ndarray,
               p_y: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per row i, with y = y[i]: ``mass[i]`` the float64 sum of p[i, j] over the labels j ranked at or above y
    (``p_j > p_y``, or ``p_j == p_y`` and ``j <= y``), ``rank[i]`` their count and ``p_y[i]`` = p[i, y]. ``y`` must
    hold valid labels (checked by the caller). Branch-free, so that the comparison and the masked sum vectorise."""
    n, k = p.shape
    for i in range(n):
        yi = y[i]
        py = p[i, yi]
        s = 0.0
        c = 0
        for j in range(k):
            v = p[i, j]
            inc = (v > py) | ((v == py) & (j <= yi))
            s += float(v) if inc else 0.0
            c += inc
        mass[i] = s
        rank[i] = c
        p_y[i] = py


@njit(cache=False)
def aps_sorted_mask(p: np.ndarray, asc: np.ndarray, keys: np.ndarray, u: np.ndarray, t: np.ndarray, pen: np.ndarray,
                    eps: float, out: np.ndarray, redo: np.ndarray) -> None:  # pragma: no cover - compiled
    """The APS/RAPS set masks of a block of rows (see the module docstring).

    Args:
        p: (B, K) probabilities (float32 or float64).
        asc: (B, K) the same rows, each sorted ascending as the integers of their bits (``keys``, the same
            memory; for values in [0, inf) the order of the values).
        keys: (B, K) ``asc`` viewed as int32/int64.
        u: (B,) u of the rows in [0, 1], in p's dtype.
        t: (1,) the threshold in p's dtype (rounded down).
        pen: (K + 1,) penalty by rank 0 .. K in p's dtype, >= 0 and non-decreasing (pen[0] = 0; all zero for APS).
        eps: the unit roundoff of p's dtype (2^-24 or 2^-53).
        out: (B, K) bool, the masks (rows flagged in ``redo`` are left for the caller).
        redo: (B,) bool, set for rows with values outside [0, inf) (NaN and -0.0 included).
    """
    n, k = p.shape
    tt = t[0]
    cast = p.dtype.type  # float64 -> p's dtype, rounded to nearest (as torch's float64-accumulated cumsum output)
    pen_k = float(pen[k])
    for i in range(n):
        a = asc[i]
        redo[i] = False
        if not (keys[i, 0] >= 0 and a[k - 1] < np.inf):  # a sign bit sorts first, +inf and NaN last
            redo[i] = True
            continue
        ui = u[i]
        total = _row_total(a)
        d = (3.0 * k + 8.0) * 2.0**-53 * total  # |S - the full sort's S| for S = total - tail
        margin = 5.0 * eps * (total + pen_k) + 2.0 * d
        t_in = tt - margin
        t_out = tt + margin
        # ranks 1 .. half surely in (S_half + pen_half <= t - margin; the score of rank r is at most S_r + pen_r +
        # margin): the cut is in the bottom half, walked up from the bottom; else the exact walk from the top
        half = k // 2
        low = _row_total(a[: k - half])  # ranks half + 1 .. K
        m = 0
        if (total - low) + pen[half] <= t_in:
            # u-free: rank r surely out while S_{r-1} + pen_r > t + margin (its score is at least S_{r-1} + pen_r -
            # margin), S_{r-1} = total - tail - p_(r), tail the float64 sum of ranks r + 1 .. K
            bot_r = k
            tail = 0.0
            while bot_r > half:
                v = float(a[k - bot_r])
                if total - tail - v + pen[bot_r] > t_out:
                    tail += v
                    bot_r -= 1
                else:
                    break
            # ranks bot_r, bot_r - 1, ...: decided within the bound d, else by the exact walk from the top
            m = half
            exact = False
            r = bot_r
            while r > half:
                vt = a[k - r]
                s = total - tail
                lo = (cast(s - d) - ui * vt) + pen[r]
                if lo > tt:  # surely out
                    tail += float(vt)
                    r -= 1
                    continue
                hi = (cast(s + d) - ui * vt) + pen[r]
                if hi <= tt:  # surely in: the cut
                    m = r
                else:
                    exact = True
                break
        else:
            exact = True
        if exact:  # the full sort's scores from the top (its float64 running sum, same values, same order)
            r = 0
            s = 0.0
            while r < k:
                vt = a[k - 1 - r]
                s2 = s + float(vt)
                if not ((cast(s2) - ui * vt) + pen[r + 1] <= tt):
                    break
                s = s2
                r += 1
            m = r
        _write_prefix(p, i, a, m, out)


@njit(cache=False, inline="always")  # inlined: a call per row with array arguments costs ~half the write
def _write_prefix(p: np.ndarray, i: int, a: np.ndarray, m: int, out: np.ndarray) -> None:  # pragma: no cover
    """out[i] = the top m labels of row i (``a`` its values sorted ascending): ``p >= p_(m)``, and where a tie
    straddles the cut, the tied labels in index order (the stable descending sort's ranks)."""
    k = a.shape[0]
    if m == 0:
        for j in range(k):
            out[i, j] = False
        return
    cut = a[k - m]
    if m < k and a[k - m - 1] == cut:
        hi_i = k - m
        while hi_i + 1 < k and a[hi_i + 1] == cut:
            hi_i += 1
        need = m - (k - 1 - hi_i)  # the tied labels inside the set
        for j in range(k):
            v = p[i, j]
            if v > cut:
                out[i, j] = True
            elif v == cut and need > 0:
                out[i, j] = True
                need -= 1
            else:
                out[i, j] = False
    else:
        for j in range(k):
            out[i, j] = p[i, j] >= cut


@njit(cache=False)
def prefix_mask(p: np.ndarray, asc: np.ndarray, keys: np.ndarray, m: np.ndarray, out: np.ndarray,
                redo: np.ndarray) -> None:  # pragma: no cover - compiled
    """out[i] = the top m[i] labels of row i (SAPS/TopK sets, whose sizes the caller computed), ties at the cut by
    label index; ``asc``/``keys`` as in :func:`aps_sorted_mask`; rows with values outside [0, inf) flagged in
    ``redo``."""
    n, k = p.shape
    for i in range(n):
        a = asc[i]
        redo[i] = not (keys[i, 0] >= 0 and a[k - 1] < np.inf)
        if not redo[i]:
            _write_prefix(p, i, a, m[i], out)


@njit(cache=False)
def row_key_range(keys: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:  # pragma: no cover - compiled
    """The largest and smallest integer of each row of ``keys`` (a float matrix viewed as integers: on rows whose
    values are in [0, inf) or NaN, ``hi`` is the bits of the row maximum, NaN included; ``lo < 0`` marks a row with a
    sign bit set, whose maximum the caller takes from numpy)."""
    n, k = keys.shape
    for i in range(n):
        h = keys[i, 0]
        lw = keys[i, 0]
        for j in range(k):
            v = keys[i, j]
            h = max(h, v)
            lw = min(lw, v)
        hi[i] = h
        lo[i] = lw


@njit(cache=False)
def label_rank(p: np.ndarray, keys: np.ndarray, y: np.ndarray, rank: np.ndarray, hi: np.ndarray,
               lo: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per row i: ``rank[i]`` the 1-based rank of y = y[i] in the stable descending order (as :func:`label_mass`)
    and the integer range of the row's bits (as :func:`row_key_range`), in one pass."""
    n, k = p.shape
    for i in range(n):
        yi = y[i]
        py = p[i, yi]
        c = 0
        h = keys[i, 0]
        lw = keys[i, 0]
        for j in range(k):
            v = p[i, j]
            c += (v > py) | ((v == py) & (j <= yi))
            kv = keys[i, j]
            h = max(h, kv)
            lw = min(lw, kv)
        rank[i] = c
        hi[i] = h
        lo[i] = lw
