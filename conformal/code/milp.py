"""Nested partial programs as one mixed-integer linear program (Khakhar, Mell, Bastani, ICML 2023).

For tau_1 < ... < tau_L and a tree with per-node NLL c_v, choose kept indicators k[l, v] in {0, 1}:

    maximise   sum_l sum_v k[l, v]
    subject to k[l, v] <= k[l, parent(v)]                 a removed node removes its subtree
               sum_v c_v k[l, v] <= tau_l                 kept NLL within the budget
               h[l, v] >= k[l, parent(v)] - k[l, v]       h: v is a hole (removed, parent kept)
               sum_{v != root} h[l, v] <= m               at most m holes
               k[l, v] <= k[l + 1, v]                     nested: larger tau keeps a superset

Removing the root is the trivial partial program ``??`` (every program completes it); it is
always feasible and is not counted against m. The paper solves this with z3's Optimize; here it
is solved exactly by HiGHS through :func:`scipy.optimize.milp`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from certkit._validation import as_real_array, check_instance, check_positive, check_positive_int
from conformal.code.dp import sequential_dp
from conformal.code.tree import CodeTree

__all__ = ["NestedRemovals", "check_taus", "nested_removals"]


@dataclass(frozen=True)
class NestedRemovals:
    """The kept nodes of a tree at each level of a tau grid.

    Attributes:
        taus: (L,) increasing NLL budgets.
        kept: (L, N) bool; row l is closed under parents, rows are nested (row l within row l + 1).
        objective: total kept nodes over all levels.
        optimal: True when the solver proved optimality of its problem (False only when ``time_limit`` was hit).
        method: ``"milp"`` (joint optimum) or ``"dp"`` (sequential optimum).
    """

    taus: np.ndarray
    kept: np.ndarray
    objective: int
    optimal: bool
    method: str

    @property
    def fraction_removed(self) -> np.ndarray:
        """(L,) fraction of nodes removed at each level."""
        return 1.0 - self.kept.mean(axis=1)


def check_taus(taus: Sequence[float] | np.ndarray, name: str = "taus") -> np.ndarray:
    """Validate a tau grid: (L,) finite, >= 0, strictly increasing, L >= 1."""
    t = as_real_array(taus, name)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"Expected argument `{name}` to be a non-empty (L,) array, but got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise ValueError(
            f"Expected argument `{name}` to hold finite values >= 0 in strictly increasing order, but got {t.tolist()[:10]}"
        )
    return t


def _check_nll(nll: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    c = as_real_array(nll, "nll")
    if c.shape != (n,):
        raise ValueError(f"Expected argument `nll` to have shape ({n},) (one value per tree node), but got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("Expected argument `nll` to hold finite values >= 0, but it does not")
    return c


def nested_removals(
    tree: CodeTree,
    nll: Sequence[float] | np.ndarray,
    taus: Sequence[float] | np.ndarray,
    max_holes: int,
    time_limit: float | None = None,
    method: str = "milp",
) -> NestedRemovals:
    """Solve the nested partial-program MILP exactly (see the module docstring).

    Args:
        tree: the generated program's tree, N nodes.
        nll: (N,) per-node NLL >= 0 (see :func:`conformal.code.tree.node_nll`).
        taus: (L,) strictly increasing budgets >= 0.
        max_holes: m >= 0, the most holes a partial program may have (the all-hole program ``??`` is always allowed).
        time_limit: optional solver time limit in seconds; the best solution found is returned with ``optimal=False``.
        method: ``"milp"`` (the joint problem above, exact) or ``"dp"`` (:func:`conformal.code.dp.sequential_dp`:
            exact for one level; for several levels each level is optimal given the larger ones,
            which can keep fewer nodes in total than the joint optimum).

    Returns:
        :class:`NestedRemovals` with (L, N) kept indicators.
    """
    check_instance(tree, CodeTree, "tree", "a CodeTree (conformal.python_tree)")
    n = tree.size
    c = _check_nll(nll, n)
    t = check_taus(taus)
    m = check_positive_int(max_holes, "max_holes", minimum=0)
    if time_limit is not None:
        time_limit = check_positive(time_limit, "time_limit")
    if method == "dp":
        kept = sequential_dp(tree, c, t, m)
        return NestedRemovals(taus=t, kept=kept, objective=int(kept.sum()), optimal=True, method="dp")
    if method != "milp":
        raise ValueError(f"Expected argument `method` to be 'milp' or 'dp', but got {method!r}")
    kept, optimal = _solve_milp(tree, c, t, m, time_limit)
    return NestedRemovals(taus=t, kept=kept, objective=int(kept.sum()), optimal=optimal, method="milp")


def _ancestors(tree: CodeTree) -> list[list[int]]:
    anc: list[list[int]] = [[0]]
    for v in range(1, tree.size):
        anc.append([v, *anc[int(tree.parent[v])]])
    return anc


def _solve_milp(tree: CodeTree, c: np.ndarray, t: np.ndarray, m: int, time_limit: float | None) -> tuple[np.ndarray, bool]:
    # Hole-root formulation: x[l, v] = 1 iff v is the root of a removed subtree at level l.
    # removed[l, v] = sum of x over v and its ancestors (<= 1: holes form an antichain). Its LP
    # relaxation is much tighter than the kept-indicator form (which can "fade" a whole tree
    # fractionally without using a hole).
    n, n_lev = tree.size, t.size
    size = tree.subtree_sums(np.ones(n))
    csub = tree.subtree_sums(c)
    anc = _ancestors(tree)
    leaves = [v for v in range(n) if not tree.children[v]]
    r_idx: list[int] = []
    c_idx: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []

    def row(cols: list[int], coef: list[float], low: float, high: float) -> None:
        r = len(lo)
        r_idx.extend([r] * len(cols))
        c_idx.extend(cols)
        vals.extend(coef)
        lo.append(low)
        hi.append(high)

    for lev in range(n_lev):
        base = lev * n
        for v in leaves:  # at most one hole on every root-to-leaf path
            row([base + u for u in anc[v]], [1.0] * len(anc[v]), -np.inf, 1.0)
        if n > 1:  # at most m holes (removing the root, the trivial program, is not counted)
            row(list(range(base + 1, base + n)), [1.0] * (n - 1), -np.inf, float(m))
        # kept NLL <= tau  <=>  removed NLL >= total - tau
        row(list(range(base, base + n)), csub.tolist(), float(c.sum() - t[lev]), np.inf)
        if lev + 1 < n_lev:  # nested: removed at level l + 1 implies removed at level l
            for v in range(n):
                row([base + n + u for u in anc[v]] + [base + u for u in anc[v]],
                    [1.0] * len(anc[v]) + [-1.0] * len(anc[v]), -np.inf, 0.0)
    a = coo_array((vals, (r_idx, c_idx)), shape=(len(lo), n_lev * n)).tocsr()
    options: dict[str, float | bool] = {"disp": False}
    if time_limit is not None:
        options["time_limit"] = time_limit
    res = milp(np.tile(size, n_lev), constraints=LinearConstraint(a, lo, hi), integrality=np.ones(n_lev * n),
               bounds=Bounds(0, 1), options=options)
    if res.x is None:  # the all-removed program is feasible at every level, so only a time-out gets here
        raise RuntimeError(f"scipy.optimize.milp found no solution: {res.message}")
    x = res.x.reshape(n_lev, n) > 0.5
    removed = np.zeros((n_lev, n), dtype=bool)
    removed[:, 0] = x[:, 0]
    for v in range(1, n):
        removed[:, v] = x[:, v] | removed[:, int(tree.parent[v])]
    return ~removed, bool(res.status == 0)
