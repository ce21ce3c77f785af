"""Verifying VNN-LIB properties: ``verified``, ``falsified`` (with a checked counterexample) or ``unknown``.

A property (:class:`~certify.vnnlib.VnnlibProperty`) is violated iff for some case some input ``x``
in the case's box has outputs ``y = f(x)`` satisfying one of its unsafe conjunctions ``A y <= b``.
:func:`verify_property` first searches for a counterexample (a forward pass at each box centre,
then PGD minimising ``max_i (A_i f(x) - b_i)`` over the box); a point is reported only after a
forward pass confirms that it violates the property. Otherwise it bounds ``A f(x)`` over each box
with certify's bound propagation (IBP, CROWN or CROWN-IBP): a conjunction is unreachable when some
row's lower bound exceeds its ``b_i``; the property is ``verified`` when every conjunction of every
case is unreachable, else ``unknown``. A verdict of ``verified`` is as sound as the bounds, which
are computed in floating point (``float64=True``: in float64, the final bounds rounded one ulp
outward); the rigorous rounding-error analysis of ``certify.bounds(sound=True)`` works on L-p balls
and is not used for VNN-LIB boxes yet.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from certify._grad_mode import outside_inference_mode
from certify.vnnlib import VnnlibProperty

__all__ = ["PropertyResult", "box_bounds", "verify_property"]

VERDICTS = ("verified", "falsified", "unknown")


@dataclass(frozen=True)
class PropertyResult:
    """Outcome of :func:`verify_property`.

    ``verdict`` is ``"verified"``, ``"falsified"`` or ``"unknown"``. When falsified,
    ``counterexample`` is the input (shaped like the model's input, batch of 1), ``output`` the
    model's output on it (1, K) and ``case`` the index of the violated case; otherwise all None.
    ``reason`` says why the verdict is unknown (bounds too loose, timeout), ``seconds`` the time used.
    """

    verdict: str
    counterexample: Tensor | None
    output: Tensor | None
    case: int | None
    method: str
    seconds: float
    reason: str = ""
    branches: int = 0


def box_bounds(model: nn.Module, lower: Tensor, upper: Tensor, spec: Tensor | None = None, *,
               method: str = "crown", float64: bool = False) -> tuple[Tensor, Tensor]:
    """Bounds of ``spec @ f(x)`` (spec (N, S, K); None: of f(x)) over boxes ``lower <= x <= upper`` (N, ...).

    Returns ``(lower, upper)`` of shape (N, S). The box may have a different width per coordinate
    (VNN-LIB input regions); the engine is the one of :func:`certify.bounds`.
    """
    from certify._graph import cached_graph
    from certify.api import _check_method, _check_model, _round_outward
    from certify.crown import crown_bounds
    from certify.ibp import InputRegion, Interval, ibp_bounds

    model = _check_model(model)
    m = _check_method(method)
    if m.startswith("auto_lirpa:"):
        raise ValueError(f"Expected argument `method` to be one of ibp, crown, crown-ibp, but got {method!r}")
    if lower.shape != upper.shape or bool((lower > upper).any()):
        raise ValueError("Expected arguments `lower` and `upper` of one shape with lower <= upper")
    dtype = torch.float64 if float64 else lower.dtype
    lo_x, hi_x = lower.to(dtype), upper.to(dtype)
    centre = (lo_x + hi_x) / 2
    radius = ((hi_x - lo_x) / 2).flatten(1).amax(dim=1)
    g = cached_graph(model, centre, dtype)
    region = InputRegion(centre, radius, math.inf, None)
    region.box = Interval(l=lo_x, u=hi_x)
    if spec is not None:
        spec = spec.to(dtype=dtype, device=lower.device)
    with torch.no_grad():
        if m == "ibp":
            lo, hi = ibp_bounds(g, region, spec)
        else:
            lo, hi = crown_bounds(g, region, spec, ibp_intermediate=(m == "crown-ibp"))
    if float64:
        return _round_outward(lo, hi, lower.dtype)
    return lo, hi


def _violation(model: nn.Module, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``max_i (A[r, i] f(x_r) - b[r, i])`` per row r of x (a (R, M, K), b (R, M)): <= 0 iff f(x_r)
    satisfies row r's conjunction."""
    y = model(x).flatten(1)
    return (torch.linalg.vecdot(a, y.unsqueeze(1)) - b).amax(dim=1)


@outside_inference_mode
def verify_property(model: nn.Module, prop: VnnlibProperty, *, input_shape: tuple[int, ...] | None = None,
                    method: str = "crown", timeout: float | None = None, attack_steps: int = 100,
                    attack_restarts: int = 5, float64: bool = False, complete: bool = False,
                    batch_size: int = 64, generator: torch.Generator | None = None) -> PropertyResult:
    """Decide a VNN-LIB property for ``model``: verified, falsified (checked counterexample) or unknown.

    Args:
        model: torch module in eval mode (e.g. from :func:`certify.load_onnx`).
        prop: the property (:func:`certify.load_vnnlib`).
        input_shape: per-sample input shape of the model (default ``(num_inputs,)``); the VNN-LIB
            inputs ``X_i`` are its entries in row-major order.
        method: ``"ibp"``, ``"crown"`` or ``"crown-ibp"`` for the bounds.
        timeout: seconds; past it the remaining work is skipped and the verdict is ``unknown``.
        attack_steps: PGD steps per restart, for each unsafe conjunction.
        attack_restarts: PGD restarts for each unsafe conjunction.
        float64: bounds computed in float64, rounded one ulp outward (not the rigorous ``sound=True``
            analysis of :func:`certify.bounds`); with ``complete``, the search's ``sound=True`` (float64
            bounds, each required to exceed 1e-9).
        complete: decide the property by branch-and-bound (:func:`certify.verify_complete`'s search:
            alpha/beta-CROWN bounds, ReLU splits, or input splits for at most 8 inputs, and PGD) on every
            case, with all unsafe conjunctions of the case as one disjunction; ``method`` is then unused
            and ``timeout`` (None: no limit) covers all cases together.
        batch_size: sub-domains bounded together per step of the complete search.
        generator: randomness of the PGD restarts.
    """
    from certify.api import _check_method, _check_model
    from certify.attacks import pgd_box_minimize
    from certkit._validation import check_bool, check_generator, check_positive_int, warn_low_precision

    start = time.perf_counter()
    model = _check_model(model)
    check_bool(complete, "complete")
    check_bool(float64, "float64")
    check_generator(generator)
    check_positive_int(attack_steps, "attack_steps", minimum=0)
    check_positive_int(attack_restarts, "attack_restarts")
    if timeout is not None and isinstance(timeout, bool):
        raise TypeError(f"Expected argument `timeout` to be None or a number > 0, but got {timeout!r}")
    m = "bab" if complete else _check_method(method)
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(prop, VnnlibProperty):
        raise TypeError(f"Expected argument `prop` to be a VnnlibProperty, but got {type(prop).__name__}")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"Expected argument `timeout` to be None or a number > 0, but got {timeout!r}")
    shape = tuple(input_shape) if input_shape is not None else (prop.num_inputs,)
    if math.prod(shape) != prop.num_inputs:
        raise ValueError(f"{prop.path}: the property has {prop.num_inputs} inputs but the model's input shape "
                         f"{shape} has {math.prod(shape)}")
    dtype = next((t.dtype for t in model.parameters() if t.is_floating_point()), torch.float32)
    warn_low_precision(dtype, "model", "verdicts", stacklevel=2)  # as certify.verify warns for the same dtype
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            probe = model(prop.cases[0].lower.to(dtype=dtype, device=device).reshape(1, *shape)) if prop.cases else None
    except RuntimeError as e:  # e.g. a CNN given its inputs as a flat vector: the default input_shape
        raise ValueError(
            f"{prop.path}: could not evaluate the model on an input of shape {(1, *shape)} (its per-sample shape "
            f"`input_shape` is {'the default (num_inputs,)' if input_shape is None else 'given as ' + repr(shape)}; "
            "pass the model's own, e.g. input_shape=(3, 32, 32); certify.onnx_io.onnx_model_info(path).input_shape[1:] "
            f"reads it from an ONNX file): {e}"
        ) from e
    if probe is not None and probe[0].numel() != prop.num_outputs:
        raise ValueError(f"{prop.path}: the property has {prop.num_outputs} outputs but the model returns "
                         f"{probe[0].numel()}")

    def elapsed() -> float:
        return time.perf_counter() - start

    def out_of_time() -> bool:
        return timeout is not None and elapsed() > timeout

    def result(verdict: str, reason: str = "", x: Tensor | None = None, y: Tensor | None = None,
               case: int | None = None) -> PropertyResult:
        return PropertyResult(verdict, x, y, case, m, elapsed(), reason)

    # 1. counterexample search, all unsafe conjunctions of all cases at once (one PGD batch row each);
    #    a point counts only once a forward pass confirms that it violates the property
    rows = [(ci, con) for ci, case in enumerate(prop.cases) for con in case.unsafe]
    if rows:
        if out_of_time():
            return result("unknown", "timeout before the counterexample search")
        lo = torch.stack([prop.cases[ci].lower for ci, _ in rows]).to(dtype=dtype, device=device)
        hi = torch.stack([prop.cases[ci].upper for ci, _ in rows]).to(dtype=dtype, device=device)
        lo, hi = lo.reshape(len(rows), *shape), hi.reshape(len(rows), *shape)
        width = max(con.A.shape[0] for _, con in rows)
        a = torch.zeros((len(rows), width, prop.num_outputs), dtype=torch.float64)
        b = torch.full((len(rows), width), math.inf, dtype=torch.float64)  # padding rows never bind
        for r, (_, con) in enumerate(rows):
            a[r, : con.A.shape[0]], b[r, : con.A.shape[0]] = con.A, con.b
        a, b = a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)
        xa, _ = pgd_box_minimize(functools.partial(_violation, model, a=a, b=b), lo, hi, steps=attack_steps,
                                 restarts=attack_restarts, until=0.0, generator=generator)
        xa = torch.minimum(torch.maximum(xa, lo), hi)
        with torch.no_grad():
            y = model(xa).flatten(1)
        for r, (ci, con) in enumerate(rows):
            if bool(con.satisfied(y[r:r + 1])[0]):
                hit = _confirmed(model, xa[r:r + 1].detach(), prop.cases[ci], con, shape)
                if hit is not None:
                    return result("falsified", x=hit[0], y=hit[1], case=ci)
    if complete:
        return _complete(model, prop, shape, dtype, device, start, timeout, float64, batch_size,
                         attack_steps, attack_restarts, generator)
    # 2. bounds: every unsafe conjunction must be unreachable from its box
    for case in prop.cases:
        if out_of_time():
            return result("unknown", "timeout during bound propagation")
        if not case.unsafe:
            continue
        lo = case.lower.to(dtype=dtype, device=device).reshape(1, *shape)
        hi = case.upper.to(dtype=dtype, device=device).reshape(1, *shape)
        mats = [con.A for con in case.unsafe if con.A.shape[0]]
        if len(mats) != len(case.unsafe):  # an unconstrained conjunction: any output is unsafe
            return result("unknown", "a case has no output constraint (every output is unsafe); no "
                          "counterexample was found")
        spec = torch.cat(mats).unsqueeze(0)
        lower, _ = box_bounds(model, lo, hi, spec, method=m, float64=float64)
        lower = lower[0].to(torch.float64).cpu()
        i0 = 0
        for con in case.unsafe:
            k = con.A.shape[0]
            if not bool((lower[i0:i0 + k] > con.b).any()):
                return result("unknown", "the bounds do not exclude an unsafe output region")
            i0 += k
    return result("verified")


def _confirmed(model: nn.Module, x: Tensor, case: Any, con: Any, shape: tuple[int, ...]) -> tuple[Tensor, Tensor] | None:
    """``(x, f(x))`` for a candidate counterexample ``x`` (1, *shape) that truly violates conjunction ``con``
    of ``case``, else None.

    The point is moved into the case's float64 box in the model's dtype (clamped, then nudged one ulp
    inward where rounding put it outside: a float32 point rounded from a float64 bound can lie just
    outside the box), and the model is evaluated on it alone, at batch 1 (a batched forward pass may
    round differently), so that a reported counterexample is inside the box and violates the property
    exactly as reported."""
    dtype = x.dtype
    lo64 = case.lower.to(torch.float64).reshape(1, *shape).to(x.device)
    hi64 = case.upper.to(torch.float64).reshape(1, *shape).to(x.device)
    p = torch.minimum(torch.maximum(x.to(torch.float64), lo64), hi64).to(dtype)
    p = torch.where(p.to(torch.float64) < lo64, torch.nextafter(p, torch.full_like(p, math.inf)), p)
    p = torch.where(p.to(torch.float64) > hi64, torch.nextafter(p, torch.full_like(p, -math.inf)), p)
    p64 = p.to(torch.float64)
    if not bool(((p64 >= lo64) & (p64 <= hi64)).all()):  # no point of this dtype in the box
        return None
    with torch.no_grad():
        y = model(p).flatten(1)
    if not bool(con.satisfied(y)[0]):
        return None
    return p.detach(), y.detach()


def _complete(model: nn.Module, prop: VnnlibProperty, shape: tuple[int, ...], dtype: torch.dtype,
              device: torch.device, start: float, timeout: float | None, float64: bool, batch_size: int,
              attack_steps: int, attack_restarts: int, generator: torch.Generator | None) -> PropertyResult:
    """Branch-and-bound on every case: the unsafe conjunctions ``A y <= b`` of a case are the groups of one
    search (a sub-domain is closed once every conjunction has a row whose lower bound exceeds its ``b``)."""
    from certify.bab import _Problem, _search

    branches = 0
    unknown = ""
    for ci, case in enumerate(prop.cases):
        if not case.unsafe:
            continue
        left = math.inf if timeout is None else timeout - (time.perf_counter() - start)
        if left <= 0:
            return PropertyResult("unknown", None, None, None, "bab", time.perf_counter() - start,
                                  "timeout during branch-and-bound", branches)
        a = torch.cat([con.A for con in case.unsafe])
        b = torch.cat([con.b for con in case.unsafe])
        groups = torch.repeat_interleave(torch.arange(len(case.unsafe)),
                                         torch.tensor([con.A.shape[0] for con in case.unsafe]))
        lo = case.lower.to(dtype=dtype, device=device).reshape(1, *shape)
        hi = case.upper.to(dtype=dtype, device=device).reshape(1, *shape)
        p = _Problem.box(model, lo, hi, a, b, groups, len(case.unsafe), float64)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else ci
        r = _search(p, t0=time.perf_counter(), timeout=left, use_input=lo[0].numel() <= 8, batch_size=batch_size,
                    iterations=20, bab_iterations=10, lr_alpha=0.1, lr_beta=0.05, attack_restarts=attack_restarts,
                    attack_steps=attack_steps, progress=False, seed=seed, check_first=(lo + hi) / 2)
        branches += r.branches
        if r.verdict == "falsified":
            assert r.counterexample is not None
            hit = next((h for con in case.unsafe if (h := _confirmed(
                model, r.counterexample.reshape(1, *shape), case, con, shape)) is not None), None)
            if hit is not None:
                return PropertyResult("falsified", hit[0], hit[1], ci, "bab", time.perf_counter() - start,
                                      "", branches)
            unknown = "the search's counterexample does not violate the property when re-checked alone"
            continue
        if r.verdict == "unknown":
            past = timeout is not None and time.perf_counter() - start >= timeout
            unknown = "timeout during branch-and-bound" if past else "a fully split domain stayed undecided"
            if past:
                break
    verdict = "unknown" if unknown else "verified"
    return PropertyResult(verdict, None, None, None, "bab", time.perf_counter() - start, unknown, branches)
