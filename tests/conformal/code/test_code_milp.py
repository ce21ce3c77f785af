"""The joint MILP and the DP against brute-force enumeration of every valid removal on small trees."""

import itertools

import numpy as np
import pytest

from conformal.code.dp import best_kept, bottom_up_dp, sequential_dp, top_down_dp
from conformal.code.milp import nested_removals
from conformal.code.tree import CodeTree

TOL = 1e-9


def random_tree(n: int, rng: np.random.Generator) -> CodeTree:
    parent = [-1] + [int(rng.integers(0, v)) for v in range(1, n)]
    return CodeTree.from_parents("", [f"n{v}" for v in range(n)], parent, np.zeros((n, 2), int))


def all_kept_sets(tree: CodeTree) -> list[tuple[np.ndarray, int]]:
    """Every kept set closed under parents, with its hole count (root removal: the trivial set, 0 holes)."""
    out = [(np.zeros(tree.size, bool), 0)]
    for bits in itertools.product([False, True], repeat=tree.size - 1):
        kept = np.array([True, *bits])
        if np.any(kept[1:] & ~kept[tree.parent[1:]]):
            continue
        holes = int(np.sum(~kept[1:] & kept[tree.parent[1:]]))
        out.append((kept, holes))
    return out


def feasible(sets: list[tuple[np.ndarray, int]], c: np.ndarray, tau: float, m: int,
             allow: np.ndarray | None = None, require: np.ndarray | None = None) -> list[np.ndarray]:
    return [k for k, h in sets if h <= m and c[k].sum() <= tau + TOL * max(1, tau)
            and (allow is None or not np.any(k & ~allow)) and (require is None or not np.any(require & ~k))]


def brute_joint(tree: CodeTree, c: np.ndarray, taus: np.ndarray, m: int) -> int:
    sets = all_kept_sets(tree)
    best = {i: int(k.sum()) for i, (k, h) in enumerate(sets) if _ok(k, h, c, taus[0], m)}
    for tau in taus[1:]:
        nxt = {}
        for j, (k, h) in enumerate(sets):
            if not _ok(k, h, c, tau, m):
                continue
            prev = [v for i, v in best.items() if not np.any(sets[i][0] & ~k)]
            if prev:
                nxt[j] = int(k.sum()) + max(prev)
        best = nxt
    return max(best.values())


def _ok(k: np.ndarray, h: int, c: np.ndarray, tau: float, m: int) -> bool:
    return h <= m and c[k].sum() <= tau + TOL * max(1, tau)


def check_constraints(tree: CodeTree, kept: np.ndarray, c: np.ndarray, taus: np.ndarray, m: int) -> None:
    for lev, k in enumerate(kept):
        assert not np.any(k[1:] & ~k[tree.parent[1:]]), "subtree closure"
        if k[0]:
            assert np.sum(~k[1:] & k[tree.parent[1:]]) <= m, "hole budget"
        assert c[k].sum() <= taus[lev] + 1e-6, "NLL budget"
    assert not np.any(kept[:-1] & ~kept[1:]), "nesting"


@pytest.mark.parametrize("seed", range(12))
def test_milp_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    tree = random_tree(n, rng)
    c = rng.uniform(0, 3, n) * (rng.uniform(size=n) > 0.2)  # some zero-NLL nodes, as in real programs
    taus = np.sort(rng.uniform(0, c.sum() + 0.5, 3))
    m = int(rng.integers(0, 3))
    res = nested_removals(tree, c, taus, m)
    assert res.optimal and res.method == "milp"
    check_constraints(tree, res.kept, c, taus, m)
    assert res.objective == brute_joint(tree, c, taus, m)


@pytest.mark.parametrize("seed", range(12))
def test_dp_single_level_equals_brute_force_and_milp(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 10))
    tree = random_tree(n, rng)
    c = rng.uniform(0, 3, n) * (rng.uniform(size=n) > 0.2)
    tau = float(rng.uniform(0, c.sum()))
    m = int(rng.integers(0, 4))
    kept = best_kept(tree, c, tau, m)
    check_constraints(tree, kept[None], c, np.array([tau]), m)
    best = max(int(k.sum()) for k in feasible(all_kept_sets(tree), c, tau, m))
    assert kept.sum() == best
    assert nested_removals(tree, c, [tau], m).objective == best
    assert nested_removals(tree, c, [tau], m, method="dp").objective == best


@pytest.mark.parametrize("seed", range(8))
def test_sequential_dp_each_level_optimal_given_its_neighbour(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(3, 9))
    tree = random_tree(n, rng)
    c = rng.uniform(0, 3, n)
    taus = np.sort(rng.uniform(0, c.sum(), 4))
    m = int(rng.integers(1, 3))
    sets = all_kept_sets(tree)
    down, up = top_down_dp(tree, c, taus, m), bottom_up_dp(tree, c, taus, m)
    for kept in (down, up):
        check_constraints(tree, kept, c, taus, m)
    allow = None
    for lev in range(len(taus) - 1, -1, -1):  # top-down: optimal inside the next larger level
        assert down[lev].sum() == max(int(k.sum()) for k in feasible(sets, c, taus[lev], m, allow))
        allow = down[lev]
    require = None
    for lev in range(len(taus)):  # bottom-up: optimal among supersets of the next smaller level
        assert up[lev].sum() == max(int(k.sum()) for k in feasible(sets, c, taus[lev], m, require=require))
        require = up[lev]
    both = sequential_dp(tree, c, taus, m)
    assert both.sum() == max(down.sum(), up.sum())
    assert both.sum() <= nested_removals(tree, c, taus, m).objective  # never beats the joint optimum


def test_dp_on_a_200_node_tree_is_valid_and_matches_milp_on_one_level() -> None:
    rng = np.random.default_rng(7)
    tree = random_tree(200, rng)
    c = rng.uniform(0, 2, 200) * (rng.uniform(size=200) > 0.5)
    taus = np.linspace(1, c.sum(), 20)
    res = nested_removals(tree, c, taus, 5, method="dp")
    check_constraints(tree, res.kept, c, taus, 5)
    assert np.all(np.diff(res.kept.sum(1)) >= 0)
    assert nested_removals(tree, c, taus[[7]], 5).objective == best_kept(tree, c, taus[7], 5).sum()


def test_bad_input() -> None:
    tree = random_tree(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="`nll` to have shape \\(4,\\)"):
        nested_removals(tree, np.ones(3), [1.0], 1)
    with pytest.raises(ValueError, match="`nll`"):
        nested_removals(tree, -np.ones(4), [1.0], 1)
    with pytest.raises(ValueError, match="`max_holes`"):
        nested_removals(tree, np.ones(4), [1.0], -1)
    with pytest.raises(ValueError, match="`taus`"):
        nested_removals(tree, np.ones(4), [2.0, 1.0], 1)
    with pytest.raises(ValueError, match="`method`"):
        nested_removals(tree, np.ones(4), [1.0], 1, method="z3")
