"""Tree-knapsack dynamic program for partial programs: the fast path of :mod:`conformal.code.milp`.

For one budget tau, the table T_v[h, c] = least NLL of the kept part of v's subtree when v is
kept, the subtree has h holes and c kept nodes. Children merge by a (min, +) convolution over
(h, c) (a child is either a hole: h + 1, or kept with its own table). The best partial program
keeps the most nodes c with min_{h <= m} T_root[h, c] <= tau. This is exact for real-valued NLLs:
the tables range over every (holes, kept count) pair, and the NLL is minimised for each, so no
discretisation is needed. Cost O(m^2 N^2) per level (loops over the smaller table of each merge).

Nested grids: :func:`top_down_dp` solves the largest tau first, then each smaller tau within the
nodes kept at the next larger one (every level optimal *given the larger levels*);
:func:`bottom_up_dp` solves the smallest tau first, then each larger tau among the sets containing
the next smaller one's (a required child cannot be a hole). :func:`sequential_dp` returns the better
of the two. The total can fall short of the joint optimum of :func:`conformal.code.milp.nested_removals`
(which maximises the sum over all levels at once); the benchmark measures by how much.
"""

from __future__ import annotations

import numpy as np

from certkit._validation import check_positive_int
from conformal.code.tree import CodeTree

__all__ = ["best_kept", "bottom_up_dp", "sequential_dp", "top_down_dp"]

_TOL = 1e-9


_Tables = tuple[list[np.ndarray], list[list[np.ndarray]], list[list[tuple[int, int, float]]], np.ndarray]


def _tables(tree: CodeTree, c: np.ndarray, allow: np.ndarray, m: int, require: np.ndarray | None = None) -> _Tables:
    n = tree.size
    # a program has at most n holes: a larger budget changes nothing, and would only size the (m + 1)-row
    # tables (max_holes=10**7 ran out of memory)
    m = min(check_positive_int(m, "max_holes", minimum=0), n)
    hole_ok = np.ones(n, dtype=bool) if require is None else ~np.asarray(require, dtype=bool)
    final: list[np.ndarray] = [np.empty((0, 0))] * n
    entries: list[list[tuple[int, int, float]]] = [[] for _ in range(n)]  # finite (h, c, value) of final[v]
    steps: list[list[np.ndarray]] = [[] for _ in range(n)]
    for v in range(n - 1, -1, -1):
        if not allow[v]:
            continue
        t = np.full((m + 1, 2), np.inf)
        t[0, 1] = c[v]
        for u in tree.children[v]:
            steps[v].append(t)
            width = t.shape[1] + (final[u].shape[1] - 1 if allow[u] else 0)
            new = np.full((m + 1, width), np.inf)
            if hole_ok[u]:
                new[1:, : t.shape[1]] = t[:-1]  # u is a hole
            if allow[u]:  # u kept: (min, +) convolution, looping over the smaller table's finite entries
                if len(entries[u]) <= t.size:
                    a, small = t, entries[u]
                else:
                    a = final[u]
                    small = [(int(h), int(k), float(t[h, k])) for h, k in np.argwhere(np.isfinite(t))]
                for h2, c2, val in small:
                    blk = new[h2:, c2 : c2 + a.shape[1]]
                    np.minimum(blk, a[: m + 1 - h2] + val, out=blk)
            t = new
        final[v] = t
        entries[v] = [(int(h), int(k), float(t[h, k])) for h, k in np.argwhere(np.isfinite(t))]
    return final, steps, entries, hole_ok


def best_kept(tree: CodeTree, c: np.ndarray, tau: float, m: int, allow: np.ndarray | None = None,
              require: np.ndarray | None = None) -> np.ndarray:
    """(N,) kept indicators keeping the most nodes with NLL <= tau and <= m holes, inside ``allow``.

    Args:
        tree: N-node tree.
        c: (N,) NLL >= 0.
        tau: budget >= 0.
        m: hole budget >= 0 (removing the root, the trivial program, is not counted).
        allow: (N,) bool nodes that may be kept (closed under parents); all when None.
        require: (N,) bool nodes that must be kept (closed under parents, within ``allow``); none when None.
            Must be feasible (NLL <= tau, <= m holes), else the result may not contain it.
    """
    n = tree.size
    allow = np.ones(n, dtype=bool) if allow is None else np.asarray(allow, dtype=bool)
    if not allow[0]:
        return np.zeros(n, dtype=bool)
    return _pick(tree, _tables(tree, c, allow, m, require), tau)


def _pick(tree: CodeTree, tables: _Tables, tau: float) -> np.ndarray:
    final, steps, entries, hole_ok = tables
    kept = np.zeros(tree.size, dtype=bool)
    root = final[0].min(axis=0)  # best over h <= m
    ok = np.flatnonzero(root <= tau + _TOL * max(1.0, tau))
    ok = ok[ok >= 1]
    if ok.size == 0:
        return kept
    best_c = int(ok.max())
    best_h = int(np.argmin(final[0][:, best_c]))
    stack = [(0, best_h, best_c)]
    while stack:  # backtrack: replay each merge in reverse, matching the exact float sums
        v, h, cnt = stack.pop()
        kept[v] = True
        target = float(final[v][h, cnt])
        for j in range(len(tree.children[v]) - 1, -1, -1):
            u = tree.children[v][j]
            prev = steps[v][j]
            if hole_ok[u] and h >= 1 and cnt < prev.shape[1] and prev[h - 1, cnt] == target:
                h -= 1
                target = float(prev[h, cnt])
                continue
            for h2, c2, val in entries[u]:
                h1, c1 = h - h2, cnt - c2
                # same operands as in _tables (a + b in either order is the same float)
                if 0 <= h1 and 0 <= c1 < prev.shape[1] and float(prev[h1, c1]) + val == target:
                    stack.append((u, h2, c2))
                    h, cnt, target = h1, c1, float(prev[h1, c1])
                    break
            else:  # pragma: no cover - the tables were built from exactly these sums
                raise RuntimeError("dynamic-program backtracking failed")
    return kept


def top_down_dp(tree: CodeTree, c: np.ndarray, taus: np.ndarray, m: int) -> np.ndarray:
    """(L, N) nested kept indicators: the largest tau solved first, each smaller tau inside the next larger one."""
    kept = np.zeros((len(taus), tree.size), dtype=bool)
    allow = np.ones(tree.size, dtype=bool)
    tables = _tables(tree, c, allow, m)
    for lev in range(len(taus) - 1, -1, -1):
        if not allow[0]:
            break
        kept[lev] = _pick(tree, tables, float(taus[lev]))
        if not np.array_equal(kept[lev], allow):  # the tables depend on the allowed set only, not on tau
            allow = kept[lev]
            tables = _tables(tree, c, allow, m)
    return kept


def bottom_up_dp(tree: CodeTree, c: np.ndarray, taus: np.ndarray, m: int) -> np.ndarray:
    """(L, N) nested kept indicators: the smallest tau solved first, each larger tau containing the next smaller one."""
    kept = np.zeros((len(taus), tree.size), dtype=bool)
    allow = np.ones(tree.size, dtype=bool)
    require = np.zeros(tree.size, dtype=bool)
    tables = _tables(tree, c, allow, m, require)
    for lev in range(len(taus)):
        kept[lev] = _pick(tree, tables, float(taus[lev]))
        if not np.array_equal(kept[lev], require):
            require = kept[lev]
            tables = _tables(tree, c, allow, m, require)
    return kept


def sequential_dp(tree: CodeTree, c: np.ndarray, taus: np.ndarray, m: int) -> np.ndarray:
    """(L, N) nested kept indicators: the better (more kept nodes in total) of :func:`top_down_dp` and
    :func:`bottom_up_dp` (top-down on ties). Each is nested and deterministic, so either keeps the guarantee."""
    a = top_down_dp(tree, c, taus, m)
    b = bottom_up_dp(tree, c, taus, m)
    return b if b.sum() > a.sum() else a
