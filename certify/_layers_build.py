"""Building graph nodes for the layers beyond the basic ones: element-wise functions, products and
matmul of activations, softmax, LayerNorm, attention, Conv1d, ConvTranspose2d, Upsample and general
padding. Composite layers are decomposed into the graph's operations (see ``certify._graph``), each
exact except the element-wise functions and products, which ``certify._layers`` relaxes.

Called by ``certify._graph._Builder`` (``b``): ``MODULES`` maps module types, ``FUNCTIONS`` the names of
traced torch functions and tensor methods, to builders returning the index of the result node.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from certify._ir import Node, _unsupported

__all__ = ["FUNCTIONS", "MODULES", "attention_masks", "encoder_call", "layernorm", "masked_softmax", "matmul",
           "mha_call", "mul2", "pad_general", "softmax"]


def _check(b: Any, idx: int, want: Tensor, what: str, loc: str) -> int:
    """Refuse the conversion of a layer whose graph does not reproduce it on the sample."""
    got = b.sample(idx)
    if tuple(want.shape[1:]) != b.shape(idx) or not torch.allclose(want.to(got.dtype), got, rtol=1e-4, atol=1e-5):
        raise _unsupported(f"{what} (its conversion does not reproduce it)", loc)
    return idx


def _dim(b: Any, i: int, dim: Any, loc: str) -> int:
    """Per-sample dimension index of a torch ``dim`` argument (batch included) of node ``i``."""
    nd = len(b.shape(i)) + 1
    d = int(dim)
    if not -nd <= d < nd or d % nd == 0:
        raise _unsupported(f"an operation along dimension {dim} (the batch dimension, or out of range)", loc)
    return d % nd - 1


def permute_last(b: Any, i: int, d: int, loc: str) -> int:
    """Swap per-sample dimension ``d`` with the last one (a no-op if it is the last)."""
    nd = len(b.shape(i))
    if d == nd - 1:
        return i
    perm = list(range(nd))
    perm[d], perm[-1] = perm[-1], perm[d]
    return b.add(Node("permute", (i,), (), loc, attrs={"perm": tuple(perm)}))


def axis_linear(b: Any, i: int, d: int, mat: Tensor, loc: str, bias: Tensor | None = None,
                exact: tuple[Tensor, Tensor] | None = None) -> int:
    """``mat`` (out, in) applied along per-sample dimension ``d`` (a ``linear`` node); ``exact``: an
    enclosure of the exact matrix where ``mat`` is rounded (for ``sound=True``)."""
    j = permute_last(b, i, d, loc)
    attrs = {} if exact is None else exact_bounds(b, *exact)
    j = b.add(Node("linear", (j,), (), loc, mat.to(b.dtype), None if bias is None else bias.to(b.dtype), attrs))
    return permute_last(b, j, d, loc)


def _ratio(num: Tensor, den: int) -> tuple[Tensor, Tensor]:
    """Float64 enclosure of ``num / den`` (``num`` exact floats, ``den`` an integer): one correctly
    rounded division is within one step of the exact quotient."""
    q = num.to(torch.float64) / den
    return torch.nextafter(q, torch.tensor(-math.inf, dtype=q.dtype)), torch.nextafter(q, torch.tensor(math.inf,
                                                                                                     dtype=q.dtype))


def _scaled(t: Tensor, lo: float, hi: float) -> tuple[Tensor, Tensor]:
    """Float64 enclosure of ``t * s`` for every real s in [lo, hi] (rounded outward)."""
    t = t.detach().to(torch.float64)
    a, c = t * lo, t * hi
    return (torch.nextafter(torch.minimum(a, c), torch.tensor(-math.inf, dtype=t.dtype)),
            torch.nextafter(torch.maximum(a, c), torch.tensor(math.inf, dtype=t.dtype)))


def exact_bounds(b: Any, wl: Tensor | None, wh: Tensor | None, bl: Tensor | None = None,
                 bh: Tensor | None = None) -> dict[str, Any]:
    """Node attrs recording enclosures of a node's exact parameters (for ``sound=True``, which only runs on
    float64 graphs; none on other graphs)."""
    if b.dtype != torch.float64:
        return {}
    dev = b.nodes_device
    def mv(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(device=dev)
    return {"exact": ("bounds", mv(wl), mv(wh), mv(bl), mv(bh))}


def reshape(b: Any, i: int, shape: tuple[int, ...], loc: str) -> int:
    if tuple(shape) == b.shape(i):
        return i
    return b.add(Node("reshape", (i,), tuple(shape), loc))


def scalar(b: Any, op: str, i: int, loc: str, param: Any = None, floor: float | None = None) -> int:
    """An element-wise function node; ``floor``: its input is >= floor by construction (exactly and in
    floating point), which the bounds may use (rounding can otherwise push a bound below it)."""
    attrs: dict[str, Any] = {} if param is None else {"param": param}
    if floor is not None:
        attrs["floor"] = floor
    return b.add(Node(op, (i,), (), loc, attrs=attrs))


def broadcast_pair(b: Any, i: int, j: int, loc: str) -> tuple[int, int]:
    """Graph values ``i`` and ``j`` of per-sample shapes with the same number of dimensions broadcast to one shape
    (torch's rule): each dimension of size 1 repeated by a 0/1 ``linear`` map along it (exact); the same nodes
    where the shapes agree. UnsupportedLayerError where they do not broadcast (or differ in their number of
    dimensions: torch would then broadcast the batch dimension of one against a dimension of the other)."""
    si, sj = b.shape(i), b.shape(j)
    if si == sj:
        return i, j
    try:
        if len(si) != len(sj):  # torch would broadcast one's batch dimension against the other's dimensions
            raise RuntimeError("different numbers of dimensions")
        out = tuple(torch.broadcast_shapes(si, sj))
    except RuntimeError as e:
        raise _unsupported(f"sum of tensors of per-sample shapes {si} and {sj}", loc) from e
    res = []
    for k in (i, j):
        for d, (m, n) in enumerate(zip(b.shape(k), out)):
            if m != n:  # m == 1: repeated n times
                k = axis_linear(b, k, d, torch.ones((n, 1), dtype=b.dtype, device=b.nodes_device), loc)
        res.append(k)
    return res[0], res[1]


def mul2(b: Any, i: int, j: int, loc: str) -> int:
    """``a * b`` of two graph values (``square`` when they are the same value), broadcasting."""
    if i == j:
        return scalar(b, "square", i, loc)
    si, sj = b.shape(i), b.shape(j)
    try:
        out = tuple(torch.broadcast_shapes(si, sj))
    except RuntimeError as e:
        raise _unsupported(f"product of tensors of per-sample shapes {si} and {sj}", loc) from e
    i = reshape(b, i, (1,) * (len(out) - len(si)) + tuple(si), loc)
    j = reshape(b, j, (1,) * (len(out) - len(sj)) + tuple(sj), loc)
    return b.add(Node("mul", (i, j), (), loc))


def matmul(b: Any, i: int, j: int, loc: str) -> int:
    """``a @ b`` of two graph values (per-sample shapes (..., M, J) and (..., J, N)): the product
    ``a[..., M, J, 1] * b[..., 1, J, N]`` (McCormick planes) summed over J (exact)."""
    sa, sb = b.shape(i), b.shape(j)
    if len(sa) < 2 or len(sb) < 2 or sa[-1] != sb[-2]:
        raise _unsupported(f"matmul of tensors of per-sample shapes {sa} and {sb} (both need >= 2 dims)", loc)
    ai = reshape(b, i, (*sa, 1), loc)
    bj = reshape(b, j, (*sb[:-2], 1, *sb[-2:]), loc)
    z = mul2(b, ai, bj, loc)  # (..., M, J, N)
    nd = len(b.shape(z))
    ones = torch.ones((1, sa[-1]), dtype=b.dtype, device=b.nodes_device)
    s = axis_linear(b, z, nd - 2, ones, loc)  # (..., M, 1, N)
    shp = b.shape(s)
    return reshape(b, s, (*shp[:-2], shp[-1]), loc)


def _masked_input(b: Any, i: int, d: int, log: bool, loc: str) -> int | None:
    """A softmax whose input is ``x * w + c`` with ``-inf`` entries in the constant ``c`` (a hand-written
    attention mask: ``scores + mask`` or ``scores.masked_fill(mask, -inf)``): the softmax over the finite
    entries (:func:`masked_softmax`; the masked weights are exactly 0). None for any other input."""
    n = b.nodes[i]
    if n.op != "affine" or n.bias is None or not bool(torch.isneginf(n.bias).any()):
        return None
    if log:
        raise _unsupported("log_softmax of a masked input (its masked entries are -inf)", loc)
    shape = b.shape(i)
    c = n.bias.detach().expand(shape)
    allowed = ~torch.isneginf(c)
    w = None if n.weight is None else n.weight.detach().expand(shape)
    if bool(torch.isinf(c[allowed]).any()) or (w is not None and not bool(torch.isfinite(w[allowed]).all())):
        raise _unsupported("a masked softmax input with +inf entries", loc)
    finite = torch.where(allowed, c, torch.zeros_like(c))
    wf = None if w is None else torch.where(allowed, w, torch.zeros_like(w))
    j = n.inputs[0]
    if bool((finite != 0).any()) or (wf is not None and not bool((wf[allowed] == 1).all())):
        j = b.add(Node("affine", (j,), (), loc, wf, finite))
    j = permute_last(b, j, d, loc)
    perm = list(range(len(shape)))
    perm[d], perm[-1] = perm[-1], perm[d]
    allowed = allowed.permute(*perm)
    moved = b.shape(j)
    rows = math.prod(moved[:-1])
    j = reshape(b, j, (1, rows, moved[-1]), loc)
    j = masked_softmax(b, j, allowed.reshape(1, rows, moved[-1]).cpu(), loc)
    j = reshape(b, j, moved, loc)
    return permute_last(b, j, d, loc)


def _f_masked_fill(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    """``x.masked_fill(mask, value)`` with a constant mask and value: ``x * (1 - mask) + value * mask``
    (exact for finite x; ``-inf`` makes a masked softmax input, see :func:`_masked_input`)."""
    x, mask, value = args[0], _arg(args, kwargs, 1, "mask", None, lambda v: v), _arg(args, kwargs, 2, "value",
                                                                                     None, lambda v: v)
    if not is_ir(x) or is_ir(mask) or is_ir(value):
        raise _unsupported("masked_fill with an input-dependent mask or value", loc)
    i = env[x][1]
    m = b.const(val(mask), i, loc).to(torch.bool)
    v = float(val(value))
    w = torch.where(m, torch.zeros_like(m, dtype=b.dtype), torch.ones_like(m, dtype=b.dtype))
    c = torch.where(m, torch.full_like(w, v), torch.zeros_like(w))
    return b.add(Node("affine", (i,), (), loc, w, c))


def _f_sdpa(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p=0, is_causal, scale)`` of graph values
    (per-sample shapes (..., L, E), (..., S, E), (..., S, Ev)): ``softmax(q k^T scale + mask) v`` over the
    allowed keys (a boolean mask marks the keys that MAY be attended to, as torch's; ``is_causal``: the
    lower-triangular one); ``scale`` defaults to the exact ``1 / sqrt(E)``."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    given = dict(zip(names, args)) | dict(kwargs)
    q, k, v = (given.get(n) for n in names[:3])
    if not (is_ir(q) and is_ir(k) and is_ir(v)):
        raise _unsupported("scaled_dot_product_attention of constant tensors", loc)
    what = "scaled_dot_product_attention"
    mask = _constant_arg(given, "attn_mask", None, val, is_ir, what, loc)
    if float(_constant_arg(given, "dropout_p", 0.0, val, is_ir, what, loc)) != 0.0:
        raise _unsupported("scaled_dot_product_attention with dropout_p > 0 (dropout is applied even in eval mode)",
                           loc)
    causal = bool(_constant_arg(given, "is_causal", False, val, is_ir, what, loc))
    scale = _constant_arg(given, "scale", None, val, is_ir, what, loc)
    if _constant_arg(given, "enable_gqa", False, val, is_ir, what, loc):
        raise _unsupported("scaled_dot_product_attention with enable_gqa=True", loc)
    qi, ki, vi = env[q][1], env[k][1], env[v][1]
    sq, sk = b.shape(qi), b.shape(ki)
    if len(sq) < 2 or len(sk) != len(sq) or sq[-1] != sk[-1]:
        raise _unsupported(f"scaled_dot_product_attention of per-sample shapes {sq} and {sk}", loc)
    nd = len(sk)
    perm = (*range(nd - 2), nd - 1, nd - 2)
    kt = b.add(Node("permute", (ki,), (), loc, attrs={"perm": perm}))
    scores = matmul(b, qi, kt, loc)  # (..., L, S)
    shape = b.shape(scores)
    if scale is None:  # the exact 1 / sqrt(E), enclosed for sound=True
        r = math.sqrt(sq[-1])
        s_lo = math.nextafter(1.0 / math.nextafter(r, math.inf), -math.inf)
        s_hi = math.nextafter(1.0 / math.nextafter(r, 0.0), math.inf)
        w = torch.tensor(1.0 / r, dtype=b.dtype, device=b.nodes_device)
        attrs = exact_bounds(b, torch.tensor(s_lo, dtype=torch.float64), torch.tensor(s_hi, dtype=torch.float64))
    else:
        w, attrs = torch.tensor(float(scale), dtype=b.dtype, device=b.nodes_device), {}
    scores = b.add(Node("affine", (scores,), (), loc, w, None, attrs))
    allowed = torch.ones(shape, dtype=torch.bool)
    bias = torch.zeros(shape, dtype=torch.float64)
    if causal:
        allowed = allowed & torch.ones(shape[-2:], dtype=torch.bool).tril()
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise _unsupported("scaled_dot_product_attention with an attn_mask that is not a tensor", loc)
        mk = mask.detach().cpu()
        if mk.dim() > len(shape):  # a batch dimension: one mask for every sample
            mk = _one_per_sample(mk.reshape(-1, *mk.shape[mk.dim() - len(shape):]), 1, "attn_mask", loc)[0]
        try:
            mk = mk.expand(shape)
        except RuntimeError as e:
            raise _unsupported(f"attn_mask of shape {tuple(mask.shape)} for scores of shape {shape}", loc) from e
        if mk.dtype == torch.bool:
            allowed = allowed & mk
        else:
            mk = mk.to(torch.float64)
            masked = torch.isneginf(mk)
            if not bool(torch.isfinite(mk[~masked]).all()):
                raise _unsupported("attn_mask with NaN or +inf entries", loc)
            allowed = allowed & ~masked
            bias = torch.where(masked, torch.zeros_like(mk), mk)
    if not bool(allowed.any(-1).all()):
        raise _unsupported("an attention mask that masks every key of a query (torch returns NaN there)", loc)
    if bool((bias != 0).any()):
        scores = b.add(Node("affine", (scores,), (), loc, None, bias.to(dtype=b.dtype, device=b.nodes_device)))
    if bool(allowed.all()):
        attn = softmax(b, scores, -1, loc)
    else:
        rows = math.prod(shape[:-2]) if len(shape) > 2 else 1
        j = reshape(b, scores, (rows, *shape[-2:]), loc)
        j = masked_softmax(b, j, allowed.reshape(rows, *shape[-2:]), loc)
        attn = reshape(b, j, shape, loc)
    return matmul(b, attn, vi, loc)


def softmax(b: Any, i: int, dim: Any, loc: str, log: bool = False) -> int:
    """(Log-)softmax along ``dim``: one ``softmax`` (``log_softmax``) node over the last dimension (between
    permutes), relaxed as a whole by the log-sum-exp bounds of Wei et al. 2023 (``certify._layers.softmax_relax``)."""
    d = _dim(b, i, dim, loc)
    masked = _masked_input(b, i, d, log, loc)
    if masked is not None:
        return masked
    j = permute_last(b, i, d, loc)
    j = b.add(Node("log_softmax" if log else "softmax", (j,), (), loc))
    return permute_last(b, j, d, loc)


def layernorm(b: Any, i: int, normalized_shape: tuple[int, ...], weight: Tensor | None, bias: Tensor | None,
              eps: float, loc: str) -> int:
    """LayerNorm ``(x - mean) * rsqrt(var + eps) * weight + bias`` over the last dims: mean subtraction
    (linear, exact), ``square``, the mean (linear), ``+ eps``, ``rsqrt`` and a product (Shi et al. 2020)."""
    shape = b.shape(i)
    m = len(normalized_shape)
    if tuple(shape[len(shape) - m:]) != tuple(normalized_shape):
        raise _unsupported(f"LayerNorm over {tuple(normalized_shape)} of a tensor of per-sample shape {shape}", loc)
    k = math.prod(normalized_shape)
    lead = shape[: len(shape) - m]
    j = reshape(b, i, (*lead, k), loc)
    eye = torch.eye(k, dtype=b.dtype, device=b.nodes_device)
    # x - mean(x) and the mean of the squares: exact weights (k I - 1) / k and 1 / k, recorded for sound=True
    c = b.add(Node("linear", (j,), (), loc, eye - 1.0 / k, None, exact_bounds(b, *_ratio(k * eye - 1, k))))
    sq = scalar(b, "square", c, loc)
    mean = torch.full((1, k), 1.0 / k, dtype=b.dtype, device=b.nodes_device)
    v = b.add(Node("linear", (sq,), (), loc, mean, torch.tensor([float(eps)], dtype=b.dtype, device=b.nodes_device),
                   exact_bounds(b, *_ratio(torch.ones_like(mean), k))))
    r = scalar(b, "rsqrt", v, loc, floor=float(eps) if eps > 0 else None)
    y = b.add(Node("mul", (c, r), (), loc))
    y = reshape(b, y, shape, loc)
    if weight is not None or bias is not None:
        w = None if weight is None else b.p(weight).reshape(normalized_shape)
        bb = None if bias is None else b.p(bias).reshape(normalized_shape)
        y = b.add(Node("affine", (y,), (), loc, w, bb))
    return y


# -- modules ---------------------------------------------------------------------------------------

def _layernorm_module(b: Any, m: nn.LayerNorm, i: int, loc: str) -> int:
    w = b.attr(m, "weight") if m.elementwise_affine else None
    bias = getattr(m, "bias", None) if m.elementwise_affine else None
    return layernorm(b, i, tuple(m.normalized_shape), w, bias, m.eps, loc)


def _prelu(b: Any, m: nn.PReLU, i: int, loc: str) -> int:
    a = b.p(b.attr(m, "weight"))
    shape = b.shape(i)
    if a.numel() == 1:
        p: Any = a.reshape(())
    else:
        if not shape or shape[0] != a.numel():
            raise _unsupported(f"PReLU with {a.numel()} parameters on per-sample shape {shape}", loc)
        p = a.reshape(-1, *([1] * (len(shape) - 1)))
    return scalar(b, "leaky_relu", i, loc, p)


def _gelu(b: Any, approximate: Any, i: int, loc: str) -> int:
    if approximate not in ("none", "tanh"):
        raise _unsupported(f"GELU(approximate={approximate!r}) (supported: 'none', 'tanh')", loc)
    return scalar(b, "gelu" if approximate == "none" else "gelu_tanh", i, loc)


def _gelu_module(b: Any, m: nn.GELU, i: int, loc: str) -> int:
    return _gelu(b, m.approximate, i, loc)


def _softplus_params(beta: Any, threshold: Any, loc: str) -> tuple[float, float]:
    beta, threshold = float(beta), float(threshold)
    if beta <= 0:
        raise _unsupported(f"Softplus with beta={beta} <= 0", loc)
    return beta, threshold


def _conv1d(b: Any, m: nn.Conv1d, i: int, loc: str) -> int:
    shape = b.shape(i)
    if len(shape) != 2:
        raise _unsupported(f"Conv1d on input of per-sample shape {shape}", loc)
    pad: Any = m.padding
    k, d = m.kernel_size[0], m.dilation[0]
    if isinstance(pad, str):
        pad = (0,) if pad == "valid" else (d * (k - 1) // 2,)
        if m.padding == "same" and (d * (k - 1)) % 2:
            i = pad_general(b, i, (0, 1), "constant", 0.0, loc)
    if m.padding_mode != "zeros" and pad[0]:
        mode = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}[m.padding_mode]
        i = pad_general(b, i, (pad[0], pad[0]), mode, 0.0, loc)
        pad = (0,)
    c = b.shape(i)
    j = reshape(b, i, (c[0], 1, c[1]), loc)
    w = b.p(b.attr(m, "weight")).unsqueeze(2)
    attrs = {"stride": (1, m.stride[0]), "padding": (0, pad[0]), "dilation": (1, d), "groups": m.groups}
    j = b.add(Node("conv", (j,), (), loc, w, b.p(b.attr(m, "bias")), attrs))
    o = b.shape(j)
    return reshape(b, j, (o[0], o[2]), loc)


def _zero_insert(n_in: int, stride: int, lead: int, n_out: int, dtype: torch.dtype, device: Any) -> Tensor:
    """(n_out, n_in) 0/1 matrix: input i goes to position ``i * stride + lead`` (dropped outside)."""
    mat = torch.zeros((n_out, n_in), dtype=dtype, device=device)
    for k in range(n_in):
        pos = k * stride + lead
        if 0 <= pos < n_out:
            mat[pos, k] = 1.0
    return mat


def _convt2d(b: Any, m: nn.ConvTranspose2d, i: int, loc: str) -> int:
    """``conv_transpose2d`` = zero insertion with padding (per-axis 0/1 maps) and a stride-1 convolution
    with the flipped, transposed kernel (exact)."""
    shape = b.shape(i)
    if len(shape) != 3 or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise _unsupported(f"ConvTranspose2d on per-sample shape {shape} with padding {m.padding!r}", loc)
    w = b.p(b.attr(m, "weight"))  # (Cin, Cout / g, kh, kw)
    g = m.groups
    cin, cout_g, kh, kw = w.shape
    j = i
    for axis, (n_in, s, p, d, k, op) in ((2, (shape[2], m.stride[1], m.padding[1], m.dilation[1], kw,
                                             m.output_padding[1])),
                                         (1, (shape[1], m.stride[0], m.padding[0], m.dilation[0], kh,
                                             m.output_padding[0]))):
        lead = d * (k - 1) - p
        n_out = (n_in - 1) * s + 1 + 2 * lead + op
        j = axis_linear(b, j, axis, _zero_insert(n_in, s, lead, n_out, b.dtype, b.nodes_device), loc)
    wt = w.reshape(g, cin // g, cout_g, kh, kw).transpose(1, 2).reshape(g * cout_g, cin // g, kh, kw).flip(2, 3)
    attrs = {"stride": (1, 1), "padding": (0, 0), "dilation": tuple(m.dilation), "groups": g}
    j = b.add(Node("conv", (j,), (), loc, wt.contiguous(), b.p(b.attr(m, "bias")), attrs))
    with torch.no_grad():  # (in the module's own dtype: the graph may compute in another, e.g. sound=True's float64)
        want = m(b.sample(i).to(m.weight.dtype))
    return _check(b, j, want, "ConvTranspose2d", loc)


def _axis_matrix(n_in: int, fn: Callable[[Tensor], Tensor], dtype: torch.dtype, device: Any) -> Tensor:
    """The matrix (n_out, n_in) of a linear map ``fn`` of (N, 1, n_in) tensors along the last axis."""
    eye = torch.eye(n_in, dtype=torch.float64, device=device).reshape(n_in, 1, n_in)
    with torch.no_grad():
        out = fn(eye)
    return out[:, 0, :].t().to(dtype)


def upsample(b: Any, i: int, size: Any, scale: Any, mode: str, align_corners: Any, loc: str,
             ref: Callable[[Tensor], Tensor]) -> int:
    """Nearest / (bi)linear interpolation as per-axis linear maps (the interpolation is separable)."""
    shape = b.shape(i)
    dims = len(shape) - 1
    modes = {"nearest": "nearest", "nearest-exact": "nearest-exact", "linear": "linear", "bilinear": "linear"}
    if dims not in (1, 2) or mode not in modes or (mode == "bilinear" and dims != 2) or (
            mode == "linear" and dims != 1):
        raise _unsupported(f"interpolation with mode={mode!r} on per-sample shape {shape} (supported: nearest, "
                           "linear (1-D), bilinear (2-D))", loc)

    def per_axis(v: Any, a: int) -> Any:
        if v is None:
            return None
        return v[a] if isinstance(v, list | tuple) else v

    j = i
    for a in reversed(range(dims)):
        kw: dict[str, Any] = {"mode": modes[mode]}
        if modes[mode] == "linear":
            kw["align_corners"] = align_corners
        sz, sc = per_axis(size, a), per_axis(scale, a)
        if sz is not None:
            kw["size"] = int(sz)
        else:
            kw["scale_factor"] = float(sc)

        def fn(t: Tensor, kw: dict[str, Any] = kw) -> Tensor:
            return F.interpolate(t, **kw)

        j = axis_linear(b, j, 1 + a, _axis_matrix(shape[1 + a], fn, b.dtype, b.nodes_device), loc)
    with torch.no_grad():
        want = ref(b.sample(i))
    return _check(b, j, want, f"interpolation with mode={mode!r}", loc)


def _upsample_module(b: Any, m: nn.Upsample, i: int, loc: str) -> int:
    if getattr(m, "recompute_scale_factor", None):
        raise _unsupported("Upsample with recompute_scale_factor=True", loc)
    return upsample(b, i, m.size, m.scale_factor, m.mode, m.align_corners, loc, m)


def pad_general(b: Any, i: int, pad: tuple[int, ...], mode: str, value: float, loc: str) -> int:
    """``F.pad`` of the last ``len(pad) // 2`` dimensions as per-axis linear maps (0/1 matrices; constant
    mode adds the constant border as a bias). Negative amounts crop."""
    shape = b.shape(i)
    if len(pad) % 2 or len(pad) // 2 > len(shape) or mode not in ("constant", "reflect", "replicate", "circular"):
        raise _unsupported(f"padding {pad} with mode={mode!r} of per-sample shape {shape}", loc)
    if mode != "constant" and len(pad) // 2 > 2:
        raise _unsupported(f"padding with mode={mode!r} of more than 2 dimensions", loc)
    j = i
    for a in range(len(pad) // 2):
        d = len(shape) - 1 - a
        p = (int(pad[2 * a]), int(pad[2 * a + 1]))
        if p == (0, 0):
            continue
        m = "constant" if mode == "constant" else mode

        def fn(t: Tensor, p: tuple[int, int] = p, m: str = m) -> Tensor:
            return F.pad(t, p, mode=m) if m != "constant" else F.pad(t, p)

        j = axis_linear(b, j, d, _axis_matrix(shape[d], fn, b.dtype, b.nodes_device), loc)
    if mode == "constant" and value != 0.0:
        ones = torch.ones(shape, dtype=b.dtype, device=b.nodes_device)
        border = F.pad(torch.zeros_like(ones).unsqueeze(0), tuple(pad), value=value)[0]
        inside = F.pad(ones.unsqueeze(0), tuple(pad))[0]
        border = torch.where(inside > 0, torch.zeros_like(border), border)
        j = b.add(Node("affine", (j,), (), loc, None, border))
    with torch.no_grad():
        s = b.sample(i)
        want = F.pad(s, tuple(pad), mode=mode, value=value) if mode == "constant" else F.pad(s, tuple(pad), mode=mode)
    return _check(b, j, want, f"padding {pad} with mode={mode!r}", loc)


def _one_per_sample(mask: Tensor, lead: int, what: str, loc: str) -> Tensor:
    """A mask whose first dimension stacks ``lead``-sized blocks per batch element (torch's (N * H, T, S)
    attention masks, (N, S) key padding masks): the block shared by every batch element (all must be
    equal: certify's graph holds one per-sample computation)."""
    if mask.shape[0] % lead:
        raise _unsupported(f"{what} of shape {tuple(mask.shape)}", loc)
    blocks = mask.reshape(-1, lead, *mask.shape[1:])
    if not bool((blocks == blocks[:1]).all()):
        raise _unsupported(f"{what} that differs between batch elements (a per-sample mask)", loc)
    return blocks[0]


def attention_masks(b: Any, m: nn.MultiheadAttention, t: int, attn_mask: Any, key_padding_mask: Any,
                    is_causal: bool, need_weights: bool, loc: str) -> tuple[Tensor, Tensor | None]:
    """(allowed (H or 1, T, T) bool, additive bias (H or 1, T, T) or None) of torch's masking rules:
    a boolean mask marks the keys a query may NOT attend to, a float mask is added to the scores
    (``-inf`` entries masked), key padding masks are (N, S) per batch element; ``is_causal`` (with no
    key padding mask and ``need_weights=False``, as in ``F.multi_head_attention_forward``) applies the
    causal mask in place of ``attn_mask``."""
    h = m.num_heads
    if is_causal and attn_mask is None and key_padding_mask is None:
        raise _unsupported("nn.MultiheadAttention with is_causal=True and no attn_mask (torch needs the mask)", loc)
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = torch.ones((t, t), dtype=torch.bool).triu(1)
    allowed = torch.ones((1, t, t), dtype=torch.bool)
    bias = torch.zeros((1, t, t), dtype=torch.float64)
    for mask, what in ((attn_mask, "attn_mask"), (key_padding_mask, "key_padding_mask")):
        if mask is None:
            continue
        if not isinstance(mask, Tensor):
            raise _unsupported(f"nn.MultiheadAttention with a {what} that is not a tensor", loc)
        mk = mask.detach().cpu()
        if what == "attn_mask":
            if mk.dim() == 3:
                mk = _one_per_sample(mk, h, what, loc)
            elif mk.dim() != 2:
                raise _unsupported(f"attn_mask of shape {tuple(mask.shape)}", loc)
            if tuple(mk.shape[-2:]) != (t, t):
                raise _unsupported(f"attn_mask of shape {tuple(mask.shape)} for {t} tokens", loc)
        else:
            if mk.dim() != 2 or mk.shape[1] != t:
                raise _unsupported(f"key_padding_mask of shape {tuple(mask.shape)} for {t} tokens", loc)
            mk = _one_per_sample(mk, 1, what, loc).reshape(1, 1, t)
        if mk.dtype == torch.bool:
            masked = mk
        elif mk.is_floating_point():
            mk = mk.to(torch.float64)
            masked = torch.isneginf(mk)
            if not bool(torch.isfinite(mk[~masked]).all()):
                raise _unsupported(f"{what} with NaN or +inf entries", loc)
            bias = bias + torch.where(masked, torch.zeros_like(mk), mk)
        else:
            raise _unsupported(f"{what} of dtype {mk.dtype}", loc)
        allowed = allowed & ~masked
    if not bool(allowed.any(-1).all()):
        raise _unsupported("an attention mask that masks every key of a query (torch returns NaN there)", loc)
    has_bias = bool((bias != 0).any())
    return allowed, (bias if has_bias else None)


def masked_softmax(b: Any, i: int, allowed: Tensor, loc: str) -> int:
    """Softmax over the last dimension of node ``i`` (H, T, S) restricted to the ``allowed`` (H or 1, T, S)
    keys (masked entries are exactly 0): for each query row (and head, if the mask differs between heads)
    the allowed scores are selected (a 0/1 linear map), go through :func:`softmax` and are put back
    (exact), and the rows are concatenated."""
    hh, t, s = b.shape(i)
    if bool(allowed.all()):
        return softmax(b, i, -1, loc)
    per_head = allowed.shape[0] > 1 and not bool((allowed == allowed[:1]).all())
    heads = range(hh) if per_head else [None]
    rows = []
    for q in range(t):
        parts = []
        for hd in heads:
            keep = allowed[0 if hd is None else hd, q]
            idx = keep.nonzero().reshape(-1)
            hs = slice(0, hh, 1) if hd is None else slice(hd, hd + 1, 1)
            r = b.add(Node("slice", (i,), (), loc, attrs={"index": (hs, slice(q, q + 1, 1), slice(0, s, 1))}))
            if len(idx) < s:
                sel = torch.zeros((len(idx), s), dtype=b.dtype, device=b.nodes_device)
                sel[torch.arange(len(idx)), idx] = 1.0
                r = axis_linear(b, r, 2, sel, loc)
                r = softmax(b, r, -1, loc)
                r = axis_linear(b, r, 2, sel.t().contiguous(), loc)
            else:
                r = softmax(b, r, -1, loc)
            parts.append(r)
        rows.append(parts[0] if len(parts) == 1 else b.add(Node("cat", tuple(parts), (), loc, attrs={"dim": 0})))
    return b.add(Node("cat", tuple(rows), (), loc, attrs={"dim": 1}))


def attention(b: Any, i: int, m: nn.MultiheadAttention, loc: str, masks: tuple[Tensor, Tensor | None] | None = None
              ) -> int:
    """Self-attention of ``nn.MultiheadAttention`` (batch_first) on node ``i`` (T, E): projections
    (linear), per-head scores ``q k^T / sqrt(d)`` (matmul of two activations), plus a float mask,
    softmax over the allowed keys (``masks``: :func:`attention_masks`), ``attn @ v`` and the output
    projection."""
    shape = b.shape(i)
    if not m.batch_first:
        raise _unsupported("nn.MultiheadAttention with batch_first=False (the batch must be dimension 0)", loc)
    if m.bias_k is not None or m.add_zero_attn:
        raise _unsupported("nn.MultiheadAttention with add_bias_kv or add_zero_attn", loc)
    e, h = m.embed_dim, m.num_heads
    if len(shape) != 2 or shape[1] != e:
        raise _unsupported(f"nn.MultiheadAttention on per-sample shape {shape} (expected (T, {e}))", loc)
    t, dh = shape[0], e // h
    if m._qkv_same_embed_dim:
        wq, wk, wv = b.p(b.attr(m, "in_proj_weight")).chunk(3)
    else:
        wq, wk, wv = (b.p(b.attr(m, n)) for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"))
    bias = b.p(b.attr(m, "in_proj_bias"))
    bq, bk, bv = (None, None, None) if bias is None else bias.chunk(3)
    scale = 1.0 / math.sqrt(dh)
    # enclosure of the exact 1 / sqrt(dh) (sqrt and the division each correctly rounded), for sound=True
    r = math.sqrt(dh)
    s_lo = math.nextafter(1.0 / math.nextafter(r, math.inf), -math.inf)
    s_hi = math.nextafter(1.0 / math.nextafter(r, 0.0), math.inf)

    def heads(w: Tensor, bb: Tensor | None, s: float = 1.0) -> int:
        attrs = {}
        if s != 1.0:
            wl, wh = _scaled(w, s_lo, s_hi)
            bl, bh = (None, None) if bb is None else _scaled(bb, s_lo, s_hi)
            attrs = exact_bounds(b, wl, wh, bl, bh)
        j = b.add(Node("linear", (i,), (), loc, w * s, None if bb is None else bb * s, attrs))
        j = reshape(b, j, (t, h, dh), loc)
        return b.add(Node("permute", (j,), (), loc, attrs={"perm": (1, 0, 2)}))  # (H, T, dh)

    q, k, v = heads(wq, bq, scale), heads(wk, bk), heads(wv, bv)
    kt = b.add(Node("permute", (k,), (), loc, attrs={"perm": (0, 2, 1)}))  # (H, dh, T)
    scores = matmul(b, q, kt, loc)  # (H, T, T)
    if masks is None:
        attn = softmax(b, scores, -1, loc)
    else:
        allowed, add = masks
        if add is not None:  # the float mask's values, added exactly as stored
            scores = b.add(Node("affine", (scores,), (), loc, None, add.to(dtype=b.dtype, device=b.nodes_device)))
        attn = masked_softmax(b, scores, allowed.to(b.nodes_device), loc)
    o = matmul(b, attn, v, loc)  # (H, T, dh)
    o = b.add(Node("permute", (o,), (), loc, attrs={"perm": (1, 0, 2)}))
    o = reshape(b, o, (t, e), loc)
    return b.add(Node("linear", (o,), (), loc, b.p(b.attr(m.out_proj, "weight")), b.p(b.attr(m.out_proj, "bias"))))


def _constant_arg(given: dict, name: str, default: Any, val: Any, is_ir: Any, what: str, loc: str) -> Any:
    a = given.get(name, default)
    if is_ir(a):
        raise _unsupported(f"{what} with an input-dependent {name}", loc)
    return val(a)


def mha_call(b: Any, m: nn.MultiheadAttention, fn: Any, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    """A traced call ``mha(x, x, x, ...)``: self-attention, with constant masks (``attn_mask``,
    ``key_padding_mask``, ``is_causal``)."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
             "is_causal")
    given = dict(zip(names, fn.args)) | dict(fn.kwargs)
    q, k, v = (given.get(n) for n in ("query", "key", "value"))
    if not (is_ir(q) and q is k and k is v):
        raise _unsupported("nn.MultiheadAttention other than self-attention mha(x, x, x)", loc)
    what = "nn.MultiheadAttention"
    am, kpm = (_constant_arg(given, n, None, val, is_ir, what, loc) for n in ("attn_mask", "key_padding_mask"))
    causal = bool(_constant_arg(given, "is_causal", False, val, is_ir, what, loc))
    need = bool(_constant_arg(given, "need_weights", True, val, is_ir, what, loc))
    i = env[q][1]
    masks = None
    if am is not None or kpm is not None or causal:
        masks = attention_masks(b, m, b.shape(i)[0], am, kpm, causal, need, loc)
    return attention(b, i, m, loc, masks)


def encoder_call(b: Any, m: nn.TransformerEncoderLayer | nn.TransformerEncoder, fn: Any, env: dict, val: Any,
                 is_ir: Any, loc: str) -> int:
    """A traced call of a transformer encoder (layer) with constant masks: ``src_mask`` / ``mask``,
    ``src_key_padding_mask``, ``is_causal`` (``nn.TransformerEncoder`` detects a causal ``mask`` as torch does)."""
    layer = isinstance(m, nn.TransformerEncoderLayer)
    names = ("src", "src_mask" if layer else "mask", "src_key_padding_mask", "is_causal")
    given = dict(zip(names, fn.args)) | dict(fn.kwargs)
    src = given.get("src")
    what = type(m).__name__
    if not is_ir(src):
        raise _unsupported(f"{what} called on a constant", loc)
    am = _constant_arg(given, names[1], None, val, is_ir, what, loc)
    kpm = _constant_arg(given, "src_key_padding_mask", None, val, is_ir, what, loc)
    causal = _constant_arg(given, "is_causal", False if layer else None, val, is_ir, what, loc)
    i = env[src][1]
    t = b.shape(i)[0] if b.shape(i) else 0
    if not layer:
        causal = nn.modules.transformer._detect_is_causal_mask(am, causal, t)
    masks = None
    if am is not None or kpm is not None or causal:
        attn = m.self_attn if layer else m.layers[0].self_attn  # type: ignore[union-attr, index]
        masks = attention_masks(b, attn, t, am, kpm, bool(causal), False, loc)  # type: ignore[arg-type]
    if layer:
        return encoder_layer(b, m, i, loc, masks)  # type: ignore[arg-type]
    if kpm is not None and getattr(m, "use_nested_tensor", False):
        # torch's nested-tensor fast path zeroes the outputs at padded positions: not this computation
        raise _unsupported("nn.TransformerEncoder with src_key_padding_mask and enable_nested_tensor=True "
                           "(build it with enable_nested_tensor=False)", loc)
    return _encoder(b, m, i, loc, masks)  # type: ignore[arg-type]


def _activation(b: Any, act: Any, i: int, loc: str) -> int:
    if act is F.relu or isinstance(act, nn.ReLU):
        return b.add(Node("relu", (i,), (), loc))
    if act is F.gelu:
        return scalar(b, "gelu", i, loc)
    if isinstance(act, nn.GELU):
        return _gelu_module(b, act, i, loc)
    raise _unsupported(f"TransformerEncoderLayer with activation {act!r} (supported: relu, gelu)", loc)


def encoder_layer(b: Any, m: nn.TransformerEncoderLayer, i: int, loc: str,
                  masks: tuple[Tensor, Tensor | None] | None = None) -> int:
    """``nn.TransformerEncoderLayer`` (batch_first, eval; ``masks`` from :func:`attention_masks`):
    self-attention and the MLP, each in a residual branch, with LayerNorm before (``norm_first``) or after."""

    def sa(x: int) -> int:
        return attention(b, x, m.self_attn, f"{loc}.self_attn", masks)

    def ff(x: int) -> int:
        y = b.add(Node("linear", (x,), (), f"{loc}.linear1", b.p(b.attr(m.linear1, "weight")),
                       b.p(b.attr(m.linear1, "bias"))))
        y = _activation(b, m.activation, y, f"{loc}.activation")
        return b.add(Node("linear", (y,), (), f"{loc}.linear2", b.p(b.attr(m.linear2, "weight")),
                          b.p(b.attr(m.linear2, "bias"))))

    def norm(nm: nn.LayerNorm, x: int, name: str) -> int:
        return _layernorm_module(b, nm, x, f"{loc}.{name}")

    def res(x: int, y: int) -> int:
        return b.add(Node("add", (x, y), (), loc, attrs={"coef": (1.0, 1.0)}))

    if m.norm_first:
        x = res(i, sa(norm(m.norm1, i, "norm1")))
        return res(x, ff(norm(m.norm2, x, "norm2")))
    x = norm(m.norm1, res(i, sa(i)), "norm1")
    return norm(m.norm2, res(x, ff(x)), "norm2")


def _encoder(b: Any, m: nn.TransformerEncoder, i: int, loc: str,
             masks: tuple[Tensor, Tensor | None] | None = None) -> int:
    for k, layer in enumerate(m.layers):
        i = encoder_layer(b, layer, i, f"{loc}.layers.{k}", masks)
    if m.norm is not None:
        i = b.module(m.norm, i, f"{loc}.norm")
    return i


def _mha_module(b: Any, m: nn.MultiheadAttention, i: int, loc: str) -> int:
    raise _unsupported("nn.MultiheadAttention called with one argument (call it as mha(x, x, x)[0] in a forward)",
                       loc)


def _softmax_module(b: Any, m: nn.Softmax | nn.LogSoftmax, i: int, loc: str) -> int:
    if m.dim is None:
        raise _unsupported(f"{type(m).__name__} without dim", loc)
    return softmax(b, i, m.dim, loc, log=isinstance(m, nn.LogSoftmax))


MODULES: dict[type, Callable[[Any, Any, int, str], int]] = {
    nn.LeakyReLU: lambda b, m, i, loc: scalar(b, "leaky_relu", i, loc, float(m.negative_slope)),
    nn.PReLU: _prelu,
    nn.ELU: lambda b, m, i, loc: scalar(b, "elu", i, loc, float(m.alpha)),
    nn.GELU: _gelu_module,
    nn.SiLU: lambda b, m, i, loc: scalar(b, "silu", i, loc),
    nn.Softplus: lambda b, m, i, loc: scalar(b, "softplus", i, loc, _softplus_params(m.beta, m.threshold, loc)),
    nn.Softmax: _softmax_module,
    nn.LogSoftmax: _softmax_module,
    nn.LayerNorm: _layernorm_module,
    nn.Conv1d: _conv1d,
    nn.ConvTranspose2d: _convt2d,
    nn.Upsample: _upsample_module,
    nn.MultiheadAttention: _mha_module,
    nn.TransformerEncoderLayer: lambda b, m, i, loc: encoder_layer(b, m, i, loc),
    nn.TransformerEncoder: _encoder,
}


# -- traced functions and methods ------------------------------------------------------------------

def _arg(args: tuple, kwargs: dict, pos: int, name: str, default: Any, val: Any) -> Any:
    if len(args) > pos:
        return val(args[pos])
    return val(kwargs.get(name, default))


def _one(b: Any, fn: Any, args: tuple, env: dict, is_ir: Any, loc: str) -> int:
    if not is_ir(args[0]) or any(is_ir(a) for a in args[1:]):
        raise _unsupported(f"'{fn.target}' with these arguments", loc)
    return int(env[args[0]][1])


def _f_scalar(op: str, param: Callable[[tuple, dict, Any, str], Any] | None = None) -> Callable[..., int]:
    def build(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
        i = _one(b, fn, args, env, is_ir, loc)
        return scalar(b, op, i, loc, None if param is None else param(args, kwargs, val, loc))

    return build


def _f_gelu(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    i = _one(b, fn, args, env, is_ir, loc)
    return _gelu(b, _arg(args, kwargs, 1, "approximate", "none", val), i, loc)


def _f_softmax(log: bool) -> Callable[..., int]:
    def build(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
        i = _one(b, fn, args, env, is_ir, loc)
        dim = _arg(args, kwargs, 1, "dim", None, val)
        if dim is None or val(kwargs.get("dtype")) is not None:
            name = fn.target if isinstance(fn.target, str) else getattr(fn.target, "__name__", fn.target)
            raise _unsupported(f"'{name}' without dim or with dtype", loc)
        return softmax(b, i, dim, loc, log=log)

    return build


def _f_layer_norm(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    i = _one(b, fn, args, env, is_ir, loc)
    ns = _arg(args, kwargs, 1, "normalized_shape", None, val)
    ns = (ns,) if isinstance(ns, int) else tuple(ns)
    return layernorm(b, i, ns, _arg(args, kwargs, 2, "weight", None, val), _arg(args, kwargs, 3, "bias", None, val),
                     float(_arg(args, kwargs, 4, "eps", 1e-5, val)), loc)


def _f_matmul(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    a, c = args[0], args[1]
    if is_ir(a) and is_ir(c):
        return matmul(b, env[a][1], env[c][1], loc)
    if is_ir(a):  # x @ W (constant): a linear map on the last dimension
        w = val(c)
        if not isinstance(w, Tensor) or w.dim() != 2:
            raise _unsupported("matmul of an activation with a constant that is not a matrix", loc)
        return b.add(Node("linear", (env[a][1],), (), loc, b.p(w.t().contiguous()), None))
    raise _unsupported("matmul of a constant with an activation (write it as x @ W)", loc)


def _f_pow(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    i = _one(b, fn, args, env, is_ir, loc)
    e = _arg(args, kwargs, 1, "exponent", None, val)
    if e == 2:
        return scalar(b, "square", i, loc)
    if e == -1:
        return scalar(b, "reciprocal", i, loc)
    if e == -0.5:
        return scalar(b, "rsqrt", i, loc)
    raise _unsupported(f"pow with exponent {e!r} (supported: 2, -1, -0.5)", loc)


def _f_mean_sum(mean: bool) -> Callable[..., int]:
    def build(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
        i = _one(b, fn, args, env, is_ir, loc)
        dim = _arg(args, kwargs, 1, "dim", None, val)
        keep = bool(_arg(args, kwargs, 2, "keepdim", False, val))
        if dim is None or val(kwargs.get("dtype")) is not None:
            raise _unsupported(f"'{fn.target}' over all dimensions (the batch included) or with dtype", loc)
        dims = sorted({_dim(b, i, d, loc) for d in (dim if isinstance(dim, list | tuple) else (dim,))}, reverse=True)
        j = i
        for d in dims:
            n = b.shape(j)[d]
            w = torch.full((1, n), 1.0 / n if mean else 1.0, dtype=b.dtype, device=b.nodes_device)
            j = axis_linear(b, j, d, w, loc, exact=_ratio(torch.ones_like(w), n) if mean else None)
        if not keep:
            j = reshape(b, j, tuple(s for k, s in enumerate(b.shape(j)) if k not in dims), loc)
        return j

    return build


def _f_interpolate(b: Any, fn: Any, args: tuple, kwargs: dict, env: dict, val: Any, is_ir: Any, loc: str) -> int:
    i = _one(b, fn, args, env, is_ir, loc)
    size = _arg(args, kwargs, 1, "size", None, val)
    scale = _arg(args, kwargs, 2, "scale_factor", None, val)
    mode = _arg(args, kwargs, 3, "mode", "nearest", val)
    ac = _arg(args, kwargs, 4, "align_corners", None, val)
    if _arg(args, kwargs, 5, "recompute_scale_factor", None, val) or val(kwargs.get("antialias", False)):
        raise _unsupported("interpolate with recompute_scale_factor or antialias", loc)
    return upsample(b, i, size, scale, str(mode), ac, loc,
                    lambda t: F.interpolate(t, size=size, scale_factor=scale, mode=mode, align_corners=ac))


FUNCTIONS: dict[str, Callable[..., int]] = {
    "gelu": _f_gelu,
    "silu": _f_scalar("silu"),
    "elu": _f_scalar("elu", lambda a, k, v, loc: float(_arg(a, k, 1, "alpha", 1.0, v))),
    "softplus": _f_scalar("softplus", lambda a, k, v, loc: _softplus_params(
        _arg(a, k, 1, "beta", 1.0, v), _arg(a, k, 2, "threshold", 20.0, v), loc)),
    "leaky_relu": _f_scalar("leaky_relu", lambda a, k, v, loc: float(_arg(a, k, 1, "negative_slope", 0.01, v))),
    "exp": _f_scalar("exp"),
    "log": _f_scalar("log"),
    "reciprocal": _f_scalar("reciprocal"),
    "rsqrt": _f_scalar("rsqrt"),
    "square": _f_scalar("square"),
    "pow": _f_pow,
    "softmax": _f_softmax(False),
    "log_softmax": _f_softmax(True),
    "layer_norm": _f_layer_norm,
    "matmul": _f_matmul,
    "bmm": _f_matmul,
    "mean": _f_mean_sum(True),
    "sum": _f_mean_sum(False),
    "interpolate": _f_interpolate,
    "masked_fill": _f_masked_fill,
    "scaled_dot_product_attention": _f_sdpa,
    "upsample": _f_interpolate,
}
