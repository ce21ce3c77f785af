"""Adapter to auto_LiRPA (>= 0.5): ``method="auto_lirpa:<METHOD>"`` in the certify API.

auto_LiRPA (Xu et al. 2020, https://github.com/Verified-Intelligence/auto_LiRPA) handles
arbitrary computational graphs and optimised bounds (alpha-CROWN). It is not on PyPI in a
current version; install it from GitHub::

    pip install git+https://github.com/Verified-Intelligence/auto_LiRPA

``<METHOD>`` is passed to ``BoundedModule.compute_bounds`` (e.g. ``IBP``, ``CROWN``,
``CROWN-IBP``, ``alpha-CROWN``; case as auto_LiRPA accepts it). The input region is the same as
certify's: an L-inf ball clipped to ``domain`` (passed as ``x_L``/``x_U``), or an L2 ball
(``domain`` is ignored for L2 by auto_LiRPA, so its L2 bounds can be looser than certify's).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BOUND_OPTS", "INSTALL_HINT", "auto_lirpa_available", "auto_lirpa_bounds", "import_auto_lirpa"]

INSTALL_HINT = "pip install git+https://github.com/Verified-Intelligence/auto_LiRPA"

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[Any, Any]] = weakref.WeakKeyDictionary()

#: Extra ``bound_opts`` passed to ``auto_LiRPA.BoundedModule`` (e.g. ``{"sparse_intermediate_bounds": False}``).
BOUND_OPTS: dict[str, Any] = {}


def import_auto_lirpa() -> Any:
    """Import auto_LiRPA or raise an ImportError that says how to install it."""
    try:
        import auto_LiRPA
    except ImportError as e:
        raise ImportError(
            f"method='auto_lirpa:...' needs the auto_LiRPA package (>= 0.5), which could not be imported "
            f"({e}). Install it from GitHub: {INSTALL_HINT}"
        ) from e
    return auto_LiRPA


def auto_lirpa_available() -> bool:
    """Whether auto_LiRPA can be imported."""
    try:
        import_auto_lirpa()
    except ImportError:
        return False
    return True


def _fingerprint(model: nn.Module, x: Tensor, bound_opts: dict[str, Any]) -> tuple:
    opts = tuple(sorted((k, repr(v)) for k, v in bound_opts.items()))
    params = tuple((p.data_ptr(), p._version) for p in model.parameters())
    buffers = tuple((b.data_ptr(), b._version) for b in model.buffers())
    return (tuple(x.shape[1:]), x.dtype, str(x.device), params, buffers, opts)


def _bounded_module(model: nn.Module, x: Tensor, bound_opts: dict[str, Any] | None = None) -> Any:
    al = import_auto_lirpa()
    opts = {**BOUND_OPTS, **(bound_opts or {})}
    key = _fingerprint(model, x, opts)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    dummy = torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
    kw = {"bound_opts": opts} if opts else {}
    # auto_LiRPA's conversion switches modules to training mode and does not switch them back when it
    # fails: restore every module's mode, so that no call changes the user's model.
    modes = [(m, m.training) for m in model.modules()]
    try:
        bm = al.BoundedModule(model, dummy, device=x.device, verbose=0, **kw)
    finally:
        for m, mode in modes:
            m.training = mode
    # the conversion writes the model's parameters in place (same values, new tensor versions): the key is
    # taken after it, or the next call would never find this entry and convert again
    _CACHE[model] = (_fingerprint(model, x, opts), bm)
    return bm


def auto_lirpa_bounds(model: nn.Module, x: Tensor, eps: Tensor, spec: Tensor | None, *, norm: float,
                      method: str, domain: tuple[float, float] | None,
                      bound_opts: dict[str, Any] | None = None) -> tuple[Tensor, Tensor]:
    """Bounds of ``spec @ model(x')`` by auto_LiRPA, shape (N, S) (or (N, K) without spec); ``bound_opts``
    are added to :data:`BOUND_OPTS` for this call."""
    al = import_auto_lirpa()
    if x.shape[0] == 0:
        k = int(model(torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)).numel())
        s = k if spec is None else spec.shape[1]
        empty = torch.zeros((0, s), dtype=x.dtype, device=x.device)
        return empty, empty.clone()
    bm = _bounded_module(model, x, bound_opts)
    eps = eps.to(x.dtype)
    e = eps.reshape(-1, *([1] * (x.dim() - 1)))
    if norm == math.inf:
        lo, hi = x - e, x + e
        if domain is not None:
            lo, hi = lo.clamp(min=domain[0]), hi.clamp(max=domain[1])
        ptb = al.PerturbationLpNorm(norm=math.inf, eps=e, x_L=lo, x_U=hi)
    else:
        ptb = al.PerturbationLpNorm(norm=2, eps=eps.reshape(-1, 1))
    bx = al.BoundedTensor(x, ptb)
    C = None if spec is None else spec.to(x.dtype)
    m = method
    lower, upper = bm.compute_bounds(x=(bx,), method=m, C=C)
    return lower.detach(), upper.detach()
