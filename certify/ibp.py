"""Interval bound propagation (IBP; Gowal et al. 2018) in centre/radius form.

An affine layer maps the box (centre c, radius r) to (W c + b, |W| r): one product with W
for the centre and one with |W| for the radius. Monotone activations map the end points.
Everything is plain torch, so bounds are differentiable w.r.t. the model parameters (IBP
certified training back-propagates through this).

Rounding: the bounds ``c' -/+ r'`` are accurate to rounding at the scale of ``|W| max(|l|, |u|)``, the
layer's largest values over the box. Where an input entry's two ends differ in magnitude by many orders
(a sum of exponentials: ``[1, e^38]``), a small bound is the difference of two huge numbers and can come
out on the wrong side of the true one (lower bound 2.0 for a true 1.0). Nodes where that matters (see
:func:`end_point_nodes`: non-negative weights, the affine nodes before a function that turns a small bound's
absolute error into a large relative one, and those after a function whose outputs span many orders of
magnitude) take the end points instead, ``l' = W+ l + W- u + b`` and
``u' = W+ u + W- l + b``: each bound then is a float evaluation of the layer at the box corner attaining it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from certify import _memory
from certify._graph import SCALAR_OPS, Graph, Node, conv_args
from certkit._validation import load_compiled

__all__ = ["InputRegion", "Interval", "end_point_nodes", "interval_forward", "node_interval", "spec_interval"]

#: functions whose output's error is not proportional to their input's absolute error at the input's scale:
#: poles at 0 (reciprocal, rsqrt, log: an absolute error of a small bound is a large relative one), exponential
#: growth (exp, and softmax's probabilities: an absolute error ``d`` of a logit is a factor ``e^d``). The affine
#: nodes before them compute their bounds from the end points (:func:`end_point_nodes`).
SCALE_SENSITIVE = ("exp", "log", "reciprocal", "rsqrt", "softmax", "log_softmax")
#: operations through which a bound reaches its consumer unchanged in scale (a sensitive consumer's affine
#: inputs are followed back through them)
_PASS_BACK = ("linear", "conv", "dense", "affine", "add", "reshape", "permute", "slice", "cat")
#: nodes that can compute IBP from the end points (:func:`_affine_ends`)
_ENDS_OPS = ("linear", "conv", "dense", "affine", "add")
#: functions whose output box can span many orders of magnitude *and* reach values far beyond their input's scale
#: (``[1, e^40]``, ``[1 / u, 1 / l]``, squares and products): the affine nodes after them (through affine, shape, ReLU
#: and max-pooling nodes) compute their bounds from the end points (:func:`end_point_nodes`). Not sigmoid or softmax:
#: their outputs span orders of magnitude too (``[e^-40, 0.5]``) but stay <= 1, so the centre/radius form's error
#: stays at the scale of the unit roundoff (their inputs are covered by :data:`SCALE_SENSITIVE` where it matters).
SPREADING = ("exp", "reciprocal", "rsqrt", "square", "mul")
#: activations with slopes of at most ~1.13 (GELU) that pass a box's spread and an absolute error of their input on at
#: its size. A review found both gaps: softplus -> mixed-sign Linear -> ReLU -> log kept the Linear in centre/radius
#: form (IBP's lower bound 0.47 above the network's value), and softplus(cat[exp(a x), d]) had a margin lower bound 1
#: where the true minimum is < 0 (IBP verified a misclassified region).
_NEAR_IDENTITY = ("relu", "maxpool", "leaky_relu", "softplus", "elu", "gelu", "gelu_tanh", "silu")
_PASS_FORWARD = (*_PASS_BACK, *_NEAR_IDENTITY)
#: the functions of :data:`SCALE_SENSITIVE` whose inputs are also followed back through :data:`_NEAR_IDENTITY`
#: activations: an absolute error passes through a ReLU unchanged and a pole or exp amplifies it as it would without
#: the ReLU. Not softmax / log-softmax: their error stays at the absolute scale of the logits' (probabilities <= 1,
#: log-softmax 2-Lipschitz), so a ReLU classifier ending in log_softmax keeps the centre/radius form in its body.
_SENSITIVE_THROUGH_ACTIVATIONS = ("exp", "log", "reciprocal", "rsqrt")
#: what the walk back from those functions passes through: the near-identity activations and the bounded Lipschitz
#: ones (sigmoid: slope <= 1/4, tanh: <= 1), which pass an absolute error on at most at its size; they do not spread
#: a box (outputs within [-1, 1]). A second review found softplus -> mixed-sign Linear -> tanh (or sigmoid - 0.5) ->
#: reciprocal with an IBP upper bound below the network's value (the Linear's tiny lower bound rounded across 0)
_PASS_BACK_ACT = (*_PASS_FORWARD, "sigmoid", "tanh", "mul", "square")  # products too (a hand-written h * sigmoid(h))


class Interval:
    """A box given by lower/upper, centre/radius, sum/difference ``(u + l, u - l)`` or centre/width
    ``(c, u - l)`` (what affine layers produce: the width comes out of one product with ``|W|``); the
    other forms are computed on demand."""

    __slots__ = ("_c", "_d", "_l", "_r", "_s", "_u")

    def __init__(self, l: Tensor | None = None, u: Tensor | None = None,  # noqa: E741
                 c: Tensor | None = None, r: Tensor | None = None,
                 s: Tensor | None = None, d: Tensor | None = None) -> None:
        self._l, self._u, self._c, self._r, self._s, self._d = l, u, c, r, s, d

    @property
    def l(self) -> Tensor:  # noqa: E743
        if self._l is None:
            self._l = self._c - self.r if self._c is not None else (self._s - self._d) / 2  # type: ignore[operator]
        return self._l

    @property
    def u(self) -> Tensor:
        if self._u is None:
            self._u = self._c + self.r if self._c is not None else (self._s + self._d) / 2  # type: ignore[operator]
        return self._u

    @property
    def c(self) -> Tensor:
        if self._c is None:
            self._c = self._s / 2 if self._s is not None else (self._u + self._l) / 2  # type: ignore[operator]
        return self._c

    @property
    def r(self) -> Tensor:
        if self._r is None:
            self._r = self._d / 2 if self._d is not None else (self._u - self._l) / 2  # type: ignore[operator]
        return self._r

    def reshape(self, shape: tuple[int, ...]) -> Interval:
        """The same box with every sample reshaped to ``shape`` (views where possible, no arithmetic)."""
        def rs(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.reshape(t.shape[0], *shape)

        return Interval(l=rs(self._l), u=rs(self._u), c=rs(self._c), r=rs(self._r), s=rs(self._s), d=rs(self._d))

    def form(self) -> tuple[str, Tensor, Tensor]:
        """The cheapest pair an affine layer can take: ``("sd", u + l, u - l)``, ``("cd", c, u - l)`` or
        ``("cr", c, r)``."""
        if self._c is None:
            return ("sd", *self.sum_diff())
        if self._r is None and self._d is not None:
            return "cd", self._c, self._d
        return "cr", self._c, self.r

    def sum_diff(self) -> tuple[Tensor, Tensor]:
        """``(u + l, u - l)`` (twice the centre and radius)."""
        if self._s is None:
            if self._c is not None:
                return self._c * 2, (self._r * 2 if self._d is None else self._d)  # type: ignore[operator,return-value]
            self._s, self._d = self.u + self.l, self.u - self.l
        return self._s, self._d  # type: ignore[return-value]


def _half_weights(n: Node) -> tuple[Tensor, Tensor]:
    """``(W / 2, |W| / 2)`` of an affine node, cached on it (for inputs in sum/difference form)."""
    w = n.weight
    assert w is not None
    return n.derive("w/2", lambda: w * 0.5), n.derive("|w|/2", lambda: w.abs() * 0.5)


def linear_relu(n: Node, a: Interval) -> Interval:
    """IBP through a linear/dense node and the ReLU after it, without autograd, in five element-wise
    passes: the centre's GEMM, then ``u = c + |W| r`` with the sum in the second GEMM's epilogue
    (``addmm``), ``l/2 = c - u/2`` in place, both ReLUs in place, and the sum/difference form
    ``(u + l, u - l)`` the next affine layer takes."""
    form, total, diff = a.form()  # (u + l, u - l), (c, u - l) or (c, r)
    b = total.shape[0]
    w = n.weight
    assert w is not None
    w_half, w_abs_half = _half_weights(n)
    if form != "sd":  # the centre itself: the full weights
        w_half = w
    if form == "cr":  # the radius itself: |W|
        w_abs_half = n.derive("|w|", w.abs)
    if total.dim() != 2:
        total, diff = total.reshape(b, -1), diff.reshape(b, -1)
    c = F.linear(total, w_half, n.bias)
    hi = torch.addmm(c, diff, w_abs_half.t())
    half_lo = c.sub_(hi, alpha=0.5).relu_()
    hi.relu_()
    total, diff = torch.add(hi, half_lo, alpha=2), hi.sub_(half_lo, alpha=2)
    if len(n.shape) != 1:
        total, diff = total.reshape(b, *n.shape), diff.reshape(b, *n.shape)
    return Interval(s=total, d=diff)


def relu_consuming(a: Interval, compiled: bool = True) -> Interval:
    """IBP through ReLU of an interval in centre/radius or centre/width form that nothing else will
    read, reusing its buffers (fresh pages cost faults on CPU). Only without autograd.

    From centre/width ``(c, w)``: four in-place passes, no allocation. With ``u' = relu(c + w/2)`` and
    ``l' = relu(c - w/2)``, the width ``u' - l'`` is ``min(u', w)`` (``w`` where the neuron is active,
    ``u'`` where it is unstable, 0 where inactive) and the centre is ``u' - width/2``. With ``compiled``, in one
    compiled pass where :func:`_ibp_kernels` allows (bit-identical)."""
    if a._c is not None and a._r is None and a._d is not None:
        c, w = a._c, a._d
        if (c.shape == w.shape and c.dtype == w.dtype and c.device.type == "cpu" and w.device.type == "cpu"
                and c.dtype in (torch.float32, torch.float64) and c.is_contiguous() and w.is_contiguous()
                and compiled and (kernels := _ibp_kernels(c.numel())) is not None):
            kernels.relu_centre_width(c.view(-1).numpy(), w.view(-1).numpy())  # one pass instead of four
            return Interval(c=c, d=w)
        hi = c.add_(w, alpha=0.5).relu_()
        width = torch.minimum(hi, w, out=w)
        return Interval(c=hi.sub_(width, alpha=0.5), d=width)
    cen, r = a._c, a._r
    assert cen is not None and r is not None
    lo = torch.sub(cen, r).relu_()
    up = cen.add_(r).relu_()
    total = torch.add(up, lo, out=r)
    return Interval(s=total, d=up.sub_(lo))


#: compiled element-wise steps of plain IBP (:mod:`certify._ibp_kernels`: the input box and ReLU in centre/width form,
#: one pass each, bit-identical to torch's form): None uses them where numba is installed, ``CERTKIT_NO_NUMBA`` is
#: unset, the tensor has at least ``IBP_KERNEL_MIN`` entries and the converted model has served ``IBP_KERNEL_AFTER``
#: IBP calls already (numba's import and compilation cost ~0.7 s and ~100 MB of peak memory once per process: a model
#: bounded once or twice never pays them); False never; True always (ImportError without numba)
USE_COMPILED: bool | None = None
IBP_KERNEL_MIN = 1 << 14
IBP_KERNEL_AFTER = 2
_KERNELS: list[object] = []


def _ibp_kernels(entries: int):  # type: ignore[no-untyped-def]
    """The module :mod:`certify._ibp_kernels` for tensors of ``entries`` values, or None (switched off, below the
    size floor of the default, or numba not installed)."""
    return load_compiled("certify._ibp_kernels", entries, switch=USE_COMPILED,
                         switch_name="certify.ibp.USE_COMPILED", cache=_KERNELS, min_entries=IBP_KERNEL_MIN)


class InputRegion:
    """The perturbation set: an L-inf ball intersected with a box domain, or an L2 ball (and the box).

    ``box`` is the tightest box enclosing the set (for L2 it is the ball's bounding box,
    clipped to the domain). ``x0`` and ``eps`` (shape (N,) ) describe the ball itself.
    With ``lazy_box`` the box is computed on first use (plain IBP may never need its lower and upper
    ends: :meth:`box_sum_diff` gives its sum/difference form in one pass); only where no autograd
    records it, so that the box is the same whenever it is formed.
    """

    def __init__(self, x0: Tensor, eps: Tensor, norm: float, domain: tuple[float, float] | None,
                 lazy_box: bool = False) -> None:
        self.x0, self.eps, self.norm, self.domain = x0, eps, norm, domain
        if not (lazy_box and not x0.requires_grad and not eps.requires_grad
                and not torch.is_inference_mode_enabled()):
            self.box = self._make_box()

    def _make_box(self) -> Interval:
        x0, eps, domain = self.x0, self.eps, self.domain
        e = eps.reshape(-1, *([1] * (x0.dim() - 1)))
        lo, hi = x0 - e, x0 + e
        if domain is not None:  # in place: both are fresh tensors (one allocation fewer each)
            lo, hi = lo.clamp_(min=domain[0]), hi.clamp_(max=domain[1])
        return Interval(l=lo, u=hi)

    @property
    def box(self) -> Interval:
        got = self.__dict__.get("_box")
        if got is None:
            got = self._box = self._make_box()
        return got  # type: ignore[no-any-return]

    @box.setter
    def box(self, value: Interval) -> None:
        self._box = value

    def box_sum_diff(self) -> Interval | None:
        """The box as ``Interval(s=u + l, d=u - l)`` from one compiled pass over ``x0``, bit-identical to the sum and
        difference of :attr:`box`'s ends, or None: the box is already formed, or the pass does not apply (numba
        missing or switched off, small input, GPU, other dtypes, non-contiguous input)."""
        x0, eps = self.x0, self.eps
        if ("_box" in self.__dict__ or x0.device.type != "cpu" or eps.device.type != "cpu"
                or x0.dtype not in (torch.float32, torch.float64) or eps.dtype != x0.dtype
                or not x0.is_contiguous() or x0.dim() < 1 or x0.shape[0] == 0):
            return None
        kernels = _ibp_kernels(x0.numel())
        if kernels is None:
            return None
        b = x0.shape[0]
        s, d = torch.empty_like(x0), torch.empty_like(x0)
        dom = self.domain
        lohi = torch.tensor((0.0, 0.0) if dom is None else dom, dtype=x0.dtype).numpy()
        kernels.box_sum_diff(x0.view(b, -1).numpy(), eps.contiguous().view(b).numpy(), lohi, dom is not None,
                             s.view(b, -1).numpy(), d.view(b, -1).numpy())
        return Interval(s=s, d=d)


def _form_weights(n: Node, w: Tensor, form: str, key: str = "") -> tuple[Tensor, Tensor]:
    """The weights that map an input pair of the given form (see :meth:`Interval.form`) to the output's
    centre and width in one product each: ``sd``: ``(W/2, |W|)``, ``cd``: ``(W, |W|)``, ``cr``:
    ``(W, 2|W|)``; cached on the node (``key`` names a fused weight)."""
    w_abs = n.derive("|w|" + key, w.abs)
    if form == "sd":
        return n.derive("w/2" + key, lambda: w * 0.5), w_abs
    if form == "cd":
        return w, w_abs
    return w, n.derive("2|w|" + key, lambda: w_abs * 2)


def _affine(n: Node, a: Interval) -> Interval:
    """IBP through one affine node, in centre/width form (``a`` is read in the form it holds)."""
    op = n.op
    if op == "affine":
        if a._c is not None and a._r is None and a._d is not None:  # centre/width stays centre/width
            c, w = a._c, a._d
            if n.weight is not None:
                c, w = c * n.weight, w * n.weight.abs()
            return Interval(c=c if n.bias is None else c + n.bias, d=w)
        c, r = a.c, a.r
        if n.weight is not None:
            c, r = c * n.weight, r * n.weight.abs()
        return Interval(c=c if n.bias is None else c + n.bias, r=r)
    assert n.weight is not None
    form, x, y = a.form()
    wc, ww = _form_weights(n, n.weight, form)
    if op == "linear":
        return Interval(c=F.linear(x, wc, n.bias), d=F.linear(y, ww))
    if op == "conv":
        args = conv_args(n)
        return Interval(c=F.conv2d(x, wc, n.bias, **args), d=F.conv2d(y, ww, None, **args))
    if op == "dense":
        b = x.shape[0]
        cc = F.linear(x.reshape(b, -1), wc, n.bias).reshape(b, *n.shape)
        dd = F.linear(y.reshape(b, -1), ww).reshape(b, *n.shape)
        return Interval(c=cc, d=dd)
    raise AssertionError(op)


def end_point_nodes(g: Graph) -> list[bool]:
    """Which nodes IBP computes from the end points of their input box (``l' = W+ l + W- u + b``, no centre and
    radius), cached on the graph: the linear/conv/dense nodes whose weights are all >= 0 (sums, means, average
    pooling, the 0/1 maps of padding and repeats: as cheap as centre/radius, two products), every affine node
    (linear, conv, dense, element-wise affine, add) from which only affine or shape operations lead to a
    function in :data:`SCALE_SENSITIVE` (for exp and the poles also through ReLU-like activations and max-pooling,
    :data:`_NEAR_IDENTITY`), and every affine node reached from a function in :data:`SPREADING`
    through affine, shape and near-identity activation nodes only (four products for mixed-sign weights). The centre/radius form's error of
    a bound is at the scale of the layer's largest values over the box, the end points' at the scale of the
    terms of that bound: a sum ``1 + e^x`` over x in [0, 38] has the lower bound 2 in the end points' form but
    ``c - r`` with ``c, r ~ e^38 / 2`` in centre/radius form, which rounds to 0 or 4 (float64). Plain ReLU
    networks (no such function, mixed-sign weights) keep the centre/radius form everywhere."""
    flags = g.derived.get("ibp ends")
    if flags is None:
        nodes = g.nodes
        consumers = g.consumers()
        feeds = [False] * len(nodes)  # an affine/shape path leads from the node to a sensitive function
        feeds_act = [False] * len(nodes)  # ... or a path through near-identity activations to exp or a pole
        for i in range(len(nodes) - 1, -1, -1):
            feeds[i] = any(nodes[k].op in SCALE_SENSITIVE or (nodes[k].op in _PASS_BACK and feeds[k])
                           for k in consumers[i])
            feeds_act[i] = any(nodes[k].op in _SENSITIVE_THROUGH_ACTIVATIONS
                               or (nodes[k].op in _PASS_BACK_ACT and feeds_act[k]) for k in consumers[i])
        spread = [False] * len(nodes)  # the node's box may hold entries of very different ends
        for i, n in enumerate(nodes):
            spread[i] = n.op in SPREADING or (n.op in _PASS_FORWARD and any(spread[j] for j in n.inputs))
        flags = []
        for i, n in enumerate(nodes):
            f = n.op in _ENDS_OPS and (feeds[i] or feeds_act[i] or any(spread[j] for j in n.inputs))
            if not f and n.op in ("linear", "conv", "dense") and n.weight is not None:
                f = bool((n.weight.detach() >= 0).all())
            flags.append(f)
        g.derived["ibp ends"] = flags
        # the spec (margins) of an output from the end points, or of an output box that may hold such entries
        g.derived["ibp spec ends"] = flags[g.output] or spread[g.output]
    return flags


def _affine_ends(n: Node, a: Interval) -> Interval:
    """IBP through one affine node from the end points: ``l' = W+ l + W- u + b``, ``u' = W+ u + W- l + b``
    (one product each where the weights are all >= 0, two where their signs differ; see :func:`end_point_nodes`)."""
    op, w, bias = n.op, n.weight, n.bias
    lo, hi = a.l, a.u
    if op == "affine":
        if w is not None:
            if w.dim() == 0:
                lo, hi = (lo * w, hi * w) if bool(w.detach() >= 0) else (hi * w, lo * w)
            else:
                pos = w >= 0
                lo, hi = torch.where(pos, lo, hi) * w, torch.where(pos, hi, lo) * w
        return Interval(l=lo, u=hi) if bias is None else Interval(l=lo + bias, u=hi + bias)
    assert w is not None
    b = lo.shape[0]
    if op == "linear":
        def prod(x: Tensor, wt: Tensor, bb: Tensor | None) -> Tensor:
            return F.linear(x, wt, bb)
    elif op == "conv":
        args = conv_args(n)

        def prod(x: Tensor, wt: Tensor, bb: Tensor | None) -> Tensor:
            return F.conv2d(x, wt, bb, **args)
    elif op == "dense":
        def prod(x: Tensor, wt: Tensor, bb: Tensor | None) -> Tensor:
            return F.linear(x.reshape(b, -1), wt, bb).reshape(b, *n.shape)
    else:
        raise AssertionError(op)
    if bool(n.derive("w>=0", lambda: (w >= 0).all())):  # type: ignore[operator]
        return Interval(l=prod(lo, w, bias), u=prod(hi, w, bias))
    wp = n.derive("w+", lambda: w.clamp(min=0))
    wn = n.derive("w-", lambda: w.clamp(max=0))
    return Interval(l=prod(lo, wp, bias) + prod(hi, wn, None), u=prod(hi, wp, bias) + prod(lo, wn, None))


def _add_ends(a: Interval, b: Interval, ca: float, cb: float) -> Interval:
    """``ca * a + cb * b`` from the end points (see :func:`end_point_nodes`)."""
    la, ua = (a.l, a.u) if ca >= 0 else (a.u, a.l)
    lb, ub = (b.l, b.u) if cb >= 0 else (b.u, b.l)

    def comb(p: Tensor, q: Tensor) -> Tensor:
        return torch.add(p if ca == 1.0 else p * ca, q, alpha=cb)

    return Interval(l=comb(la, lb), u=comb(ua, ub))


def _add(a: Interval, b: Interval, ca: float, cb: float) -> Interval:
    """``ca * a + cb * b`` in centre/width form, always in fresh tensors (a consumer may reuse them):
    one ``torch.add`` each for centre and width when a coefficient is 1 (``alpha`` scales the other
    term), reading each input in the form it holds."""
    def parts(iv: Interval) -> tuple[Tensor, Tensor, float, float]:  # centre = kc * x, width = kw * y
        form, x, y = iv.form()
        return x, y, (0.5 if form == "sd" else 1.0), (2.0 if form == "cr" else 1.0)

    (xa, ya, ka, wa), (xb, yb, kb, wb) = parts(a), parts(b)

    def comb(p: Tensor, q: Tensor, fp: float, fq: float) -> Tensor:
        if fp == 1.0:
            return torch.add(p, q, alpha=fq)
        if fq == 1.0:
            return torch.add(q, p, alpha=fp)
        return torch.add(p * fp, q, alpha=fq)

    return Interval(c=comb(xa, xb, ca * ka, cb * kb), d=comb(ya, yb, abs(ca) * wa, abs(cb) * wb))


def _channel_vector(t: Tensor | None, channels: int) -> Tensor | bool | None:
    """An elementwise factor as one value per channel of a (C, H, W) map: None if absent, False if it
    varies within a channel (then a following conv cannot absorb it)."""
    if t is None:
        return None
    if t.dim() == 0:
        return t.expand(channels)
    if t.dim() == 3 and t.shape == (channels, 1, 1):
        return t.reshape(channels)
    return False


def conv_affine(conv: Node, aff: Node) -> tuple[Tensor, Tensor | None] | None:
    """Weights and bias of ``aff(conv(x))`` as one convolution (BatchNorm folded into the conv before
    it: ``W' = W * s``, ``b' = b * s + t`` per output channel), or None if ``aff`` is not per channel."""
    assert conv.weight is not None
    cout = conv.weight.shape[0]
    s, t = _channel_vector(aff.weight, cout), _channel_vector(aff.bias, cout)
    if s is False or t is False:
        return None
    w, b = conv.weight, conv.bias
    if s is not None:
        w = w * s.reshape(-1, 1, 1, 1)  # type: ignore[union-attr]
        b = None if b is None else b * s
    if isinstance(t, Tensor):
        b = t if b is None else b + t
    return w, b


def _conv_affine_interval(conv: Node, aff: Node, a: Interval) -> Interval | None:
    """IBP through a conv and the per-channel affine node (eval-mode BatchNorm) after it, as one conv:
    two convolutions instead of two plus three element-wise passes. None if ``aff`` is not per channel."""
    cout = conv.weight.shape[0]  # type: ignore[union-attr]
    if _channel_vector(aff.weight, cout) is False or _channel_vector(aff.bias, cout) is False:
        return None
    key = f"+{aff.name}"
    w = conv.derive("w" + key, lambda: conv_affine(conv, aff)[0])  # type: ignore[index]
    bias: Tensor | None = conv.derive("b" + key, lambda: _or_empty(conv_affine(conv, aff)[1]))  # type: ignore[index]
    if bias is not None and bias.numel() == 0:
        bias = None
    form, x, y = a.form()
    wc, ww = _form_weights(conv, w, form, key)
    args = conv_args(conv)
    return Interval(c=F.conv2d(x, wc, bias, **args), d=F.conv2d(y, ww, None, **args))


def _or_empty(t: Tensor | None) -> Tensor:
    return torch.empty(0) if t is None else t


def _l2_first_layer(n: Node, region: InputRegion, shape_in: tuple[int, ...]) -> Interval | None:
    """Exact bounds of an affine layer applied directly to an L2 ball: W x0 + b -/+ ||W_row||_2 eps. A linear
    layer on the last dimension of a (..., E) input (per token) too: the ball's projection on each token's E
    entries is the E-dimensional ball of the same radius (all of the perturbation on that token)."""
    x0 = region.x0.reshape(region.x0.shape[0], *shape_in)
    w = n.weight
    if n.op == "linear":
        c = F.linear(x0, w, n.bias)  # type: ignore[arg-type]
        dev = w.norm(dim=1)  # type: ignore[union-attr]
    elif n.op == "dense":
        c = F.linear(x0.reshape(x0.shape[0], -1), w, n.bias).reshape(x0.shape[0], *n.shape)  # type: ignore[arg-type]
        dev = w.norm(dim=1).reshape(n.shape)  # type: ignore[union-attr]
    elif n.op == "conv":
        c = F.conv2d(x0, w, n.bias, **conv_args(n))  # type: ignore[arg-type]
        ones = torch.ones((1, *shape_in), dtype=x0.dtype, device=x0.device)
        dev = F.conv2d(ones, w * w, None, **conv_args(n)).clamp(min=0).sqrt()[0]  # type: ignore[operator]
    else:
        return None
    e = region.eps.reshape(-1, *([1] * len(n.shape)))
    return Interval(c=c, r=dev * e)


def node_interval(g: Graph, i: int, ivs: list[Interval | None], region: InputRegion | None = None,
                  direct: list[bool] | None = None, consume: bool = False, compiled: bool = False) -> Interval:
    """IBP interval of node ``i`` from the intervals of its inputs (``consume``: the input's
    interval is read by nothing else and autograd records nothing, so its buffers may be reused;
    ``compiled``: a consumed ReLU may run compiled, see :func:`relu_consuming`)."""
    n = g.nodes[i]
    op = n.op
    a = ivs[n.inputs[0]] if n.inputs else None
    assert a is not None or op == "input"
    if op == "reshape":  # keeps whichever form the input holds (a conversion costs element-wise passes)
        return a.reshape(n.shape)  # type: ignore[union-attr]
    if op in ("linear", "conv", "dense", "affine"):
        out = _affine_ends(n, a) if end_point_nodes(g)[i] else _affine(n, a)  # type: ignore[arg-type]
        if (region is not None and region.norm == 2 and direct is not None and direct[n.inputs[0]]
                and op != "affine"):
            ex = _l2_first_layer(n, region, g.nodes[n.inputs[0]].shape)
            if ex is not None:
                out = Interval(l=torch.maximum(out.l, ex.l), u=torch.minimum(out.u, ex.u))
        return out
    if op == "add":
        b_iv = ivs[n.inputs[1]]
        assert a is not None and b_iv is not None
        if end_point_nodes(g)[i]:
            return _add_ends(a, b_iv, *n.attrs["coef"])
        return _add(a, b_iv, *n.attrs["coef"])
    if op == "cat":
        parts = [ivs[j] for j in n.inputs]
        d = n.attrs["dim"] + 1
        return Interval(l=torch.cat([p.l for p in parts], dim=d), u=torch.cat([p.u for p in parts], dim=d))  # type: ignore[union-attr]
    if op in ("permute", "slice"):  # moves entries: exact
        from certify._graph import apply_node

        return Interval(l=apply_node(n, [a.l]), u=apply_node(n, [a.u]))  # type: ignore[union-attr]
    if op == "maxpool":  # monotone: exact on the end points
        from certify._layers import maxpool_forward

        return Interval(l=maxpool_forward(a.l, n.attrs), u=maxpool_forward(a.u, n.attrs))  # type: ignore[union-attr]
    if op == "relu":
        if consume and a._c is not None and (a._r is not None or a._d is not None):  # type: ignore[union-attr]
            return relu_consuming(a, compiled)  # type: ignore[arg-type]
        return Interval(l=torch.relu(a.l), u=torch.relu(a.u))  # type: ignore[union-attr]
    if op == "sigmoid":
        return Interval(l=torch.sigmoid(a.l), u=torch.sigmoid(a.u))  # type: ignore[union-attr]
    if op == "tanh":
        return Interval(l=torch.tanh(a.l), u=torch.tanh(a.u))  # type: ignore[union-attr]
    if op in SCALAR_OPS:  # the exact range over the interval (end points, breaks, critical points)
        from certify._layers import scalar_range

        lo, hi = scalar_range(op, n.attrs.get("param"), a.l, a.u, n.name,  # type: ignore[union-attr]
                              n.attrs.get("floor"))
        return Interval(l=lo, u=hi)
    if op == "mul":
        from certify._layers import mul_range

        b_iv = ivs[n.inputs[1]]
        assert b_iv is not None
        lo, hi = mul_range(a.l, a.u, b_iv.l, b_iv.u)  # type: ignore[union-attr]
        return Interval(l=lo, u=hi)
    if op in ("softmax", "log_softmax"):  # the exact range of each output over the input box
        from certify._layers import softmax_range

        lo, hi = softmax_range(a.l, a.u, op == "log_softmax")  # type: ignore[union-attr]
        return Interval(l=lo, u=hi)
    raise AssertionError(op)


def direct_input_flags(g: Graph) -> list[bool]:
    """Whether each node equals the input up to a reshape (an affine layer on it is bounded exactly for L2)."""
    flags: list[bool] = []
    for n in g.nodes:
        flags.append(n.op == "input" or (n.op == "reshape" and flags[n.inputs[0]]))
    return flags


def spec_interval(g: Graph, ivs: list[Interval | None], C: Tensor | None, region: InputRegion | None = None,
                  direct: list[bool] | None = None) -> tuple[Tensor, Tensor]:
    """Bounds of ``C @ output`` (``C``: (N, S, K); None means the identity), with C folded into a last linear layer."""
    out = g.nodes[g.output]
    if C is None:
        iv = ivs[g.output]
        assert iv is not None
        b = iv.l.shape[0]
        return iv.l.reshape(b, -1), iv.u.reshape(b, -1)
    # the output is bounded from its end points, or its box may hold entries of very different ends: so is the spec
    ends = end_point_nodes(g)[g.output] or bool(g.derived.get("ibp spec ends", False))
    if out.op in ("linear", "dense") and (out.op == "dense" or len(out.shape) == 1):
        a = ivs[out.inputs[0]]
        assert a is not None and out.weight is not None
        w = torch.matmul(C, out.weight)  # (N, S, in)
        cb = None if out.bias is None else torch.matmul(C, out.bias)
        if ends:
            b = a.l.shape[0]
            l_in, u_in = a.l.reshape(b, 1, -1), a.u.reshape(b, 1, -1)
            wp, wn = w.clamp(min=0), w.clamp(max=0)
            lo = torch.linalg.vecdot(wp, l_in) + torch.linalg.vecdot(wn, u_in)
            hi = torch.linalg.vecdot(wp, u_in) + torch.linalg.vecdot(wn, l_in)
            if cb is not None:
                lo, hi = lo + cb, hi + cb
        else:
            b = a.c.shape[0]
            c_in, r_in = a.c.reshape(b, -1, 1), a.r.reshape(b, -1, 1)
            c = torch.linalg.vecdot(w, c_in.transpose(1, 2))  # batched mat-vec (faster than bmm on CPU)
            if cb is not None:
                c = c + cb
            r = torch.linalg.vecdot(w.abs(), r_in.transpose(1, 2))
            lo, hi = c - r, c + r
        if region is not None and region.norm == 2 and direct is not None and direct[out.inputs[0]]:
            dev = w.norm(dim=2) * region.eps.reshape(-1, 1)
            c2 = torch.bmm(w, region.x0.reshape(b, -1, 1)).squeeze(-1)
            if out.bias is not None:
                c2 = c2 + torch.matmul(C, out.bias)
            lo, hi = torch.maximum(lo, c2 - dev), torch.minimum(hi, c2 + dev)
        return lo, hi
    iv = ivs[g.output]
    assert iv is not None
    if ends:
        b = iv.l.shape[0]
        lo, hi = iv.l.reshape(b, -1, 1), iv.u.reshape(b, -1, 1)
        cp, cn = C.clamp(min=0), C.clamp(max=0)
        return ((torch.bmm(cp, lo) + torch.bmm(cn, hi)).squeeze(-1),
                (torch.bmm(cp, hi) + torch.bmm(cn, lo)).squeeze(-1))
    b = iv.c.shape[0]
    c = torch.bmm(C, iv.c.reshape(b, -1, 1)).squeeze(-1)
    r = torch.bmm(C.abs(), iv.r.reshape(b, -1, 1)).squeeze(-1)
    return c - r, c + r


#: ops that read an interval only through :meth:`Interval.form` (or its centre and radius, exact halves of the
#: sum/difference form): the input box may reach them in sum/difference form (:func:`_form_only_input`)
_FORM_READERS = frozenset(("linear", "conv", "dense", "affine", "add"))


def _form_only_input(g: Graph) -> bool:
    """Whether every node that reads the input (directly or through reshapes) reads it only in sum/difference form
    (``_FORM_READERS``, not bounded from the end points: :func:`end_point_nodes`) and the output is none of them:
    then IBP may start from :meth:`InputRegion.box_sum_diff` with the same bounds as from the box's ends (cached on
    the graph)."""
    hit = g.derived.get("ibp form-only input")
    if hit is None:
        consumers = g.consumers()
        ends = end_point_nodes(g)
        hit, todo = True, [0]
        while todo and hit:
            j = todo.pop()
            if j == g.output:
                hit = False
            for i in consumers[j]:
                op = g.nodes[i].op
                if op == "reshape":
                    todo.append(i)
                elif op not in _FORM_READERS or ends[i]:
                    hit = False
        g.derived["ibp form-only input"] = hit
    return bool(hit)


def interval_forward(g: Graph, region: InputRegion, *, stop_before_output: bool = False,
                     keep_all: bool = True, start: Interval | None = None,
                     compiled: bool = False) -> list[Interval | None]:
    """IBP intervals of every node (the output node is skipped if ``stop_before_output``).

    With ``keep_all=False`` only the intervals :func:`spec_interval` needs (the output node and
    its input) are kept; the others are released once their last consumer is computed, which
    keeps the working set small (fresh allocations cost page faults on CPU). ``start``: the input's
    interval (default ``region.box``); ``compiled``: ReLUs whose input buffers are reused run compiled
    (:func:`relu_consuming`).
    """
    nodes = g.nodes
    ivs: list[Interval | None] = [None] * len(nodes)
    box = ivs[0] = region.box if start is None else start
    direct = direct_input_flags(g) if region.norm == 2 else None
    plan = g.derived.get("ibp plan")
    if plan is None:
        last_use = list(range(len(nodes)))
        for i, n in enumerate(nodes):
            for j in n.inputs:
                last_use[j] = i
        plan = g.derived["ibp plan"] = (last_use, {g.output, *nodes[g.output].inputs}, g.consumers())
    last_use, keep, consumers = plan
    # buffers may be reused in place only where autograd records nothing (neither the input region
    # nor any weight requires grad): in-place updates of tensors saved for backward would be errors
    in_place = not keep_all and not (torch.is_grad_enabled() and (
        any(t is not None and t.requires_grad for t in (box._l, box._u, box._c, box._r, box._s, box._d))
        or any(t is not None and t.requires_grad for n in nodes for t in (n.weight, n.bias))))
    fused: set[int] = set()  # affine nodes computed together with the conv before them (fresh buffers)
    ends = end_point_nodes(g)  # nodes bounded from the end points: not fused (centre/radius form)
    for i in range(1, len(nodes)):
        if (stop_before_output and i == g.output) or ivs[i] is not None:
            continue
        n = nodes[i]
        nxt = consumers[i][0] if len(consumers[i]) == 1 else None
        if (in_place and nxt is not None and nodes[nxt].op == "relu" and i not in keep and not ends[i]
                and (n.op == "dense" or (n.op == "linear" and len(n.shape) == 1))
                and not (direct is not None and direct[n.inputs[0]])):
            ivs[nxt] = linear_relu(n, ivs[n.inputs[0]])  # type: ignore[arg-type]
        elif (not keep_all and nxt is not None and n.op == "conv" and nodes[nxt].op == "affine" and i not in keep
              and not ends[i] and not ends[nxt] and not (direct is not None and direct[n.inputs[0]])
              and (iv := _conv_affine_interval(n, nodes[nxt], ivs[n.inputs[0]])) is not None):  # type: ignore[arg-type]
            ivs[nxt] = iv  # conv + BatchNorm as one conv; the conv's own interval is never needed
            fused.add(nxt)
        else:
            j = n.inputs[0] if len(n.inputs) == 1 else -1
            # only the sole consumer may reuse j's buffers, and only buffers j allocated itself (an affine
            # node without weight passes its input's radius through; a reshape holds views)
            consume = (in_place and j >= 0 and len(consumers[j]) == 1 and j not in keep
                       and (nodes[j].op in ("linear", "conv", "dense", "add") or j in fused))
            ivs[i] = node_interval(g, i, ivs, region, direct, consume=consume, compiled=compiled)
        if not keep_all:
            for j in nodes[i].inputs:
                if last_use[j] == i and j not in keep:
                    ivs[j] = None
    return ivs


#: IBP runs on chunks of inputs whose widest interval tensor stays under this many bytes, of at least
#: ``IBP_MIN_CHUNK`` inputs (see :func:`ibp_bounds`; speed knobs), and of at most as many as the memory
#: available allows with ``IBP_COPIES`` interval tensors of the widest node per input (``certify._memory``)
IBP_CHUNK_BYTES = 1 << 22
IBP_MIN_CHUNK = 32
IBP_COPIES = 8


def ibp_bounds(g: Graph, region: InputRegion, spec: Tensor | None) -> tuple[Tensor, Tensor]:
    """IBP bounds of ``spec @ output`` (spec (N, S, K); None = the output itself), shape (N, S).

    The batch runs in chunks of inputs whose widest interval tensor holds at most ``IBP_CHUNK_BYTES``, but
    never fewer than ``IBP_MIN_CHUNK`` inputs (a convolution on a few inputs is slow per input) unless the memory
    available allows fewer (``IBP_COPIES`` interval tensors per input, ``certify._memory``): the working
    set then stays in cache (4 MiB: cnn_4layer at batch 64 runs as one chunk, 1.16x faster than two chunks of
    32; the fresh pages glibc served to each call's blocks of a few hundred KiB, ~300 page faults per call on
    cnn_4layer at batch 64 unchunked, are avoided once per process by :func:`certify._memory.warm_allocator`).
    Inputs are independent: the bounds are those of the whole batch (up to the order of summation inside the
    convolutions, which can depend on the batch size)."""
    if region.x0.device.type == "cpu":
        _memory.warm_allocator()  # once per process (glibc's dynamic mmap threshold: no fresh pages per call)
    out = g.nodes[g.output]
    foldable = out.op == "dense" or (out.op == "linear" and len(out.shape) == 1)
    direct = direct_input_flags(g) if region.norm == 2 else None
    n = region.x0.shape[0]
    widest = g.derived.get("widest node")
    if widest is None:
        widest = g.derived["widest node"] = max(nd.numel for nd in g.nodes)
    widest *= region.x0.element_size()
    chunk = max(IBP_MIN_CHUNK, IBP_CHUNK_BYTES // max(widest, 1))
    chunk = _memory.units(widest, cap=chunk * max(widest, 1), copies=IBP_COPIES, device=region.x0.device,
                          what="IBP (per input)")
    # compiled element-wise steps from the IBP_KERNEL_AFTER + 1st call of this graph on (USE_COMPILED None); a graph
    # whose parameters autograd tracks is rebuilt every call (cached_graph), so differentiable bounds never get here
    calls = g.derived["ibp calls"] = g.derived.get("ibp calls", 0) + 1
    compiled = USE_COMPILED is not False and (USE_COMPILED is True or calls > IBP_KERNEL_AFTER)
    # the box in sum/difference form from one compiled pass, where every reader of the input takes that form
    start = region.box_sum_diff() if compiled and _form_only_input(g) else None
    los, his = [], []
    for i0 in range(0, n, chunk):
        sl = slice(i0, i0 + chunk)
        sub_start = None if start is None or chunk >= n else Interval(s=start._s[sl], d=start._d[sl])  # type: ignore[index]
        if chunk >= n:
            sub = region
            sub_start = start
        else:
            sub = InputRegion.__new__(InputRegion)
            sub.x0, sub.eps, sub.norm, sub.domain = region.x0[sl], region.eps[sl], region.norm, region.domain
            if start is None:
                sub.box = Interval(l=region.box.l[sl], u=region.box.u[sl])
        # spec_interval folds the spec into a last linear layer, else it needs the output's interval
        ivs = interval_forward(g, sub, stop_before_output=spec is not None and foldable, keep_all=False,
                               start=sub_start, compiled=compiled)
        lo, hi = spec_interval(g, ivs, None if spec is None else spec[sl], sub, direct)
        los.append(lo)
        his.append(hi)
    if len(los) == 1:
        return los[0], his[0]
    return torch.cat(los), torch.cat(his)
