"""PAC prediction sets of programs: calibrate the NLL budget tau of nested partial programs.

Khakhar, Mell, Bastani, "PAC Prediction Sets for Large Language Models of Code" (ICML 2023),
with the binomial threshold rule of Park, Bastani, Matni, Lee (ICLR 2020).

For a task i, the nested partial programs of its generated program shrink as tau grows (more
nodes kept), so whether the true program is a completion is monotone in tau: covered at every
grid tau up to some largest covered tau t_i, and at none above. The score s_i = -t_i
(+inf when not covered even at the smallest tau) makes "covered at tau" equal "s_i <= -tau", so the
PAC quantile q of the calibration scores gives tau_hat = the largest grid tau with -tau >= q:

    with probability >= 1 - delta over n i.i.d. calibration tasks,
    P_task[true program is not a completion of the partial program at tau_hat] <= epsilon.

When n is too small for (epsilon, delta), or no grid tau is valid, the set is the trivial
partial program ``??`` (every node removed), which always covers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from certkit._params import Params
from certkit._validation import (
    check_calibrated,
    check_instance,
    check_positive,
    check_positive_int,
    check_probability,
)
from conformal.code.milp import check_taus, nested_removals
from conformal.code.tree import CodeTree, covers
from conformal.functional import pac_quantile

__all__ = [
    "CodeTask",
    "Hole",
    "PACCodeSets",
    "PartialProgram",
    "coverage_scores",
    "partial_program",
    "select_tau",
]

HOLE = "??"


@dataclass(frozen=True)
class Hole:
    """A removed subtree: its root node, label and character span [start, end) in the generated source."""

    node: int
    label: str
    start: int
    end: int


@dataclass(frozen=True, eq=False)
class PartialProgram:
    """A generated program with its least certain subtrees replaced by holes.

    Attributes:
        tree: the generated program's tree.
        kept: (N,) bool kept nodes, closed under parents.
        holes: maximal removed subtrees, in source order.
        tau: the NLL budget it was built with.
    """

    tree: CodeTree
    kept: np.ndarray
    holes: tuple[Hole, ...]
    tau: float

    @property
    def text(self) -> str:
        """The source with every hole's span replaced by ``??``."""
        src = self.tree.source
        out: list[str] = []
        pos = 0
        for h in sorted(self.holes, key=lambda h: (h.start, -h.end)):
            if h.start < pos:  # overlapping spans (never for Python ASTs): already inside a hole
                continue
            out.extend([src[pos:h.start], HOLE])
            pos = h.end
        out.append(src[pos:])
        return "".join(out)

    @property
    def fraction_removed(self) -> float:
        """Fraction of the tree's nodes inside holes."""
        return float(1.0 - self.kept.mean())

    def covers(self, truth: CodeTree) -> bool:
        """Whether ``truth`` is a completion of this partial program (agrees outside the holes)."""
        return covers(self.tree, self.kept, truth)


def partial_program(tree: CodeTree, kept: np.ndarray, tau: float) -> PartialProgram:
    """Wrap (N,) kept indicators (closed under parents) as a :class:`PartialProgram`."""
    kept = np.asarray(kept, dtype=bool)
    if kept.shape != (tree.size,):
        raise ValueError(f"Expected argument `kept` to have shape ({tree.size},), but got shape {kept.shape}")
    par = tree.parent
    if np.any(kept[1:] & ~kept[par[1:]]):
        raise ValueError("Expected argument `kept` to be closed under parents (a kept node's parent is kept), but it is not")
    holes = [v for v in range(tree.size) if not kept[v] and (v == 0 or kept[par[v]])]
    kept = kept.copy()
    kept.setflags(write=False)
    return PartialProgram(
        tree=tree, kept=kept, tau=float(tau),
        holes=tuple(Hole(v, tree.labels[v], int(tree.spans[v, 0]), int(tree.spans[v, 1])) for v in holes),
    )


@dataclass(frozen=True, eq=False)
class CodeTask:
    """A calibration task: the generated program's tree, its per-node NLL, and the true program's tree."""

    tree: CodeTree
    nll: np.ndarray
    truth: CodeTree


def coverage_scores(kept: np.ndarray | Sequence[np.ndarray], trees: Sequence[CodeTree], truths: Sequence[CodeTree],
                    taus: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-task scores s_i = -(largest grid tau at which task i is covered), +inf if covered at none.

    Args:
        kept: per task, (L, N_i) nested kept indicators on the grid ``taus``.
        trees: per task, the generated tree.
        truths: per task, the true tree.
        taus: (L,) increasing grid.

    Returns:
        (n,) float64 scores; task i is covered at tau iff s_i <= -tau.
    """
    t = check_taus(taus)
    if not (len(kept) == len(trees) == len(truths)):
        raise ValueError(
            f"Expected `kept`, `trees` and `truths` to have the same length, but got {len(kept)}, {len(trees)}, {len(truths)}"
        )
    out = np.full(len(trees), np.inf)
    for i, (k, tree, truth) in enumerate(zip(kept, trees, truths)):
        k = np.asarray(k, dtype=bool)
        if k.shape != (t.size, tree.size):
            raise ValueError(f"Expected kept[{i}] to have shape ({t.size}, {tree.size}), but got shape {k.shape}")
        if np.any(k[:-1] & ~k[1:]):
            raise ValueError(f"Expected kept[{i}] to be nested (row l inside row l + 1), but it is not")
        # Nested sets: coverage is monotone, so binary search the last covered level.
        lo, hi = -1, t.size - 1  # invariant: covered at lo (or lo = -1), search (lo, hi]
        if covers(tree, k[hi], truth):
            lo = hi
        else:
            hi -= 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if covers(tree, k[mid], truth):
                    lo = mid
                else:
                    hi = mid - 1
        if lo >= 0:
            out[i] = -t[lo]
    return out


def select_tau(scores: np.ndarray, taus: Sequence[float] | np.ndarray, epsilon: float, delta: float) -> float:
    """The calibrated budget: the largest grid tau with -tau >= pac_quantile(scores, epsilon, delta).

    Returns ``-inf`` when there is none (the partial program is then the trivial ``??``).
    """
    t = check_taus(taus)
    q = pac_quantile(np.asarray(scores, dtype=np.float64), epsilon, delta)
    ok = t[-t >= q]
    return float(ok.max()) if ok.size else -math.inf


class PACCodeSets(Params):
    """PAC prediction sets for generated code, as partial programs (Khakhar et al., ICML 2023).

    Guarantee: if calibration and test tasks are i.i.d., then with probability >= 1 - delta over
    the calibration draw, P[the true program is a completion of ``predict(...)``] >= 1 - epsilon.

    Args:
        epsilon: allowed miscoverage in (0, 1).
        delta: allowed failure probability of the calibration draw in (0, 1).
        taus: (L,) increasing NLL budgets (the candidate thresholds).
        max_holes: m >= 0, the most holes per partial program.
        method: ``"dp"`` (fast sequential tree knapsack, :mod:`conformal.code.dp`) or ``"milp"`` (joint
            optimum over the grid, :mod:`conformal.code.milp`). Both give nested partial programs,
            which is all the guarantee needs.
        time_limit: optional per-program MILP time limit in seconds.
    """

    def __init__(self, *, epsilon: float = 0.1, delta: float = 0.05, taus: Sequence[float] | np.ndarray = tuple(range(0, 42, 2)),
                 max_holes: int = 4, method: str = "dp", time_limit: float | None = None) -> None:
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")
        self.taus = check_taus(taus)
        self.max_holes = check_positive_int(max_holes, "max_holes", minimum=0)
        if method not in ("dp", "milp"):
            raise ValueError(f"Expected argument `method` to be 'dp' or 'milp', but got {method!r}")
        self.method = method
        self.time_limit = None if time_limit is None else check_positive(time_limit, "time_limit")
        self.tau_: float | None = None
        self.scores_: np.ndarray | None = None

    def nested(self, tree: CodeTree, nll: Sequence[float] | np.ndarray) -> np.ndarray:
        """(L, N) nested kept indicators of ``tree`` on the grid."""
        return nested_removals(tree, nll, self.taus, self.max_holes, time_limit=self.time_limit, method=self.method).kept

    def calibrate(self, tasks: Sequence[CodeTask]) -> PACCodeSets:
        """Choose tau_ from calibration tasks (generated tree, per-node NLL, true tree)."""
        if isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):  # a string is not a list of tasks
            raise TypeError(f"Expected argument `tasks` to be a sequence of CodeTask, but got {type(tasks).__name__}")
        if len(tasks) == 0:
            raise ValueError("Expected argument `tasks` to hold at least one CodeTask, but it is empty")
        for task in tasks:
            check_instance(task, CodeTask, "tasks", "a sequence of CodeTask (conformal.CodeTask(tree, nll, truth))")
        kept = [self.nested(task.tree, task.nll) for task in tasks]
        self.scores_ = coverage_scores(kept, [t.tree for t in tasks], [t.truth for t in tasks], self.taus)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported below in our own terms
            self.tau_ = select_tau(self.scores_, self.taus, self.epsilon, self.delta)
        if self.tau_ == -math.inf:
            warnings.warn(
                f"PACCodeSets: no tau on the grid is valid for epsilon={self.epsilon}, delta={self.delta} with "
                f"{len(tasks)} tasks; every partial program is the trivial `??`", stacklevel=2,
            )
        return self

    def predict(self, tree: CodeTree, nll: Sequence[float] | np.ndarray) -> PartialProgram:
        """The partial program of a generated program at the calibrated budget tau_."""
        check_calibrated(self, "tau_")
        assert self.tau_ is not None
        if self.tau_ == -math.inf:
            return partial_program(tree, np.zeros(tree.size, dtype=bool), self.tau_)
        level = int(np.searchsorted(self.taus, self.tau_))
        return partial_program(tree, self.nested(tree, nll)[level], self.tau_)
