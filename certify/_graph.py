"""A small intermediate representation (IR) of a torch model for bound propagation.

A model is turned into a list of :class:`Node` in topological order, node 0 being the
input. ``nn.Sequential`` containers are walked directly (the fast path); any other module
is traced with ``torch.fx`` (which gives residual ``Add``), and its sub-modules are mapped
recursively. The IR holds *references* to the model's parameters (BatchNorm's scale and
shift are computed from them), so bounds computed on it are differentiable with respect
to the model parameters.

Node kinds (``Node.op``):

``input``     the perturbed input.
``linear``    ``x @ W.T + b`` on the last dimension (``nn.Linear``).
``conv``      ``conv2d`` (``nn.Conv2d``, and ``nn.AvgPool2d`` as a depthwise convolution).
``dense``     a ``linear`` map on the flattened per-sample features (a densified ``conv``).
``affine``    elementwise ``x * weight + bias`` (BatchNorm in eval mode, :class:`Normalize`,
              scalar multiplication, addition of a constant).
``reshape``   per-sample reshape (``nn.Flatten``, ``view``, ``reshape``).
``add``       ``coef[0] * a + coef[1] * b`` of two nodes (residual connections).
``cat``       concatenation of its inputs along per-sample dimension ``attrs["dim"]`` (``torch.cat``,
              ``torch.stack`` as unsqueeze + cat).
``relu``, ``sigmoid``, ``tanh``  elementwise activations.
``permute``   per-sample permutation of dimensions ``attrs["perm"]`` (``permute``, ``transpose``).
``slice``     basic slicing ``x[:, *attrs["index"]]`` (slices with positive steps).
``maxpool``   max pooling (``nn.MaxPool1d/2d``, uniform ``nn.AdaptiveMaxPool1d/2d``), see ``certify._layers``.
``exp``, ``log``, ``reciprocal``, ``rsqrt``, ``square``, ``gelu``, ``gelu_tanh``, ``silu``, ``elu``,
``softplus``, ``leaky_relu``  element-wise functions (``SCALAR_OPS``; parameter in ``attrs["param"]``).
``mul``       ``a * b`` of two nodes of the same number of dimensions (broadcasting dimensions of size 1).
``softmax``, ``log_softmax``  (log-)softmax over the last per-sample dimension (vector-valued: every output
              depends on the whole row), relaxed as a whole (``certify._layers.softmax_relax``, Wei et al. 2023).

Composite layers are decomposed into these when the graph is built: (log-)softmax along another dimension
into permutes and ``softmax``/``log_softmax``; LayerNorm into mean subtraction, ``square``, a mean, ``rsqrt`` and ``mul``;
``matmul`` of two activations into ``mul`` and a sum; Conv1d into a conv of height 1; ConvTranspose2d
into zero insertion (a per-axis ``linear``) and a conv; Upsample and non-constant padding into
per-axis ``linear`` maps; attention into these.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import operator
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from certify._ir import AUTO_LIRPA_HINT, Node, UnsupportedLayerError, _unsupported

__all__ = [
    "AUTO_LIRPA_HINT",
    "Graph",
    "Node",
    "Normalize",
    "UnsupportedLayerError",
    "build_graph",
    "cached_graph",
    "densify",
]


ACTIVATIONS = ("relu", "sigmoid", "tanh")
#: element-wise functions relaxed by ``certify._layers.scalar_relax`` (parameter in ``attrs["param"]``)
SCALAR_OPS = ("exp", "log", "reciprocal", "rsqrt", "square", "gelu", "gelu_tanh", "silu", "elu", "softplus",
              "leaky_relu")
#: every non-linear op: its inputs' bounds are needed (element-wise activations, max pooling, products)
#: vector-valued non-linear ops over the last dimension (every output depends on the whole row)
SOFTMAX_OPS = ("softmax", "log_softmax")
NONLINEAR = (*ACTIVATIONS, *SCALAR_OPS, "maxpool", "mul", *SOFTMAX_OPS)
AFFINE_OPS = ("linear", "conv", "dense", "affine", "reshape", "add", "cat", "permute", "slice")




class Normalize(nn.Module):
    """Affine input normalisation ``(x - mean) / std`` with per-channel statistics.

    ``mean`` and ``std`` are scalars or 1-D sequences of length C, applied along dimension 1
    (the channel dimension of (N, C, H, W) images or the feature dimension of (N, C) inputs).
    Bound propagation treats it exactly (an elementwise affine map); keep it inside the model
    so that ``eps`` and ``domain`` are stated in the raw input space (e.g. pixels in [0, 1]).
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: float | Sequence[float] | Tensor, std: float | Sequence[float] | Tensor) -> None:
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.get_default_dtype()).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.get_default_dtype()).reshape(-1)
        if m.numel() != s.numel() and 1 not in (m.numel(), s.numel()):
            raise ValueError(
                f"Expected `mean` and `std` to have the same length, but got {m.numel()} and {s.numel()}"
            )
        if not bool(torch.isfinite(m).all()) or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise ValueError("Expected `mean` to be finite and `std` to be finite and > 0")
        self.register_buffer("mean", m)
        self.register_buffer("std", s)

    def _shaped(self, t: Tensor, ndim: int) -> Tensor:
        if t.numel() == 1:
            return t.reshape(())
        return t.reshape(-1, *([1] * (ndim - 2)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self._shaped(self.mean, x.dim())) / self._shaped(self.std, x.dim())

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


@dataclass
class Graph:
    """Nodes in topological order; node 0 is the input, ``output`` the index of the output node."""

    nodes: list[Node]
    output: int
    #: per-graph caches (densified graph, traversal plans), valid for the graph's life
    derived: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    #: False when the graph holds values read from plain tensor attributes of the model (not
    #: parameters or buffers), which no fingerprint can watch
    cacheable: bool = True

    def consumers(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            for j in n.inputs:
                out[j].append(i)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate the IR (used to check the conversion against the model)."""
        vals: list[Tensor | None] = [None] * len(self.nodes)
        vals[0] = x
        for i, n in enumerate(self.nodes[1:], start=1):
            vals[i] = apply_node(n, [vals[j] for j in n.inputs])  # type: ignore[misc]
        return vals[self.output]  # type: ignore[return-value]

    def preactivations(self) -> list[int]:
        """Indices of nodes that feed an activation (their bounds are needed), in topological order."""
        return sorted({j for n in self.nodes if n.op in NONLINEAR for j in n.inputs})

    def affine_in_input(self) -> list[bool]:
        """For each node, whether it is an affine function of the input (no activation before it)."""
        flags: list[bool] = []
        for n in self.nodes:
            if n.op == "input":
                flags.append(True)
            elif n.op in NONLINEAR:
                flags.append(False)
            else:
                flags.append(all(flags[j] for j in n.inputs))
        return flags


def conv_args(n: Node) -> dict[str, Any]:
    a = n.attrs
    return {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"], "groups": a["groups"]}


def apply_node(n: Node, xs: list[Tensor]) -> Tensor:
    """Forward value of one node given its inputs (batched)."""
    x = xs[0]
    op = n.op
    if op == "linear":
        return F.linear(x, n.weight, n.bias)  # type: ignore[arg-type]
    if op == "conv":
        return F.conv2d(x, n.weight, n.bias, **conv_args(n))  # type: ignore[arg-type]
    if op == "dense":
        return F.linear(x.reshape(x.shape[0], -1), n.weight, n.bias).reshape(x.shape[0], *n.shape)  # type: ignore[arg-type]
    if op == "affine":
        y = x if n.weight is None else x * n.weight
        return y if n.bias is None else y + n.bias
    if op == "reshape":
        return x.reshape(x.shape[0], *n.shape)
    if op == "add":
        ca, cb = n.attrs["coef"]
        return ca * x + cb * xs[1]
    if op == "cat":
        return torch.cat(xs, dim=n.attrs["dim"] + 1)
    if op == "permute":
        return x.permute(0, *[p + 1 for p in n.attrs["perm"]])
    if op == "slice":
        return x[(slice(None), *n.attrs["index"])]
    if op == "relu":
        return torch.relu(x)
    if op == "sigmoid":
        return torch.sigmoid(x)
    if op == "tanh":
        return torch.tanh(x)
    if op == "maxpool":
        from certify._layers import maxpool_forward

        return maxpool_forward(x, n.attrs)
    if op in SCALAR_OPS:
        from certify._layers import SCALAR_FNS

        return SCALAR_FNS[op].f(x, n.attrs.get("param"))
    if op == "mul":
        return x * xs[1]
    if op == "softmax":
        return torch.softmax(x, -1)
    if op == "log_softmax":
        return torch.log_softmax(x, -1)
    raise AssertionError(op)


# ----------------------------------------------------------------------------------------------
# Building the IR
# ----------------------------------------------------------------------------------------------

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_LEAVES: tuple[type, ...] = (
    nn.Sequential, nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.Sigmoid, nn.Tanh,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.AvgPool2d, Normalize, *_DROPOUT,
    nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d,
    nn.ZeroPad2d, nn.ConstantPad2d, nn.ConstantPad1d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d,
    nn.ReplicationPad2d, nn.CircularPad1d, nn.CircularPad2d,
    nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Softmax, nn.LogSoftmax, nn.LayerNorm,
    nn.Conv1d, nn.ConvTranspose2d, nn.Upsample, nn.MultiheadAttention, nn.TransformerEncoderLayer,
    nn.TransformerEncoder,
)
_FX_CACHE: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()
_FX_LOCK = threading.RLock()



def _hook_name(h: Any) -> str:
    return getattr(h, "__qualname__", None) or type(h).__name__


def _reparametrisations(model: nn.Module) -> dict[tuple[int, str], Callable[[], Tensor]]:
    """Weights re-computed by forward pre-hooks that certify honours, as ``{(id(module), name): compute}``.

    The engine reads module attributes instead of running ``forward``, so a hook would be ignored
    silently. ``torch.nn.utils.spectral_norm`` and ``weight_norm`` (the hook-based versions) are
    honoured: their weight is computed from the current parameters as the hook would in eval mode
    (without a power iteration), since the attribute the hook writes is stale after an optimizer
    step until the next forward. ``torch.nn.utils.parametrize`` needs nothing (its weight is a
    property computed on access). Every other forward hook or forward pre-hook, and any global
    module hook, is refused with :class:`UnsupportedLayerError`.
    """
    from torch.nn.modules import module as module_mod
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks"):
        hooks = getattr(module_mod, attr, {})
        if hooks:
            h = next(iter(hooks.values()))
            raise UnsupportedLayerError(
                f"A global module forward hook ({_hook_name(h)}, registered with "
                f"torch.nn.modules.module.register_module_forward{'_pre' if 'pre' in attr else ''}_hook) is "
                "active: certify's bound propagation reads the modules' parameters and does not run hooks, "
                "so it would ignore it; remove the hook (handle.remove()) to compute bounds"
            )
    out: dict[tuple[int, str], Callable[[], Tensor]] = {}
    for path, m in model.named_modules():
        where = path or type(model).__name__
        for h in m._forward_pre_hooks.values():
            if isinstance(h, SpectralNorm):
                out[(id(m), h.name)] = functools.partial(h.compute_weight, m, do_power_iteration=False)
            elif isinstance(h, WeightNorm):
                out[(id(m), h.name)] = functools.partial(h.compute_weight, m)
            else:
                raise UnsupportedLayerError(
                    f"Module {where!r} ({type(m).__name__}) has a forward pre-hook ({_hook_name(h)}): certify's "
                    "bound propagation does not run hooks, so it would ignore it; remove the hook (or express "
                    "the computation in forward, or the weight through torch.nn.utils.parametrize)"
                )
        for h in m._forward_hooks.values():
            raise UnsupportedLayerError(
                f"Module {where!r} ({type(m).__name__}) has a forward hook ({_hook_name(h)}): certify's bound "
                "propagation does not run hooks, so it would ignore it; remove the hook (or express the "
                "computation in forward)"
            )
    return out


def _is_onnx2torch(m: nn.Module) -> bool:
    """Whether ``m`` is one of onnx2torch's own modules (one per converted ONNX node, named after it)."""
    return type(m).__module__.startswith("onnx2torch.")


class _Call:
    """A stand-in for a traced ``call_function`` node: an ONNX node rewritten as the torch call it computes."""

    op = "call_function"

    def __init__(self, target: Any, args: tuple, name: str, kwargs: dict | None = None) -> None:
        self.target, self.args, self.name, self.kwargs = target, args, name, kwargs or {}


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _LEAVES) or _is_onnx2torch(m):
            # onnx2torch's modules are leaves: their forward often branches on tensor values or dtypes
            # (which torch.fx cannot trace); _Builder.onnx_call maps each to the torch op it computes
            return True
        return super().is_leaf_module(m, module_qualified_name)


class _Fusions:
    """Decomposed layers found in a graph of onnx2torch modules: ``ends`` maps the last node of each
    pattern to (kind, input node, parameter); ``interior`` holds the pattern's other nodes, which are not
    converted one by one (their users are all inside the pattern)."""

    def __init__(self) -> None:
        self.interior: set[torch.fx.Node] = set()
        self.ends: dict[torch.fx.Node, tuple[str, torch.fx.Node, Any]] = {}

    def build(self, b: Any, fn: torch.fx.Node, env: dict, loc: str) -> int:
        from certify import _layers_build as lb

        kind, x, param = self.ends[fn]
        if env[x][0] != "ir":
            raise _unsupported(f"decomposed {kind} of a constant", loc)
        i = env[x][1]
        if kind == "GELU":
            return lb._gelu(b, "none", i, loc)
        shape = b.shape(i)
        axes, eps = param
        nd = len(shape) + 1
        dims = sorted({int(a) % nd for a in axes})
        if dims != list(range(nd - len(dims), nd)) or dims[0] == 0:
            raise _unsupported(f"decomposed LayerNorm over axes {list(axes)} (supported: the last dimensions, not "
                               "the batch)", loc)
        return lb.layernorm(b, i, tuple(shape[dims[0] - 1:]), None, None, eps, loc)


def _onnx_fusions(g: torch.fx.Graph, root: nn.Module) -> _Fusions:
    """Find the decompositions ``torch.onnx.export`` writes for GELU (opsets < 20: ``Div(x, sqrt 2)``, ``Erf``,
    ``Add 1``, ``Mul x``, ``Mul 0.5``) and LayerNorm (opsets < 17: ``ReduceMean``, ``Sub``, ``Pow 2``,
    ``ReduceMean``, ``Add eps``, ``Sqrt``, ``Div``) in a graph of onnx2torch modules, so that they are bounded
    with the GELU and LayerNorm relaxations (``Erf`` and ``Sqrt`` have none of their own)."""
    out = _Fusions()
    mods: dict[Any, Any] = {}
    for n in g.nodes:
        if n.op == "call_module":
            m = root.get_submodule(str(n.target))
            if _is_onnx2torch(m):
                mods[n] = m
    if not any(type(m).__name__ in ("OnnxErf", "OnnxSqrt") for m in mods.values()):
        return out

    def kind(n: Any) -> str | None:
        m = mods.get(n) if isinstance(n, torch.fx.Node) else None
        if m is None:
            return None
        c = type(m).__name__
        if c in ("OnnxBinaryMathOperation", "OnnxPow") and getattr(m, "broadcast", None) == 1 \
                and getattr(m, "axis", None) is not None:
            return None
        if c == "OnnxBinaryMathOperation":
            return {"add": "Add", "sub": "Sub", "mul": "Mul", "_onnx_div": "Div"}.get(
                getattr(m.math_op_function, "__name__", ""))
        if c == "OnnxReduceStaticAxes":
            return "ReduceMean" if m.operation_type == "ReduceMean" and m.axes and m.keepdims else None
        return {"OnnxErf": "Erf", "OnnxSqrt": "Sqrt", "OnnxPow": "Pow"}.get(c)

    def const(n: Any) -> float | None:
        v: Any = None
        if isinstance(n, int | float) and not isinstance(n, bool):
            v = n
        elif isinstance(n, torch.fx.Node) and n.op == "get_attr":
            v = root
            for part in str(n.target).split("."):
                v = getattr(v, part, None)
        elif isinstance(n, torch.fx.Node) and type(mods.get(n)).__name__ == "OnnxConstant" and not n.args:
            v = mods[n].value  # type: ignore[union-attr]
        if isinstance(v, Tensor) and v.numel() == 1 and v.is_floating_point():
            return float(v)
        return float(v) if isinstance(v, int | float) else None

    def users(n: Any) -> set[Any]:
        return set(n.users)

    def other(n: Any, a: Any) -> Any:
        """The other operand of a binary node ``n`` one of whose operands is ``a`` (None if neither is)."""
        if len(n.args) != 2:
            return None
        return n.args[1] if n.args[0] is a else (n.args[0] if n.args[1] is a else None)

    def near(v: float | None, want: float) -> bool:
        return v is not None and abs(v - want) <= 2.5e-7 * abs(want)  # one float32 ulp

    for e in mods:
        if kind(e) != "Erf":
            continue
        d = e.args[0]
        if kind(d) not in ("Div", "Mul") or users(d) != {e} or len(e.users) != 1:
            continue
        x = d.args[0]
        c = const(d.args[1])
        if not (near(c, math.sqrt(2.0)) if kind(d) == "Div" else near(c, math.sqrt(0.5))):
            continue
        a1 = next(iter(e.users))
        if kind(a1) != "Add" or not near(const(other(a1, e)), 1.0) or len(a1.users) != 1:
            continue
        m1 = next(iter(a1.users))
        if kind(m1) != "Mul":
            continue
        f = other(m1, a1)
        if f is x and len(m1.users) == 1:
            m2 = next(iter(m1.users))
            if kind(m2) == "Mul" and near(const(other(m2, m1)), 0.5):
                out.ends[m2] = ("GELU", x, None)
                out.interior |= {d, e, a1, m1}
        elif kind(f) == "Mul" and users(f) == {m1} and (
                (f.args[0] is x and near(const(f.args[1]), 0.5)) or (f.args[1] is x and near(const(f.args[0]), 0.5))):
            out.ends[m1] = ("GELU", x, None)
            out.interior |= {d, e, a1, f}
    for q in mods:
        if kind(q) != "Sqrt" or len(q.users) != 1:
            continue
        v = next(iter(q.users))
        ad = q.args[0]
        if kind(v) != "Div" or v.args[1] is not q or kind(ad) != "Add" or users(ad) != {q}:
            continue
        sb = v.args[0]
        if kind(sb) != "Sub":
            continue
        x, r1 = sb.args[0], sb.args[1]
        if kind(r1) != "ReduceMean" or r1.args[0] is not x or users(r1) != {sb}:
            continue
        r2 = next((a for a in ad.args if kind(a) == "ReduceMean"), None)
        eps = const(other(ad, r2)) if r2 is not None else None
        if r2 is None or eps is None or eps < 0 or users(r2) != {ad}:
            continue
        p = r2.args[0]
        sq = (kind(p) == "Pow" and p.args[0] is sb and const(p.args[1]) == 2.0) or (
            kind(p) == "Mul" and p.args[0] is sb and p.args[1] is sb)
        if not sq or users(p) != {r2} or users(sb) != {p, v}:
            continue
        ax1, ax2 = list(mods[r1].axes), list(mods[r2].axes)  # type: ignore[arg-type]
        if ax1 != ax2:
            continue
        out.ends[v] = ("LayerNorm", x, (ax1, eps))
        out.interior |= {r1, sb, p, r2, ad, q}
    return out


def _traced(module: nn.Module, where: str) -> torch.fx.Graph:
    with _FX_LOCK:  # torch.fx tracing patches globals: not thread-safe
        return _traced_locked(module, where)


def _traced_locked(module: nn.Module, where: str) -> torch.fx.Graph:
    g = _FX_CACHE.get(module)
    if g is None:
        try:
            g = _Tracer().trace(module)
        except Exception as e:
            raise UnsupportedLayerError(
                f"Could not trace {type(module).__name__}{f' (at {where!r})' if where else ''} with torch.fx "
                f"({type(e).__name__}: {e}); {AUTO_LIRPA_HINT}"
            ) from e
        _FX_CACHE[module] = g
    return g


class _Builder:
    def __init__(self, sample: Tensor, dtype: torch.dtype,
                 reparam: dict[tuple[int, str], Callable[[], Tensor]] | None = None) -> None:
        self.dtype = dtype
        self.reparam = reparam or {}
        self.nodes: list[Node] = [Node("input", (), tuple(sample.shape[1:]), "input")]
        self.samples: list[Tensor | None] = [sample]
        self.nodes_device = sample.device
        self.cacheable = True

    def p(self, t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(self.dtype)

    def attr(self, m: nn.Module, name: str) -> Any:
        """``m.<name>``, or the weight a honoured re-parametrisation hook computes for it."""
        compute = self.reparam.get((id(m), name))
        return compute() if compute is not None else getattr(m, name)

    def sample(self, i: int) -> Tensor:
        """Value of node ``i`` on the (2-row) sample input, computed on demand."""
        v = self.samples[i]
        if v is None:
            n = self.nodes[i]
            with torch.no_grad():
                v = apply_node(n, [self.sample(j) for j in n.inputs])
            self.samples[i] = v
        return v

    def _infer_shape(self, node: Node) -> tuple[int, ...] | None:
        """Output shape without evaluating, for the common ops (None: evaluate to find out)."""
        ins = [self.nodes[j].shape for j in node.inputs]
        op = node.op
        if op in ("relu", "sigmoid", "tanh", *SOFTMAX_OPS, *SCALAR_OPS):
            return ins[0]
        if op == "reshape":
            return node.shape if math.prod(node.shape) == math.prod(ins[0]) else None
        if op == "linear" and node.weight is not None and len(ins[0]) >= 1 and ins[0][-1] == node.weight.shape[1]:
            return (*ins[0][:-1], node.weight.shape[0])
        if op == "conv" and node.weight is not None and len(ins[0]) == 3 \
                and ins[0][0] == node.weight.shape[1] * node.attrs["groups"]:
            a = node.attrs
            hw = []
            for d in range(2):
                k = node.weight.shape[2 + d]
                size = (ins[0][1 + d] + 2 * a["padding"][d] - a["dilation"][d] * (k - 1) - 1) // a["stride"][d] + 1
                if size <= 0:
                    return None
                hw.append(size)
            return (node.weight.shape[0], *hw)
        if op == "cat":
            d = node.attrs["dim"]
            if all(len(t) == len(ins[0]) and t[:d] == ins[0][:d] and t[d + 1:] == ins[0][d + 1:] for t in ins):
                return (*ins[0][:d], sum(t[d] for t in ins), *ins[0][d + 1:])
            return None
        if op == "affine":
            shapes = [torch.Size(ins[0])] + [t.shape for t in (node.weight, node.bias) if t is not None]
            try:
                out = tuple(torch.broadcast_shapes(*shapes))
            except RuntimeError:
                return None
            return out if out == ins[0] else None
        return None

    def add(self, node: Node) -> int:
        shape = self._infer_shape(node)
        val = None
        if shape is None:
            with torch.no_grad():
                val = apply_node(node, [self.sample(j) for j in node.inputs])
            shape = tuple(val.shape[1:])
        node.shape = shape
        self.nodes.append(node)
        self.samples.append(val)
        return len(self.nodes) - 1

    def shape(self, i: int) -> tuple[int, ...]:
        return self.nodes[i].shape

    # -- modules ---------------------------------------------------------------------------------
    def module(self, m: nn.Module, inp: int, where: str) -> int:
        if m.training:
            raise ValueError(
                f"Expected the model to be in eval mode (call `model.eval()`), but module "
                f"{where or type(m).__name__!r} is in training mode"
            )
        name = where or type(m).__name__
        if isinstance(m, nn.Sequential):
            for k, sub in m.named_children():
                inp = self.module(sub, inp, f"{where}.{k}" if where else k)
            return inp
        if isinstance(m, (nn.Identity, *_DROPOUT)):
            return inp
        if isinstance(m, nn.Linear):
            return self.add(Node("linear", (inp,), (), name, self.p(self.attr(m, "weight")),
                                 self.p(self.attr(m, "bias"))))
        if isinstance(m, nn.Conv2d):
            return self.conv(m, inp, name)
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            return self.batchnorm(m, inp, name)
        if isinstance(m, Normalize):
            nd = len(self.shape(inp)) + 1
            std, mean = m._shaped(m.std, nd).to(self.dtype), m._shaped(m.mean, nd).to(self.dtype)
            # attrs "exact": the operation in exact arithmetic, for sound=True (the weights above are rounded)
            return self.add(Node("affine", (inp,), (), name, 1.0 / std, -mean / std,
                                 {"exact": ("normalize", mean, std)}))
        if isinstance(m, nn.ReLU):
            return self.add(Node("relu", (inp,), (), name))
        if isinstance(m, nn.Sigmoid):
            return self.add(Node("sigmoid", (inp,), (), name))
        if isinstance(m, nn.Tanh):
            return self.add(Node("tanh", (inp,), (), name))
        if isinstance(m, nn.Flatten | nn.Unflatten):
            with torch.no_grad():
                out = m(torch.empty((2, *self.shape(inp)), device="meta"))
            if out.dim() == 0 or out.shape[0] != 2:
                raise _unsupported(f"{type(m).__name__} over the batch dimension", name)
            return self.add(Node("reshape", (inp,), tuple(out.shape[1:]), name))
        if isinstance(m, nn.AvgPool2d):
            return self.avgpool(m, inp, name)
        if isinstance(m, nn.MaxPool1d | nn.MaxPool2d | nn.AdaptiveMaxPool1d | nn.AdaptiveMaxPool2d):
            return self.maxpool(m, inp, name)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive_avgpool(m, inp, name)
        if isinstance(m, nn.ZeroPad2d | nn.ConstantPad2d | nn.ConstantPad1d):
            return self.pad(tuple(m.padding), "constant", float(m.value), inp, name)
        if isinstance(m, nn.ReflectionPad1d | nn.ReflectionPad2d | nn.ReplicationPad1d | nn.ReplicationPad2d
                      | nn.CircularPad1d | nn.CircularPad2d):
            mode = "reflect" if "Reflection" in type(m).__name__ else (
                "replicate" if "Replication" in type(m).__name__ else "circular")
            return self.pad(tuple(m.padding), mode, 0.0, inp, name)
        from certify import _layers_build as lb

        handler = lb.MODULES.get(type(m))
        if handler is not None:
            return handler(self, m, inp, name)
        if type(m).__module__.startswith("torch.nn"):
            raise _unsupported(type(m).__name__, where)
        return self.fx(m, inp, where)

    def conv(self, m: nn.Conv2d, inp: int, name: str) -> int:
        # the padding before and after each axis (H, W) as torch's Conv2d computes it: 'same' (stride 1) puts the
        # odd one after; a padding_mode other than zeros is F.pad(x, mode=padding_mode), then no padding
        if isinstance(m.padding, str):
            tot = [d * (k - 1) if m.padding == "same" else 0 for d, k in zip(m.dilation, m.kernel_size)]
            before = [t // 2 for t in tot]
            after = [t - b for t, b in zip(tot, before)]
        else:
            before = after = list(m.padding)
        if m.padding_mode != "zeros" and any(before + after):
            inp = self.pad((before[1], after[1], before[0], after[0]), m.padding_mode, 0.0, inp, name)
            before = after = [0, 0]
        elif before != after:  # asymmetric 'same': the extra zeros after, then symmetric padding
            inp = self.pad((0, after[1] - before[1], 0, after[0] - before[0]), "constant", 0.0, inp, name)
        attrs = {"stride": tuple(m.stride), "padding": tuple(before), "dilation": tuple(m.dilation),
                 "groups": m.groups}
        return self.add(Node("conv", (inp,), (), name, self.p(self.attr(m, "weight")), self.p(self.attr(m, "bias")),
                             attrs))

    def batchnorm(self, m: nn.BatchNorm1d | nn.BatchNorm2d, inp: int, name: str) -> int:
        if m.running_mean is None or m.running_var is None:
            raise _unsupported(f"{type(m).__name__} without running statistics (track_running_stats=False)", name)
        var = m.running_var.to(self.dtype)
        extra = len(self.shape(inp)) - 1
        weight, bias = self.attr(m, "weight"), self.attr(m, "bias")

        def col(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(self.dtype).reshape(-1, *([1] * extra))

        # the layer in exact arithmetic, for sound=True (scale and shift below are rounded)
        exact = ("batchnorm", col(m.running_mean), col(m.running_var), float(m.eps), col(weight), col(bias))
        scale = torch.rsqrt(var + m.eps)
        if weight is not None:
            scale = scale * weight.to(self.dtype)
        shift = -m.running_mean.to(self.dtype) * scale
        if bias is not None:
            shift = shift + bias.to(self.dtype)
        scale, shift = scale.reshape(-1, *([1] * extra)), shift.reshape(-1, *([1] * extra))
        return self.add(Node("affine", (inp,), (), name, scale, shift, {"exact": exact}))

    def avgpool(self, m: nn.AvgPool2d, inp: int, name: str) -> int:
        k = nn.modules.utils._pair(m.kernel_size)
        s = nn.modules.utils._pair(m.stride if m.stride is not None else m.kernel_size)
        p = nn.modules.utils._pair(m.padding)
        if any(p) and not m.count_include_pad and m.divisor_override is None:
            raise _unsupported("AvgPool2d with padding and count_include_pad=False", name)
        shape = self.shape(inp)
        if len(shape) != 3:
            raise _unsupported(f"AvgPool2d on input of per-sample shape {shape}", name)
        c = shape[0]
        div = m.divisor_override or (k[0] * k[1])
        w = torch.full((c, 1, *k), 1.0 / div, dtype=self.dtype, device=self.sample(inp).device)
        attrs = {"stride": s, "padding": p, "dilation": (1, 1), "groups": c, "exact": ("avgpool", float(div))}
        idx = self.add(Node("conv", (inp,), (), name, w, None, attrs))
        with torch.no_grad():
            ref = m(self.sample(inp))
        if tuple(ref.shape[1:]) != self.shape(idx) or not torch.allclose(ref, self.sample(idx), atol=1e-5):
            raise _unsupported("AvgPool2d with ceil_mode=True producing partial windows", name)
        return idx

    def const(self, v: Any, i: int, loc: str) -> Tensor:
        """A constant operand of an element-wise op on node ``i``, without batch dimension.

        A constant with a leading batch dimension of 1 (e.g. a (1, C, 1, 1) normalisation buffer)
        is reshaped to the per-sample shape; one with another batch size was built from the probe
        batch (e.g. from ``x.size(0)``) and is refused, as is one that would broadcast the node to a
        larger shape."""
        c = torch.as_tensor(v, dtype=self.dtype, device=self.nodes_device)
        shape = self.shape(i)
        if c.dim() > len(shape):
            lead = c.shape[: c.dim() - len(shape)]
            if any(d != 1 for d in lead):
                raise _unsupported(
                    f"element-wise op with a constant of shape {tuple(c.shape)} that has a batch dimension "
                    "(a tensor built from the input's batch size, or one that does not broadcast per sample)", loc)
            c = c.reshape(c.shape[c.dim() - len(shape):])
        try:
            ok = tuple(torch.broadcast_shapes(c.shape, shape)) == shape
        except RuntimeError:
            ok = False
        if not ok:
            raise _unsupported(f"element-wise op of a tensor of per-sample shape {shape} with a constant of "
                               f"shape {tuple(c.shape)}", loc)
        return c

    def cat(self, name: str, args: Any, kwargs: Any, env: dict, val: Any, is_ir: Any, has_ir: Any,
            loc: str) -> int:
        """``torch.cat`` / ``torch.stack`` of graph values (a ``cat`` node; stack unsqueezes first)."""
        seq = args[0] if args else kwargs.get("tensors")
        dim_arg = args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("axis", 0))
        if not isinstance(seq, list | tuple) or not seq or not all(is_ir(a) for a in seq) or has_ir(dim_arg):
            raise _unsupported(f"'{name}' of a mix of input-dependent and constant tensors", loc)
        ins = [env[a][1] for a in seq]
        nd = len(self.shape(ins[0]))
        if any(len(self.shape(j)) != nd for j in ins):
            raise _unsupported(f"'{name}' of tensors with different numbers of dimensions", loc)
        dim = int(val(dim_arg))
        full = nd + 2 if name == "stack" else nd + 1  # dimensions of the result, batch included
        if not -full <= dim < full:
            raise _unsupported(f"'{name}' along dimension {dim} of a {full}-dimensional result", loc)
        d = dim % full - 1
        if d < 0:
            raise _unsupported(f"'{name}' along the batch dimension", loc)
        if name == "stack":
            ins = [self.add(Node("reshape", (j,), (*self.shape(j)[:d], 1, *self.shape(j)[d:]), loc)) for j in ins]
        for j in ins:
            s0, s1 = self.shape(j), self.shape(ins[0])
            if s0[:d] != s1[:d] or s0[d + 1:] != s1[d + 1:]:
                raise _unsupported(f"'{name}' of tensors of per-sample shapes {s1} and {s0} along dim {d + 1}", loc)
        return self.add(Node("cat", tuple(ins), (), loc, attrs={"dim": d}))

    def split(self, name: str, fn: torch.fx.Node, i: int, val: Any, loc: str) -> list[int]:
        """``split`` / ``chunk`` / ``unbind`` of a graph value along a per-sample dimension: one ``slice`` node
        per part (exact), with the parts' sizes read from the sample (they depend only on the shape)."""
        s0 = self.sample(i)
        t: Any = fn.target
        f = getattr(s0, t) if fn.op == "call_method" else (lambda *a, **k: t(s0, *a, **k))
        with torch.no_grad():
            parts = f(*val(fn.args[1:]), **val(dict(fn.kwargs)))
        dim = val(fn.kwargs.get("dim", fn.args[2] if len(fn.args) > 2 else 0)) if name != "unbind" else val(
            fn.kwargs.get("dim", fn.args[1] if len(fn.args) > 1 else 0))
        nd = s0.dim()
        d = int(dim) % nd - 1
        if d < 0:
            raise _unsupported(f"'{name}' along the batch dimension", loc)
        shape = self.shape(i)
        out, start = [], 0
        for p in parts:
            size = 1 if name == "unbind" else p.shape[d + 1]
            index = tuple(slice(start, start + size, 1) if k == d else slice(0, n, 1) for k, n in enumerate(shape))
            j = self.add(Node("slice", (i,), (), loc, attrs={"index": index}))
            if name == "unbind":
                j = self.add(Node("reshape", (j,), tuple(n for k, n in enumerate(shape) if k != d), loc))
            if tuple(p.shape[1:]) != self.shape(j):
                raise _unsupported(f"'{name}' with these arguments", loc)
            out.append(j)
            start += size
        return out

    def adaptive_avgpool(self, m: nn.AdaptiveAvgPool2d, inp: int, name: str) -> int:
        """Adaptive average pooling with equal windows (global average pooling included): a depthwise
        convolution with weights 1/k (exact)."""
        shape = self.shape(inp)
        if len(shape) != 3:
            raise _unsupported(f"AdaptiveAvgPool2d on input of per-sample shape {shape}", name)
        out: Any = nn.modules.utils._pair(m.output_size)
        hw = (int(shape[1] if out[0] is None else out[0]), int(shape[2] if out[1] is None else out[1]))
        if shape[1] % hw[0] or shape[2] % hw[1]:
            raise _unsupported(f"AdaptiveAvgPool2d with windows of unequal sizes (input {shape}, output size "
                               f"{m.output_size})", name)
        k = (shape[1] // hw[0], shape[2] // hw[1])
        w = torch.full((shape[0], 1, *k), 1.0 / (k[0] * k[1]), dtype=self.dtype, device=self.nodes_device)
        attrs = {"stride": k, "padding": (0, 0), "dilation": (1, 1), "groups": shape[0],
                 "exact": ("avgpool", float(k[0] * k[1]))}  # weights 1 / k rounded: the exact mean for sound=True
        return self.add(Node("conv", (inp,), (), name, w, None, attrs))

    def pad(self, pad: tuple[int, ...], mode: str, value: float, inp: int, name: str) -> int:
        """``F.pad(x, pad, mode, value)``: symmetric constant padding of (C, H, W) as below (exact, and
        supported by ``sound=True``); anything else (asymmetric or negative amounts, reflect, replicate,
        circular, 1-D) as per-axis linear maps plus a constant border."""
        shape = self.shape(inp)
        pad = tuple(pad)
        while len(pad) > 2 and pad[-2:] == (0, 0):  # trailing pairs pad the leading dimensions by nothing
            pad = pad[:-2]  # (e.g. ONNX's Pad of all 4 dimensions of a ZeroPad2d, batch and channels by 0)
        if (mode == "constant" and len(shape) == 3 and len(pad) in (2, 4) and min(pad) >= 0
                and pad[0] == pad[1] and (len(pad) == 2 or pad[2] == pad[3])):
            return self.pad2d(pad, value, inp, name)
        from certify import _layers_build as lb

        return lb.pad_general(self, inp, pad, mode, value, name)

    def pad2d(self, pad: tuple[int, ...], value: float, inp: int, name: str) -> int:
        """Constant padding (left, right, top, bottom) of the last two dimensions: a depthwise identity
        convolution with that padding (zeros), plus a constant border when ``value`` is not 0 (exact).
        Only symmetric padding (left == right, top == bottom) and non-negative amounts."""
        shape = self.shape(inp)
        if len(pad) == 2:
            pad = (*pad, 0, 0)
        if len(shape) != 3 or len(pad) != 4 or pad[0] != pad[1] or pad[2] != pad[3] or min(pad) < 0:
            raise _unsupported(f"padding {pad} of a tensor of per-sample shape {shape} (supported: symmetric, "
                               "non-negative padding of the last two dimensions of (C, H, W))", name)
        c = shape[0]
        w = torch.ones((c, 1, 1, 1), dtype=self.dtype, device=self.nodes_device)
        attrs = {"stride": (1, 1), "padding": (pad[2], pad[0]), "dilation": (1, 1), "groups": c}
        idx = self.add(Node("conv", (inp,), (), name, w, None, attrs))
        if value != 0.0:
            border = torch.full((c, shape[1] + 2 * pad[2], shape[2] + 2 * pad[0]), value, dtype=self.dtype,
                                device=self.nodes_device)
            border[:, pad[2]: pad[2] + shape[1], pad[0]: pad[0] + shape[2]] = 0.0
            idx = self.add(Node("affine", (idx,), (), name, None, border))
        return idx

    def maxpool(self, m: nn.Module, inp: int, name: str, ref: Any = None) -> int:
        """A ``maxpool`` node (1-D pooling as 2-D with a window of height 1); ``ref`` computes the
        layer on the sample (default: the module) to check the conversion."""
        shape = self.shape(inp)
        dims = 1 if isinstance(m, nn.MaxPool1d | nn.AdaptiveMaxPool1d) else 2
        if len(shape) != dims + 1:
            raise _unsupported(f"{type(m).__name__} on input of per-sample shape {shape}", name)
        if getattr(m, "return_indices", False):
            raise _unsupported(f"{type(m).__name__} with return_indices=True", name)
        size = (1, shape[1]) if dims == 1 else (shape[1], shape[2])
        if isinstance(m, nn.AdaptiveMaxPool1d | nn.AdaptiveMaxPool2d):
            out: Any = m.output_size
            out_t: Any = (out,) if dims == 1 and not isinstance(out, tuple) else nn.modules.utils._pair(out)
            out_hw: tuple[int, int] = (1, int(out_t[0])) if dims == 1 else (
                int(size[0] if out_t[0] is None else out_t[0]), int(size[1] if out_t[1] is None else out_t[1]))
            if any(size[d] % out_hw[d] for d in range(2)):
                raise _unsupported(f"{type(m).__name__} with windows of unequal sizes (input {shape}, "
                                   f"output size {m.output_size})", name)
            k = tuple(size[d] // out_hw[d] for d in range(2))
            attrs = {"dims": dims, "kernel": k, "stride": k, "padding": (0, 0), "dilation": (1, 1)}
        else:
            def two(v: Any, one: int) -> tuple[int, int]:
                # sizes given as an int, a tuple or a list (e.g. nn.MaxPool1d([2]), onnx2torch's 1-D MaxPool)
                t = tuple(int(k) for k in v) if isinstance(v, tuple | list) else (int(v),)
                if len(t) != dims and len(t) != 1:
                    raise _unsupported(f"{type(m).__name__} with sizes {v!r}", name)
                return (one, t[0]) if dims == 1 else (t[0], t[-1])

            stride = m.stride if m.stride is not None else m.kernel_size  # type: ignore[attr-defined]
            attrs = {"dims": dims, "kernel": two(m.kernel_size, 1), "stride": two(stride, 1),  # type: ignore[attr-defined]
                     "padding": two(m.padding, 0), "dilation": two(m.dilation, 1)}  # type: ignore[attr-defined]
        idx = self.add(Node("maxpool", (inp,), (), name, attrs=attrs))
        with torch.no_grad():
            want = (ref or m)(self.sample(inp))
        if tuple(want.shape[1:]) != self.shape(idx) or not torch.equal(want, self.sample(idx)):
            raise _unsupported(f"{type(m).__name__} with ceil_mode=True producing partial windows", name)
        return idx

    # -- torch.fx ------------------------------------------------------------------------------
    def fx(self, root: nn.Module, inp: int, where: str) -> int:
        kind, out = self.fx_run(root, [("ir", inp)], where)
        if kind != "ir":
            raise _unsupported("model output that is not a single tensor depending on the input", where)
        return int(out)

    def fx_run(self, root: nn.Module, inputs: list[tuple[str, Any]], where: str) -> tuple[str, Any]:
        """Convert the traced graph of ``root`` called on ``inputs`` (env entries: ``("ir", node index)`` or
        ``("val", constant)``, one per positional argument); returns the env entry of its output."""
        g = _traced(root, where)
        env: dict[torch.fx.Node, tuple[str, Any]] = {}
        out: tuple[str, Any] | None = None
        placeholders = 0
        fused = _onnx_fusions(g, root)

        def val(a: Any) -> Any:
            if isinstance(a, torch.fx.Node):
                kind, v = env[a]
                return self.sample(v) if kind == "ir" else v
            if isinstance(a, list | tuple):
                return type(a)(val(b) for b in a)
            if isinstance(a, dict):
                return {k: val(b) for k, b in a.items()}
            if isinstance(a, slice):
                return slice(val(a.start), val(a.stop), val(a.step))
            return a

        def is_ir(a: Any) -> bool:
            return isinstance(a, torch.fx.Node) and env[a][0] == "ir"

        def has_ir(a: Any) -> bool:
            """Whether ``a`` holds a graph value anywhere (nested in lists, tuples, dicts, slices)."""
            if isinstance(a, torch.fx.Node):
                return env[a][0] == "ir"
            if isinstance(a, list | tuple):
                return any(has_ir(b) for b in a)
            if isinstance(a, dict):
                return any(has_ir(b) for b in a.values())
            if isinstance(a, slice):
                return has_ir(a.start) or has_ir(a.stop) or has_ir(a.step)
            return False

        for fn in g.nodes:
            loc = f"{where}.{fn.target}" if where and fn.op == "call_module" else (fn.target if fn.op == "call_module" else where)
            if fn in fused.interior:
                env[fn] = ("fused", fn)  # computed as part of the fused pattern ending at a later node
                continue
            if fn.op == "placeholder":
                if str(fn.target).startswith("*"):
                    raise _unsupported(f"a module with variadic arguments ('{fn.target}')", where)
                placeholders += 1
                if placeholders <= len(inputs):
                    env[fn] = inputs[placeholders - 1]
                elif fn.args:  # an optional argument left at its default
                    env[fn] = ("val", fn.args[0])
                else:
                    raise _unsupported(f"model with more than one input ('{fn.target}')", where)
            elif fn.op == "get_attr":
                obj: Any = root
                for part in str(fn.target).split("."):
                    obj = self.attr(obj, part)
                if isinstance(obj, Tensor) and not any(
                        obj is t for t in itertools.chain(root.parameters(), root.buffers())):
                    self.cacheable = False
                env[fn] = ("val", obj)
            elif fn in fused.ends:
                env[fn] = ("ir", fused.build(self, fn, env, str(loc)))
            elif fn.op == "call_module":
                sub = root.get_submodule(str(fn.target))
                if _is_onnx2torch(sub):
                    env[fn] = self.onnx_call(sub, fn, env, val, is_ir, has_ir, str(loc))
                    continue
                if isinstance(sub, nn.MultiheadAttention):
                    from certify import _layers_build as lb

                    env[fn] = ("tuple_ir", lb.mha_call(self, sub, fn, env, val, is_ir, str(loc)))
                    continue
                if isinstance(sub, nn.TransformerEncoderLayer | nn.TransformerEncoder) and (
                        len(fn.args) != 1 or fn.kwargs):
                    from certify import _layers_build as lb

                    env[fn] = ("ir", lb.encoder_call(self, sub, fn, env, val, is_ir, str(loc)))
                    continue
                if len(fn.args) != 1 or fn.kwargs or not is_ir(fn.args[0]):
                    raise _unsupported(f"call of {type(sub).__name__} with several arguments", str(loc))
                env[fn] = ("ir", self.module(sub, env[fn.args[0]][1], str(loc)))  # type: ignore[index]
            elif fn.op in ("call_function", "call_method"):
                env[fn] = self.fx_call(fn, env, val, is_ir, has_ir, where)
            elif fn.op == "output":
                a = fn.args[0]
                if isinstance(a, torch.fx.Node):
                    out = env[a]
                elif not has_ir(a):
                    out = ("val", val(a))
                else:
                    raise _unsupported("model output that is not a single tensor", where)
        if placeholders < len(inputs):
            raise _unsupported(f"a call with {len(inputs)} arguments of a module taking {placeholders}", where)
        assert out is not None
        return out

    def onnx_call(self, sub: Any, fn: torch.fx.Node, env: dict, val: Any, is_ir: Any, has_ir: Any,
                  loc: str) -> tuple[str, Any]:
        """:meth:`_onnx_call`; any error but an UnsupportedLayerError is turned into one naming the ONNX node."""
        try:
            return self._onnx_call(sub, fn, env, val, is_ir, has_ir, loc)
        except UnsupportedLayerError:
            raise
        except Exception as e:
            raise UnsupportedLayerError(
                f"ONNX node {loc!r} ({type(sub).__name__}) could not be converted for bound propagation "
                f"({type(e).__name__}: {e}); {AUTO_LIRPA_HINT}") from e

    def _onnx_call(self, sub: Any, fn: torch.fx.Node, env: dict, val: Any, is_ir: Any, has_ir: Any,
                   loc: str) -> tuple[str, Any]:
        """A call of one of onnx2torch's modules (one ONNX node; ``loc`` is the node's name).

        A call none of whose arguments depends on the input is computed once, as a constant (the
        converter's rule, e.g. ``Constant`` and the shape arithmetic of ``Reshape`` targets); the
        others are mapped to the torch operation they compute, or traced when their forward is
        traceable; anything else raises :class:`UnsupportedLayerError` naming the ONNX node."""
        args, kwargs = tuple(fn.args), dict(fn.kwargs)
        cls = type(sub).__name__
        if any(isinstance(a, torch.fx.Node) and env[a][0] == "fused" for a in (*args, *kwargs.values())):
            raise _unsupported(f"ONNX node of {cls} reading an intermediate value of a fused pattern", loc)
        if not has_ir(args) and not has_ir(kwargs):
            with torch.no_grad():
                return ("val", sub(*val(args), **val(kwargs)))

        def call(target: Any, *a: Any, **k: Any) -> tuple[str, Any]:
            return self.fx_call(_Call(target, a, loc, k), env, val, is_ir, has_ir, "")  # type: ignore[arg-type]

        if cls == "OnnxResize":
            from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode

            rnames = ("input_tensor", "roi", "scales", "sizes")
            given = dict(zip(rnames, args)) | kwargs
            if has_ir([given.get(k) for k in rnames[1:]]):
                raise _unsupported("ONNX Resize with input-dependent scales or sizes", loc)
            x_node = given["input_tensor"]
            s0 = self.sample(env[x_node][1])
            roi, scales, sizes = (val(given.get(k)) for k in rnames[1:])
            if not sub.ignore_roi and roi is not None and roi.numel():
                raise _unsupported("ONNX Resize with a region of interest", loc)
            size_arg = scale_arg = None
            if sizes is not None and sizes.numel():
                size_list = [int(v) for v in sizes.tolist()]
                if size_list[:2] != list(s0.shape[:2]) and not sub.ignore_bs_ch_size:
                    raise _unsupported("ONNX Resize of the batch or channel dimension", loc)
                size_arg = size_list[2:]
            if scales is not None and scales.numel():
                scale_list = [float(v) for v in scales.tolist()]
                if scale_list[:2] != [1.0, 1.0]:
                    raise _unsupported("ONNX Resize of the batch or channel dimension", loc)
                scale_arg = scale_list[2:]
            try:
                mode = _onnx_mode_to_torch_mode(sub.onnx_mode, s0.dim() - 2)
            except NotImplementedError as e:
                raise _unsupported(f"ONNX Resize ({e})", loc) from e
            return call(F.interpolate, x_node, size=size_arg, scale_factor=scale_arg, mode=mode,
                        align_corners=sub.align_corners)
        if kwargs:
            raise _unsupported(f"ONNX node of {cls} called with keyword arguments", loc)
        if cls in ("OnnxExpand", "OnnxTile") and is_ir(args[0]) and not has_ir(args[1:]):
            i = env[args[0]][1]
            s0 = self.sample(i)
            arg = [int(v) for v in torch.as_tensor(val(args[1])).reshape(-1).tolist()]
            if cls == "OnnxExpand":
                try:
                    shape = tuple(torch.broadcast_shapes(s0.shape, torch.Size(arg)))
                except RuntimeError as e:
                    raise _unsupported(f"ONNX Expand to {arg} of a tensor of shape {tuple(s0.shape)}", loc) from e
                if shape != tuple(s0.shape):
                    raise _unsupported(f"ONNX Expand to {arg} that broadcasts a tensor of per-sample shape "
                                       f"{self.shape(i)} to a larger one", loc)
                return ("ir", i)
            if len(arg) != s0.dim() or arg[0] != 1:
                raise _unsupported(f"ONNX Tile with repeats {arg} (supported: one per dimension, 1 for the batch)",
                                   loc)
            for d, r in enumerate(arg[1:]):
                if r != 1:
                    i = self.add(Node("cat", (i,) * r, (), loc, attrs={"dim": d}))
            return ("ir", i)
        if cls in ("OnnxBinaryMathOperation", "OnnxPow"):
            if getattr(sub, "broadcast", None) == 1 and getattr(sub, "axis", None) is not None:
                raise _unsupported(f"ONNX node {cls} with legacy broadcast (axis={sub.axis})", loc)
            if cls == "OnnxPow":
                if is_ir(args[1]):
                    raise _unsupported("ONNX Pow with an input-dependent exponent", loc)
                ex = val(args[1])
                ex = float(ex) if isinstance(ex, Tensor) and ex.numel() == 1 else ex
                return call(torch.pow, args[0], ex)
            fname = getattr(sub.math_op_function, "__name__", "")
            target = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "_onnx_div": torch.div}.get(fname)
            if target is None:
                raise _unsupported(f"ONNX binary operation {fname!r}", loc)
            return call(target, *args)
        if cls == "OnnxReshape":
            if not is_ir(args[0]) or has_ir(args[1]):
                raise _unsupported("ONNX Reshape with an input-dependent target shape", loc)
            s0 = self.sample(env[args[0]][1])
            target_shape = [int(d) for d in torch.as_tensor(val(args[1])).reshape(-1).tolist()]
            # ONNX's 0 copies the input's dimension (allowzero=0, the only mode onnx2torch converts)
            target_shape = [s0.shape[k] if d == 0 and k < s0.dim() else d for k, d in enumerate(target_shape)]
            return call(torch.reshape, args[0], tuple(target_shape))
        if cls == "OnnxShape":
            s0 = self.sample(env[args[0]][1])
            # the batch size read here is the probe's; build_graph's check on another batch size catches misuse
            return ("val", torch.tensor(tuple(s0.shape)[sub._start: sub._end]))
        if cls in ("OnnxPadStatic", "OnnxPadDynamic"):
            from onnx2torch.node_converters.pad import _onnx_padding_to_torch, _torch_padding_to_mode_format

            if has_ir(args[1:]):
                raise _unsupported(f"ONNX Pad with input-dependent pads ({cls})", loc)
            if cls == "OnnxPadStatic":
                pads, value = list(sub.pads), sub.constant_value
            else:
                pads = _torch_padding_to_mode_format(
                    _onnx_padding_to_torch([int(p) for p in torch.as_tensor(val(args[1])).reshape(-1).tolist()]),
                    sub.mode)
                value = val(args[2]) if len(args) > 2 else 0.0
            value = 0.0 if value is None else float(torch.as_tensor(value).reshape(-1)[0]) if isinstance(
                value, Tensor) else float(value)
            return call(F.pad, args[0], tuple(int(p) for p in pads), sub.mode, value)
        if cls == "OnnxReduceStaticAxes" and sub.operation_type in ("ReduceMean", "ReduceSum") and sub.axes:
            return call(torch.mean if sub.operation_type == "ReduceMean" else torch.sum, args[0], list(sub.axes),
                        bool(sub.keepdims))
        if cls == "OnnxSlice" and is_ir(args[0]) and not has_ir(args[1:]):
            s0 = self.sample(env[args[0]][1])
            parts = [None if a is None else [int(v) for v in torch.as_tensor(a).reshape(-1).tolist()]
                     for a in val(args[1:5]) + (None,) * (5 - len(args))]
            starts, ends, axes, steps = parts[0], parts[1], parts[2], parts[3]
            assert starts is not None and ends is not None
            axes = axes if axes is not None else list(range(len(starts)))
            steps = steps if steps is not None else [1] * len(starts)
            index: list[Any] = [slice(None)] * s0.dim()
            for st, en, ax, sp in zip(starts, ends, axes, steps):
                ax = ax % s0.dim()
                if sp <= 0:
                    raise _unsupported(f"ONNX Slice with step {sp}", loc)
                sl = slice(*slice(st, en, sp).indices(s0.shape[ax]))
                index[ax] = slice(None) if sl == slice(0, s0.shape[ax], 1) else sl
            return call(operator.getitem, args[0], tuple(index))
        if cls == "OnnxGather" and is_ir(args[0]) and not has_ir(args[1:]):
            s0 = self.sample(env[args[0]][1])
            ax = int(sub._axis) % s0.dim()
            idx = torch.as_tensor(val(args[1]))
            n = s0.shape[ax]
            prefix: list[Any] = [slice(None)] * ax
            if idx.dim() == 0:
                return call(operator.getitem, args[0], (*prefix, int(idx) % n))
            flat = [int(v) % n for v in idx.reshape(-1).tolist()]
            step = flat[1] - flat[0] if len(flat) > 1 else 1
            if idx.dim() != 1 or step <= 0 or flat != list(range(flat[0], flat[0] + step * len(flat), step)):
                raise _unsupported(f"ONNX Gather of indices {idx.tolist()} (supported: a single index or an "
                                   "increasing arithmetic progression, i.e. a slice)", loc)
            return call(operator.getitem, args[0], (*prefix, slice(flat[0], flat[-1] + 1, step)))
        if cls == "OnnxConcat":
            return call(torch.cat, list(args), sub.axis)
        if cls == "OnnxPReLU" and is_ir(args[0]) and not has_ir(args[1:]):
            # x if x >= 0 else slope * x, the slope broadcast (ONNX: unidirectionally) to the per-sample shape
            from certify import _layers_build as lb

            i = env[args[0]][1]
            slope = torch.as_tensor(val(args[1])).to(self.dtype)
            try:
                full = torch.broadcast_to(slope, self.sample(i).shape)[0].contiguous()
            except RuntimeError as e:
                raise _unsupported(f"ONNX PRelu with a slope of shape {tuple(slope.shape)} for per-sample shape "
                                   f"{self.shape(i)}", loc) from e
            return ("ir", lb.scalar(self, "leaky_relu", i, loc, slope.reshape(()) if slope.numel() == 1 else full))
        if cls in ("OnnxErf", "OnnxSqrt"):
            raise _unsupported(
                f"ONNX operator {cls[4:]} (supported only inside the decomposed GELU x * 0.5 * (1 + erf(x / sqrt(2))) "
                "or LayerNorm (x - mean) / sqrt(var + eps) patterns of torch.onnx.export)", loc)
        entries = [env[a] if isinstance(a, torch.fx.Node) else ("val", a) for a in args]
        try:
            return self.fx_run(sub, entries, loc)
        except UnsupportedLayerError as e:
            raise UnsupportedLayerError(f"ONNX node {loc!r} ({cls}): {e}") from e

    def fx_call(self, fn: torch.fx.Node, env: dict, val: Any, is_ir: Any, has_ir: Any, where: str) -> tuple[str, Any]:
        """One call of the traced graph. The rule that keeps the conversion sound: a call none of whose
        arguments (at any nesting depth) is a graph value is computed once, as a constant; any other
        call becomes a graph node or is refused -- it is never evaluated on the probe input and
        folded into a constant."""
        t: Any = fn.target
        name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
        loc = f"{where}:{fn.name}" if where else fn.name
        args, kwargs = fn.args, fn.kwargs
        if name == "getitem" and isinstance(args[0], torch.fx.Node) and env[args[0]][0] == "tuple_ir":
            if val(args[1]) != 0:
                raise _unsupported("the attention weights of nn.MultiheadAttention (only its output is supported)",
                                   loc)
            return ("ir", env[args[0]][1])
        if name == "getitem" and isinstance(args[0], torch.fx.Node) and env[args[0]][0] == "parts_ir":
            k = val(args[1])
            parts = env[args[0]][1]
            if not isinstance(k, int) or not -len(parts) <= k < len(parts):
                raise _unsupported(f"indexing the parts of a split with {k!r}", loc)
            return ("ir", parts[k])
        if any(isinstance(a, torch.fx.Node) and env[a][0] == "tuple_ir" for a in (*args, *kwargs.values())):
            raise _unsupported(f"'{name}' of the output tuple of nn.MultiheadAttention", loc)
        if any(isinstance(a, torch.fx.Node) and env[a][0] == "parts_ir" for a in (*args, *kwargs.values())):
            raise _unsupported(f"'{name}' of the tuple of parts of a split (index it: a, b = x.split(...))", loc)
        if not has_ir(args) and not has_ir(kwargs):  # pure python / constant computation (e.g. shapes)
            f = getattr(val(args[0]), t) if fn.op == "call_method" else t
            a = val(args[1:]) if fn.op == "call_method" else val(args)
            return ("val", f(*a, **val(dict(kwargs))))
        ir_args = [a for a in args if is_ir(a)]
        if name in ("cat", "concat", "concatenate", "stack"):
            return ("ir", self.cat(name, args, kwargs, env, val, is_ir, has_ir, loc))
        if name in ("split", "chunk", "unbind") and is_ir(args[0]) and not has_ir(args[1:]) and not has_ir(kwargs):
            return ("parts_ir", self.split(name, fn, env[args[0]][1], val, loc))
        if not ir_args or has_ir(kwargs) or any(has_ir(a) and not is_ir(a) for a in args):
            raise _unsupported(f"'{name}' with input-dependent tensors nested in its arguments", loc)
        x = env[ir_args[0]][1]
        if name in ("size", "dim", "numel") or (
                name == "getattr" and len(args) == 2 and args[1] in ("shape", "ndim", "dtype", "device")):
            # python values from the (sample) tensor's metadata; the batch size read here is the probe's,
            # which build_graph's check against the model on another batch size catches if it is misused
            s0 = self.sample(x)
            f = getattr(s0, t) if fn.op == "call_method" else t
            rest = val(args[1:]) if fn.op == "call_method" else (s0, *val(args[1:]))
            return ("val", f(*rest, **val(dict(kwargs))))
        def single() -> int:
            if not is_ir(args[0]) or len(ir_args) != 1:
                raise _unsupported(f"'{name}' with these arguments", loc)
            return int(x)

        act = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
        if name in act:
            return ("ir", self.add(Node(act[name], (single(),), (), loc)))
        from certify import _layers_build as lb

        if name in lb.FUNCTIONS:
            return ("ir", lb.FUNCTIONS[name](self, fn, args, kwargs, env, val, is_ir, loc))
        if fn.op == "call_method" and name in ("clone", "float", "double", "to", "type_as"):
            # the same values: a copy, or a cast between float32 and float64 (the bounds are computed in the
            # engine's dtype; a cast rounds as every layer does), on the device the graph already runs on
            i = single()
            with torch.no_grad():
                s = self.sample(i)
                out = getattr(s, name)(*val(args[1:]), **val(dict(kwargs)))
            if out.dtype not in (torch.float32, torch.float64) or out.device != s.device or out.shape != s.shape:
                raise _unsupported(f"'{name}' to {out.dtype} on {out.device} (supported: float32, float64 on the "
                                   "input's device)", loc)
            return ("ir", i)
        if name in ("flatten", "view", "reshape", "unflatten", "contiguous", "unsqueeze", "squeeze"):
            i = single()
            with torch.no_grad():
                # (contiguous: the graph's sample of a slice may have other strides than the model's tensor;
                # a view of it is the same reshape)
                s = self.sample(i).contiguous()
                f = getattr(s, t) if fn.op == "call_method" else (lambda *a, **k: t(s, *a, **k))  # type: ignore[operator]
                out = f(*val(args[1:]), **val(dict(kwargs)))
            if out.dim() == 0 or out.shape[0] != s.shape[0]:
                raise _unsupported(f"'{name}' over the batch dimension", loc)
            if tuple(out.shape[1:]) == self.shape(i):
                return ("ir", i)
            return ("ir", self.add(Node("reshape", (i,), tuple(out.shape[1:]), loc)))
        if name in ("max_pool2d", "_max_pool2d", "max_pool1d", "_max_pool1d"):
            i = single()
            a = [val(v) for v in args[1:]]
            kw = val(dict(kwargs))
            names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            opts = dict(zip(names, a)) | kw
            pool_cls = nn.MaxPool1d if "1d" in name or len(self.shape(i)) == 2 else nn.MaxPool2d
            try:
                pool = pool_cls(**opts)
            except TypeError as e:
                raise _unsupported(f"'{name}' with arguments {opts}", loc) from e
            return ("ir", self.maxpool(pool, i, loc))
        if name in ("avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool1d",
                    "_adaptive_max_pool2d", "_adaptive_max_pool1d", "adaptive_max_pool2d_with_indices",
                    "adaptive_max_pool1d_with_indices"):
            # functional pooling: the module of the same layer, built from the call's arguments
            i = single()
            a = [val(v) for v in args[1:]]
            kw = val(dict(kwargs))
            if name == "avg_pool2d":
                pnames: tuple[str, ...] = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                           "divisor_override")
                cls: Any = nn.AvgPool2d
            else:
                pnames = ("output_size", "return_indices")
                cls = {"avg2": nn.AdaptiveAvgPool2d, "max2": nn.AdaptiveMaxPool2d, "max1": nn.AdaptiveMaxPool1d}[
                    ("avg" if "avg" in name else "max") + name.split("pool")[1][0]]
            opts = dict(zip(pnames, a)) | kw
            if "with_indices" in name or opts.get("return_indices"):
                raise _unsupported(f"'{name}' returning indices", loc)
            try:
                pool = cls(**opts)
            except TypeError as e:
                raise _unsupported(f"'{name}' with arguments {opts}", loc) from e
            if name == "avg_pool2d":
                return ("ir", self.avgpool(pool, i, loc))
            if name == "adaptive_avg_pool2d":
                return ("ir", self.adaptive_avgpool(pool, i, loc))
            return ("ir", self.maxpool(pool, i, loc))
        if name == "pad":
            i = single()
            pad = val(args[1] if len(args) > 1 else kwargs["pad"])
            mode = val(args[2] if len(args) > 2 else kwargs.get("mode", "constant"))
            value = val(args[3] if len(args) > 3 else kwargs.get("value", None))
            return ("ir", self.pad(tuple(int(p) for p in pad), str(mode), float(value or 0.0), i, loc))
        if name in ("permute", "transpose", "swapaxes", "swapdims"):
            i = single()
            nd = len(self.shape(i)) + 1
            rest = [val(v) for v in args[1:]]
            if name == "permute":
                dims = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], list | tuple) else list(rest)
                dims = list(val(kwargs["dims"])) if not dims and "dims" in kwargs else dims
            else:
                a0, a1 = (rest + [val(kwargs.get(k)) for k in ("dim0", "dim1")])[:2]
                dims = list(range(nd))
                dims[int(a0) % nd], dims[int(a1) % nd] = dims[int(a1) % nd], dims[int(a0) % nd]
            dims = [int(d) % nd for d in dims]
            if sorted(dims) != list(range(nd)) or dims[0] != 0:
                raise _unsupported(f"'{name}' moving the batch dimension ({dims})", loc)
            perm = tuple(d - 1 for d in dims[1:])
            if perm == tuple(range(nd - 1)):
                return ("ir", i)
            return ("ir", self.add(Node("permute", (i,), (), loc, attrs={"perm": perm})))
        if name == "getitem":
            i = single()
            idx = val(args[1])
            idx = idx if isinstance(idx, tuple) else (idx,)
            shape = self.shape(i)
            if not idx or idx[0] != slice(None) or len(idx) - 1 > len(shape) or not all(
                    isinstance(k, slice | int) and not isinstance(k, bool) for k in idx[1:]):
                raise _unsupported(f"indexing with {idx!r} (supported: x[:, slices or integers], batch kept whole)",
                                   loc)
            index: list[slice] = []
            drop: list[int] = []
            for d, k in enumerate(idx[1:]):
                if isinstance(k, int):
                    if not -shape[d] <= k < shape[d]:
                        raise _unsupported(f"index {k} out of range for dimension {d + 1} of size {shape[d]}", loc)
                    k = k % shape[d]
                    index.append(slice(k, k + 1, 1))
                    drop.append(d)
                else:
                    start, stop, step = k.indices(shape[d])
                    if step <= 0:
                        raise _unsupported(f"slice with step {step}", loc)
                    index.append(slice(start, stop, step))
            j = self.add(Node("slice", (i,), (), loc, attrs={"index": tuple(index)}))
            if drop:
                kept = tuple(n for d, n in enumerate(self.shape(j)) if d not in drop)
                j = self.add(Node("reshape", (j,), kept, loc))
            return ("ir", j)
        if name == "dropout":
            if val(kwargs.get("training", args[2] if len(args) > 2 else True)):
                raise _unsupported("dropout with training=True", loc)
            return ("ir", single())
        if name in ("add", "iadd", "sub", "isub"):
            sign = -1.0 if "sub" in name else 1.0
            alpha = float(val(kwargs.get("alpha", 1.0)))
            a, b = args[0], args[1]
            if is_ir(a) and is_ir(b):
                from certify import _layers_build as lb

                ia, ib = lb.broadcast_pair(self, env[a][1], env[b][1], loc)  # e.g. x[..., None, :] - x[..., None]
                return ("ir", self.add(Node("add", (ia, ib), (), loc, attrs={"coef": (1.0, sign * alpha)})))
            if is_ir(a):
                c = self.const(val(b), env[a][1], loc)
                return ("ir", self.add(Node("affine", (env[a][1],), (), loc, None, sign * alpha * c,
                                            {"exact": ("scaled_bias", sign * alpha, c)})))
            c = self.const(val(a), env[b][1], loc)
            w = torch.tensor(sign * alpha, dtype=self.dtype, device=c.device)
            return ("ir", self.add(Node("affine", (env[b][1],), (), loc, w, c)))
        if name in ("mul", "imul", "truediv", "itruediv", "div", "neg"):
            if name == "neg":
                w = torch.tensor(-1.0, dtype=self.dtype, device=self.nodes_device)
                return ("ir", self.add(Node("affine", (single(),), (), loc, w, None)))
            if kwargs.get("rounding_mode") is not None:  # floor / trunc division: piecewise constant, not c * 1/x
                raise _unsupported(f"'{name}' with rounding_mode={kwargs['rounding_mode']!r}", loc)
            a, b = args[0], args[1]
            if is_ir(a) and is_ir(b):
                from certify import _layers_build as lb

                j = env[b][1]
                if "div" in name:
                    j = self.add(Node("reciprocal", (j,), (), loc))
                return ("ir", lb.mul2(self, env[a][1], j, loc))
            if "div" in name and not is_ir(a):  # c / x = c * reciprocal(x)
                if name == "itruediv":
                    raise _unsupported(f"'{name}' by a tensor that depends on the input", loc)
                j = self.add(Node("reciprocal", (env[b][1],), (), loc))
                c = self.const(val(a), j, loc)
                return ("ir", self.add(Node("affine", (j,), (), loc, c, None)))
            node_arg, const = (a, b) if is_ir(a) else (b, a)
            c = self.const(val(const), env[node_arg][1], loc)
            w = 1.0 / c if "div" in name else c
            exact = {"exact": ("reciprocal", c)} if "div" in name else {}
            return ("ir", self.add(Node("affine", (env[node_arg][1],), (), loc, w, None, exact)))
        if name == "linear":
            i = single()
            w = val(args[1] if len(args) > 1 else kwargs["weight"])
            b = val(args[2] if len(args) > 2 else kwargs.get("bias"))
            if not isinstance(w, Tensor) or (b is not None and not isinstance(b, Tensor)):
                raise _unsupported("'linear' with input-dependent weights", loc)
            return ("ir", self.add(Node("linear", (i,), (), loc, self.p(w), self.p(b))))
        raise _unsupported(f"'{name}'", loc)


def build_graph(model: nn.Module, x: Tensor, dtype: torch.dtype | None = None) -> Graph:
    """Convert ``model`` to the IR; ``x`` (N, ...) gives the input shape, ``dtype`` the computation dtype."""
    dtype = dtype or x.dtype
    shape = tuple(x.shape[1:])
    sample = torch.zeros((2, *shape), dtype=dtype, device=x.device)
    if x.shape[0] > 0:
        sample[0] = x[0].detach().to(dtype)
    # The whole conversion holds the tracing lock: torch.fx patches nn.Module.__call__ process-wide while a
    # thread traces, and a module run meanwhile by another thread's conversion would go through that tracer.
    with _FX_LOCK:
        b = _Builder(sample, dtype, _reparametrisations(model))
        out = b.module(model, 0, "")
    nodes = b.nodes
    if out == 0:
        nodes.append(Node("reshape", (0,), nodes[0].shape, "identity"))
        out = len(nodes) - 1
    g = _prune(Graph(nodes, out))
    g.cacheable = b.cacheable
    _check_against_model(g, model, x, dtype)
    return g


def _check_against_model(g: Graph, model: nn.Module, x: Tensor, dtype: torch.dtype) -> None:
    """Evaluate the graph and the model on a probe batch of another size and other values than the
    converter's (3 points around x[0]); refuse the model if they differ.

    A safety net behind the converter's rules: a value folded into a constant from the converter's
    2-row probe (a tensor built from ``x.size(0)``, a value read from the input's data), a hook or
    any other computation the graph does not hold would make the bounds wrong, not just loose."""
    shape = tuple(x.shape[1:])
    gen = torch.Generator().manual_seed(20240601)
    noise = torch.rand((3, *shape), generator=gen, dtype=torch.float64).to(device=x.device)
    base = x[0].detach().to(torch.float64) if x.shape[0] else torch.zeros(shape, dtype=torch.float64, device=x.device)
    probe = base + noise * (1 + base.abs())
    # the model's own precision (the graph may compute in another one, e.g. float64 for sound=True)
    mdtype = next((t.dtype for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()),
                  x.dtype)
    # Under the tracing lock: torch.fx patches nn.Module.__call__ process-wide while another thread traces,
    # and a model called meanwhile would run through that thread's tracer (NameError inside torch.fx).
    with _FX_LOCK, torch.no_grad():
        try:
            want = model(probe.to(mdtype))
        except (RuntimeError, NotImplementedError) as e:
            # e.g. an ONNX model with a batch of 1 built into a Reshape or Expand that load_onnx could not free
            raise UnsupportedLayerError(
                f"the model fails on a batch of 3 inputs ({type(e).__name__}: {e}); certify evaluates it on "
                "batches of other sizes than the caller's, so it must accept any batch size") from e
        got = g.forward(probe.to(dtype))
    if not isinstance(want, Tensor) or tuple(want.shape) != tuple(got.shape):
        raise UnsupportedLayerError(
            f"certify's conversion of the model does not reproduce its output shape on a batch of 3 "
            f"(model: {tuple(want.shape) if isinstance(want, Tensor) else type(want).__name__}, converted: "
            f"{tuple(got.shape)}): the model computes something the converter cannot see (e.g. a tensor built "
            "from the batch size or from the input's values)")
    want64, got64 = want.to(torch.float64), got.to(torch.float64)
    finite = torch.isfinite(want64) & torch.isfinite(got64)
    scale = want64[finite].abs().max() if bool(finite.any()) else torch.tensor(0.0, dtype=torch.float64)
    rtol = 1e-3 if torch.float16 in (want.dtype, got.dtype) or torch.bfloat16 in (want.dtype, got.dtype) else 1e-4
    bad = (~finite & ~(want64 == got64) & ~(torch.isnan(want64) & torch.isnan(got64))) | (
        finite & ((want64 - got64).abs() > rtol * (1 + scale)))
    if bool(bad.any()):
        err = float((want64 - got64)[finite].abs().max()) if bool(finite.any()) else math.nan
        raise UnsupportedLayerError(
            f"certify's conversion of the model differs from the model on a probe batch (max abs difference "
            f"{err:.3g}): the model computes something the converter cannot see (e.g. a tensor built from the "
            "batch size or read from the input's values, or a module whose forward the converter does not "
            "reproduce); bounds would be wrong, so they are refused")


_GRAPH_CACHE: weakref.WeakKeyDictionary[
    nn.Module, dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Tensor], Graph]]
] = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple[tuple[Any, ...] | None, list[Tensor], bool]:
    """(fingerprint, the parameters and buffers, whether any parameter requires grad), in one walk.

    The fingerprint is the structure a converted graph depends on: the module objects and, for
    each parameter and buffer, its identity, storage address, version counter and requires_grad.
    Values are checked separately against a snapshot (writes through ``.data`` bump no version
    counter). It is None when the model cannot be fingerprinted (inference-mode tensors carry no
    version counter)."""
    parts: list[Any] = []
    tensors: list[Tensor] = []
    grad = False
    fingerprintable = True
    for m in model.modules():
        parts.append(id(m))
        for t in itertools.chain(m._parameters.values(), m._buffers.values()):
            if t is not None:
                grad = grad or t.requires_grad
                tensors.append(t)
                parts.extend((id(t), t.data_ptr(), t.requires_grad))
                try:
                    parts.append(t._version)
                except RuntimeError:
                    fingerprintable = False
    return (tuple(parts) if fingerprintable else None), tensors, grad


def _load_memcmp() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError, TypeError):  # no C library symbols (e.g. some Windows builds)
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return fn  # type: ignore[no-any-return]


_MEMCMP = _load_memcmp()


def _same_bits(t: Tensor, snapshot: Tensor) -> bool:
    """Whether ``t`` still holds exactly the snapshot's values (bitwise; 4x faster than
    ``torch.equal`` on CPU through libc's ``memcmp``)."""
    if (_MEMCMP is not None and t.device.type == "cpu" and t.is_contiguous() and t.dtype == snapshot.dtype
            and t.shape == snapshot.shape):
        return _MEMCMP(t.data_ptr(), snapshot.data_ptr(), t.numel() * t.element_size()) == 0
    return t.shape == snapshot.shape and torch.equal(t, snapshot)


def cached_graph(model: nn.Module, x: Tensor, dtype: torch.dtype | None = None) -> Graph:
    """:func:`build_graph`, reused across calls while the model is unchanged.

    The conversion (and tensors derived from the weights: |W|, dense conv matrices) is cached per
    model, input shape, dtype, device and inference mode. Every call re-checks the structure
    (:func:`_fingerprint`) and compares every parameter and buffer with a snapshot taken at build
    time (bitwise: one read of the weights, which also catches writes through ``.data``).
    It is rebuilt every call when autograd must track the parameters (bounds used as a training
    loss), so gradients always flow to the current parameters, and never cached when the model
    feeds plain tensor attributes (not parameters or buffers) into the graph. Changing a module's
    hyperparameters in place (e.g. assigning ``conv.stride``) is not detected: build a new model.
    """
    dtype = dtype or x.dtype
    fp, tensors, grad = _fingerprint(model)
    if fp is None or (grad and torch.is_grad_enabled()):
        return build_graph(model, x, dtype)
    key = (dtype, x.device, tuple(x.shape[1:]), torch.is_inference_mode_enabled())
    per_model = _GRAPH_CACHE.setdefault(model, {})
    hit = per_model.get(key)
    if hit is not None and hit[0] == fp and all(_same_bits(t, c) for t, c in zip(tensors, hit[1])):
        return hit[2]
    g = build_graph(model, x, dtype)
    if g.cacheable:
        if len(per_model) >= 4:
            per_model.pop(next(iter(per_model)))
        per_model[key] = (fp, [t.detach().clone(memory_format=torch.contiguous_format) for t in tensors], g)
    return g


def _prune(g: Graph) -> Graph:
    """Drop nodes the output does not depend on, and renumber."""
    keep = [False] * len(g.nodes)
    keep[g.output] = True
    keep[0] = True
    for i in range(len(g.nodes) - 1, -1, -1):
        if keep[i]:
            for j in g.nodes[i].inputs:
                keep[j] = True
    if all(keep):
        return g
    new_index: dict[int, int] = {}
    nodes: list[Node] = []
    for i, n in enumerate(g.nodes):
        if keep[i]:
            new_index[i] = len(nodes)
            nodes.append(replace(n, inputs=tuple(new_index[j] for j in n.inputs)))
    return Graph(nodes, new_index[g.output])


_DENSE_CACHE: dict[tuple, Tensor] = {}


def conv_as_dense(n: Node, in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor | None]:
    """Dense matrix (out_numel, in_numel) and bias (out_numel,) of a ``conv`` node (exact, differentiable).

    Matrices of weights that need no gradient are cached (keyed by the weight's bytes and the layout).
    """
    w = n.weight
    assert w is not None
    cacheable = not (torch.is_grad_enabled() and w.requires_grad)
    key = (hash(w.detach().cpu().numpy().tobytes()), tuple(w.shape), w.dtype, str(w.device), in_shape,
           torch.is_inference_mode_enabled(),
           tuple(sorted((k, str(v)) for k, v in n.attrs.items())))
    if cacheable and key in _DENSE_CACHE:
        mat = _DENSE_CACHE[key]
        bias = None if n.bias is None else n.bias.reshape(-1, 1, 1).expand(n.shape).reshape(-1)
        return mat, bias
    d = math.prod(in_shape)
    eye = torch.eye(d, dtype=w.dtype, device=w.device).reshape(d, *in_shape)
    mat = F.conv2d(eye, w, None, **conv_args(n)).reshape(d, -1).t()
    if cacheable:
        if len(_DENSE_CACHE) >= 32:
            _DENSE_CACHE.pop(next(iter(_DENSE_CACHE)))
        _DENSE_CACHE[key] = mat.detach()
    bias = None
    if n.bias is not None:
        bias = n.bias.reshape(-1, 1, 1).expand(n.shape).reshape(-1)
    return mat, bias


def densify(g: Graph, max_elements: int = 1 << 22) -> Graph:
    """Replace each ``conv`` node whose dense matrix has at most ``max_elements`` entries by a ``dense`` node."""
    hit = g.derived.get(("dense", max_elements))
    if hit is not None:
        return hit
    nodes = list(g.nodes)
    changed = False
    for i, n in enumerate(nodes):
        if n.op == "conv":
            in_shape = nodes[n.inputs[0]].shape
            if math.prod(in_shape) * n.numel <= max_elements:
                mat, bias = conv_as_dense(n, in_shape)
                nodes[i] = Node("dense", n.inputs, n.shape, n.name, mat, bias)
                changed = True
    out = Graph(nodes, g.output) if changed else g
    if not torch.is_grad_enabled() or not any(
            t is not None and t.requires_grad for n in nodes for t in (n.weight, n.bias)):
        g.derived[("dense", max_elements)] = out
    return out
