"""Complete verification by branch-and-bound (BaB) with alpha/beta-CROWN bounds and PGD attacks.

``verify_complete`` decides whether ``f_y(x') > f_j(x')`` for every ``j != y`` and every ``x'`` in the
region (an L-inf or L2 ball around ``x``, intersected with ``domain``):

1. the clean input and a PGD attack (Madry et al. 2018) look for a counterexample;
2. alpha-CROWN (Xu et al. 2021) bounds every margin over the whole region;
3. branch-and-bound splits what is left into sub-domains and bounds a batch of them per step:
   * ReLU splitting (beta-CROWN, Wang et al. NeurIPS 2021): an unstable ReLU is split into its active
     (``z >= 0``) and inactive (``z <= 0``) halves; the split constraints tighten the pre-activation
     bounds and enter the final bound through optimised Lagrange multipliers beta (with alpha). The
     neuron is chosen by BaBSR's intercept score (Bunel et al. JMLR 2020): the bound improvement if the
     ReLU's upper-relaxation intercept vanished, ``-dlb/db_u * b_u``, read off by autograd. A domain
     with every ReLU fixed is linear: it is decided by a linear program (HiGHS) whose minimiser is
     checked by a forward pass.
   * input splitting (for inputs of at most ``input_split_max_dim`` dimensions, L-inf): the widest
     input dimension of the box is bisected; each domain's centre is checked for a counterexample.
   PGD is re-run with fresh random restarts during the search.

Verdicts: ``"falsified"`` only with a counterexample that a forward pass of the model confirms (in
the region, margin <= 0); ``"verified"`` only when every domain's bound is > 0 or the domain is
empty. ``"unknown"`` on timeout (or when a fully split domain stays undecided: for L2 balls the affine
leaf is a second-order cone problem, decided by a Lagrangian dual bound and a primal candidate, and a
gap within the solvers' tolerance leaves it undecided).

The branched ReLU is chosen by BaBSR (default) or FSB (``branching="fsb"``, De Palma et al. 2021).
The same search decides VNN-LIB properties (general linear output specifications, disjunctions of
conjunctions ``A y <= b`` over an input box) through ``certify.verify_property(..., complete=True)``.

Floating-point soundness: bounds are computed in the model's dtype (float32 for most models) by the
same arithmetic as CROWN, without directed rounding; ``sound=True`` computes them in float64 and
requires each domain's bound to exceed ``1e-9`` (absorbing float64 rounding errors on networks of
moderate size). Fully split leaf domains are decided by HiGHS in float64 with a tolerance of ``1e-7``
(its feasibility tolerance): a counterexample whose margin is negative by less than that, or that
lives in a sliver of the input space thinner than that, can be missed there.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from certify._grad_mode import outside_inference_mode
from certify.alpha_crown import Optimized, optimize_lower
from certify.api import (
    _check_classes,
    _check_domain,
    _check_eps,
    _check_model,
    _check_norm,
    _check_x_extent,
    margin_spec,
)
from certify.attacks import pgd_attack, pgd_box_minimize
from certify.ibp import InputRegion, Interval
from certkit._validation import check_bool, check_positive, check_positive_int
from certkit.threat import LpBall

__all__ = ["VERDICTS", "CompleteVerification", "verify_complete"]

VERDICTS = ("verified", "falsified", "unknown")


@dataclass(frozen=True)
class CompleteVerification:
    """Outcome of :func:`verify_complete` for one input.

    ``verdict``: ``"verified"`` (no counterexample exists, up to the floating-point caveats of the
    module docstring), ``"falsified"`` (``counterexample`` (1, ...) is in the region and the model
    gives it a margin ``margin = f_y - max_{j != y} f_j <= 0``) or ``"unknown"`` (timeout);
    ``lower_bound``: a proven lower bound on the worst margin over the region (the minimum over the
    open domains; > 0 when verified); ``branches``: the number of domains bounded; ``time``: seconds;
    ``split``: ``"none"``, ``"relu"`` or ``"input"``.
    """

    verdict: str
    counterexample: Tensor | None
    margin: float | None
    lower_bound: float
    branches: int
    time: float
    split: str


class _Problem:
    """The property, the graph and the counterexample check shared by both kinds of splitting.

    A property is a disjunction of unsafe conjunctions over the outputs: rows ``v_i(x) = C_i f(x) + d_i``
    (``spec`` (1, S, K), ``offset`` (S,)) grouped by ``groups`` (S,) into conjunctions; a point is a
    counterexample iff for some group every row has ``v_i <= 0``. A domain is safe for a group when some
    row's lower bound is > ``threshold``. The margin property of a labelled input is the special case of
    one row ``f_y - f_j`` per group."""

    def __init__(self, model: nn.Module, g: Any, region: InputRegion, spec: Tensor, offset: Tensor,
                 groups: Tensor, n_groups: int, threshold: float, x_dtype: torch.dtype, explicit_box: bool) -> None:
        self.model, self.g, self.region = model, g, region
        self.spec, self.offset, self.groups, self.n_groups = spec, offset, groups, n_groups
        self.threshold = threshold
        self.x_dtype = x_dtype
        self.explicit_box = explicit_box
        self.norm = region.norm
        self.y: int | None = None
        self.x: Tensor = region.x0.to(x_dtype)
        self.eps = 0.0
        self.domain: tuple[float, float] | None = None
        self.box_lo, self.box_hi = region.box.l.to(x_dtype), region.box.u.to(x_dtype)
        self.found: tuple[Tensor, float] | None = None
        # activation-pattern constraints (pre-activation node -> (1, *shape) in {-1, 0, +1}): only points
        # with s z >= 0 on every constrained neuron belong to the region (neural activation patterns)
        self.pattern: dict[int, Tensor] = {}

    def pattern_violation(self, pts: Tensor) -> Tensor:
        """Per point (N,): ``max over constrained neurons of -s z`` (<= 0 iff the pattern holds), -inf if none."""
        out = torch.full((pts.shape[0],), -math.inf, dtype=pts.dtype, device=pts.device)
        if not self.pattern:
            return out
        vals = _node_values(self.g, pts.to(self.region.x0.dtype))
        for pre, s in self.pattern.items():
            v = -(vals[pre] * s.to(vals[pre].dtype)).flatten(1)
            v = torch.where(s.flatten(1) != 0, v, torch.full_like(v, -math.inf))
            out = torch.maximum(out, v.amax(1).to(out.dtype))
        return out

    @classmethod
    def margin(cls, model: nn.Module, x: Tensor, y: int, eps: float, norm: float,
               domain: tuple[float, float] | None, sound: bool) -> _Problem:
        from certify._graph import cached_graph

        dtype = torch.float64 if sound else x.dtype
        xc = x.to(dtype)
        g = cached_graph(model, xc, dtype)
        k = g.nodes[g.output].numel
        rows = [j for j in range(k) if j != y]
        spec = margin_spec(torch.tensor([y], device=x.device), k, dtype)[:, rows]  # (1, K-1, K)
        region = InputRegion(xc, torch.full((1,), eps, dtype=dtype, device=x.device), norm, domain)
        p = cls(model, g, region, spec, torch.zeros(k - 1, dtype=dtype, device=x.device),
                torch.arange(k - 1, device=x.device), k - 1, 1e-9 if sound else 0.0, x.dtype, False)
        p.x, p.y, p.eps, p.domain = x, y, eps, domain
        if norm == math.inf:  # the box as rounded in the model's dtype
            p.box_lo, p.box_hi = x - eps, x + eps
            if domain is not None:
                p.box_lo, p.box_hi = p.box_lo.clamp(min=domain[0]), p.box_hi.clamp(max=domain[1])
        return p

    @classmethod
    def box(cls, model: nn.Module, lower: Tensor, upper: Tensor, a: Tensor, b: Tensor, groups: Tensor,
            n_groups: int, sound: bool) -> _Problem:
        """Unsafe iff ``A_i f(x) <= b_i`` for every row i of some group, ``lower <= x <= upper`` ((1, ...))."""
        from certify._graph import cached_graph

        dtype = torch.float64 if sound else lower.dtype
        lo, hi = lower.to(dtype), upper.to(dtype)
        centre = (lo + hi) / 2
        g = cached_graph(model, centre, dtype)
        region = InputRegion(centre, ((hi - lo) / 2).flatten(1).amax(1), math.inf, None)
        region.box = Interval(l=lo, u=hi)
        p = cls(model, g, region, a.to(dtype=dtype, device=lower.device).unsqueeze(0),
                -b.to(dtype=dtype, device=lower.device), groups.to(lower.device), n_groups, 1e-9 if sound else 0.0,
                lower.dtype, True)
        p.box_lo, p.box_hi = lower, upper
        return p

    def values(self, out: Tensor) -> Tensor:
        """Rows ``C f(x) + d`` (N, S) of outputs ``out`` (N, K), in float64."""
        return out.flatten(1).to(torch.float64) @ self.spec[0].to(torch.float64).t() + self.offset.to(torch.float64)

    def group_max(self, v: Tensor) -> Tensor:
        """Per group, the largest row (N, S) -> (N, G): > 0 iff the group (conjunction) is excluded."""
        init = torch.full((v.shape[0], self.n_groups), -math.inf, dtype=v.dtype, device=v.device)
        return init.scatter_reduce(1, self.groups.expand(v.shape[0], -1), v, "amax")

    def rows_done(self, lower: Tensor) -> Tensor:
        """(N, S): the row's group is excluded by some row's lower bound (``lower`` of ``C f``)."""
        ok = self.group_max(lower + self.offset) > self.threshold
        return ok.gather(1, self.groups.expand(lower.shape[0], -1))

    def key(self, lower: Tensor, done: Tensor) -> Tensor:
        """Per domain (N,), the smallest group bound among the open groups (+inf if none is open)."""
        gm = self.group_max(torch.where(done, torch.full_like(lower, math.inf), lower + self.offset))
        return gm.min(1).values

    def worst(self, out: Tensor) -> Tensor:
        """Per point (N,): ``min over groups of max over rows`` (<= 0 iff the point is a counterexample)."""
        return self.group_max(self.values(out)).min(1).values

    def in_region(self, pts: Tensor) -> Tensor:
        """Inside the region the bounds are computed for: for L-inf the box (for a margin property
        ``[x - eps, x + eps]`` as rounded in the model's dtype, clipped to the domain); for L2 the ball
        (and the domain)."""
        if self.norm == math.inf:
            return ((pts >= self.box_lo) & (pts <= self.box_hi)).flatten(1).all(1)
        ok = (pts - self.x).flatten(1).norm(dim=1) <= self.eps
        if self.domain is not None:
            ok &= ((pts >= self.domain[0]) & (pts <= self.domain[1])).flatten(1).all(1)
        return ok

    def check(self, pts: Tensor) -> bool:
        """Record the first real counterexample among ``pts`` (N, ...); True if one was found."""
        if self.found is not None:
            return True
        if not pts.shape[0]:
            return False
        pts = pts.to(self.x_dtype)
        if self.norm == math.inf:  # snap rounding errors of LP solutions back into the box
            pts = torch.minimum(torch.maximum(pts, self.box_lo), self.box_hi)
        with torch.no_grad():
            m = self.worst(self.model(pts))
            bad = (m <= 0) & self.in_region(pts)
            if self.pattern:
                bad &= self.pattern_violation(pts) <= 0
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            self.found = (pts[i : i + 1].detach().clone(), float(m[i]))
            return True
        return False

    def attack(self, seed: int, restarts: int, steps: int) -> bool:
        gen = torch.Generator(device=self.x.device).manual_seed(seed)
        if self.y is not None:
            xa, _ = pgd_attack(self.model, self.x, torch.tensor([self.y], device=self.x.device), self.eps,
                               norm=self.norm, domain=self.domain, steps=steps, restarts=restarts, generator=gen)
            return self.check(xa)
        spec, offset = self.spec[0].to(self.x_dtype), self.offset.to(self.x_dtype)

        def objective(z: Tensor) -> Tensor:
            v = self.model(z).flatten(1) @ spec.t() + offset
            init = torch.full((v.shape[0], self.n_groups), -math.inf, dtype=v.dtype, device=v.device)
            worst = init.scatter_reduce(1, self.groups.expand(v.shape[0], -1), v, "amax").min(1).values
            # <= 0 iff a counterexample that also has the activation pattern
            return torch.maximum(worst, self.pattern_violation(z).to(worst.dtype)) if self.pattern else worst

        xa, _ = pgd_box_minimize(objective, self.box_lo, self.box_hi, steps=steps, restarts=restarts, until=0.0,
                                 generator=gen)
        return self.check(xa)


def _cat(a: dict[int, Tensor], b: dict[int, Tensor], na: int, nb: int) -> dict[int, Tensor]:
    """Stack two batches of per-node tensors (``na`` and ``nb`` rows); a node only one side has gets zeros
    on the other (a zero beta is CROWN's bound; a zero alpha is a valid slope)."""
    out = {}
    for k in a.keys() | b.keys():
        ref = a[k] if k in a else b[k]
        ta = a[k] if k in a else ref.new_zeros((na, *ref.shape[1:]))
        tb = b[k] if k in b else ref.new_zeros((nb, *ref.shape[1:]))
        out[k] = torch.cat([ta, tb])
    return out


def _take(d: dict[int, Tensor], idx: Tensor) -> dict[int, Tensor]:
    return {k: v[idx] for k, v in d.items()}


def _repeat2(d: dict[int, Tensor]) -> dict[int, Tensor]:
    return {k: torch.cat([v, v]) for k, v in d.items()}


def _region(p: _Problem, n: int, box: tuple[Tensor, Tensor] | None = None) -> InputRegion:
    if box is None and p.explicit_box:
        box = (p.region.box.l.expand(n, *p.region.box.l.shape[1:]), p.region.box.u.expand(n, *p.region.box.u.shape[1:]))
    if box is None:
        x0 = p.region.x0.expand(n, *p.region.x0.shape[1:])
        return InputRegion(x0, p.region.eps.expand(n), p.norm, p.domain)
    lo, hi = box
    r = InputRegion((lo + hi) / 2, ((hi - lo) / 2).flatten(1).amax(1), math.inf, None)
    r.box = Interval(l=lo, u=hi)
    return r


@outside_inference_mode
def verify_complete(model: nn.Module, x: Tensor, y: int | Tensor, eps: float | LpBall, *, norm: float | str = float("inf"),
                    domain: tuple[float, float] | None = None, timeout: float = 30.0, split: str = "auto",
                    batch_size: int = 64, iterations: int = 20, bab_iterations: int = 10, lr_alpha: float = 0.1,
                    lr_beta: float = 0.05, input_split_max_dim: int = 8, attack_restarts: int = 5,
                    attack_steps: int = 50, sound: bool = False, progress: bool = False, branching: str = "babsr",
                    fsb_candidates: int = 3, alpha_intermediate: bool = False,
                    generator: torch.Generator | None = None) -> CompleteVerification:
    """Decide robustness of one input by attack, alpha-CROWN and branch-and-bound (beta-CROWN).

    Args:
        model: a torch classifier in eval mode (layers as for :func:`certify.bounds`).
        x: one input, shape (1, ...). y: its label (int or 0-d/1-element tensor).
        eps: radius of the ball (``norm`` ``float("inf")`` or ``2``), intersected with ``domain``; or a
            :class:`certkit.threat.LpBall`, which then gives the norm, radius and domain.
        timeout: seconds for the whole call (checked between batches and between optimisation steps;
            the answer is ``"unknown"`` when it runs out).
        split: ``"relu"``, ``"input"`` (L-inf only) or ``"auto"`` (input splitting when the input has
            at most ``input_split_max_dim`` elements and the norm is L-inf, else ReLU splitting).
        batch_size: domains bounded together in one batched bound computation (each makes two children).
        iterations: alpha-CROWN steps at the root (lr 0.5); ``bab_iterations``, ``lr_alpha``, ``lr_beta``:
            the joint alpha/beta steps per batch of sub-domains (warm-started from the parent), with
            alpha-beta-CROWN's learning rates for branch-and-bound.
        attack_restarts: PGD restarts before the search (and again, with fresh seeds, during it).
        attack_steps: PGD steps per restart.
        sound: bounds in float64 with a safety margin (see the module docstring).
        branching: the ReLU to split: ``"babsr"`` (largest BaBSR intercept score) or ``"fsb"`` (filtered
            smart branching, De Palma et al. 2021: the ``fsb_candidates`` best by the intercept score and the
            ``fsb_candidates`` best by BaBSR's bias-aware score are each tried by one cheap bound pass of
            both children, and the one whose worse child bound is largest is split).
        fsb_candidates: candidates per score for ``branching="fsb"``.
        alpha_intermediate: optimise the slopes of the intermediate (pre-activation) bounds too, at the
            root and in every batch of sub-domains (see :func:`certify.bounds`). Off by default: on the
            digits CNN it decides no more inputs within the timeout and costs several times more per
            sub-domain (BENCHMARKS.md, "alpha-CROWN and complete verification, session 5").
        progress: show a tqdm bar of the open domains.
        generator: seeds the attacks' random restarts (torch's global RNG is untouched).

    Returns:
        :class:`CompleteVerification`. ``"falsified"`` always carries a counterexample confirmed by a
        forward pass; ``"verified"`` is returned only when every sub-domain is bounded above 0.
    """
    t0 = time.perf_counter()
    if isinstance(eps, LpBall):
        norm, domain, eps = eps.norm, eps.domain, eps.eps
    model = _check_model(model)
    extent = _check_x_extent(x)
    p_norm = _check_norm(norm)
    dom = _check_domain(domain, x, extent)
    if x.shape[0] != 1:
        raise ValueError(f"Expected argument `x` to hold one input, shape (1, ...), but got shape {tuple(x.shape)}")
    timeout = check_positive(timeout, "timeout")
    batch_size = check_positive_int(batch_size, "batch_size")
    iterations = check_positive_int(iterations, "iterations", minimum=0)
    bab_iterations = check_positive_int(bab_iterations, "bab_iterations", minimum=0)
    lr_alpha, lr_beta = check_positive(lr_alpha, "lr_alpha"), check_positive(lr_beta, "lr_beta")
    input_split_max_dim = check_positive_int(input_split_max_dim, "input_split_max_dim", minimum=0)
    attack_restarts = check_positive_int(attack_restarts, "attack_restarts")
    attack_steps = check_positive_int(attack_steps, "attack_steps", minimum=0)
    if branching not in ("babsr", "fsb"):
        raise ValueError(f"Expected argument `branching` to be 'babsr' or 'fsb', but got {branching!r}")
    fsb_candidates = check_positive_int(fsb_candidates, "fsb_candidates")
    alpha_intermediate = check_bool(alpha_intermediate, "alpha_intermediate")
    if split not in ("auto", "relu", "input"):
        raise ValueError(f"Expected argument `split` to be 'auto', 'relu' or 'input', but got {split!r}")
    if split == "input" and p_norm != math.inf:
        raise ValueError("Expected norm=float('inf') with split='input' (input splitting needs a box region)")
    e = float(_check_eps(eps, x)[0])
    with torch.no_grad():
        k = _check_classes(int(model(x).shape[1]))
    if isinstance(y, Tensor):
        if y.numel() != 1 or y.is_floating_point():
            raise ValueError(f"Expected argument `y` to be one integer label, but got {y!r}")
        y = int(y.reshape(()))
    if not isinstance(y, int) or isinstance(y, bool) or not 0 <= y < k:
        raise ValueError(f"Expected argument `y` to be a class index in [0, {k - 1}], but got {y!r}")
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
    p = _Problem.margin(model, x, y, e, p_norm, dom, sound)
    use_input = split == "input" or (split == "auto" and p_norm == math.inf and x[0].numel() <= input_split_max_dim)
    return _search(p, t0=t0, timeout=timeout, use_input=use_input, batch_size=batch_size, iterations=iterations,
                   bab_iterations=bab_iterations, lr_alpha=lr_alpha, lr_beta=lr_beta, attack_restarts=attack_restarts,
                   attack_steps=attack_steps, progress=progress, seed=seed, check_first=x, branching=branching,
                   fsb_candidates=fsb_candidates, alpha_intermediate=alpha_intermediate)


def _search(p: _Problem, *, t0: float, timeout: float, use_input: bool, batch_size: int, iterations: int,
            bab_iterations: int, lr_alpha: float, lr_beta: float, attack_restarts: int, attack_steps: int,
            progress: bool, seed: int, check_first: Tensor, branching: str = "babsr",
            fsb_candidates: int = 3, alpha_intermediate: bool = False) -> CompleteVerification:
    """Attack, alpha-CROWN at the root, then branch-and-bound (shared by margins and VNN-LIB properties)."""
    deadline = t0 + timeout

    def result(verdict: str, lower: float, branches: int, how: str) -> CompleteVerification:
        cex, margin = (p.found if p.found is not None else (None, None))
        if cex is not None:
            verdict = "falsified"
        return CompleteVerification(verdict, cex, margin, lower, branches, time.perf_counter() - t0, how)

    if p.check(check_first) or p.attack(seed, attack_restarts, attack_steps):
        return result("falsified", -math.inf, 0, "none")
    if time.perf_counter() > deadline:
        return result("unknown", -math.inf, 0, "none")
    root = optimize_lower(p.g, _region(p, 1), p.spec, iterations=iterations, lr=0.5, stop_at=p.threshold - p.offset,
                          want_score=True, deadline=deadline, splits=p.pattern or None,
                          intermediate=alpha_intermediate)
    lb = float(p.key(root.lower, torch.zeros_like(root.lower, dtype=torch.bool)).min())
    if root.primal is not None and p.check(root.primal):
        return result("falsified", -math.inf, 1, "none")
    if lb > p.threshold or bool(root.infeasible.all()):
        return result("verified", lb, 1, "none")
    kw: dict[str, Any] = {"batch_size": batch_size, "iterations": bab_iterations, "lr_alpha": lr_alpha,
                          "lr_beta": lr_beta, "deadline": deadline, "progress": progress, "seed": seed,
                          "attack": (attack_restarts, attack_steps), "branching": branching,
                          "fsb_candidates": fsb_candidates, "intermediate": alpha_intermediate}
    if use_input:
        verdict, lower, branches = _input_bab(p, **kw)
        return result(verdict, lower, branches + 1, "input")
    verdict, lower, branches = _relu_bab(p, root, **kw)
    return result(verdict, lower, branches + 1, "relu")


def _bar(progress: bool, what: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=None, disable=not progress, desc=f"BaB ({what} splits)", leave=False, unit=" batches")


def _relu_bab(p: _Problem, root: Optimized, *, batch_size: int, iterations: int, lr_alpha: float, lr_beta: float,
              deadline: float, progress: bool, seed: int, attack: tuple[int, int], branching: str = "babsr",
              fsb_candidates: int = 3, intermediate: bool = False) -> tuple[str, float, int]:
    """Branch-and-bound on ReLU splits; returns (verdict, lower bound, branches)."""
    g = p.g
    relus = {k: g.nodes[k].inputs[0] for k in root.unstable}  # ReLU node -> its pre-activation node
    s = p.spec.shape[1]
    # the open domains, as batched tensors
    lower = root.lower
    done = p.rows_done(root.lower)
    splits = {pre: p.pattern[pre].to(torch.int8).clone() if pre in p.pattern
              else torch.zeros_like(root.unstable[k], dtype=torch.int8) for k, pre in relus.items()}
    alpha, beta, score, score_bias = root.alpha, root.beta, root.score, root.score_bias
    unstable = root.unstable
    assert score is not None and score_bias is not None
    branches, step, undecided = 0, 0, 0
    proven = _newly_proven(p, root.lower, torch.zeros_like(done))
    bar = _bar(progress, "ReLU")
    last_attack = time.perf_counter()
    attack_cost, per_domain = 0.0, 0.0
    try:
        while lower.shape[0]:
            key = p.key(lower, done)
            if time.perf_counter() > deadline:
                return "unknown", float(key.min()), branches
            step += 1
            if time.perf_counter() - last_attack > 2.0 and deadline - time.perf_counter() > attack_cost:
                # PGD again with fresh restarts every 2 s (when it fits before the deadline)
                t_a = last_attack = time.perf_counter()
                if p.attack(seed + step, attack[0], attack[1]):
                    return "falsified", -math.inf, branches
                attack_cost = time.perf_counter() - t_a
            # a batch no larger than fits before the deadline at the last batch's cost per domain, so that the
            # timeout is kept (one bound computation cannot be interrupted)
            fits = batch_size if per_domain == 0 else int((deadline - time.perf_counter()) / per_domain)
            if fits < 1:
                return "unknown", float(key.min()), branches
            order = torch.argsort(key)
            take, rest = order[: min(batch_size, fits)], order[min(batch_size, fits) :]
            t_batch = time.perf_counter()
            b = take.shape[0]
            # BaBSR: the unsplit unstable neuron with the largest intercept score (any unstable one if all 0)
            flat = torch.cat([(score[k][take] + 1e-12 * unstable[k][take]).reshape(b, -1) for k in relus], dim=1)
            best_val, best_idx = flat.max(1)
            leaf = best_val <= 0
            if bool(leaf.any()):
                lt = take[leaf]
                for i in range(lt.shape[0]):
                    verdict = _leaf(p, {pre: splits[pre][lt[i] : lt[i] + 1] for pre in splits},
                                    {k: pre for k, pre in relus.items()}, done[lt[i]])
                    if verdict == "falsified":
                        return "falsified", -math.inf, branches
                    undecided += verdict == "unknown"
                    proven = min(proven, 1e-7) if verdict == "verified" else proven
                take, best_idx = take[~leaf], best_idx[~leaf]
                b = take.shape[0]
                if b == 0:
                    lower, done = lower[rest], done[rest]
                    splits, alpha, beta = _take(splits, rest), _take(alpha, rest), _take(beta, rest)
                    score, unstable = _take(score, rest), _take(unstable, rest)
                    score_bias = _take(score_bias, rest)
                    continue
            if branching == "fsb":
                if bool(leaf.any()):
                    flat = flat[~leaf]
                backup = torch.cat([(score_bias[k][take] + 1e-12 * unstable[k][take]).reshape(b, -1) for k in relus],
                                   dim=1)
                best_idx = _fsb_choice(p, flat, backup, _take(splits, take), relus, unstable, _take(alpha, take),
                                       _take(beta, take), done[take], fsb_candidates)
            child_splits = _split_children(_take(splits, take), best_idx, relus, unstable)
            parent_done = done[take].repeat(2, 1)
            res = optimize_lower(g, _region(p, 2 * b), p.spec.expand(2 * b, s, -1), iterations=iterations, lr=lr_alpha,
                                 lr_beta=lr_beta, lr_decay=0.98, skip=parent_done, stop_at=p.threshold - p.offset,
                                 splits=child_splits, init_alpha=_repeat2(_take(alpha, take)),
                                 init_beta=_repeat2(_take(beta, take)), want_score=True, deadline=deadline,
                                 intermediate=intermediate)
            branches += 2 * b
            per_domain = (time.perf_counter() - t_batch) / b
            if res.primal is not None and p.check(res.primal[~res.infeasible]):
                return "falsified", -math.inf, branches
            feasible = ~res.infeasible
            proven = min(proven, _newly_proven(p, res.lower[feasible], parent_done[feasible]))
            c_done = parent_done | p.rows_done(res.lower)
            closed = res.infeasible | c_done.all(1)
            keep = ~closed
            assert res.score is not None and res.score_bias is not None
            lower = torch.cat([lower[rest], res.lower[keep]])
            done = torch.cat([done[rest], c_done[keep]])
            nr, nk = rest.shape[0], int(keep.sum())
            splits = _cat(_take(splits, rest), _take(child_splits, keep), nr, nk)
            alpha = _cat(_take(alpha, rest), _take(res.alpha, keep), nr, nk)
            beta = _cat(_take(beta, rest), _take(res.beta, keep), nr, nk)
            score = _cat(_take(score, rest), _take(res.score, keep), nr, nk)
            score_bias = _cat(_take(score_bias, rest), _take(res.score_bias, keep), nr, nk)
            unstable = _cat(_take(unstable, rest), _take(res.unstable, keep), nr, nk)
            bar.update(1)
            bar.set_postfix(open=int(lower.shape[0]), branches=branches)
    finally:
        bar.close()
    if undecided:
        return "unknown", -math.inf, branches
    return "verified", proven, branches


def _newly_proven(p: _Problem, lower: Tensor, parent_done: Tensor) -> float:
    """The smallest bound ``max_{i in group} lower_i + d_i`` (> threshold) of the groups that ``lower``
    (N, S) excludes and the parent did not: with the earlier ones, a lower bound of the worst case."""
    gm = p.group_max(lower + p.offset)
    was = p.group_max(parent_done.to(lower.dtype)) > 0
    newly = (gm > p.threshold) & ~was
    return float(gm[newly].min()) if bool(newly.any()) else math.inf


def _split_children(splits: dict[int, Tensor], idx: Tensor, relus: dict[int, int],
                    unstable: dict[int, Tensor]) -> dict[int, Tensor]:
    """Two children per domain (B domains -> 2B: first all active halves, then all inactive halves), splitting
    the neuron at flat index ``idx`` (B,) over the ReLU nodes in ``relus``' order."""
    b = idx.shape[0]
    child = _repeat2(splits)
    offset = 0
    rows = torch.arange(b, device=idx.device)
    for k, pre in relus.items():
        numel = unstable[k][0].numel()
        sel = (idx >= offset) & (idx < offset + numel)
        if bool(sel.any()):
            flat_split = child[pre].reshape(2 * b, -1)
            local = idx[sel] - offset
            flat_split[rows[sel], local] = 1
            flat_split[rows[sel] + b, local] = -1
        offset += numel
    return child


def _fsb_choice(p: _Problem, flat: Tensor, backup: Tensor, splits: dict[int, Tensor], relus: dict[int, int],
                unstable: dict[int, Tensor], alpha: dict[int, Tensor], beta: dict[int, Tensor], done: Tensor,
                k: int) -> Tensor:
    """Filtered smart branching (De Palma et al., ICLR 2021): the ``k`` neurons with the largest intercept
    scores ``flat`` (B, D) and the ``k`` with the largest backup (bias-aware BaBSR) scores ``backup`` (B, D)
    are the candidates; per domain, the one whose two children have the largest worse bound is split, each
    child bounded by one cheap pass (the parent's alphas and betas, no optimisation), all in one batch."""
    b = flat.shape[0]
    k = min(k, flat.shape[1])
    v1, c1 = flat.topk(k, dim=1)
    v2, c2 = backup.topk(k, dim=1)
    vals, cand = torch.cat([v1, v2], dim=1), torch.cat([c1, c2], dim=1)  # (B, 2k)
    m = cand.shape[1]

    def rep(d: dict[int, Tensor], times: int) -> dict[int, Tensor]:  # candidate-major: c * B + i
        return {key: v.repeat(times, *([1] * (v.dim() - 1))) for key, v in d.items()}

    child = _split_children(rep(splits, m), cand.t().reshape(-1), relus, rep(unstable, m))
    n = 2 * m * b
    s = p.spec.shape[1]
    parent_done = done.repeat(2 * m, 1)
    res = optimize_lower(p.g, _region(p, n), p.spec.expand(n, s, -1), iterations=0, splits=child,
                         init_alpha=rep(alpha, 2 * m), init_beta=rep(beta, 2 * m), skip=parent_done, stop_at=None)
    key = p.key(res.lower, parent_done | p.rows_done(res.lower))
    key = torch.where(res.infeasible, torch.full_like(key, math.inf), key)
    worse = torch.minimum(key[: m * b], key[m * b :]).reshape(m, b).t()  # (B, 2k)
    worse = torch.where(vals > 0, worse, torch.full_like(worse, -math.inf))
    return cand.gather(1, worse.argmax(1, keepdim=True)).squeeze(1)


def _leaf(p: _Problem, splits: dict[int, Tensor], relus: dict[int, int], done: Tensor) -> str:
    """Decide a domain in which every ReLU is fixed (the network is affine there) by one LP per open margin.

    ``splits``: the domain's split constraints (pre-activation node -> (1, *shape)); ``relus``: ReLU node ->
    its pre-activation. Returns ``"verified"``, ``"falsified"`` (counterexample recorded) or ``"unknown"``."""
    from scipy.optimize import linprog

    from certify._graph import NONLINEAR

    g = p.g
    if any(n.op in NONLINEAR and n.op != "relu" for n in g.nodes):
        # other non-linear layers (LeakyReLU, max pooling, smooth activations, ...) stay relaxed: the network
        # is not affine on the domain, so the LP would not decide it; the domain stays undecided (sound)
        return "unknown"
    x0 = p.x.to(torch.float64)
    res0 = optimize_lower(g, _region(p, 1), p.spec, iterations=0, splits=splits)
    if bool(res0.infeasible.all()):
        return "verified"
    if any(bool(u.any()) for u in res0.unstable.values()):
        return "unknown"
    masks = {relus[k]: a[0] for k, a in res0.active.items()}
    lo, hi = p.region.box.l.to(torch.float64), p.region.box.u.to(torch.float64)

    def f(z: Tensor) -> Tensor:
        vals = _masked_forward(g, z.reshape(1, *x0.shape[1:]), masks)
        cons = [vals[pre].reshape(-1)[splits[pre].reshape(-1) != 0] * splits[pre].reshape(-1)[splits[pre].reshape(-1) != 0]
                for pre in splits]
        out = vals[g.output].reshape(-1)
        return torch.cat([out, *cons])

    z0 = torch.zeros(x0[0].numel(), dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(f, z0)
    val0 = f(z0).detach()
    k = g.nodes[g.output].numel
    j_out, d_out = jac[:k], val0[:k]
    j_con, d_con = jac[k:], val0[k:]  # constraints s z(x) >= 0  ->  -J x <= d
    if p.norm != math.inf:
        return _leaf_l2(p, j_out, d_out, j_con, d_con, lo, hi, done)
    # per open group (conjunction): min t subject to C_i f(x) + d_i <= t (rows of the group), the split
    # constraints and the box; the group is excluded iff t* > 0. Variables (x, t).
    n_x = x0[0].numel()
    bounds = [*zip(lo.reshape(-1).tolist(), hi.reshape(-1).tolist()), (None, None)]
    obj = torch.zeros(n_x + 1, dtype=torch.float64)
    obj[-1] = 1.0
    spec = p.spec[0].to(torch.float64)
    offset = p.offset.to(torch.float64)
    a_con = torch.cat([-j_con, torch.zeros(j_con.shape[0], 1, dtype=torch.float64)], dim=1)
    for grp in range(p.n_groups):
        rows = (p.groups == grp).nonzero().flatten()
        if bool(done[rows].all()):
            continue
        c = spec[rows]  # (R, K): c f(x) + d = c J x + (c d_out + d) <= t
        a_obj = torch.cat([c @ j_out, -torch.ones(rows.numel(), 1, dtype=torch.float64)], dim=1)
        b_obj = -(c @ d_out + offset[rows])
        res = linprog(obj.numpy(), A_ub=torch.cat([a_obj, a_con]).numpy(), b_ub=torch.cat([b_obj, d_con]).numpy(),
                      bounds=bounds, method="highs")
        if res.status == 2:  # infeasible: the domain is empty
            return "verified"
        if res.status != 0:
            return "unknown"
        if float(res.fun) > 1e-7:
            continue
        cand = torch.as_tensor(res.x[:n_x], dtype=p.x_dtype).reshape(p.x.shape)
        if p.check(cand):
            return "falsified"
        if p.pattern and j_con.shape[0]:
            # the LP's vertex may sit on a pattern boundary z = 0 and miss it by rounding: retry strictly inside
            res = linprog(obj.numpy(), A_ub=torch.cat([a_obj, a_con]).numpy(),
                          b_ub=torch.cat([b_obj, d_con - 1e-6 * (1 + d_con.abs())]).numpy(), bounds=bounds,
                          method="highs")
            if res.status == 0 and float(res.fun) <= 0 and p.check(
                    torch.as_tensor(res.x[:n_x], dtype=p.x_dtype).reshape(p.x.shape)):
                return "falsified"
        return "unknown"
    return "verified"


def _leaf_l2(p: _Problem, j_out: Tensor, d_out: Tensor, j_con: Tensor, d_con: Tensor, lo: Tensor, hi: Tensor,
             done: Tensor) -> str:
    """An affine leaf domain of an L2 ball: per open group, ``min max_i v_i(x)`` over the ball, the split
    constraints and the box, a convex (second-order cone) problem, decided by Lagrangian duality.

    With the linear constraints ``G x <= h`` (splits, box) dualised (``mu >= 0``) and the rows mixed by
    ``lam`` in the simplex, ``q(lam, mu) = min_{||x - x0|| <= eps} lam^T v(x) + mu^T (G x - h) =
    w^T x0 - eps ||w|| + lam^T e - mu^T h`` (``w = A^T lam + G^T mu``) is a lower bound for *any* such
    multipliers (weak duality), so the group is excluded when ``q > 1e-7`` at the multipliers found (SLSQP on
    this concave function; the bound is evaluated at the projected multipliers, so it is sound whatever the
    solver returns). By strong duality (Slater: the ball has an interior) the best ``q`` equals the minimum,
    so otherwise the inner minimiser, then a primal SLSQP solution, is checked as a counterexample by a
    forward pass; ``"unknown"`` only if neither settles it (a gap within the solvers' tolerance)."""
    import numpy as np
    from scipy.optimize import minimize

    x0 = p.x.to(torch.float64).reshape(-1).numpy()
    eps = float(p.eps)
    n = x0.shape[0]
    spec, offset = p.spec[0].to(torch.float64), p.offset.to(torch.float64)
    g_mat = torch.cat([-j_con, torch.eye(n, dtype=torch.float64), -torch.eye(n, dtype=torch.float64)]).numpy()
    h = torch.cat([d_con, hi.reshape(-1), -lo.reshape(-1)]).numpy()
    m = g_mat.shape[0]
    for grp in range(p.n_groups):
        rows = (p.groups == grp).nonzero().flatten()
        if bool(done[rows].all()):
            continue
        a = (spec[rows] @ j_out).numpy()  # v(x) = a x + e
        e = (spec[rows] @ d_out + offset[rows]).numpy()
        r = a.shape[0]

        def q(z: np.ndarray, a: np.ndarray = a, e: np.ndarray = e, r: int = r) -> tuple[float, np.ndarray]:
            lam, mu = z[:r], z[r:]
            w = a.T @ lam + g_mat.T @ mu
            nw = float(np.linalg.norm(w))
            xs = x0 - eps * w / nw if nw > 0 else x0
            val = float(w @ x0 - eps * nw + lam @ e - mu @ h)
            return -val, -np.concatenate([a @ xs + e, g_mat @ xs - h])

        z0 = np.concatenate([np.full(r, 1.0 / r), np.zeros(m)])
        sol = minimize(q, z0, jac=True, method="SLSQP", bounds=[(0, None)] * (r + m),
                       constraints=[{"type": "eq", "fun": lambda z, r=r: z[:r].sum() - 1,
                                     "jac": lambda z, r=r: np.concatenate([np.ones(r), np.zeros(m)])}],
                       options={"maxiter": 500, "ftol": 1e-12})
        z = np.clip(sol.x, 0, None)
        z[:r] = z[:r] / z[:r].sum() if z[:r].sum() > 0 else np.full(r, 1.0 / r)
        bound = -q(z)[0]
        if bound > 1e-7:
            continue
        w = a.T @ z[:r] + g_mat.T @ z[r:]
        nw = float(np.linalg.norm(w))
        cands = [x0 - eps * w / nw if nw > 0 else x0]

        def obj(v: np.ndarray) -> float:
            return float(v[-1])

        cons = [{"type": "ineq", "fun": lambda v, a=a, e=e: v[-1] - (a @ v[:-1] + e)},
                {"type": "ineq", "fun": lambda v: h - g_mat @ v[:-1]},
                {"type": "ineq", "fun": lambda v: eps**2 - float(((v[:-1] - x0) ** 2).sum())}]
        start = np.concatenate([cands[0], [float((a @ cands[0] + e).max())]])
        prim = minimize(obj, start, method="SLSQP", constraints=cons, options={"maxiter": 500, "ftol": 1e-12})
        cands.append(prim.x[:-1])
        for c in cands:
            d = c - x0
            nd = float(np.linalg.norm(d))
            if nd > eps:
                d = d * (eps / nd) * (1 - 1e-12)
            if p.check(torch.as_tensor(x0 + d, dtype=p.x_dtype).reshape(p.x.shape)):
                return "falsified"
        return "unknown"
    return "verified"


def _node_values(g: Any, z: Tensor) -> list[Tensor]:
    """Values of every node of the graph (differentiable)."""
    from certify._graph import apply_node

    vals: list[Tensor] = [z]
    for n in g.nodes[1:]:
        vals.append(apply_node(n, [vals[j] for j in n.inputs]))
    return vals


def _masked_forward(g: Any, z: Tensor, masks: dict[int, Tensor]) -> list[Tensor]:
    """Values of every node (float64) with each ReLU replaced by multiplication with a fixed 0/1 mask."""
    from certify._graph import apply_node

    vals: list[Tensor] = [z]
    for n in g.nodes[1:]:
        ins = [vals[j] for j in n.inputs]
        if n.op == "relu":
            vals.append(ins[0] * masks[n.inputs[0]].to(ins[0].dtype))
        else:
            vals.append(apply_node(_as64(n), ins))
    return vals


def _as64(n: Any) -> Any:
    from dataclasses import replace

    if n.weight is None and n.bias is None:
        return n
    return replace(n, weight=None if n.weight is None else n.weight.to(torch.float64),
                   bias=None if n.bias is None else n.bias.to(torch.float64), derived={})


def _input_bab(p: _Problem, *, batch_size: int, iterations: int, lr_alpha: float, lr_beta: float,
               deadline: float, progress: bool, seed: int, attack: tuple[int, int], branching: str = "babsr",
               fsb_candidates: int = 3, intermediate: bool = False) -> tuple[str, float, int]:
    """Branch-and-bound on the input box (bisect the widest dimension); returns (verdict, lower, branches)."""
    box = p.region.box
    lo, hi = box.l, box.u
    lower = torch.full((1,), -math.inf, dtype=lo.dtype, device=lo.device)
    branches, step = 0, 0
    proven = math.inf
    bar = _bar(progress, "input")
    s = p.spec.shape[1]
    try:
        while lo.shape[0]:
            if time.perf_counter() > deadline:
                return "unknown", float(lower.min()), branches
            step += 1
            order = torch.argsort(lower)
            take, rest = order[: batch_size], order[batch_size:]
            b = take.shape[0]
            tl, th = lo[take], hi[take]
            if p.check((tl + th) / 2):
                return "falsified", -math.inf, branches
            width = (th - tl).reshape(b, -1)
            dim = width.argmax(1)
            mid = ((tl + th) / 2).reshape(b, -1).gather(1, dim[:, None])
            rows = torch.arange(b, device=lo.device)
            c_lo, c_hi = torch.cat([tl, tl]).reshape(2 * b, -1).clone(), torch.cat([th, th]).reshape(2 * b, -1).clone()
            c_hi[rows, dim] = mid[:, 0]
            c_lo[rows + b, dim] = mid[:, 0]
            c_lo, c_hi = c_lo.reshape(2 * b, *lo.shape[1:]), c_hi.reshape(2 * b, *lo.shape[1:])
            res = optimize_lower(p.g, _region(p, 2 * b, (c_lo, c_hi)), p.spec.expand(2 * b, s, -1),
                                 iterations=iterations, lr=0.5, stop_at=p.threshold - p.offset, deadline=deadline,
                                 intermediate=intermediate)
            branches += 2 * b
            worst = p.key(res.lower, torch.zeros_like(res.lower, dtype=torch.bool))
            keep = worst <= p.threshold
            if not bool(keep.all()):
                proven = min(proven, float(worst[~keep].min()))
            lo, hi = torch.cat([lo[rest], c_lo[keep]]), torch.cat([hi[rest], c_hi[keep]])
            lower = torch.cat([lower[rest], worst[keep]])
            bar.update(1)
            bar.set_postfix(open=int(lo.shape[0]), branches=branches)
    finally:
        bar.close()
    return "verified", proven, branches
