"""Public API of the bound-propagation engine: ``bounds``, ``margin_bounds``, ``verify``,
``certified_radius`` and ``verified_accuracy``.

Methods: ``"ibp"`` (Gowal et al. 2018), ``"crown"`` (Zhang et al. 2018), ``"crown-ibp"``
(Zhang et al. 2020), ``"alpha-crown"`` (optimised ReLU, LeakyReLU, sigmoid and tanh slopes, Xu et al. 2021; ``iterations`` and
``lr`` keywords) and ``"auto_lirpa:<METHOD>"`` (delegates to an installed auto_LiRPA).
Norms: ``float("inf")`` (an L-inf ball, intersected with ``domain`` if given) and ``2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from certify._grad_mode import outside_inference_mode
from certkit._validation import (
    check_bool,
    check_eval_mode,
    check_labels,
    check_positive,
    check_positive_int,
    warn_low_precision,
)
from certkit.threat import LpBall, parse_norm, threat_arguments

__all__ = [
    "METHODS",
    "Bounds",
    "bounds",
    "certified_radius",
    "margin_bounds",
    "margin_spec",
    "verified_accuracy",
    "verify",
]

METHODS = ("ibp", "crown", "crown-ibp", "alpha-crown")
#: the methods whose final bounds ``intersect_ibp=True`` (the default) intersects with IBP's
INTERSECT_IBP_METHODS = ("crown", "crown-ibp", "alpha-crown")


@dataclass(frozen=True)
class Bounds:
    """Element-wise ``lower <= f(x') <= upper`` for every ``x'`` in the input region; both (N, K)."""

    lower: Tensor
    upper: Tensor

    def __iter__(self):  # type: ignore[no-untyped-def]
        """Allow ``lower, upper = certify.bounds(...)``."""
        return iter((self.lower, self.upper))

    @property
    def width(self) -> Tensor:
        return self.upper - self.lower


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

def _check_method(method: Any) -> str:
    if not isinstance(method, str):
        raise TypeError(f"Expected argument `method` to be a string, but got {method!r}")
    m = method.strip()
    if m.lower().startswith("auto_lirpa:"):
        return "auto_lirpa:" + m.split(":", 1)[1]
    m = m.lower().replace("_", "-")
    if m not in METHODS:
        raise ValueError(
            f"Expected argument `method` to be one of {list(METHODS)} or 'auto_lirpa:<METHOD>', but got {method!r}"
        )
    return m


def _check_norm(norm: Any) -> float:
    return parse_norm(norm, supported=(2.0, math.inf), why="bound propagation certifies L-inf and L2 balls")


def _threat(threat: Any, eps: Any, norm: Any, domain: Any) -> tuple[Any, Any, Any]:
    """``(eps, norm, domain)`` from ``threat=LpBall(...)`` (also accepted in place of ``eps``) or the plain arguments."""
    if isinstance(eps, LpBall):
        if threat is not None:
            raise ValueError("Expected either argument `threat` or an LpBall as `eps`, but got both")
        eps, threat = None, eps
    return threat_arguments(threat, eps, norm, domain)


def _check_x_extent(x: Any, name: str = "x") -> tuple[float, float] | None:
    """Validate ``x``; return its (min, max) (None if empty), from one pass over it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch tensor, but got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"Expected argument `{name}` to be a floating-point tensor, but got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"Expected argument `{name}` to be a batch of shape (N, ...), but got shape {tuple(x.shape)}")
    if not x.numel():
        return None
    lo, hi = torch.aminmax(x.detach())
    xmin, xmax = float(lo), float(hi)
    if not (math.isfinite(xmin) and math.isfinite(xmax)):
        raise ValueError(f"Expected argument `{name}` to hold only finite values, but it contains NaN or inf")
    return xmin, xmax


def _check_eps(eps: Any, x: Tensor, name: str = "eps") -> Tensor:
    """Return eps as an (N,) float64 tensor on x's device (cast to the computation dtype later)."""
    if isinstance(eps, Tensor):
        if eps.dim() > 1 or (eps.dim() == 1 and eps.shape[0] != x.shape[0]):
            raise ValueError(
                f"Expected argument `{name}` to be a number or a tensor of shape ({x.shape[0]},), "
                f"but got shape {tuple(eps.shape)}"
            )
        e = eps.detach().to(dtype=torch.float64, device=x.device).expand(x.shape[0]).clone()
    elif isinstance(eps, int | float) and not isinstance(eps, bool):
        if not (math.isfinite(float(eps)) and eps >= 0):
            raise ValueError(f"Expected argument `{name}` to be finite and >= 0, but got {eps!r}")
        return torch.full((x.shape[0],), float(eps), dtype=torch.float64, device=x.device)
    else:
        raise TypeError(f"Expected argument `{name}` to be a number >= 0 or a tensor, but got {eps!r}")
    if e.numel() and (not bool(torch.isfinite(e).all()) or bool((e < 0).any())):
        raise ValueError(f"Expected argument `{name}` to be finite and >= 0, but got {eps!r}")
    return e


def _check_domain(domain: Any, x: Tensor, extent: tuple[float, float] | None = None) -> tuple[float, float] | None:
    if domain is None:
        return None
    if not isinstance(domain, tuple | list) or len(domain) != 2:
        raise TypeError(f"Expected argument `domain` to be None or a pair (low, high), but got {domain!r}")
    lo, hi = float(domain[0]), float(domain[1])
    if not lo < hi:
        raise ValueError(f"Expected argument `domain` to satisfy low < high, but got {domain!r}")
    if extent is None and x.numel():
        extent = tuple(float(v) for v in torch.aminmax(x.detach()))  # type: ignore[assignment]
    if extent is not None:
        xmin, xmax = extent
        if xmin < lo or xmax > hi:
            raise ValueError(
                f"Expected argument `x` to lie inside the domain [{lo}, {hi}], but its values range over "
                f"[{xmin}, {xmax}]"
            )
    return lo, hi


def _check_common(model: Any, x: Any, norm: Any, method: Any,
                  domain: Any, x_name: str = "x") -> tuple[nn.Module, Tensor, float, str, tuple[float, float] | None]:
    """The checks every entry point shares (one pass over ``x`` for finiteness and the domain)."""
    model = _check_model(model)
    extent = _check_x_extent(x, x_name)
    return model, x, _check_norm(norm), _check_method(method), _check_domain(domain, x, extent)


def _check_flag(value: Any, name: str) -> bool:
    return check_bool(value, name)


def _check_alpha(method: str, iterations: Any, lr: Any, intermediate: Any = None) -> tuple[int, float, bool | None]:
    """alpha-CROWN's (iterations, lr, alpha_intermediate); each only with method='alpha-crown' (None: the
    intermediate slopes are optimised in verification only, see :func:`bounds`)."""
    from certify.alpha_crown import ALPHA_ITERATIONS, ALPHA_LR

    if method != "alpha-crown" and (iterations is not None or lr is not None or intermediate is not None):
        raise ValueError(
            f"Expected `iterations`, `lr` and `alpha_intermediate` to be None unless method='alpha-crown', but got "
            f"iterations={iterations!r}, lr={lr!r}, alpha_intermediate={intermediate!r} with method={method!r}"
        )
    it = ALPHA_ITERATIONS if iterations is None else check_positive_int(iterations, "iterations", minimum=0)
    rate = ALPHA_LR if lr is None else check_positive(lr, "lr")
    inter = None if intermediate is None else check_bool(intermediate, "alpha_intermediate")
    return it, rate, inter


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}")
    check_eval_mode(model)
    return model


def _check_classes(k: int) -> int:
    """``k`` class scores, at least two: a robustness certificate compares the label's score with the others'."""
    if k < 2:
        raise ValueError(
            f"Expected the model to return at least 2 class scores (shape (N, K), K >= 2), but it returns {k}: with "
            "one score there is no other class, so every input would be verified vacuously. For a binary classifier "
            "with one logit z, check the sign of certify.bounds(model, x, eps) (lower > 0 or upper < 0), or append "
            "nn.Linear(1, 2, bias=False) with weight [[-1.0], [1.0]] (the scores -z, z)"
        )
    return k


def _check_y(y: Any, n: int, k: int, name: str = "y") -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch tensor of class indices, but got {type(y).__name__}")
    _check_classes(k)
    check_labels(y, n, k, name)
    return y


# ----------------------------------------------------------------------------------------------
# core
# ----------------------------------------------------------------------------------------------

def _round_outward(lo: Tensor, hi: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Cast float64 bounds to ``dtype``, stepping one ulp outward where the cast rounded inward."""
    lo_c, hi_c = lo.to(dtype), hi.to(dtype)
    ninf = torch.full_like(lo_c, -math.inf)
    lo_c = torch.where(lo_c.to(lo.dtype) > lo, torch.nextafter(lo_c, ninf), lo_c)
    hi_c = torch.where(hi_c.to(hi.dtype) < hi, torch.nextafter(hi_c, -ninf), hi_c)
    return lo_c, hi_c


def _compute(model: nn.Module, x: Tensor, eps: Tensor, spec: Tensor | None, *, norm: float, method: str,
             domain: tuple[float, float] | None, sound: bool, need_lower: bool = True,
             need_upper: bool = True, compare_ibp: bool = False, alpha: tuple[int, float, bool | None] = (20, 0.5, None),
             skip: Tensor | None = None, early_stop: bool = False,
             intersect_ibp: bool = False) -> tuple[Tensor, Tensor]:
    """Bounds of ``spec @ f(x')`` (or of ``f(x')`` if spec is None), shape (N, S).

    ``intersect_ibp``: with a method of :data:`INTERSECT_IBP_METHODS`, the final bounds are intersected with
    ``method="ibp"``'s bounds of the same ``spec @ f(x')``: for CROWN and alpha-CROWN (and every method with
    ``sound``) computed by the same code as that method (so the result is never looser than it, bit for bit);
    for CROWN-IBP, whose intermediate bounds are IBP's, by one more interval step from them (the same bounds in
    exact arithmetic, summed in another order)."""
    sound = _check_flag(sound, "sound")  # sound="no" must not take the sound path
    intersect_ibp = _check_flag(intersect_ibp, "intersect_ibp") and method in INTERSECT_IBP_METHODS
    if not sound:
        warn_low_precision(x.dtype, "x", "bounds", stacklevel=4)
    if method.startswith("auto_lirpa:"):
        if sound:
            # auto_LiRPA computes in the model's precision and offers no outward rounding: refuse rather
            # than return bounds that do not carry the promise of sound=True.
            raise ValueError(
                "Expected argument `sound` to be False with an auto_LiRPA method (auto_LiRPA has no outward "
                f"rounding), but got sound=True with method={method!r}; use method='crown' or 'ibp' for sound bounds"
            )
        from certify.auto_lirpa import auto_lirpa_bounds

        opts = {"compare_crown_with_ibp": True} if compare_ibp else None
        return auto_lirpa_bounds(model, x, eps, spec, norm=norm, method=method.split(":", 1)[1], domain=domain,
                                 bound_opts=opts)
    if method == "alpha-crown" and torch.is_inference_mode_enabled():
        # its slopes are optimised by autograd, which inference mode disables (certify._grad_mode)
        return outside_inference_mode(_compute)(model, x, eps, spec, norm=norm, method=method, domain=domain,
                                                sound=sound, need_lower=need_lower, need_upper=need_upper,
                                                compare_ibp=compare_ibp, alpha=alpha, skip=skip,
                                                early_stop=early_stop, intersect_ibp=intersect_ibp)
    from certify._graph import UnsupportedLayerError, cached_graph
    from certify.ibp import InputRegion

    dtype = torch.float64 if sound else x.dtype
    if x.shape[0] == 0:
        k = _num_outputs(model, x) if spec is None else spec.shape[1]
        empty = torch.zeros((0, k), dtype=x.dtype, device=x.device)
        return empty, empty.clone()
    xc = x.to(dtype)
    try:
        g = cached_graph(model, xc, dtype)
    except UnsupportedLayerError:
        raise
    except RuntimeError as e:
        raise ValueError(
            f"Could not evaluate the model on an input of shape {tuple(x.shape)} (does `x` have the shape the "
            f"model expects?): {e}"
        ) from e
    # plain IBP may take the box in sum/difference form from one compiled pass (ibp_bounds) and never form its ends
    region = InputRegion(xc, eps.to(dtype), norm, domain, lazy_box=method == "ibp" and not sound)
    if spec is not None:
        spec = spec.to(dtype)
        k = g.nodes[g.output].numel
        if spec.shape[-1] != k:
            raise ValueError(f"Expected the specification to have {k} columns (model outputs), got {spec.shape[-1]}")
    if sound and method == "alpha-crown":
        # the rigorous rounding model of certify._sound covers CROWN's fixed relaxations only
        raise ValueError(
            "Expected argument `sound` to be False with method='alpha-crown' (its optimised slopes have no rigorous "
            "rounding model yet), but got sound=True; use method='crown' with sound=True for rigorous bounds"
        )
    if sound:
        from certify._sound import sound_bounds

        lo, hi = sound_bounds(g, xc, eps.to(dtype), spec, norm=norm, method=method, domain=domain,
                              need_lower=need_lower, need_upper=need_upper, compare_ibp=compare_ibp)
        if intersect_ibp:  # both rigorous (float64), so is their intersection; rounded outward once below
            lo_ibp, hi_ibp = sound_bounds(g, xc, eps.to(dtype), spec, norm=norm, method="ibp", domain=domain,
                                          need_lower=True, need_upper=True, compare_ibp=False)
            lo, hi = torch.fmax(lo, lo_ibp), torch.fmin(hi, hi_ibp)
        return _round_outward(lo, hi, x.dtype)
    if method == "ibp":
        from certify.ibp import ibp_bounds

        lo, hi = ibp_bounds(g, region, spec)
    elif method == "alpha-crown":
        from certify.alpha_crown import alpha_crown_bounds

        lo, hi = alpha_crown_bounds(g, region, spec, iterations=alpha[0], lr=alpha[1], need_lower=need_lower,
                                    need_upper=need_upper, compare_ibp=compare_ibp, skip=skip,
                                    early_stop=early_stop, intermediate=alpha[2])
    else:
        from certify.crown import crown_bounds

        # CROWN-IBP's intermediate bounds are IBP's: the final IBP bound is one more interval step from them
        # (the last step of compare_ibp, which changes nothing else under CROWN-IBP), not a second IBP pass
        # (which would cost 6-12% of CROWN-IBP's time on the CIFAR benchmark's networks)
        cibp = intersect_ibp and method == "crown-ibp"
        lo, hi = crown_bounds(g, region, spec, ibp_intermediate=(method == "crown-ibp"),
                              need_lower=need_lower, need_upper=need_upper, compare_ibp=compare_ibp or cibp)
        intersect_ibp = intersect_ibp and not cibp
    from certify.crown import _no_nan_bounds

    lo, hi = _no_nan_bounds(lo, hi)  # an interval that overflowed gives -/+inf, not NaN
    if intersect_ibp:
        # CROWN's linear relaxations (of max pooling, LayerNorm, ...; Zhang et al. 2018) can be looser than
        # interval arithmetic on some outputs; both bounds are sound, so is their intersection. The IBP pass is
        # exactly method="ibp"'s (same region form, same spec folding), so the result is never looser than it.
        from certify.ibp import ibp_bounds

        lo_ibp, hi_ibp = _no_nan_bounds(*ibp_bounds(g, InputRegion(xc, eps.to(dtype), norm, domain, lazy_box=True),
                                                    spec))
        lo, hi = torch.maximum(lo, lo_ibp), torch.minimum(hi, hi_ibp)
    return lo, hi


def margin_spec(y: Tensor, k: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The (N, K, K) margin specification: row j is e_y - e_j (row y is zero)."""
    k = check_positive_int(k, "k")
    y = _check_y(y, y.shape[0] if isinstance(y, Tensor) and y.dim() == 1 else -1, k)
    n = y.shape[0]
    eye = torch.eye(k, dtype=dtype, device=y.device)
    spec = eye[y].unsqueeze(1) - eye.unsqueeze(0).expand(n, k, k)
    return spec


def _num_outputs(model: nn.Module, x: Tensor) -> int:
    with torch.no_grad():
        probe = x[:1] if x.shape[0] else torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
        try:
            out = model(probe)
        except RuntimeError as e:
            raise ValueError(
                f"Could not evaluate the model on an input of shape {tuple(x.shape)} (does `x` have the shape "
                f"the model expects?): {e}"
            ) from e
    return int(out[0].numel())


def bounds(model: nn.Module, x: Tensor, eps: float | Tensor | LpBall | None = None, *,
           norm: float | str | None = None, method: str = "crown", domain: tuple[float, float] | None = None,
           sound: bool = False, spec: Tensor | None = None, compare_crown_with_ibp: bool = False,
           iterations: int | None = None, lr: float | None = None, threat: LpBall | None = None,
           alpha_intermediate: bool | None = None, intersect_ibp: bool = True) -> Bounds:
    """Lower and upper bounds of the model's outputs over a perturbation region around each input.

    Args:
        model: a torch module in eval mode (see the docs for the supported layers).
        x: inputs (N, ...); the bounds are returned on its device and in its dtype.
        eps: radius (a number, or a tensor (N,) with one radius per input); >= 0.
        norm: ``float("inf")`` (the default) or ``2``.
        method: ``"ibp"``, ``"crown"``, ``"crown-ibp"`` or ``"auto_lirpa:<METHOD>"``.
        domain: optional box ``(low, high)`` the inputs live in (e.g. ``(0, 1)`` for pixels); the
            region is the ball intersected with it. ``x`` must lie inside it.
        sound: rigorous bounds under floating-point rounding: they contain the exact real output of the
            network whose parameters are the stored floats (each layer evaluated in exact real
            arithmetic) for every real input in the region (the real ball of radius ``eps`` around the
            float ``x``, intersected with ``domain``), for float32 and float64 inputs alike. Computed in
            float64 with an a-priori bound on the rounding error of every product and sum (Higham,
            2002, ch. 3), outward-rounded relaxations and concretisation, then rounded outward to
            x's dtype. Sigmoid/tanh also assume torch's float64 transcendental functions are accurate
            to 2**-40. Not with auto_LiRPA methods or alpha-CROWN. See ``docs/certify/sound.md``.
        spec: optional linear specification ``C`` of shape (S, K) or (N, S, K); then the bounds are
            of ``C @ f(x')`` (shape (N, S)), with ``C`` folded into the last linear layer.
        compare_crown_with_ibp: with CROWN/CROWN-IBP, intersect every CROWN bound (intermediate and
            final) with the IBP bound from the bounds known so far, as auto_LiRPA's bound option of
            that name does: sound and never looser than either (IBP-trained networks can have tighter
            IBP than CROWN bounds). Off by default, as in auto_LiRPA.
        intersect_ibp: with ``"crown"``, ``"crown-ibp"`` and ``"alpha-crown"``, intersect the final bounds
            with ``method="ibp"``'s bounds of the same outputs (or of the same ``spec``; in ``sound=True``
            mode with the rigorous IBP bounds): element-wise the larger lower and the smaller upper bound.
            Both are sound, so the result is, and it is never looser than IBP's, output by output
            (guaranteed, not only typical: CROWN's linear relaxations of max pooling or LayerNorm, and
            CROWN-IBP's on any network, can be looser than interval arithmetic on some outputs). CROWN and
            alpha-CROWN: one more IBP pass (a few forward passes; bit for bit ``method="ibp"``'s bounds).
            CROWN-IBP: one interval step from its IBP intermediate bounds (no extra pass; equal to
            ``method="ibp"``'s up to the order of float summation). Intermediate bounds are unchanged, so
            wherever CROWN's bound is already the tighter (as on the ReLU networks of the benchmarks) the
            result is CROWN's, equal to auto_LiRPA's. ``False``: the methods' raw bounds (Zhang et al. 2018, 2020), as auto_LiRPA
            returns them. Default True; no effect with ``"ibp"`` or ``"auto_lirpa:<METHOD>"``.
        iterations: alpha-CROWN's Adam steps (default 20, as auto_LiRPA's); only with
            ``method="alpha-crown"``. Every iterate is a sound bound and the best per output is
            returned (never looser than CROWN).
        lr: alpha-CROWN's learning rate (default 0.5, as auto_LiRPA's); only with ``method="alpha-crown"``.
        alpha_intermediate: alpha-CROWN also optimises the slopes used for every intermediate
            (pre-activation) bound, as auto_LiRPA's alpha-CROWN does. It runs after the final-slopes
            optimisation, warm-started from it, for another ``iterations`` steps and keeps the best bound,
            so it is never looser; it costs about one CROWN pass per step. Default (None): off here and in
            :func:`margin_bounds`; on in :func:`verify`, :func:`certified_radius` and
            :func:`verified_accuracy`, where it runs only for the inputs the final-slopes optimisation
            leaves unverified. Only with ``method="alpha-crown"``.
        threat: the region as one :class:`certkit.threat.LpBall` (norm, radius and domain), instead of
            ``eps``, ``norm`` and ``domain`` (exactly one of the two spellings; an LpBall passed as
            ``eps`` counts as ``threat``). The same holds for :func:`margin_bounds`, :func:`verify`,
            :func:`certified_radius` and :func:`verified_accuracy`.

    Returns:
        :class:`Bounds` with ``lower`` and ``upper`` of shape (N, K) (or (N, S) with ``spec``).
    """
    eps, norm, domain = _threat(threat, eps, norm, domain)
    model, x, p, m, dom = _check_common(model, x, norm, method, domain)
    e = _check_eps(eps, x)
    if spec is not None:
        if not isinstance(spec, Tensor) or spec.dim() not in (2, 3):
            raise ValueError("Expected argument `spec` to be a tensor of shape (S, K) or (N, S, K)")
        spec = spec.to(device=x.device)
        if spec.dim() == 2:
            spec = spec.unsqueeze(0).expand(x.shape[0], *spec.shape)
        elif spec.shape[0] != x.shape[0]:
            raise ValueError(f"Expected argument `spec` to have batch size {x.shape[0]}, got {spec.shape[0]}")
    lo, hi = _compute(model, x, e, spec, norm=p, method=m, domain=dom, sound=sound,
                      compare_ibp=_check_flag(compare_crown_with_ibp, "compare_crown_with_ibp"),
                      alpha=_check_alpha(m, iterations, lr, alpha_intermediate),
                      intersect_ibp=_check_flag(intersect_ibp, "intersect_ibp"))
    return Bounds(lo.to(x.dtype), hi.to(x.dtype))


def margin_bounds(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor | LpBall | None = None, *,
                  norm: float | str | None = None, method: str = "crown",
                  domain: tuple[float, float] | None = None, sound: bool = False,
                  compare_crown_with_ibp: bool = False, iterations: int | None = None,
                  lr: float | None = None, threat: LpBall | None = None,
                  alpha_intermediate: bool | None = None, intersect_ibp: bool = True) -> Bounds:
    """Bounds on the margins ``f_y(x') - f_j(x')`` for every class j, shape (N, K).

    The column ``j = y`` is exactly 0 (in both bounds). The specification matrix (rows
    ``e_y - e_j``) is folded into the model's last linear layer, which is much tighter than
    subtracting output bounds. The input is certified iff every other column's lower bound is > 0
    (see :func:`verify`). ``iterations``/``lr``/``alpha_intermediate``: see :func:`bounds` (alpha-CROWN
    optimises every margin with its own slopes, no early stop); ``threat``, ``intersect_ibp``: see
    :func:`bounds` (the IBP bounds are those of the same margins, the specification folded in the same way).
    """
    eps, norm, domain = _threat(threat, eps, norm, domain)
    model, x, p, m, dom = _check_common(model, x, norm, method, domain)
    e = _check_eps(eps, x)
    k = _num_outputs(model, x)
    y = _check_y(y, x.shape[0], k).to(x.device)
    spec = margin_spec(y, k, x.dtype)
    at_y = torch.nn.functional.one_hot(y, k).bool()
    lo, hi = _compute(model, x, e, spec, norm=p, method=m, domain=dom, sound=sound,
                      compare_ibp=_check_flag(compare_crown_with_ibp, "compare_crown_with_ibp"),
                      alpha=_check_alpha(m, iterations, lr, alpha_intermediate), skip=at_y,
                      intersect_ibp=_check_flag(intersect_ibp, "intersect_ibp"))
    lo, hi = lo.to(x.dtype), hi.to(x.dtype)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return Bounds(torch.where(at_y, zero, lo), torch.where(at_y, zero, hi))


def _margin_lower_bounds(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, method: str,
                         domain: tuple[float, float] | None) -> Tensor:
    """``margin_bounds(model, x, y, eps, method=method, domain=domain).lower`` (L-inf) without the upper
    bounds' backward pass: the loss of certified training (``certify.training``), differentiable."""
    model, x, p, m, dom = _check_common(model, x, math.inf, method, domain)
    e = _check_eps(eps, x)
    k = _num_outputs(model, x)
    y = _check_y(y, x.shape[0], k).to(x.device)
    at_y = torch.nn.functional.one_hot(y, k).bool()
    lo, _ = _compute(model, x, e, margin_spec(y, k, x.dtype), norm=p, method=m, domain=dom, sound=False,
                     need_upper=False, skip=at_y)
    return torch.where(at_y, torch.zeros((), dtype=x.dtype, device=x.device), lo.to(x.dtype))


def _verified(model: nn.Module, x: Tensor, y: Tensor, e: Tensor, k: int, *, norm: float, method: str,
              domain: tuple[float, float] | None, sound: bool, compare_ibp: bool = False,
              alpha: tuple[int, float, bool | None] = (20, 0.5, None), intersect_ibp: bool = True) -> Tensor:
    spec = margin_spec(y, k, x.dtype)
    at_y = torch.nn.functional.one_hot(y, k).bool()
    lo, _ = _compute(model, x, e, spec, norm=norm, method=method, domain=domain, sound=sound,
                     need_upper=False, compare_ibp=compare_ibp, alpha=alpha, skip=at_y, early_stop=True,
                     intersect_ibp=intersect_ibp)
    return ((lo > 0) | at_y).all(dim=1)


def verify(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor | LpBall | None = None, *,
           norm: float | str | None = None, method: str = "crown", domain: tuple[float, float] | None = None,
           sound: bool = False, compare_crown_with_ibp: bool = False, iterations: int | None = None,
           lr: float | None = None, threat: LpBall | None = None, alpha_intermediate: bool | None = None,
           intersect_ibp: bool = True) -> Tensor:
    """Boolean (N,): True where every margin lower bound ``f_y - f_j`` (j != y) is > 0 over the region.

    With ``method="alpha-crown"`` (``iterations``/``lr``/``alpha_intermediate``: see :func:`bounds`) a margin's slopes stop
    being optimised once its bound is > 0 (early stop). ``threat``, ``intersect_ibp``: see :func:`bounds`
    (with the default ``intersect_ibp=True`` an input IBP verifies is verified)."""
    eps, norm, domain = _threat(threat, eps, norm, domain)
    model, x, p, m, dom = _check_common(model, x, norm, method, domain)
    e = _check_eps(eps, x)
    k = _num_outputs(model, x)
    y = _check_y(y, x.shape[0], k).to(x.device)
    with torch.no_grad():
        return _verified(model, x, y, e, k, norm=p, method=m, domain=dom, sound=sound,
                         compare_ibp=_check_flag(compare_crown_with_ibp, "compare_crown_with_ibp"),
                         alpha=_check_alpha(m, iterations, lr, alpha_intermediate),
                         intersect_ibp=_check_flag(intersect_ibp, "intersect_ibp"))


def certified_radius(model: nn.Module, x: Tensor, y: Tensor, *, norm: float | str | None = None,
                     method: str = "crown", domain: tuple[float, float] | None = None,
                     max_eps: float | None = None, tol: float = 1e-3, sound: bool = False,
                     compare_crown_with_ibp: bool = False, iterations: int | None = None,
                     lr: float | None = None, threat: LpBall | None = None,
                     alpha_intermediate: bool | None = None, intersect_ibp: bool = True) -> Tensor:
    """Largest radius (up to ``tol``) at which each input is verified, by bisection on eps.

    The bisection runs on the whole batch at once (one bound computation per step, with a
    per-input eps). Returns a tensor (N,) in x's dtype: ``max_eps`` if verified at ``max_eps``,
    0 if the input is misclassified (not verified even at eps = 0), otherwise a radius ``r``
    with ``verify(..., eps=r)`` true and ``verify(..., eps=r + tol)`` false (up to the
    non-monotonicity of the relaxation in eps, which bisection assumes).

    ``max_eps`` defaults to 1.0. With ``threat=LpBall(norm, eps, domain)`` (instead of ``norm``,
    ``domain`` and ``max_eps``) the search runs in that norm and domain up to the ball's radius.
    ``iterations``/``lr``/``alpha_intermediate``/``intersect_ibp``: see :func:`bounds`.
    """
    if threat is not None:
        if max_eps is not None:
            raise ValueError("Expected either argument `threat` or `max_eps` (the threat's eps is the largest "
                             "radius searched), but got both")
        _, norm, domain = threat_arguments(threat, None, norm, domain)
        max_eps = threat.eps
    norm = math.inf if norm is None else norm
    model, x, p, m, dom = _check_common(model, x, norm, method, domain)
    max_eps = 1.0 if max_eps is None else max_eps
    max_eps = check_positive(max_eps, "max_eps")
    tol = check_positive(tol, "tol")
    k = _num_outputs(model, x)
    y = _check_y(y, x.shape[0], k).to(x.device)
    n = x.shape[0]
    kw: dict[str, Any] = {"norm": p, "method": m, "domain": dom, "sound": sound,
                          "compare_ibp": _check_flag(compare_crown_with_ibp, "compare_crown_with_ibp"),
                          "alpha": _check_alpha(m, iterations, lr, alpha_intermediate),
                          "intersect_ibp": _check_flag(intersect_ibp, "intersect_ibp")}
    with torch.no_grad():
        zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
        ok0 = _verified(model, x, y, zeros, k, **kw)
        hi_ok = _verified(model, x, y, zeros + max_eps, k, **kw)
        lo = torch.zeros(n, dtype=torch.float64, device=x.device)
        hi = torch.full((n,), max_eps, dtype=torch.float64, device=x.device)
        active = ok0 & ~hi_ok
        lo[hi_ok] = max_eps
        while bool(active.any()) and float((hi - lo)[active].max()) > tol:
            idx = active.nonzero().squeeze(1)
            mid = (lo[idx] + hi[idx]) / 2
            ok = _verified(model, x[idx], y[idx], mid.to(x.dtype), k, **kw)
            lo[idx] = torch.where(ok, mid, lo[idx])
            hi[idx] = torch.where(ok, hi[idx], mid)
            active = active & ((hi - lo) > tol)
        return lo.to(x.dtype)


def verified_accuracy(model: nn.Module, inputs: Tensor, labels: Tensor, eps: float | LpBall | None = None, *,
                      norm: float | str | None = None, method: str = "crown",
                      domain: tuple[float, float] | None = None, batch_size: int = 256,
                      progress: bool = True, sound: bool = False, compare_crown_with_ibp: bool = False,
                      iterations: int | None = None, lr: float | None = None,
                      threat: LpBall | None = None, alpha_intermediate: bool | None = None,
                      intersect_ibp: bool = True) -> float:
    """Fraction of ``(inputs, labels)`` verified at radius ``eps`` (a tqdm bar shows progress;
    ``iterations``/``lr``/``alpha_intermediate``: alpha-CROWN's, ``threat``, ``intersect_ibp``: see :func:`bounds`)."""
    from tqdm.auto import tqdm

    eps, norm, domain = _threat(threat, eps, norm, domain)
    model, x, p, m, dom = _check_common(model, inputs, norm, method, domain, "inputs")
    batch_size = check_positive_int(batch_size, "batch_size")
    cmp = _check_flag(compare_crown_with_ibp, "compare_crown_with_ibp")
    alpha = _check_alpha(m, iterations, lr, alpha_intermediate)
    inter = _check_flag(intersect_ibp, "intersect_ibp")
    n = x.shape[0]
    if n == 0:
        raise ValueError("Expected argument `inputs` to hold at least one input, but it is empty")
    k = _num_outputs(model, x)
    y = _check_y(labels, n, k, "labels").to(x.device)
    _check_eps(eps, x[:1])
    total = 0
    with torch.no_grad():
        for i in tqdm(range(0, n, batch_size), disable=not progress, desc=f"verify {m} eps={eps}", leave=False):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            # a misclassified input cannot be verified (its margin lower bound is <= its margin <= 0)
            correct = model(xb).argmax(1) == yb
            xb, yb = xb[correct], yb[correct]
            if len(yb):
                e = _check_eps(eps, xb)
                total += int(_verified(model, xb, yb, e, k, norm=p, method=m, domain=dom, sound=sound,
                                       compare_ibp=cmp, alpha=alpha, intersect_ibp=inter).sum())
    return total / n
