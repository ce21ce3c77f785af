import numpy as np
import pytest

from conformal.code.tree import CodeTree, covers, node_nll, python_tree

SRC = "def f(a, b=1):\n    x = a + b * 2\n    return g(x, 'é', key=a)\n"


def test_python_tree_preorder_spans_and_labels() -> None:
    t = python_tree(SRC)
    assert t.labels[0].startswith("Module(")
    assert np.all(t.parent[1:] < np.arange(1, t.size))
    texts = [SRC[a:b] for a, b in t.spans]
    assert "a + b * 2" in texts and "b * 2" in texts and "'é'" in texts  # character (not byte) offsets
    assert "key=a" in texts
    # every child span lies inside its parent's span
    for v in range(1, t.size):
        p = t.parent[v]
        assert t.spans[p, 0] <= t.spans[v, 0] <= t.spans[v, 1] <= t.spans[p, 1]


def test_tree_equality_is_ast_equality() -> None:
    t = python_tree(SRC)
    same = python_tree(SRC.replace("    ", "  "))  # layout does not matter
    assert covers(t, np.ones(t.size, bool), same)
    for variant in [SRC.replace("b * 2", "b * 3"), SRC.replace("a + b", "a - b"), SRC.replace("key=a", "key=b"),
                    SRC.replace("def f(a, b=1)", "def f(a, *, b=1)"), SRC.replace("g(x,", "h(x,")]:
        assert not covers(t, np.ones(t.size, bool), python_tree(variant)), variant


def test_covers_with_holes() -> None:
    t = python_tree(SRC)
    truth = python_tree(SRC.replace("b * 2", "c.d(1)"))
    texts = [SRC[a:b] for a, b in t.spans]
    kept = np.ones(t.size, bool)
    v = texts.index("b * 2")
    sub = t.subtree(v)
    kept[sub] = False
    assert covers(t, kept, truth)
    kept[sub] = True
    kept[sub] = False
    kept[v] = True  # keep the BinOp, drop its children: label BinOp != Call
    assert not covers(t, kept, truth)
    assert covers(t, np.zeros(t.size, bool), python_tree("pass"))  # the trivial program covers anything


def test_node_nll_assigns_each_token_to_its_deepest_node() -> None:
    src = "y = a + b\n"
    t = python_tree(src)
    # tokens: y, =, a, +, b with log-probs -1..-5
    spans = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    nll = node_nll(t, [-1.0, -2.0, -3.0, -4.0, -5.0], spans)
    texts = [src[a:b] for a, b in t.spans]
    assert nll[texts.index("y")] == 1.0
    assert nll[texts.index("y = a + b")] == 2.0  # `=` belongs to the Assign
    assert nll[texts.index("a + b")] == 4.0  # `+` belongs to the BinOp
    assert nll[texts.index("b")] == 5.0
    assert nll.sum() == 15.0
    clipped = node_nll(t, [-30.0, 0, 0, 0, 0], spans)
    assert clipped.max() == 10.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="`source` to be parseable Python"):
        python_tree("def f(:\n")
    with pytest.raises(TypeError, match="`source`"):
        python_tree(3)  # type: ignore[arg-type]
    t = python_tree("x = 1\n")
    with pytest.raises(ValueError, match="`token_spans`"):
        node_nll(t, [-1.0, -1.0], [(0, 1)])
    with pytest.raises(ValueError, match="`token_spans`"):
        node_nll(t, [-1.0], [(0, 99)])
    with pytest.raises(ValueError, match="`token_logprobs`"):
        node_nll(t, [0.5], [(0, 1)])
    with pytest.raises(ValueError, match="`parent`"):
        CodeTree.from_parents("", ["a", "b"], [-1, 1], [(0, 0), (0, 0)])
    with pytest.raises(ValueError, match="`kept`"):
        covers(t, np.ones(2, bool), t)
