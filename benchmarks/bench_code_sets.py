"""Time to compute nested partial programs: exact joint MILP (HiGHS) vs the tree-knapsack DP.

Trees: random recursive trees (node v's parent uniform in 0..v-1) of N nodes; NLL: 0 for half the
nodes (as for AST nodes that own no token), Uniform(0, 3) otherwise; grid: L = 20 budgets evenly
spaced in (0, total NLL]; m = 5 holes. One run per size, seeded.

    OMP_NUM_THREADS=1 python benchmarks/bench_code_sets.py [--sizes 25 50 100 200] [--time-limit 120]

"DP kept / MILP kept" compares totals over the grid with the MILP's best solution (proven optimal only
where "MILP optimal" is True; otherwise the MILP hit its time limit and the ratio is against its incumbent).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from conformal.code import (
    TASK_MODULES,
    CodeTree,
    nested_removals,
    score_program,
    stdlib_functions,
    stdlib_ngram,
)


def random_tree(n: int, rng: np.random.Generator) -> CodeTree:
    parent = [-1] + [int(rng.integers(0, v)) for v in range(1, n)]
    return CodeTree.from_parents("", [f"n{v}" for v in range(n)], parent, np.zeros((n, 2), int))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    ap.add_argument("--levels", type=int, default=20)
    ap.add_argument("--holes", type=int, default=5)
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--milp-max-size", type=int, default=200, help="run the MILP only up to this many nodes")
    ap.add_argument("--real", action="store_true", help="also time real Python functions scored by the n-gram model")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"L = {args.levels} levels, m = {args.holes}, MILP time limit {args.time_limit:.0f}s")
    print("| N | MILP s | MILP optimal | DP s | MILP/DP time | DP kept / MILP kept | DP s per node-level (us) |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        rng = np.random.default_rng(n)
        tree = random_tree(n, rng)
        c = rng.uniform(0, 3, n) * (rng.uniform(size=n) < 0.5)
        taus = np.linspace(0, c.sum(), args.levels + 1)[1:]
        t0 = time.perf_counter()
        dp = nested_removals(tree, c, taus, args.holes, method="dp")
        t_dp = time.perf_counter() - t0
        per = 1e6 * t_dp / (n * args.levels)
        if n > args.milp_max_size:
            print(f"| {n} | - | - | {t_dp:.3f} | - | - | {per:.0f} |", flush=True)
            continue
        t0 = time.perf_counter()
        mi = nested_removals(tree, c, taus, args.holes, method="milp", time_limit=args.time_limit)
        t_mi = time.perf_counter() - t0
        print(f"| {n} | {t_mi:.2f} | {mi.optimal} | {t_dp:.3f} | {t_mi / t_dp:.0f}x | "
              f"{dp.objective / mi.objective:.3f} | {per:.0f} |", flush=True)

    if args.real:
        real(args)


def real(args: argparse.Namespace) -> None:
    """Stdlib functions whose trees are closest to each size, NLL from the demo's n-gram model."""
    model = stdlib_ngram()
    progs = [score_program(src, model) for src in stdlib_functions(TASK_MODULES, min_nodes=10, max_nodes=400)]
    print("\nReal Python functions (held-out stdlib, n-gram NLL), same L and m:")
    print("| N | MILP s | MILP optimal | DP s | MILP/DP time | DP kept / MILP kept |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        prog = min(progs, key=lambda p: abs(p.tree.size - n))
        taus = np.linspace(0, prog.nll.sum(), args.levels + 1)[1:]
        t0 = time.perf_counter()
        dp = nested_removals(prog.tree, prog.nll, taus, args.holes, method="dp")
        t_dp = time.perf_counter() - t0
        if prog.tree.size > args.milp_max_size:
            print(f"| {prog.tree.size} | - | - | {t_dp:.3f} | - | - |", flush=True)
            continue
        t0 = time.perf_counter()
        mi = nested_removals(prog.tree, prog.nll, taus, args.holes, method="milp", time_limit=args.time_limit)
        t_mi = time.perf_counter() - t0
        print(f"| {prog.tree.size} | {t_mi:.2f} | {mi.optimal} | {t_dp:.3f} | {t_mi / t_dp:.0f}x | "
              f"{dp.objective / mi.objective:.3f} |", flush=True)


if __name__ == "__main__":
    main()
