import math

import numpy as np
import pytest

from certkit.errors import NotCalibratedError
from conformal.code.calibrate import CodeTask, PACCodeSets, coverage_scores, partial_program, select_tau
from conformal.code.dp import sequential_dp
from conformal.code.tree import CodeTree, node_nll, python_tree
from conformal.functional import pac_quantile

N_NODES = 12


def random_tree(n: int, rng: np.random.Generator) -> CodeTree:
    parent = [-1] + [int(rng.integers(0, v)) for v in range(1, n)]
    return CodeTree.from_parents("", [f"n{v}" for v in range(n)], parent, np.zeros((n, 2), int))


def with_errors(tree: CodeTree, wrong: np.ndarray) -> CodeTree:
    labels = [lab + "'" if w else lab for lab, w in zip(tree.labels, wrong)]
    return CodeTree.from_parents(tree.source, labels, tree.parent, tree.spans)


def synthetic_pool(rng: np.random.Generator, n_trees: int, taus: np.ndarray, m: int) -> tuple[list[CodeTree], np.ndarray, np.ndarray]:
    """Trees whose node v is wrong independently with known probability p_v; NLL_v = -log(1 - p_v)."""
    trees, probs, kept = [], [], []
    for _ in range(n_trees):
        tree = random_tree(N_NODES, rng)
        p = rng.uniform(0, 0.12, N_NODES) * (rng.uniform(size=N_NODES) < 0.7)
        trees.append(tree)
        probs.append(p)
        kept.append(sequential_dp(tree, -np.log1p(-p), taus, m))
    return trees, np.array(probs), np.array(kept)


def test_coverage_scores_match_the_pipeline() -> None:
    rng = np.random.default_rng(0)
    taus = np.linspace(0, 1.5, 16)
    trees, probs, kept = synthetic_pool(rng, 3, taus, 2)
    idx = rng.integers(0, 3, 60)
    wrong = rng.uniform(size=(60, N_NODES)) < probs[idx]
    truths = [with_errors(trees[i], w) for i, w in zip(idx, wrong)]
    scores = coverage_scores([kept[i] for i in idx], [trees[i] for i in idx], truths, taus)
    # covered at level l iff no wrong node is kept; nested, so the last covered level gives the score
    covered = ~np.any(wrong[:, None, :] & kept[idx], axis=2)
    assert np.all(covered[:, :-1] >= covered[:, 1:])  # monotone in tau
    last = np.where(covered.any(1), covered.sum(1) - 1, -1)
    expect = np.where(last >= 0, -taus[np.maximum(last, 0)], np.inf)
    np.testing.assert_array_equal(scores, expect)
    assert np.isfinite(scores).any() and (scores > -taus[-1]).any()  # the test exercises both cases


def _failure_rate(k_rule: str, draws: int, seed: int, n_levels: int = 151) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    taus = np.linspace(0, 1.5, n_levels)
    trees, probs, kept = synthetic_pool(rng, 20, taus, 3)
    # exact miscoverage at each level: mean over the pool of P(some kept node is wrong)
    miss = np.mean(1 - np.prod(np.where(kept, 1 - probs[:, None, :], 1.0), axis=2), axis=0)
    assert np.all(np.diff(miss) >= -1e-12)
    eps, delta, n = 0.1, 0.1, 200
    fails = []
    for _ in range(draws):
        idx = rng.integers(0, len(trees), n)
        wrong = rng.uniform(size=(n, N_NODES)) < probs[idx]
        covered = ~np.any(wrong[:, None, :] & kept[idx], axis=2)
        last = np.where(covered.any(1), covered.sum(1) - 1, -1)
        scores = np.where(last >= 0, -taus[np.maximum(last, 0)], np.inf)
        if k_rule == "pac":
            tau = select_tau(scores, taus, eps, delta)
        else:  # naive: the empirical (1 - eps) quantile, no binomial correction
            q = np.sort(scores)[math.ceil(n * (1 - eps)) - 1]
            ok = taus[-taus >= q]
            tau = ok.max() if ok.size else -np.inf
        level = int(np.searchsorted(taus, tau)) if tau > -np.inf else None
        fails.append(False if level is None else miss[level] > eps)
    return float(np.mean(fails)), float(miss[-1])


@pytest.mark.slow
def test_pac_guarantee_over_calibration_draws() -> None:
    draws = 1500
    rate, worst = _failure_rate("pac", draws, seed=1)
    assert worst > 0.1  # the largest tau is not valid, so the threshold matters
    assert rate <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / draws)
    naive, _ = _failure_rate("naive", draws, seed=1)
    assert naive > 0.25  # the test has power: without the binomial rule the guarantee fails


def test_pac_guarantee_quick() -> None:
    rate, _ = _failure_rate("pac", 300, seed=2)
    assert rate <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 300)


def test_select_tau_is_pac_quantile_on_the_grid() -> None:
    taus = np.arange(10.0)
    scores = -np.array([9, 9, 8, 7, 7, 7, 6, 5, 4, 3] * 10, dtype=float)
    tau = select_tau(scores, taus, 0.1, 0.1)
    assert -tau >= pac_quantile(scores, 0.1, 0.1) and tau + 1 > -pac_quantile(scores, 0.1, 0.1)
    with pytest.warns(UserWarning):
        assert select_tau(scores[:3], taus, 0.01, 0.01) == -math.inf


SRC = "def f(a, b):\n    c = a * b + 1\n    return c if c > 0 else -c\n"


def _task(src: str, truth: str, rng: np.random.Generator) -> CodeTask:
    tree = python_tree(src)
    return CodeTask(tree=tree, nll=rng.uniform(0, 1.5, tree.size), truth=python_tree(truth))


def test_pac_code_sets_end_to_end() -> None:
    rng = np.random.default_rng(3)
    variants = [SRC, SRC.replace("+ 1", "+ 2"), SRC.replace("a * b", "a - b"), SRC.replace("> 0", ">= 0")]
    tasks = [_task(SRC, variants[int(rng.integers(0, 4))], rng) for _ in range(60)]
    sets = PACCodeSets(epsilon=0.3, delta=0.1, taus=np.linspace(0, 20, 21), max_holes=3)
    with pytest.raises(NotCalibratedError):
        sets.predict(tasks[0].tree, tasks[0].nll)
    assert sets.calibrate(tasks) is sets
    assert sets.tau_ is not None and sets.scores_ is not None and sets.scores_.shape == (60,)
    pp = sets.predict(tasks[0].tree, tasks[0].nll)
    assert pp.tau == sets.tau_ and 0 <= pp.fraction_removed <= 1
    assert pp.text.count("??") == len(pp.holes) <= 3
    empirical = np.mean([sets.predict(t.tree, t.nll).covers(t.truth) for t in tasks])
    assert empirical >= 1 - 0.3 - 0.1


def test_partial_program_rendering() -> None:
    tree = python_tree(SRC)
    texts = [SRC[a:b] for a, b in tree.spans]
    kept = ~tree.subtree(texts.index("a * b + 1"))
    pp = partial_program(tree, kept, 1.0)
    assert pp.text == "def f(a, b):\n    c = ??\n    return c if c > 0 else -c\n"
    (hole,) = pp.holes
    assert SRC[hole.start:hole.end] == "a * b + 1" and hole.label.startswith("BinOp")
    assert partial_program(tree, np.zeros(tree.size, bool), 0.0).text == "??"
    with pytest.raises(ValueError, match="closed under parents"):
        partial_program(tree, ~kept | (np.arange(tree.size) > 3), 1.0)


def test_bad_input() -> None:
    for bad in [0.0, 1.0, -0.1, 1.5]:
        with pytest.raises(ValueError, match="`epsilon`"):
            PACCodeSets(epsilon=bad)
        with pytest.raises(ValueError, match="`delta`"):
            PACCodeSets(delta=bad)
    with pytest.raises(ValueError, match="`max_holes`"):
        PACCodeSets(max_holes=-1)
    with pytest.raises(ValueError, match="`taus`"):
        PACCodeSets(taus=[1.0, 1.0])
    with pytest.raises(ValueError, match="`tasks`"):
        PACCodeSets().calibrate([])
    tree = python_tree("x = 1\n")
    sets = PACCodeSets(epsilon=0.5, delta=0.5).calibrate([CodeTask(tree, np.zeros(tree.size), tree)] * 5)
    with pytest.raises(ValueError, match="`nll` to have shape"):
        sets.predict(tree, np.zeros(tree.size + 1))
    with pytest.raises(ValueError, match="`token_logprobs`"):
        node_nll(tree, np.zeros((2, 2)), np.zeros((2, 2)))
    not_nested = np.array([[True] * tree.size, [False] * tree.size])
    with pytest.raises(ValueError, match="nested"):
        coverage_scores([not_nested], [tree], [tree], [0.0, 1.0])


def test_calibrate_refuses_tasks_that_are_not_code_tasks() -> None:
    # audit-inputs: a string or a list of strings failed with AttributeError ('str' object has no attribute 'tree')
    for bad in ("x = 1", ["x = 1"]):
        with pytest.raises(TypeError, match="`tasks`"):
            PACCodeSets().calibrate(bad)  # type: ignore[arg-type]
