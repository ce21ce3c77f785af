import ast

import numpy as np
import pytest

from certkit.errors import NotCalibratedError
from conformal.code.lm import NGramCodeModel, lex, perturbation_tasks, stdlib_functions

MODULES = ("bisect", "heapq")


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    fns = stdlib_functions(MODULES, min_nodes=10, max_nodes=200)
    if len(fns) < 10:
        pytest.skip("the standard-library sources of this interpreter are not available")
    return fns


def test_stdlib_functions_are_standalone_programs(corpus: list[str]) -> None:
    for src in corpus:
        mod = ast.parse(src)
        assert len(mod.body) == 1 and isinstance(mod.body[0], ast.FunctionDef)


def test_lex_spans() -> None:
    src = "def f(x):\n    return x + 'é'  # c\n"
    toks = lex(src)
    assert [src[t.start:t.end] for t in toks if t.symbol not in ("<nl>", "<ind>", "<ded>")] == \
        ["def", "f", "(", "x", ")", ":", "return", "x", "+", "'é'"]
    assert [t.text for t in toks if t.identifier] == ["f", "x", "x"]


def test_ngram_is_normalised_and_round_trips(corpus: list[str]) -> None:
    model = NGramCodeModel(order=3, cache_weight=0.0).fit(corpus)
    assert model.vocab_ is not None
    vocab = sorted(model.vocab_)
    for ctx in [("<s>", "<s>"), ("def", "insort"), ("(", "a")]:
        total = sum(model._p_ngram(w, ctx) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-9)
    clone = NGramCodeModel.from_json(model.to_json())
    out, out2 = model(corpus[0]), clone(corpus[0])
    np.testing.assert_array_equal(out.logprobs, out2.logprobs)
    assert np.all(out.logprobs <= 0) and out.spans.shape == (len(out.logprobs), 2)
    with pytest.raises(NotCalibratedError):
        NGramCodeModel()("x = 1\n")
    with pytest.raises(ValueError, match="`cache_weight`"):
        NGramCodeModel(cache_weight=1.0)


def test_perturbation_tasks(corpus: list[str]) -> None:
    model = NGramCodeModel().fit(corpus)
    rng = np.random.default_rng(0)
    tasks = perturbation_tasks(model, corpus[:20], rng, mean_errors=1.0)
    assert len(tasks) >= 15
    changed = 0
    for task in tasks:
        assert task.nll.shape == (task.tree.size,)
        same = task.tree.labels == task.truth.labels
        changed += not same
        # identifiers replaced by identifiers: same shape, only Name/arg/attribute labels differ
        assert task.tree.size == task.truth.size
    assert 3 <= changed <= 19
    assert all(not t.tree.labels != t.truth.labels for t in perturbation_tasks(model, corpus[:5], rng, mean_errors=0.0))
    with pytest.raises(TypeError, match="`rng`"):
        perturbation_tasks(model, corpus[:1], 0)  # type: ignore[arg-type]
