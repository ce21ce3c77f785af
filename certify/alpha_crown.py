"""alpha-CROWN (Xu et al., ICLR 2021) and beta-CROWN's split constraints (Wang et al., NeurIPS 2021).

CROWN's bound ``min_x c^T f(x)`` is valid for *any* lower slope ``alpha`` in [0, 1] of an unstable
ReLU (``alpha z <= relu(z)`` on ``[l, u]`` when ``l < 0 < u``). alpha-CROWN treats these slopes as
free parameters, one per input, per specification row and per neuron, and maximises the lower bound
itself by projected gradient ascent (Adam, then clipping to [0, 1]). Every iterate is a sound bound;
the best one seen per row is returned, so stopping early (``iterations``, verified rows) only gives
a looser bound, never an unsound one.

Branch-and-bound adds split constraints ``s_k z_k >= 0`` (``s_k = +1``: ReLU k active, ``-1``:
inactive). They tighten the pre-activation bounds (``l = max(l, 0)`` or ``u = min(u, 0)``, which
makes the split ReLU's relaxation exact) and enter the final bound through the Lagrangian
``min_x c^T f(x) - sum_k beta_k s_k z_k`` with ``beta >= 0`` (beta-CROWN), optimised jointly with
alpha. A domain whose tightened bounds cross (``l > u``) is empty.

What is optimised: the slopes of the *final* backward pass (the bound of the specification), per
specification row; then, optionally (``intermediate``; on by default in verification, for the inputs
still open), jointly with the slopes of every intermediate bound (:class:`_Intermediate`), as auto_LiRPA's
alpha-CROWN does; for a conv-shaped node the intermediate bounds' coefficients and slopes are kept in window
("patches") form, one receptive field per neuron, as CROWN's ``_patches_bounds``.

Sigmoid and tanh (final pass only): CROWN's lines ``k_l x + b_l <= f(x) <= k_u x + b_u`` on ``[l, u]`` (the
tangent-line relaxation, ``certify.crown.smooth_relaxation``) take as intercepts the extremes of ``f(x) - k x``
(``certify.crown._smooth_intercepts``), which are valid for any ``k`` in ``(0, kmax]`` (0.25 sigmoid, 1 tanh).
Here the lower and the upper slopes ``k_l``, ``k_u`` (N, S, *shape) are free, projected onto ``[tiny, kmax]``, with
the intercepts recomputed from them at each step (a differentiable closed form; this family holds every tightest
line). They start at CROWN's slopes, so the first iterate is CROWN's bound.

This module is a thin layer over :mod:`certify.crown`: it runs CROWN once through its ``hook``,
then re-runs only the final backward pass with per-row slopes (``_Relax.per_spec``) and betas.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from certify import _memory, _softmax_alt
from certify._graph import Graph
from certify._layers import LinearRelax
from certify.crown import _Relax, _relax_rows, _smooth_intercepts, backward, crown_bounds
from certify.ibp import InputRegion, Interval

__all__ = ["ALPHA_ITERATIONS", "ALPHA_LR", "LR_DECAY", "Optimized", "alpha_crown_bounds", "optimize_lower"]

#: auto_LiRPA's defaults for alpha-CROWN (``optimize_bound_args``): 20 Adam steps, lr 0.5, decay 0.98.
ALPHA_ITERATIONS = 20
ALPHA_LR = 0.5
LR_DECAY = 0.98
#: the largest slope of sigmoid/tanh (their derivative's maximum): the range of their optimised slopes is [tiny, kmax]
SMOOTH_KMAX = {"sigmoid": 0.25, "tanh": 1.0}
#: their learning rate is ``lr * kmax * SMOOTH_LR_SCALE`` (0.01 kmax at the default lr; chosen on random MLPs, where
#: ReLU's step of 0.5 over the whole range loosens the bound in the first steps and ends looser than CROWN)
SMOOTH_LR_SCALE = 0.02


class _Hook:
    """Receives CROWN's state; tightens pre-activation bounds by split constraints."""

    def __init__(self, splits: dict[int, Tensor] | None) -> None:
        self.splits = splits or {}
        self.infeasible: Tensor | None = None
        self.state: tuple[Any, ...] | None = None

    def preactivation(self, i: int, iv: Interval) -> Interval:
        s = self.splits.get(i)
        if s is None:
            return iv
        lo = torch.where(s > 0, iv.l.clamp(min=0), iv.l)
        hi = torch.where(s < 0, iv.u.clamp(max=0), iv.u)
        crossed = (lo > hi).reshape(lo.shape[0], -1).any(1)
        self.infeasible = crossed if self.infeasible is None else self.infeasible | crossed
        return Interval(l=lo, u=torch.maximum(hi, lo))

    def final(self, gd: Graph, ivs: list[Interval], relax: dict[int, _Relax], a: Tensor, b0: Tensor | None,
              start_input: int | None) -> None:
        self.state = (gd, ivs, relax, a, b0, start_input)


@dataclass(frozen=True)
class Optimized:
    """Result of :func:`optimize_lower`.

    ``lower`` (N, S): best lower bound per row over all iterates; ``infeasible`` (N,): the split
    constraints are contradictory (the domain is empty); ``alpha`` / ``beta``: the last slopes and
    multipliers per ReLU node (N, S, *shape), for warm starts; ``unstable`` / ``active``: per ReLU node
    (N, *shape), unstable (and not split) / active under the (split-tightened) pre-activation bounds; ``primal``
    (N, *input shape), with scores: the box corner minimising the worst open row's linear bound (a candidate
    counterexample); ``score``: BaBSR's intercept scores per ReLU node (N, *shape) or None; ``score_bias``:
    BaBSR's bias-aware scores (the backup candidates of filtered smart branching) or None.
    """

    lower: Tensor
    infeasible: Tensor
    alpha: dict[int, Tensor]
    beta: dict[int, Tensor]
    unstable: dict[int, Tensor]
    active: dict[int, Tensor]
    score: dict[int, Tensor] | None
    primal: Tensor | None
    iterations: int
    score_bias: dict[int, Tensor] | None = None


def _slope_range(node: Any, ref: Tensor) -> tuple[Tensor | float, Tensor | float] | None:
    """The interval of valid lower slopes through the origin of an unstable activation, or None when the
    relaxation has no such free parameter: ReLU ``[0, 1]``; LeakyReLU/PReLU with negative slope ``a <= 1``
    (a convex function ``max(z, a z)``): ``[a, 1]`` (``s z <= max(z, a z)`` iff ``a <= s <= 1``)."""
    if node.op == "relu":
        return 0.0, 1.0
    if node.op == "leaky_relu":
        a = torch.as_tensor(node.attrs["param"]).detach().to(dtype=ref.dtype, device=ref.device)
        if bool((a <= 1).all()):
            return a, 1.0
    return None


def _node_bias(node: Any, ref: Tensor) -> Tensor:
    """The constant term of a pre-activation node's own layer (its bias), broadcast to ``ref`` (N, *shape);
    zeros where the node has none (BaBSR's bias term, Bunel et al. 2020)."""
    b = getattr(node, "bias", None)
    if b is None or node.op not in ("linear", "conv", "dense", "affine"):
        return torch.zeros_like(ref)
    b = b.detach().to(ref.dtype)
    try:
        if node.op == "conv":
            b = b.reshape(-1, *([1] * (ref.dim() - 2)))
        elif node.op == "dense":
            b = b.reshape(ref.shape[1:])
        return torch.broadcast_to(b, ref.shape).clone()
    except RuntimeError:
        return torch.zeros_like(ref)


def _ascend(groups: list[dict[str, Any]], bound: Any, best: Tensor, active_rows: Any, iterations: int,
            lr_decay: float, deadline: float | None, project: Any) -> int:
    """Projected gradient ascent (Adam, exponential learning-rate decay) of ``bound()`` (N, S) on the rows
    ``active_rows()`` still open; every iterate is a valid bound, the best per row is kept in ``best``."""
    params = [t for grp in groups for t in grp["params"]]
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay)
    steps = 0
    for _ in range(iterations):
        active = active_rows()
        if not bool(active.any()) or (deadline is not None and time.perf_counter() > deadline):
            break
        with torch.enable_grad():
            lo = bound()
            _keep_best(best, lo.detach())
            loss = -torch.where(active, lo, torch.zeros_like(lo)).sum()
        # gradients for the slopes/multipliers only (never into the model's parameters)
        for t, gr in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            t.grad = gr
        opt.step()
        sched.step()
        steps += 1
        with torch.no_grad():
            project()
    return steps


def optimize_lower(g: Graph, region: InputRegion, spec: Tensor, *, iterations: int = ALPHA_ITERATIONS,
                   lr: float = ALPHA_LR, lr_beta: float = 0.05, lr_decay: float = LR_DECAY,
                   compare_ibp: bool = False, skip: Tensor | None = None, stop_at: float | Tensor | None = 0.0,
                   splits: dict[int, Tensor] | None = None, init_alpha: dict[int, Tensor] | None = None,
                   init_beta: dict[int, Tensor] | None = None, want_score: bool = False,
                   deadline: float | None = None, intermediate: bool = False) -> Optimized:
    """Lower bounds (N, S) of ``spec @ f(x')`` (spec (N, S, K)) with optimised lower slopes.

    The slopes optimised are those of unstable ReLUs (``[0, 1]``), LeakyReLU/PReLU with a negative slope
    ``a <= 1`` (``[a, 1]``) and the lower and upper lines of sigmoid/tanh (``[tiny, kmax]``, intercepts
    recomputed); every other non-linear layer (GELU, SiLU, ELU, softplus, max
    pooling, products, LayerNorm as decomposed by the graph, and softmax / log-softmax with the log-sum-exp planes
    of Wei et al. 2023, tangent at the box centre) keeps CROWN's relaxation, so the bound stays sound. ``skip`` (N, S) rows need no bound (e.g. the zero row ``y`` of a margin
    specification); rows whose bound exceeds ``stop_at`` stop improving (early stop once verified; None:
    never). ``splits`` maps a pre-activation node to (N, *shape) values in {-1, 0, +1} (branch-and-bound
    split constraints). ``deadline`` (``time.perf_counter()`` value): stop optimising then (the bound stays
    sound). ``intermediate``: after the final-layer optimisation, optimise jointly the slopes used for every
    intermediate (pre-activation) bound too (:class:`_Intermediate`), warm-started from its result, so the
    bound is never looser than without.
    """
    st = _crown_state(g, region, spec, compare_ibp, splits)
    return _optimize(g, st, region, iterations=iterations, lr=lr, lr_beta=lr_beta, lr_decay=lr_decay, skip=skip,
                     stop_at=stop_at, splits=st.splits, init_alpha=init_alpha, init_beta=init_beta,
                     want_score=want_score, deadline=deadline, intermediate=intermediate)


@dataclass(frozen=True)
class _State:
    """CROWN's state of the final backward pass: pre-activation bounds ``ivs``, relaxations, the start
    coefficients ``a``/``b0``, CROWN's lower bound (N, S) and the inputs whose split constraints cross."""

    gd: Graph
    ivs: list[Any]  # Interval per node (None where not computed)
    relax: dict[int, Any]
    a: Tensor
    b0: Tensor | None
    start_input: int | None
    lower: Tensor
    infeasible: Tensor
    splits: dict[int, Tensor]

    def take(self, idx: Tensor) -> _State:
        """The state of the inputs ``idx`` only (inputs are independent: the same bounds, fewer rows)."""
        n = self.lower.shape[0]

        def rows(t: Tensor | None) -> Tensor | None:
            return t if t is None or t.shape[0] != n else t[idx]

        ivs = [None if iv is None else Interval(l=rows(iv.l), u=rows(iv.u)) for iv in self.ivs]  # type: ignore[arg-type]
        relax = {k: _relax_rows(r, idx) for k, r in self.relax.items()}  # type: ignore[arg-type]
        return _State(self.gd, ivs, relax, rows(self.a), rows(self.b0), self.start_input,  # type: ignore[arg-type]
                      self.lower[idx], self.infeasible[idx], {k: v[idx] for k, v in self.splits.items()})


def _crown_state(g: Graph, region: InputRegion, spec: Tensor, compare_ibp: bool,
                 splits: dict[int, Tensor] | None) -> _State:
    hook = _Hook(splits)
    with torch.no_grad():
        lo0, _ = crown_bounds(g, region, spec, need_upper=False, compare_ibp=compare_ibp, hook=hook)
    assert hook.state is not None
    gd, ivs, relax, a, b0, start_input = hook.state
    infeasible = hook.infeasible if hook.infeasible is not None else torch.zeros(lo0.shape[0], dtype=torch.bool,
                                                                                   device=lo0.device)
    return _State(gd, ivs, relax, a, b0, start_input, lo0, infeasible, hook.splits)


def _take_region(region: InputRegion, idx: Tensor) -> InputRegion:
    sub = InputRegion(region.x0[idx], region.eps[idx], region.norm, region.domain)
    sub.box = Interval(l=region.box.l[idx], u=region.box.u[idx])
    return sub


def _optimize(g: Graph, st: _State, region: InputRegion, *, iterations: int, lr: float, lr_beta: float = 0.05,
              lr_decay: float = LR_DECAY, skip: Tensor | None, stop_at: float | Tensor | None,
              splits: dict[int, Tensor] | None = None, init_alpha: dict[int, Tensor] | None = None,
              init_beta: dict[int, Tensor] | None = None, want_score: bool = False, deadline: float | None = None,
              intermediate: bool = False, final_stage: bool = True, init_lower: Tensor | None = None) -> Optimized:
    """:func:`optimize_lower` from CROWN's state ``st``; ``final_stage=False`` skips the final-layer-only
    optimisation (the joint stage then starts from ``init_alpha``); ``init_lower`` (N, S): bounds known
    already (the result is never below them)."""
    gd, ivs, relax, a, b0, start_input = st.gd, st.ivs, st.relax, st.a, st.b0, st.start_input
    lo0, infeasible = st.lower, st.infeasible
    n, s = lo0.shape
    best = lo0.clone() if init_lower is None else torch.maximum(lo0, init_lower)
    skip = torch.zeros_like(best, dtype=torch.bool) if skip is None else skip
    alphas: dict[int, Tensor] = {}
    ranges: dict[int, tuple[Tensor | float, Tensor | float]] = {}
    betas: dict[int, Tensor] = {}
    masks: dict[int, Tensor] = {}
    signs: dict[int, Tensor] = {}
    unstable: dict[int, Tensor] = {}
    active_: dict[int, Tensor] = {}
    # sigmoid/tanh: (lower slope, upper slope, mask of the finite intervals, their ends (0 elsewhere))
    smooth: dict[int, tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = {}
    for k, r in relax.items():
        node = gd.nodes[k]
        if node.op in ("sigmoid", "tanh") and isinstance(r, _Relax):
            iv = ivs[node.inputs[0]]
            ok = torch.isfinite(iv.l) & torch.isfinite(iv.u)  # an infinite end keeps CROWN's constant lines
            if bool(ok.any()):
                kmax = SMOOTH_KMAX[node.op]
                # CROWN's slopes (the tangent-line relaxation: lower and upper differ)
                kl0, ku0 = (t.unsqueeze(1).expand(n, s, *t.shape[1:]).clamp(torch.finfo(best.dtype).tiny, kmax)
                            for t in (r.d_l, r.d_u))
                zero = torch.zeros_like(iv.l)
                smooth[k] = (kl0.detach().clone().requires_grad_(True), ku0.detach().clone().requires_grad_(True),
                             ok.unsqueeze(1), torch.where(ok, iv.l, zero).unsqueeze(1),
                             torch.where(ok, iv.u, zero).unsqueeze(1))
            continue
        if node.op not in ("relu", "leaky_relu"):
            continue
        iv = ivs[node.inputs[0]]
        unst = (iv.l < 0) & (iv.u > 0)
        rng = _slope_range(node, iv.l)
        if node.op == "relu":
            unstable[k] = unst
            active_[k] = iv.l >= 0
        if rng is not None and bool(unst.any()):
            masks[k] = unst.unsqueeze(1)
            ranges[k] = rng
            init = init_alpha.get(k) if init_alpha is not None else None
            if init is None:
                init = r.d_l.unsqueeze(1).expand(n, s, *r.d_l.shape[1:])
            alphas[k] = _clamp(init.detach().clone(), *rng).requires_grad_(True)
        sp = splits.get(node.inputs[0]) if splits is not None and node.op == "relu" else None
        if sp is not None and bool((sp != 0).any()):
            signs[k] = sp.to(best.dtype).unsqueeze(1)
            init = init_beta.get(k) if init_beta is not None else None
            if init is None:
                init = torch.zeros((n, s, *sp.shape[1:]), dtype=best.dtype, device=best.device)
            betas[k] = init.detach().clone().clamp_(min=0).requires_grad_(True)

    def relaxed(b_u_grad: bool = False, base: dict[int, Any] | None = None) -> tuple[dict[int, Any], list[Tensor]]:
        src = relax if base is None else base
        out = dict(src)
        leaves = []
        for k, (kl, ku, ok, lf, uf) in smooth.items():
            # any slope in (0, kmax] with the intercepts of f(x) - k x's extremes on [l, u] is sound
            r = src[k]
            b_l, b_u = _smooth_intercepts(gd.nodes[k].op, lf, uf, torch.stack([kl, ku]))
            new = _Relax.__new__(_Relax)
            new.d_l = torch.where(ok, kl, r.d_l.unsqueeze(1))
            new.d_u = torch.where(ok, ku, r.d_u.unsqueeze(1))
            new.b_l = torch.where(ok, b_l[0], r.b_l.unsqueeze(1))
            new.b_u = torch.where(ok, b_u[1], r.b_u.unsqueeze(1))
            new.per_spec = True
            out[k] = new
        for k in set(alphas) | set(betas):
            r = src[k]
            if isinstance(r, LinearRelax):  # LeakyReLU/PReLU: lower line s z (b_l = 0) on the unstable neurons
                out[k] = _SpecLines(d_l=torch.where(masks[k], alphas[k], r.d_l.unsqueeze(1)),
                                    b_l=torch.where(masks[k][:, 0], torch.zeros_like(r.b_l), r.b_l), d_u=r.d_u,
                                    b_u=r.b_u)
                continue
            new = _Relax.__new__(_Relax)
            new.d_u, new.b_u, new.b_l = r.d_u, r.b_u, r.b_l
            if b_u_grad:
                new.b_u = r.b_u.detach().clone().requires_grad_(True)
                leaves.append(new.b_u)
            if k in alphas:
                mask = masks[k] if base is None else masks[k] & ((r.d_u > 0) & (r.d_u < 1)).unsqueeze(1)
                new.d_l = torch.where(mask, alphas[k], r.d_l.unsqueeze(1))
                new.per_spec = True
            else:
                new.d_l = r.d_l
            if k in betas:
                new.beta = -betas[k] * signs[k]
            out[k] = new
        return out, leaves

    def evaluate(rel: dict[int, Any]) -> Tensor:
        lo, _ = backward(gd, g.output, a, b0, region, rel, need_lower=True, need_upper=False,
                         start_node_done=start_input is not None, start_input=start_input)
        assert lo is not None
        return lo

    def done_rows() -> Tensor:
        d = skip | infeasible.unsqueeze(1)
        return d if stop_at is None else d | (best > stop_at)

    def project(extra: list[Tensor] = []) -> None:  # noqa: B006 (read only)
        for k, t in alphas.items():
            _clamp(t, *ranges[k])
        for k, (kl, ku, *_) in smooth.items():
            kmax = SMOOTH_KMAX[gd.nodes[k].op]
            kl.clamp_(torch.finfo(kl.dtype).tiny, kmax)
            ku.clamp_(torch.finfo(ku.dtype).tiny, kmax)
        for t in extra:
            t.clamp_(0, 1)
        for t in betas.values():
            t.clamp_(min=0)

    def open_rows() -> Tensor:
        return ~done_rows()

    groups = [{"params": list(alphas.values()), "lr": lr}]
    if smooth:
        # the slopes' range is [0, kmax] instead of ReLU's [0, 1], and CROWN's slopes (the start) are near the
        # optimum: the step scaled to both (SMOOTH_LR_SCALE)
        for op in ("sigmoid", "tanh"):
            ps = [t for k, v in smooth.items() if gd.nodes[k].op == op for t in v[:2]]
            if ps:
                groups.append({"params": ps, "lr": lr * SMOOTH_KMAX[op] * SMOOTH_LR_SCALE})
    if betas:
        groups.append({"params": list(betas.values()), "lr": lr_beta})
    has_params = bool(alphas or betas or smooth)
    steps = 0
    if final_stage and has_params and iterations > 0:
        steps += _ascend(groups, lambda: evaluate(relaxed()[0]), best, open_rows, iterations, lr_decay, deadline,
                         project)
    inter_rel = None
    if intermediate and has_params and iterations > 0 and not bool(done_rows().all()):
        inter = _Intermediate(gd, ivs, relax, region, st.splits, g)
        if inter.params:
            steps += _ascend([*groups, {"params": inter.params, "lr": lr}],
                             lambda: evaluate(relaxed(base=inter.relaxations())[0]), best, open_rows, iterations,
                             lr_decay, deadline, lambda: project(inter.params))
            with torch.no_grad():
                inter_rel = inter.relaxations()
                _keep_best(best, evaluate(relaxed(base=inter_rel)[0]))
    score = None
    score_bias = None
    primal = None
    with torch.no_grad():
        if want_score:
            with torch.enable_grad():
                rel, _ = relaxed(b_u_grad=True, base=inter_rel)
                keys = [k for k in set(alphas) | set(betas) if k in unstable]
                box_l = region.box.l.detach().clone().requires_grad_(True)
                box_u = region.box.u.detach().clone().requires_grad_(True)
                boxed = InputRegion(region.x0, region.eps, region.norm, region.domain)
                boxed.box = Interval(l=box_l, u=box_u)
                lo_b, _ = backward(gd, g.output, a, b0, boxed, rel, need_lower=True, need_upper=False,
                                   start_node_done=start_input is not None, start_input=start_input)
                assert lo_b is not None
                lo = lo_b
                weight = (~done_rows()).to(lo.dtype)
                # the worst open row's linear bound A x + c: its minimiser over the box is a candidate counterexample
                worst = torch.where(weight > 0, lo, torch.full_like(lo, math.inf)).argmin(1, keepdim=True)
                grads = torch.autograd.grad((lo * weight).sum(), [rel[k].b_u for k in keys],
                                            allow_unused=True, retain_graph=True) if keys else ()
                gl, gu = torch.autograd.grad(lo.gather(1, worst).sum(), [box_l, box_u], allow_unused=True)
            coef = (gl if gl is not None else torch.zeros_like(box_l)) + (gu if gu is not None else torch.zeros_like(box_u))
            primal = torch.where(coef > 0, region.box.l, region.box.u)
            _keep_best(best, lo.detach())
            score = {k: torch.zeros_like(relax[k].b_u) for k in unstable}
            score_bias = {k: torch.zeros_like(relax[k].b_u) for k in unstable}
            for k, gr in zip(keys, grads):
                if gr is None:
                    continue
                r = rel[k]
                mu = (-gr).clamp(min=0)  # weight of the ReLU's upper line in the bound (the negative coefficients)
                # BaBSR's intercept score: the bound's rise if the upper line's intercept b_u vanished
                sc = mu * r.b_u.detach()
                score[k] = torch.where(unstable[k], sc, torch.zeros_like(sc))
                # BaBSR's estimate with the layer's bias b (Bunel et al. 2020): the upper line contributes
                # -mu (d_u b + b_u) to the bound's constant, the active child -mu b, the inactive one 0;
                # the score is the worse child's gain
                bias = _node_bias(gd.nodes[gd.nodes[k].inputs[0]], r.b_u)
                sb = (mu * (r.d_u * bias + r.b_u.detach()) + torch.minimum(-mu * bias, torch.zeros_like(mu))).clamp(min=0)
                score_bias[k] = torch.where(unstable[k], sb, torch.zeros_like(sb))
        elif inter_rel is None and (steps or (has_params and (init_alpha is not None or init_beta is not None))):
            _keep_best(best, evaluate(relaxed()[0]))  # the last step's (or the given) slopes
    return Optimized(lower=best, infeasible=infeasible, alpha={k: t.detach() for k, t in alphas.items()},
                     beta={k: t.detach() for k, t in betas.items()}, unstable=unstable, active=active_, score=score,
                     primal=primal, iterations=steps, score_bias=score_bias)


class _SpecLines(LinearRelax):
    """CROWN's lines of an element-wise function with the lower slope ``d_l`` (N, S, *shape) one per
    specification row (``per_spec``, read by ``certify.crown``'s backward pass)."""

    per_spec = True

    def rows(self, sl: slice) -> _SpecLines:
        return _SpecLines(self.d_l[sl], self.b_l[sl], self.d_u[sl], self.b_u[sl])


def _clamp(t: Tensor, lo: Tensor | float, hi: Tensor | float) -> Tensor:
    """Project ``t`` onto ``[lo, hi]`` in place (``lo`` a number or a tensor broadcasting over the trailing dims)."""
    if isinstance(lo, Tensor):
        return t.copy_(torch.minimum(torch.maximum(t, lo), torch.as_tensor(hi, dtype=t.dtype)))
    return t.clamp_(lo, hi)  # type: ignore[arg-type]


#: the intermediate bounds of a conv-shaped node are computed in window ("patches") form where the backward
#: pass allows it (False: always the dense backward pass; the tests compare the two)
INTERMEDIATE_PATCHES = True


class _Intermediate:
    """Optimisable lower slopes for the intermediate bounds (auto_LiRPA's full alpha-CROWN).

    For each pre-activation node ``i`` whose bound depends on earlier ReLUs, the neurons of ``i`` that
    CROWN left unstable (per input, padded to the largest count ``s_i``) are re-bounded by a backward
    pass that uses its own slopes ``alpha[i][j]`` (N, s_i, *shape_j) for every earlier ReLU ``j``. The
    new bounds are intersected with CROWN's (both are sound, so the intersection is; the bounds never
    loosen) and with the split constraints, and the ReLU after ``i`` gets its upper line and stability
    from them; later nodes then use the tightened relaxations. Every slope in [0, 1] gives sound bounds,
    so every iterate is sound.

    Window form: when node ``i`` is conv-shaped and the backward pass from it has a window form
    (``certify.crown._patch_plan``, on the graph ``gp`` with its convolutions), each row's coefficients stay
    a window of its receptive field (as CROWN's ``_patches_bounds``) and so do its slopes: ``alpha[i][j]``
    is (N, s_i, C_j, kh, kw) in ReLU ``j``'s window geometry. A slope outside a row's receptive field never
    enters its bound (its coefficient there is zero, so is its gradient, and Adam leaves it where it started),
    so this is the dense optimisation restricted to the slopes that matter: the same bounds at every step
    (tested against the dense path in float64), at the cost of the receptive field instead of the feature map."""

    def __init__(self, g: Graph, ivs: list[Interval], relax: dict[int, Any], region: InputRegion,
                 splits: dict[int, Tensor], gp: Graph | None = None) -> None:
        from certify.crown import _patch_plan, _start, _window_rows

        self.g, self.ivs, self.relax, self.region, self.splits = g, ivs, relax, region, splits
        self.gp = gp
        n = region.x0.shape[0]
        relus = sorted(k for k, r in relax.items() if g.nodes[k].op == "relu")
        self.nodes: list[tuple[int, int, Tensor, Tensor, Tensor, Tensor | None, bool]] = []
        self.plans: dict[int, Any] = {}
        self.alpha: dict[tuple[int, int], Tensor] = {}
        for k in relus:
            pre = g.nodes[k].inputs[0]
            before = [j for j in relus if j < pre]
            if not before:
                continue
            iv = ivs[pre]
            unst = ((iv.l < 0) & (iv.u > 0)).reshape(n, -1)
            counts = unst.sum(1)
            s = int(counts.max()) if n else 0
            if s == 0:
                continue
            idx = torch.argsort(unst.to(torch.int8), dim=1, descending=True, stable=True)[:, :s]
            valid = torch.arange(s, device=idx.device).unsqueeze(0) < counts.unsqueeze(1)
            plan = _patch_plan(gp, pre, relax) if gp is not None and INTERMEDIATE_PATCHES else None
            if plan is not None and any(plan[j][0] for j in before if j in plan):
                plan = None  # a ReLU reached element-wise (one coefficient per row): the dense pass
            if plan is not None:
                self.plans[pre] = plan
                _, ho, wo = gp.nodes[pre].shape  # type: ignore[union-attr]
                lidx = idx % (ho * wo)
                self.nodes.append((k, pre, idx, valid, idx, None, False))
                for j in before:
                    if j in plan:
                        self.alpha[(pre, j)] = _window_rows(relax[j].d_l, plan[j][1], (ho, wo), lidx).clone(
                        ).requires_grad_(True)
                continue
            node = g.nodes[pre]
            a, b0, done = _start(node, "index", idx, n, g.nodes[node.inputs[0]].shape if node.inputs else ())
            self.nodes.append((k, pre, idx, valid, a.to(dtype=region.x0.dtype), b0, done))
            for j in before:
                r = relax[j]
                self.alpha[(pre, j)] = r.d_l.unsqueeze(1).expand(n, s, *r.d_l.shape[1:]).clone().requires_grad_(True)
        self.params = list(self.alpha.values())

    def relaxations(self) -> dict[int, Any]:
        """The relaxation of every activation, rebuilt from intermediate bounds under the current slopes."""
        from certify.crown import _patch_pass, backward, relu_relaxation

        rel: dict[int, Any] = dict(self.relax)
        n = self.region.x0.shape[0]
        for k, pre, idx, valid, a, b0, done in self.nodes:
            if pre in self.plans:
                assert self.gp is not None
                slopes = {j: al for (p, j), al in self.alpha.items() if p == pre}
                lo, hi = _patch_pass(self.gp, pre, self.plans[pre], idx, self.region, rel, slopes)
            else:
                per: dict[int, Any] = dict(rel)
                for (p, j), al in self.alpha.items():
                    if p != pre:
                        continue
                    r = rel[j]
                    new = _Relax.__new__(_Relax)
                    new.d_u, new.b_u, new.b_l = r.d_u, r.b_u, r.b_l
                    unst = ((r.d_u > 0) & (r.d_u < 1)).unsqueeze(1)
                    new.d_l = torch.where(unst, al, r.d_l.unsqueeze(1))
                    new.per_spec = True
                    per[j] = new
                node = self.g.nodes[pre]
                lo_d, hi_d = backward(self.g, pre, a, b0, self.region, per, start_node_done=done,
                                      start_input=node.inputs[0] if done else None)
                assert lo_d is not None and hi_d is not None
                lo, hi = lo_d, hi_d
            iv = self.ivs[pre]
            l_ref, u_ref = iv.l.reshape(n, -1), iv.u.reshape(n, -1)
            lr_, ur_ = l_ref.gather(1, idx), u_ref.gather(1, idx)
            # the value is the intersection with CROWN's bounds; the gradient always flows through the new
            # bound (as auto_LiRPA does): at CROWN's slopes the two are equal up to rounding, and the
            # subgradient of max/min at a tie (split between the two, or all to either by a rounding error)
            # would make the first steps depend on how the bounds were summed (dense or window form, batch)
            lo = torch.where(valid, _through(lo, torch.maximum(lo, lr_)), lr_)
            hi = torch.where(valid, _through(hi, torch.minimum(hi, ur_)), ur_)
            l_new = l_ref.scatter(1, idx, lo).reshape(iv.l.shape)
            u_new = u_ref.scatter(1, idx, hi).reshape(iv.u.shape)
            sp = self.splits.get(pre)
            if sp is not None:
                l_new = torch.where(sp > 0, l_new.clamp(min=0), l_new)
                u_new = torch.where(sp < 0, u_new.clamp(max=0), u_new)
            u_new = torch.maximum(u_new, l_new)
            r = _Relax.__new__(_Relax)
            r.d_l, r.d_u, r.b_u = relu_relaxation(l_new, u_new)
            r.b_l = None
            rel[k] = r
        return rel


def _through(t: Tensor, value: Tensor) -> Tensor:
    """``value`` with the gradient of ``t`` (straight through); ``value`` itself where ``t`` is not finite."""
    return torch.where(torch.isfinite(t), t + (value - t).detach(), value)


def _keep_best(best: Tensor, lo: Tensor) -> None:
    """``best = max(best, lo)`` in place, ignoring NaN iterates."""
    torch.where(lo > best, lo, best, out=best)


#: bytes the joint stage's intermediate slopes of one chunk of inputs may take (inputs are chunked beyond; a
#: memory cap: lowered at call time to what the memory available allows, ``certify._memory.units``, with
#: ``INTERMEDIATE_COPIES`` tensors of the slopes' size: the slopes, their gradients, Adam's two moments, the
#: best slopes and the backward pass's coefficients)
INTERMEDIATE_BYTES = 1 << 26
INTERMEDIATE_COPIES = 8


def _intermediate_bytes(g: Graph, st: _State) -> int:
    """Bytes per input of :class:`_Intermediate`'s slopes: for every ReLU whose input bound depends on
    earlier ReLUs, (its most unstable neurons over the inputs) x (the earlier ReLUs' neurons, or their
    windows where the bound is computed in window form)."""
    from certify.crown import _patch_plan

    relus = sorted(k for k, r in st.relax.items() if st.gd.nodes[k].op == "relu")
    total = 0
    for k in relus:
        pre = st.gd.nodes[k].inputs[0]
        iv = st.ivs[pre]
        if iv is None:
            continue
        s = int(((iv.l < 0) & (iv.u > 0)).reshape(iv.l.shape[0], -1).sum(1).max()) if iv.l.shape[0] else 0
        if s == 0:
            continue
        before = [j for j in relus if j < pre]
        plan = _patch_plan(g, pre, st.relax) if INTERMEDIATE_PATCHES else None
        if plan is not None and not any(plan[j][0] for j in before if j in plan):
            total += s * sum(g.nodes[j].shape[0] * math.prod(plan[j][1][0]) for j in before if j in plan)
        else:
            total += s * sum(st.gd.nodes[j].numel for j in before)
    return total * st.lower.element_size()


def alpha_crown_bounds(g: Graph, region: InputRegion, spec: Tensor | None, *, iterations: int = ALPHA_ITERATIONS,
                       lr: float = ALPHA_LR, need_lower: bool = True, need_upper: bool = True,
                       compare_ibp: bool = False, skip: Tensor | None = None,
                       early_stop: bool = False, intermediate: bool | None = None) -> tuple[Tensor, Tensor]:
    """alpha-CROWN bounds of ``spec @ output`` (spec (N, S, K); None = identity), shape (N, S) each.

    The upper bound is the negated lower bound of ``-spec``, optimised with its own slopes. With
    ``early_stop`` the lower bound of a row stops improving once it is > 0 (verification), and the work is
    staged per input: CROWN for all; the final layer's slopes only for the inputs CROWN leaves open; the
    intermediate layers' slopes too (``intermediate``; default: on exactly with ``early_stop``) only for
    the inputs still open after that. Inputs are independent, so each stage's bounds are those it would
    give on the whole batch."""
    n = region.x0.shape[0]
    if spec is None:
        k = g.nodes[g.output].numel
        spec = torch.eye(k, dtype=region.x0.dtype, device=region.x0.device).unsqueeze(0).expand(n, k, k)
    s = spec.shape[1]
    parts = ([spec] if need_lower else []) + ([-spec] if need_upper else [])
    full = torch.cat(parts, dim=1)
    sk = torch.zeros(full.shape[:2], dtype=torch.bool, device=full.device)
    if skip is not None:
        sk = torch.cat([skip] * len(parts), dim=1)
    inter = early_stop if intermediate is None else intermediate
    stop_at = 0.0 if early_stop else None
    st = _crown_state(g, region, full, compare_ibp, None)
    best = st.lower.clone()
    if _softmax_alt.SOFTMAX_BEST_OF and _softmax_alt.has_softmax(g):
        # softmax: also the element-wise decomposition and IBP, as CROWN (certify._softmax_alt), so that alpha-CROWN
        # is never looser than CROWN
        for alt, _ in _softmax_alt.alternatives(crown_bounds, g, region, full, ibp_intermediate=False, need_lower=True,
                                                need_upper=False, compare_ibp=compare_ibp):
            if alt is not None:
                best = torch.fmax(best, alt)
    done = sk | st.infeasible.unsqueeze(1)
    if stop_at is not None:
        # a row whose value at the centre (a point of the region) is <= stop_at can never be verified
        with torch.no_grad():
            centre = torch.linalg.vecdot(full, g.forward(region.x0).reshape(n, 1, -1))
        done = done | (~done & (centre <= stop_at)).any(1, keepdim=True)

    def open_inputs() -> Tensor:
        return (~(done if stop_at is None else done | (best > stop_at))).any(1).nonzero().squeeze(1)

    idx = open_inputs()
    if iterations > 0 and idx.numel():
        kw: dict[str, Any] = {"iterations": iterations, "lr": lr, "stop_at": stop_at}
        sub = idx.numel() < n
        res = _optimize(g, st.take(idx) if sub else st, _take_region(region, idx) if sub else region,
                        skip=done[idx], **kw)
        best[idx] = torch.maximum(best[idx], res.lower)
        idx2 = open_inputs()
        if inter and idx2.numel() and res.alpha:
            pos = torch.searchsorted(idx, idx2)  # idx2 is a sorted subset of idx
            # in chunks of inputs: the joint stage's slopes take (inputs x unstable neurons x earlier neurons)
            step = _memory.units(_intermediate_bytes(g, st.take(idx2)), cap=INTERMEDIATE_BYTES,
                                 copies=INTERMEDIATE_COPIES, device=region.x0.device,
                                 what="alpha-CROWN's optimisation of intermediate slopes (per input)")
            for c in range(0, idx2.numel(), step):
                ic, pc = idx2[c : c + step], pos[c : c + step]
                res2 = _optimize(g, st.take(ic), _take_region(region, ic), skip=done[ic],
                                 init_alpha={k: v[pc] for k, v in res.alpha.items()}, intermediate=True,
                                 final_stage=False, init_lower=best[ic], **kw)
                best[ic] = torch.maximum(best[ic], res2.lower)
    lo = best[:, :s] if need_lower else torch.full((n, s), -math.inf, dtype=full.dtype, device=full.device)
    hi = -best[:, -s:] if need_upper else torch.full((n, s), math.inf, dtype=full.dtype, device=full.device)
    return lo, hi
