"""Projected gradient descent (PGD; Madry et al. 2018) on margins, for L-inf and L2 balls.

These give *upper* bounds on the worst case (points that exist in the region), so any sound
lower bound must lie below them: the tests of the bound-propagation engine use them, and they
give the empirical side of a certified-vs-empirical robustness comparison.

Random restarts draw from a ``generator: torch.Generator | None`` (None: a generator seeded with 0,
so attacks are reproducible by default; torch's global RNG is untouched). ``seed: int`` is deprecated.
The attacks never leave the region: L-inf ball (or L2 ball) intersected with ``domain``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from certify._grad_mode import outside_inference_mode
from certkit._validation import (
    check_array,
    check_eval_mode,
    check_model_labels,
    check_nonnegative,
    check_positive_int,
    generator_or_seed,
)
from certkit.threat import LpBall, parse_norm, threat_arguments

__all__ = ["pgd_attack", "pgd_box_minimize", "pgd_margins", "pgd_minimize", "project"]


def _norm(norm: float | str) -> float:
    return parse_norm(norm, supported=(2.0, math.inf), why="PGD here projects onto L-inf and L2 balls")


def _generator(generator: torch.Generator | None, seed: int | None, device: torch.device) -> torch.Generator:
    return generator_or_seed(generator, seed, where="certify.attacks", device=device, stacklevel=4)


def _per_sample(eps: float | Tensor, x: Tensor) -> Tensor:
    if isinstance(eps, Tensor):
        e = eps.to(dtype=x.dtype, device=x.device).expand(x.shape[0])
    else:
        e = torch.full((x.shape[0],), float(check_nonnegative(eps, "eps")), dtype=x.dtype, device=x.device)
    return e.reshape(-1, *([1] * (x.dim() - 1)))


def project(x_adv: Tensor, x0: Tensor, eps: Tensor, norm: float, domain: tuple[float, float] | None) -> Tensor:
    """Project onto the ball (L-inf: clamp; L2: rescale) around ``x0``, then clip to ``domain``.

    For L2 with a domain the result is clipped after the radial projection, which stays inside
    the ball (clipping toward x0's box never increases the distance to x0 since x0 is in the box).
    """
    d = x_adv - x0
    if norm == math.inf:
        d = torch.maximum(torch.minimum(d, eps), -eps)
    else:
        nrm = d.flatten(1).norm(dim=1).reshape(eps.shape).clamp(min=1e-12)
        d = d * torch.clamp(eps / nrm, max=1.0)
    out = x0 + d
    if domain is not None:
        out = out.clamp(domain[0], domain[1])
    return out


def _pgd(objective: Callable[[Tensor], Tensor], x_init: Tensor, start: Callable[[int], Tensor],
         step: Callable[[Tensor, Tensor], Tensor], *, steps: int, restarts: int,
         until: float | None = None) -> tuple[Tensor, Tensor]:
    """The PGD loop both attacks share: ``restarts`` runs of ``steps`` gradient steps from ``start(r)``,
    each step ``step(x, grad)`` (a descent step followed by the projection onto the region), keeping the
    best point per row (``x_init`` is the first candidate). With ``until``, stop once some row's value is
    <= ``until``."""
    with torch.no_grad():
        best_val = objective(x_init).detach()
    best_x = x_init.clone()
    for r in range(restarts):
        if until is not None and bool((best_val <= until).any()):
            break
        xa = start(r)
        for _ in range(steps):
            xa = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                val = objective(xa)
                grad, = torch.autograd.grad(val.sum(), xa)
            with torch.no_grad():
                better = val.detach() < best_val
                best_val = torch.where(better, val.detach(), best_val)
                best_x[better] = xa.detach()[better]
                if until is not None and bool((best_val <= until).any()):
                    break
                xa = step(xa, grad)
        with torch.no_grad():
            val = objective(xa)
            better = val < best_val
            best_val = torch.where(better, val, best_val)
            best_x[better] = xa[better]
    return best_x, best_val


@outside_inference_mode
def pgd_minimize(objective: Callable[[Tensor], Tensor], x: Tensor, eps: float | Tensor | None = None, *,
                 norm: float | str | None = None, domain: tuple[float, float] | None = None,
                 steps: int = 50, step_size: float | None = None, restarts: int = 1,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 threat: LpBall | None = None) -> tuple[Tensor, Tensor]:
    """Minimise ``objective`` (inputs (N, ...) -> values (N,)) over the region by signed/normalised PGD.

    Random restarts (``restarts > 1``) start from uniform points drawn from ``generator`` (on ``x``'s
    device; None: seeded with 0). ``seed`` is deprecated: pass a generator. The region is the ``norm``
    ball (default L-inf) of radius ``eps`` (a number or an (N,) tensor) intersected with ``domain``, or
    ``threat=LpBall(norm, eps, domain)``.

    Returns ``(x_best, value_best)``: the best point found per input (the clean point is always a
    candidate) and its objective value.
    """
    eps, norm, domain = threat_arguments(threat, eps, norm, domain)
    p = _norm(norm)
    steps = check_positive_int(steps, "steps", minimum=0)
    restarts = check_positive_int(restarts, "restarts")
    e = _per_sample(eps, x)
    alpha = e * (2.5 / max(steps, 1)) if step_size is None else torch.full_like(e, float(step_size))
    g = _generator(generator, seed, x.device)
    x0 = x.detach()

    def start(r: int) -> Tensor:
        if r == 0:
            return x0.clone()
        noise = torch.rand(x0.shape, generator=g, device=x.device, dtype=x.dtype) * 2 - 1
        if p == 2:
            noise = noise / noise.flatten(1).norm(dim=1).reshape(e.shape).clamp(min=1e-12)
        return project(x0 + noise * e, x0, e, p, domain)

    def step(xa: Tensor, grad: Tensor) -> Tensor:
        if p == math.inf:
            direction = grad.sign()
        else:
            direction = grad / grad.flatten(1).norm(dim=1).reshape(e.shape).clamp(min=1e-12)
        return project(xa - alpha * direction, x0, e, p, domain)

    return _pgd(objective, x0, start, step, steps=steps, restarts=restarts)


@outside_inference_mode
def pgd_margins(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor | None = None, *,
                norm: float | str | None = None, domain: tuple[float, float] | None = None,
                steps: int = 50, step_size: float | None = None, restarts: int = 1,
                generator: torch.Generator | None = None, seed: int | None = None,
                threat: LpBall | None = None) -> Tensor:
    """Smallest margin ``f_y(x') - f_j(x')`` found per class j by targeted PGD, shape (N, K); 0 at j = y.

    A sound margin lower bound (``certify.margin_bounds(...).lower``) is <= this, entrywise.
    """
    check_eval_mode(model)
    eps, norm, domain = threat_arguments(threat, eps, norm, domain)
    with torch.no_grad():
        k = int(model(x[:1]).shape[1]) if x.shape[0] else 0
    n = x.shape[0]
    if n == 0:
        return torch.zeros((0, k), dtype=x.dtype, device=x.device)
    e = _per_sample(eps, x).reshape(-1)
    xr = x.repeat_interleave(k, 0)
    yr = y.repeat_interleave(k, 0)
    jr = torch.arange(k, device=x.device).repeat(n)

    def obj(z: Tensor) -> Tensor:
        out = model(z)
        return out.gather(1, yr[:, None]).squeeze(1) - out.gather(1, jr[:, None]).squeeze(1)

    _, val = pgd_minimize(obj, xr, e.repeat_interleave(k, 0), norm=norm, domain=domain, steps=steps,
                          step_size=step_size, restarts=restarts, generator=generator, seed=seed)
    return val.reshape(n, k)


@outside_inference_mode
def pgd_attack(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor | None = None, *,
               norm: float | str | None = None, domain: tuple[float, float] | None = None,
               steps: int = 50, step_size: float | None = None, restarts: int = 1,
               generator: torch.Generator | None = None, seed: int | None = None,
               threat: LpBall | None = None) -> tuple[Tensor, Tensor]:
    """Untargeted PGD on the worst margin ``min_{j != y} f_y - f_j``.

    Returns ``(x_adv, success)``: the best point found per input and whether it is misclassified
    (its worst margin is <= 0).
    """
    check_eval_mode(model)
    eps, norm, domain = threat_arguments(threat, eps, norm, domain)
    check_array(x, "x", tensor=True)
    check_model_labels(model, x, y, "y")

    def obj(z: Tensor) -> Tensor:
        out = model(z)
        true = out.gather(1, y[:, None])
        other = out.scatter(1, y[:, None], -math.inf)
        return (true - other).min(dim=1).values

    xa, val = pgd_minimize(obj, x, eps, norm=norm, domain=domain, steps=steps, step_size=step_size,
                           restarts=restarts, generator=generator, seed=seed)
    return xa, val <= 0


@outside_inference_mode
def pgd_box_minimize(objective: Callable[[Tensor], Tensor], lower: Tensor, upper: Tensor, *,
                     steps: int = 100, restarts: int = 5, until: float | None = None,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Minimise ``objective`` (inputs (N, ...) -> values (N,)) over the box ``lower <= x <= upper``
    (both (N, ...)) by signed-gradient PGD with random restarts (the first from the box centre);
    with ``until``, stop as soon as some row's value is <= ``until`` (a counterexample search).

    Returns ``(x_best, value_best)``, the best point found per row and its value; every point stays
    in the box. Randomness only through ``generator`` (torch's global RNG is untouched).
    """
    steps = check_positive_int(steps, "steps", minimum=0)
    restarts = check_positive_int(restarts, "restarts")
    if lower.shape != upper.shape or bool((lower > upper).any()):
        raise ValueError("Expected arguments `lower` and `upper` of one shape with lower <= upper")
    width = upper - lower
    alpha = width * (2.5 / max(steps, 1)) / 2
    centre = (lower + upper) / 2

    def start(r: int) -> Tensor:
        if r == 0:
            return centre
        u = torch.rand(lower.shape, generator=generator, dtype=lower.dtype, device="cpu").to(lower.device)
        return lower + u * width

    def step(xa: Tensor, grad: Tensor) -> Tensor:
        return torch.minimum(torch.maximum(xa - alpha * grad.sign(), lower), upper)

    return _pgd(objective, centre, start, step, steps=steps, restarts=restarts, until=until)
