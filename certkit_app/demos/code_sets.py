"""Demo: PAC partial programs for held-out standard-library functions under a small n-gram model.

Run: ``python -m certkit_app.demos.code_sets`` (about a minute on 2 cores with the model cached).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from conformal.code.calibrate import coverage_scores, partial_program, select_tau
from conformal.code.lm import TASK_MODULES, perturbation_tasks, stdlib_functions, stdlib_ngram
from conformal.code.milp import nested_removals

__all__ = ["CodeSetsDemoRow", "demo_code_sets"]


@dataclass(frozen=True)
class CodeSetsDemoRow:
    """Test-set results at one epsilon, averaged over random calibration/test splits."""

    epsilon: float
    tau: float
    coverage: float
    min_coverage: float
    fraction_removed: float
    holes: float


def demo_code_sets(n_tasks: int = 300, epsilons: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4), delta: float = 0.1,
                   max_holes: int = 4, n_splits: int = 50, seed: int = 0, verbose: bool = True) -> list[CodeSetsDemoRow]:
    """Calibrate partial programs on half of the tasks, measure coverage and node removal on the other half.

    Tasks: :func:`conformal.code.lm.perturbation_tasks` on functions of :data:`TASK_MODULES` (20 to 100
    AST nodes), model :func:`conformal.code.lm.stdlib_ngram`, tau grid 0, 5, ..., 150, sequential DP.
    """
    say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    model = stdlib_ngram()
    say(f"[code sets] n-gram model of the stdlib ready ({time.perf_counter() - t0:.1f}s)")
    rng = np.random.default_rng(seed)
    functions = stdlib_functions(TASK_MODULES)
    chosen = rng.choice(len(functions), size=min(n_tasks, len(functions)), replace=False)
    tasks = perturbation_tasks(model, [functions[i] for i in sorted(chosen)], rng)
    say(f"[code sets] {len(tasks)} tasks (held-out functions with model-chosen identifier errors) "
        f"({time.perf_counter() - t0:.1f}s)")
    taus = np.arange(0.0, 151.0, 5.0)
    kept = [nested_removals(t.tree, t.nll, taus, max_holes, method="dp").kept for t in tasks]
    scores = coverage_scores(kept, [t.tree for t in tasks], [t.truth for t in tasks], taus)
    removed = np.array([1.0 - k.mean(axis=1) for k in kept])  # (n, L)
    holes = np.array([[len(partial_program(t.tree, k[lev], taus[lev]).holes) for lev in range(len(taus))]
                      for t, k in zip(tasks, kept)])
    say(f"[code sets] nested partial programs on a {len(taus)}-level grid ({time.perf_counter() - t0:.1f}s)")
    n = len(tasks)
    rows: list[CodeSetsDemoRow] = []
    for eps in epsilons:
        cov, rem, hol, tau_l = [], [], [], []
        for _ in range(n_splits):
            perm = rng.permutation(n)
            cal, test = perm[: n // 2], perm[n // 2:]
            tau = select_tau(scores[cal], taus, eps, delta)
            if tau == -math.inf:
                cov.append(1.0)
                rem.append(1.0)
                hol.append(1.0)
                continue
            lev = int(np.searchsorted(taus, tau))
            cov.append(float(np.mean(scores[test] <= -tau)))
            rem.append(float(removed[test, lev].mean()))
            hol.append(float(holes[test, lev].mean()))
            tau_l.append(tau)
        rows.append(CodeSetsDemoRow(eps, float(np.median(tau_l)) if tau_l else -math.inf, float(np.mean(cov)),
                                    float(np.min(cov)), float(np.mean(rem)), float(np.mean(hol))))
    say(f"[code sets] delta={delta}, m={max_holes}, {n_splits} random {n // 2}/{n - n // 2} calibration/test splits")
    say("  epsilon  median tau  test coverage (min)  nodes removed  holes")
    for r in rows:
        say(f"  {r.epsilon:7.2f}  {r.tau:10.0f}  {r.coverage:8.3f} ({r.min_coverage:.3f})  {r.fraction_removed:13.3f}"
            f"  {r.holes:5.2f}")
    say(f"[code sets] done in {time.perf_counter() - t0:.1f}s")
    return rows


if __name__ == "__main__":
    demo_code_sets()
