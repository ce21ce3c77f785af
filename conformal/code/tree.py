"""Syntax trees with character spans, per-node negative log-likelihoods, and matching modulo holes.

A :class:`CodeTree` is a language-neutral ordered tree: node 0 is the root, every parent precedes
its children (Python trees are in preorder). Each node has a label (everything about the node that is not a
child subtree: its kind, identifiers, constants, operators, field arities) and a character span
in the source. Two trees are equal when labels and child lists agree recursively; a partial
program (a tree whose removed subtrees are holes) *covers* a tree when they agree outside the
holes (Khakhar, Mell, Bastani, "PAC Prediction Sets for Large Language Models of Code", ICML 2023).

Python trees come from the standard :mod:`ast` module (:func:`python_tree`); other languages plug
in by building a :class:`CodeTree` from labels, parent indices and spans (:meth:`CodeTree.from_parents`).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from certkit._validation import check_positive

__all__ = ["CodeTree", "covers", "node_nll", "python_tree"]


@dataclass(frozen=True, eq=False)
class CodeTree:
    """An ordered tree over a source text; parents precede their children (e.g. preorder).

    Attributes:
        source: the program text.
        labels: (N,) node labels; two nodes are the same iff labels and children agree.
        parent: (N,) int64 parent index, -1 for the root (node 0); ``0 <= parent[v] < v`` otherwise.
        spans: (N, 2) int64 character spans [start, end) into ``source``.
        children: per node, the tuple of its children in order.
    """

    source: str
    labels: tuple[str, ...]
    parent: np.ndarray
    spans: np.ndarray
    children: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        """Number of nodes N."""
        return len(self.labels)

    @classmethod
    def from_parents(
        cls, source: str, labels: Sequence[str], parent: Sequence[int] | np.ndarray, spans: Sequence[Sequence[int]] | np.ndarray
    ) -> CodeTree:
        """Build and validate a tree: ``parent[0] == -1``, ``0 <= parent[v] < v``, spans inside the source.

        Children keep the order in which they appear in ``parent``.
        """
        if not isinstance(source, str):
            raise TypeError(f"Expected argument `source` to be a str, but got {type(source).__name__}")
        n = len(labels)
        if n == 0:
            raise ValueError("Expected argument `labels` to hold at least one node, but it is empty")
        par = np.asarray(parent, dtype=np.int64)
        if par.shape != (n,):
            raise ValueError(f"Expected argument `parent` to have shape ({n},), but got shape {par.shape}")
        if par[0] != -1 or np.any(par[1:] < 0) or np.any(par[1:] >= np.arange(1, n)):
            raise ValueError(
                "Expected argument `parent` to list parents before children (parent[0] == -1 and 0 <= parent[v] < v), "
                f"but got {par.tolist()[:20]}"
            )
        sp = np.asarray(spans, dtype=np.int64).reshape(-1, 2) if n else np.zeros((0, 2), np.int64)
        if sp.shape != (n, 2):
            raise ValueError(f"Expected argument `spans` to have shape ({n}, 2), but got shape {sp.shape}")
        if np.any(sp[:, 0] < 0) or np.any(sp[:, 1] < sp[:, 0]) or np.any(sp[:, 1] > len(source)):
            raise ValueError(
                f"Expected argument `spans` to hold ranges 0 <= start <= end <= len(source) = {len(source)}, "
                f"but got values in [{int(sp.min())}, {int(sp.max())}]"
            )
        kids: list[list[int]] = [[] for _ in range(n)]
        for v in range(1, n):
            kids[int(par[v])].append(v)
        par.setflags(write=False)
        sp.setflags(write=False)
        return cls(source, tuple(str(x) for x in labels), par, sp, tuple(tuple(k) for k in kids))

    def subtree(self, v: int) -> np.ndarray:
        """(N,) bool mask of the subtree rooted at v (v and its descendants)."""
        mask = np.zeros(self.size, dtype=bool)
        mask[v] = True
        for u in range(v + 1, self.size):  # parents precede children
            mask[u] = mask[self.parent[u]]
        return mask

    def subtree_sums(self, values: np.ndarray) -> np.ndarray:
        """(N,) sums of ``values`` (N,) over each node's subtree."""
        out = np.array(values, dtype=np.float64)
        for v in range(self.size - 1, 0, -1):
            out[self.parent[v]] += out[v]
        return out


# Nodes folded into their parent's label: they carry no position and are fixed by the parent's tokens.
_FOLDED = (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)
# Nodes kept whole (no children): CPython < 3.12 gives the parts of an f-string wrong positions.
_ATOMIC = (ast.JoinedStr,)


def _label(node: ast.AST) -> tuple[str, list[ast.AST]]:
    parts: list[str] = []
    kids: list[ast.AST] = []
    if isinstance(node, _ATOMIC):
        return f"{type(node).__name__}<{ast.dump(node, annotate_fields=False)}>", kids
    for field in node._fields:
        value = getattr(node, field, None)
        if isinstance(value, _FOLDED):
            parts.append(f"{field}={type(value).__name__}")
        elif isinstance(value, ast.AST):
            parts.append(f"{field}:1")
            kids.append(value)
        elif isinstance(value, list):
            if value and all(isinstance(x, _FOLDED) for x in value):
                parts.append(f"{field}=[{','.join(type(x).__name__ for x in value)}]")
            else:
                nodes = [x for x in value if isinstance(x, ast.AST)]
                # None entries (e.g. dict unpacking `**d` keys) are part of the shape.
                shape = "".join("n" if isinstance(x, ast.AST) else "-" for x in value)
                parts.append(f"{field}:{shape}")
                kids.extend(nodes)
        elif value is None:
            parts.append(f"{field}:0")
        else:
            parts.append(f"{field}={value!r}")
    return f"{type(node).__name__}({', '.join(parts)})", kids


def python_tree(source: str) -> CodeTree:
    """Parse Python source with :mod:`ast` into a :class:`CodeTree` (the root is the ``Module``).

    Labels hold the node type, its identifiers/constants/operators and the arity of each child
    field, so two programs' trees are equal iff their ASTs are equal (positions and load/store
    context aside). Spans are character offsets (``ast`` reports UTF-8 byte columns; converted).
    Nodes without a position (``arguments``, ``comprehension``, ...) span their children.

    Raises:
        ValueError: if ``source`` does not parse.
    """
    if not isinstance(source, str):
        raise TypeError(f"Expected argument `source` to be a str of Python code, but got {type(source).__name__}")
    try:
        module = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(
            f"Expected argument `source` to be parseable Python, but got a SyntaxError: {err.msg} "
            f"(line {err.lineno}, column {err.offset})"
        ) from None
    lines = source.splitlines(keepends=True)
    line_start = np.concatenate([[0], np.cumsum([len(s) for s in lines])]).astype(int).tolist()
    encoded = [s.encode("utf-8") for s in lines]

    def offset(lineno: int, col: int) -> int:
        if lineno - 1 >= len(lines):
            return len(source)
        return int(line_start[lineno - 1]) + len(encoded[lineno - 1][:col].decode("utf-8", errors="ignore"))

    labels: list[str] = []
    parent: list[int] = []
    spans: list[list[int]] = []
    stack: list[tuple[ast.AST, int]] = [(module, -1)]
    while stack:
        node, par = stack.pop()
        idx = len(labels)
        label, kids = _label(node)
        labels.append(label)
        parent.append(par)
        if getattr(node, "lineno", None) is not None and getattr(node, "end_lineno", None) is not None:
            spans.append([offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)])  # type: ignore[attr-defined]
        else:
            spans.append([-1, -1])  # filled from the children below
        stack.extend((k, idx) for k in reversed(kids))
    n = len(labels)
    sp = np.asarray(spans, dtype=np.int64)
    par_arr = np.asarray(parent, dtype=np.int64)
    sp[0] = [0, len(source)]
    # Position-less nodes span their children (children come later in preorder: sweep backwards).
    lo = np.where(sp[:, 0] >= 0, sp[:, 0], np.iinfo(np.int64).max)
    hi = np.where(sp[:, 1] >= 0, sp[:, 1], -1)
    for v in range(n - 1, 0, -1):
        if sp[v, 0] < 0 and hi[v] >= 0:
            sp[v] = [lo[v], hi[v]]
        p = par_arr[v]
        if sp[p, 0] < 0:
            lo[p] = min(lo[p], lo[v])
            hi[p] = max(hi[p], hi[v])
    for v in range(1, n):  # no located descendant (e.g. `def f():` arguments): empty span at the parent's start
        if sp[v, 0] < 0:
            s = int(sp[par_arr[v], 0])
            sp[v] = [s, s]
    return CodeTree.from_parents(source, labels, par_arr, sp)


def node_nll(
    tree: CodeTree, token_logprobs: Sequence[float] | np.ndarray, token_spans: Sequence[Sequence[int]] | np.ndarray,
    clip: float = 10.0,
) -> np.ndarray:
    """Per-node negative log-likelihood from per-token log-probabilities.

    Each token belongs to the deepest node whose span contains the token's first non-space
    character (its *own* tokens: for ``a + b`` the ``+`` belongs to the ``BinOp``), so the
    kept nodes' NLLs add up to the NLL of the kept text and nothing is counted twice. A node's
    NLL is the sum over its own tokens, clipped to [0, clip] as in Khakhar et al. (clip = 10).

    Args:
        tree: the program's tree.
        token_logprobs: (T,) log-probabilities (<= 0) of the program's tokens under the model.
        token_spans: (T, 2) character spans [start, end) of the tokens in ``tree.source``.
        clip: upper clip per node, > 0.

    Returns:
        (N,) float64 NLL per node.
    """
    clip = check_positive(clip, "clip")
    lp = np.asarray(token_logprobs, dtype=np.float64)
    if lp.ndim != 1:
        raise ValueError(f"Expected argument `token_logprobs` to have shape (T,), but got shape {lp.shape}")
    if not np.all(np.isfinite(lp) | (lp == -np.inf)) or np.any(lp > 1e-9):
        raise ValueError("Expected argument `token_logprobs` to hold log-probabilities <= 0 (no NaN), but it does not")
    sp = np.asarray(token_spans, dtype=np.int64).reshape(-1, 2) if len(lp) else np.zeros((0, 2), np.int64)
    if sp.shape != (lp.shape[0], 2):
        raise ValueError(f"Expected argument `token_spans` to have shape ({lp.shape[0]}, 2), but got shape {sp.shape}")
    src = tree.source
    if len(sp) and (np.any(sp[:, 0] < 0) or np.any(sp[:, 1] < sp[:, 0]) or np.any(sp[:, 1] > len(src))):
        raise ValueError(
            f"Expected argument `token_spans` to hold ranges 0 <= start <= end <= len(source) = {len(src)}, "
            f"but got values in [{int(sp.min())}, {int(sp.max())}]"
        )
    total = np.zeros(tree.size, dtype=np.float64)
    for (a, b), logp in zip(sp.tolist(), lp.tolist()):
        anchor = a
        while anchor < b and src[anchor].isspace():
            anchor += 1
        v = 0
        while True:  # descend to the deepest node containing the anchor
            for c in tree.children[v]:
                s, e = tree.spans[c]
                if s <= anchor < e:
                    v = c
                    break
            else:
                break
        total[v] -= logp
    return np.clip(total, 0.0, clip)


def covers(tree: CodeTree, kept: np.ndarray, truth: CodeTree) -> bool:
    """Whether ``truth`` is a completion of the partial program (``tree`` with unkept subtrees as holes).

    True iff a removed node is met (a hole matches any subtree) before any difference in label
    or number of children, along every path from the root.

    Args:
        tree: the generated program's tree (N nodes).
        kept: (N,) bool, closed under parents (a kept node's parent is kept).
        truth: the reference program's tree.
    """
    kept = np.asarray(kept, dtype=bool)
    if kept.shape != (tree.size,):
        raise ValueError(f"Expected argument `kept` to have shape ({tree.size},), but got shape {kept.shape}")
    stack = [(0, 0)]
    while stack:
        u, w = stack.pop()
        if not kept[u]:
            continue
        if tree.labels[u] != truth.labels[w] or len(tree.children[u]) != len(truth.children[w]):
            return False
        stack.extend(zip(tree.children[u], truth.children[w]))
    return True
