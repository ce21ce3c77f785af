"""Softmax's second relaxation: the element-wise decomposition, and the best of both (issue 14).

certify relaxes softmax / log-softmax as one node with the log-sum-exp (LSE) planes of Wei et al. 2023
(:func:`certify._layers.softmax_relax`, auto_LiRPA's default). Those planes are tangent at the centre of the
input box and see only the box; on saturated rows (logits of tens, wide boxes) they are up to ~50% wider
than the former element-wise decomposition ``softmax(x)_i = 1 / sum_j exp(x_j - x_i)`` (log-softmax:
``-log sum_j exp(x_j - x_i)``), which bounds every difference ``x_j - x_i`` by CROWN back to the input
(Shi et al. 2020, "Robustness Verification for Transformers"), and for many single bounds wider than the
exact interval (IBP). Neither relaxation contains the other (on unsaturated rows the LSE planes are the tighter
under CROWN-IBP, the decomposition often slightly tighter under CROWN).

Both are sound linear bounds, so the element-wise best of the bounds computed with each, and of the interval
(IBP) bounds, is sound and never looser than any of them. :func:`crown_bounds` does this for graphs holding a
(log-)softmax node: CROWN on the graph as it is (LSE planes; equal to auto_LiRPA's CROWN), CROWN on
:func:`decomposed` (the graph with every (log-)softmax node replaced by differences, ``exp``, a sum and
``reciprocal`` / ``log``), and IBP, intersected element by element. Cost: about two CROWN passes plus one IBP
pass; the decomposition is skipped where its difference nodes would hold more than ``DECOMPOSITION_MAX``
values per input (the CROWN pass over K^2 differences per softmax row grows as K^3), and under CROWN-IBP
(IBP bounds of the differences make the decomposition looser than the LSE planes; only IBP is intersected).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from certify._graph import SOFTMAX_OPS, Graph, Node
from certify.ibp import InputRegion, ibp_bounds, interval_forward

__all__ = ["DECOMPOSITION_MAX", "DECOMPOSITION_RANGE", "SOFTMAX_BEST_OF", "decomposed", "has_softmax"]

#: take the element-wise best of the LSE planes, the decomposition and IBP on graphs with softmax (False: the
#: LSE planes alone, as auto_LiRPA; used by the tests that compare the planes with auto_LiRPA)
SOFTMAX_BEST_OF = True
#: the decomposition's largest number of pairwise differences per input (sum over softmax nodes of the node's
#: size times its row length K); beyond, only the LSE planes and IBP are used. Its CROWN pass bounds every
#: difference: measured (CPU, float64, batch 2) on nn.TransformerEncoder-style blocks of 2 heads, T = 8 (1024
#: differences) 0.35 -> 0.26 s, T = 16 (8192) 0.41 -> 8.3 s for no gain; the hand-written attention at T = 16
#: (4096) 0.10 -> 0.63 s
DECOMPOSITION_MAX = 1 << 10
#: the decomposition's largest ratio, per dtype, of the largest terms of its sums to the sums' lower bounds: row
#: i's sum ``s_i = sum_j exp(x_j - x_i) >= 1`` holds terms up to ``exp(u_j - l_i)`` over the input box [l, u]
#: while its lower bound may be as small as ``max(1, sum_j exp(l_j - u_i))``, and the default (not
#: ``sound=True``) engine's rounding errors in ``s_i`` scale with the largest terms (IBP's centre/radius ``c - r``
#: and CROWN's concretisation each lose about one ulp of them), then pass through ``1 / s`` unshrunk: with terms
#: of e^38 in float64 a lower bound of s came out as 2.0 for a true 1.0, and softmax's upper bound as 0.5 where
#: the network reaches 1.0 (found by review, session 10). The limit keeps that error below 2^-30 (float64) /
#: 2^-17 (float32) of ``s_i``; beyond it (and for other dtypes) only the LSE planes and IBP are used. Narrow
#: boxes stay within it however saturated the logits (the ratio is about exp of twice the box's width).
DECOMPOSITION_RANGE = {torch.float64: 2.0 ** 22, torch.float32: 2.0 ** 6}


def has_softmax(g: Graph) -> bool:
    return any(n.op in SOFTMAX_OPS for n in g.nodes)


def _differences(g: Graph) -> int:
    return sum(n.numel * n.shape[-1] for n in g.nodes if n.op in SOFTMAX_OPS)


def decomposed(g: Graph, dtype: torch.dtype, device: torch.device) -> Graph | None:
    """``g`` with every ``softmax`` / ``log_softmax`` node (over the last dimension, K entries) replaced by
    ``d = x_j - x_i`` (a ``linear`` node over the last dimension, K^2 outputs), ``exp``, ``s_i = sum_j exp(d_ij)``
    (a ``linear`` node, K outputs; ``s_i >= 1``, the term j = i being exactly 1) and ``1 / s`` (softmax) or
    ``-log s`` (log-softmax): the same function, relaxed element-wise. None when ``g`` has no softmax node or the
    differences exceed ``DECOMPOSITION_MAX``. Cached on ``g``; the other nodes (and their cached derived
    tensors) are shared with ``g``."""
    if not has_softmax(g) or _differences(g) > DECOMPOSITION_MAX:
        return None
    key = ("softmax decomposed", dtype, device)
    if key in g.derived:
        return g.derived[key]  # type: ignore[no-any-return]
    nodes: list[Node] = []
    index: dict[int, int] = {}

    def add(n: Node) -> int:
        nodes.append(n)
        return len(nodes) - 1

    for i, n in enumerate(g.nodes):
        ins = tuple(index[j] for j in n.inputs)
        if n.op not in SOFTMAX_OPS:
            index[i] = add(replace(n, inputs=ins) if ins != n.inputs else n)
            continue
        k, rows = n.shape[-1], n.shape[:-1]
        eye = torch.eye(k, dtype=dtype, device=device)
        diff = (eye.unsqueeze(0) - eye.unsqueeze(1)).reshape(k * k, k)  # row (i, j): e_j - e_i
        summ = torch.kron(eye, torch.ones((1, k), dtype=dtype, device=device))  # (k, k*k)
        j = add(Node("linear", ins, (*rows, k * k), n.name, diff, None))
        j = add(Node("exp", (j,), (*rows, k * k), n.name))
        j = add(Node("linear", (j,), n.shape, n.name, summ, None))
        if n.op == "log_softmax":
            j = add(Node("log", (j,), n.shape, n.name, attrs={"floor": 1.0}))
            j = add(Node("affine", (j,), n.shape, n.name, torch.tensor(-1.0, dtype=dtype, device=device), None))
        else:
            j = add(Node("reciprocal", (j,), n.shape, n.name, attrs={"floor": 1.0}))
        index[i] = j
    out = Graph(nodes, index[g.output], cacheable=g.cacheable)
    g.derived[key] = out
    return out


def within_range(g: Graph, region: InputRegion) -> bool:
    """True where, for every softmax row and entry i, ``sum_j exp(u_j - l_i) / max(1, sum_j exp(l_j - u_i))``
    (the largest terms of the decomposition's sum ``s_i`` over its smallest value, from the IBP intervals [l, u]
    of the row's inputs) is within :data:`DECOMPOSITION_RANGE` for the region's dtype."""
    limit = DECOMPOSITION_RANGE.get(region.x0.dtype, 0.0)
    if limit <= 0:
        return False
    ivs = interval_forward(g, region)
    for n in g.nodes:
        if n.op in SOFTMAX_OPS:
            a = ivs[n.inputs[0]]
            assert a is not None
            lo, hi = a.l.detach().double(), a.u.detach().double()
            log_ratio = (torch.logsumexp(hi, -1, keepdim=True) - lo
                         - torch.clamp(torch.logsumexp(lo, -1, keepdim=True) - hi, min=0.0))
            worst = float(log_ratio.max())
            if not math.isfinite(worst) or worst > math.log(limit):
                return False
    return True


def best(lo: Tensor, hi: Tensor, others: list[tuple[Tensor | None, Tensor | None]]) -> tuple[Tensor, Tensor]:
    """Element-wise the largest lower and smallest upper bound (``fmax``/``fmin``: a NaN side gives way)."""
    for ol, oh in others:
        if ol is not None:
            lo = torch.fmax(lo, ol)
        if oh is not None:
            hi = torch.fmin(hi, oh)
    return lo, hi


def alternatives(crown_bounds: Callable[..., tuple[Tensor, Tensor]], g: Graph, region: InputRegion,
                 spec: Tensor | None, *, ibp_intermediate: bool, need_lower: bool, need_upper: bool,
                 compare_ibp: bool) -> list[tuple[Tensor | None, Tensor | None]]:
    """The bounds other than the LSE planes' on a graph with softmax: CROWN (``crown_bounds``, that of
    certify.crown, passed in: no import cycle) on :func:`decomposed` (not under CROWN-IBP, nor beyond
    ``DECOMPOSITION_MAX`` or ``DECOMPOSITION_RANGE``, nor where it would exceed the memory budget) and IBP (unless ``compare_ibp``, which has
    intersected every bound with IBP already)."""
    others: list[tuple[Tensor | None, Tensor | None]] = []
    dec = None if ibp_intermediate else decomposed(g, region.x0.dtype, region.x0.device)
    if dec is not None and within_range(g, region):
        try:
            others.append(crown_bounds(dec, region, spec, need_lower=need_lower, need_upper=need_upper,
                                       compare_ibp=compare_ibp, best_of=False))
        except MemoryError:  # the decomposition is an optional tightening: without it, the planes and IBP
            pass
    if not compare_ibp:
        others.append(ibp_bounds(g, region, spec))
    return others


def crown_best_of(crown_bounds: Callable[..., tuple[Tensor, Tensor]], g: Graph, region: InputRegion,
                  spec: Tensor | None, *, ibp_intermediate: bool, need_lower: bool, need_upper: bool,
                  compare_ibp: bool) -> tuple[Tensor, Tensor]:
    """CROWN (CROWN-IBP) bounds of a graph with softmax: the element-wise best of CROWN with the LSE planes and
    :func:`alternatives`."""
    kw = {"ibp_intermediate": ibp_intermediate, "need_lower": need_lower, "need_upper": need_upper,
          "compare_ibp": compare_ibp}
    lo, hi = crown_bounds(g, region, spec, best_of=False, **kw)  # type: ignore[arg-type]
    return best(lo, hi, alternatives(crown_bounds, g, region, spec, **kw))  # type: ignore[arg-type]
