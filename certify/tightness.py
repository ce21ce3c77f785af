"""Propagation tightness of interval bound propagation (Mao, Müller, Fischer, Vechev, ICLR 2024).

For a network whose ReLUs are replaced by a fixed linear map (a deep linear network, DLN), the
output is ``f(x) = W_L D_{L-1} W_{L-1} ... D_1 W_1 x + c``. Over the input box ``x0 +- r`` the
optimal (tightest) output box has radius ``|prod W_i| r``; interval bound propagation (IBP)
returns radius ``prod |W_i| r``. Their ratio, the *propagation tightness*

    tightness = (|C W_L D ... W_1| r) / (|C W_L| D |W_{L-1}| ... D |W_1| r)   in (0, 1],

measures how much IBP loses to the linear structure alone (1 = IBP is exact). ``C`` is the margin
specification (rows ``e_y - e_j``, ``j != y``), merged into the last linear layer (elision) as IBP
certifiers do. ``D`` is the identity (``relu_adjust=None``: the DLN of the paper's theory) or the
ReLU activation pattern at the clean input (``relu_adjust="local"``: the network's local
linearisation; the same mask enters numerator and denominator). Batch normalisation (eval mode)
contributes ``gamma / sqrt(var + eps)``, input normalisation ``1 / std``; ``r`` is the input radius after clipping the box to the
data domain.

The network is read through the bound engine's graph (``certify._graph``, the conversion
:func:`certify.bounds` uses) and ``C`` is the engine's margin specification
(:func:`certify.api.margin_spec`), so there is one layer walk and one margin specification in certify.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from certify._grad_mode import outside_inference_mode
from certify._graph import Graph, Node, apply_node, cached_graph
from certify.api import margin_spec
from certkit._validation import check_array, check_eval_mode, check_module, check_positive

__all__ = ["Tightness", "propagation_tightness", "tightness"]

ReluAdjust = Literal["local"] | None
#: graph operations of a chain whose linear part tightness is defined on (``affine``: batch norm, input
#: normalisation; ``reshape``/``permute``/``slice``: flatten and friends)
_LINEAR_OPS = ("linear", "conv", "affine", "reshape", "permute", "slice")


@dataclass(frozen=True)
class Tightness:
    """Propagation tightness of a batch.

    Attributes:
        ratio: ``(N, M)`` per-sample, per-output tightness ``numerator / denominator`` in (0, 1]
            (``M = K - 1`` margins when labels are given, else the ``K`` logits).
        numerator: ``(N, M)`` radius of the optimal box of the linearised network, ``|prod W_i| r``.
        denominator: ``(N, M)`` radius of the IBP box of the linearised network, ``prod |W_i| r``.
        value: the batch mean of ``ratio`` (the number reported by Mao et al.).
    """

    ratio: Tensor
    numerator: Tensor
    denominator: Tensor
    value: float


def _chain(g: Graph) -> list[Node]:
    """The graph's nodes after the input, checked to be a chain of linear operations and ReLUs."""
    nodes = g.nodes[1 : g.output + 1]
    for i, n in enumerate(nodes, start=1):
        if n.op not in (*_LINEAR_OPS, "relu") or n.inputs != (i - 1,):
            raise TypeError(
                "Expected argument `model` to be a chain of Linear, Conv2d, ReLU, Flatten, BatchNorm1d/2d, "
                f"Normalize, Identity or Dropout layers, but got a {n.op.capitalize()} at {n.name!r}"
                + ("" if n.inputs == (i - 1,) else " (not a chain: a branch or a skip connection)")
            )
    return nodes


def _relu_masks(nodes: list[Node], x: Tensor) -> list[Tensor]:
    """Activation pattern at the clean input: 1 where the pre-activation is >= 0, as in Mao et al."""
    masks = []
    h = x
    with torch.no_grad():
        for n in nodes:
            if n.op == "relu":
                masks.append((h >= 0).to(torch.float64))
            h = apply_node(n, [h])
    return masks


def _linear_part(nodes: list[Node], v: Tensor, masks: list[Tensor] | None, spec: Tensor | None, *,
                 absolute: bool) -> Tensor:
    """Apply the bias-free linear map ``C W_L D ... W_1`` (or ``|C W_L| D ... |W_1|``) to ``v`` in float64.

    ``C`` is merged into a last linear layer (elision), else applied after it."""

    def w(t: Tensor) -> Tensor:
        t = t.detach().to(torch.float64)
        return t.abs() if absolute else t

    elide = spec is not None and nodes[-1].op == "linear"
    relu = 0
    for i, n in enumerate(nodes):
        if n.op == "linear" and elide and i == len(nodes) - 1:
            assert spec is not None and n.weight is not None
            v = torch.einsum("nmh,nh->nm", w(spec @ n.weight.detach().to(torch.float64)), v)
        elif n.op == "relu":
            if masks is not None:
                v = v * masks[relu]
            relu += 1
        elif n.op in ("linear", "conv", "affine"):
            bias_free = replace(n, weight=None if n.weight is None else w(n.weight), bias=None)
            v = apply_node(bias_free, [v])
        else:  # reshape, permute, slice
            v = apply_node(n, [v])
    if spec is not None and not elide:
        v = torch.einsum("nmk,nk->nm", w(spec), v)
    return v


@outside_inference_mode
def propagation_tightness(
    model: nn.Module,
    x: Tensor,
    eps: float,
    *,
    labels: Tensor | None = None,
    relu_adjust: ReluAdjust = "local",
    domain: tuple[float, float] | None = (0.0, 1.0),
) -> Tightness:
    """Propagation tightness of IBP on ``model`` around each input (Mao et al., ICLR 2024, Def. 3.1).

    Computes ``|prod W_i| r / prod |W_i| r`` per sample and output, where ``r`` is the radius of
    the L-inf box ``x +- eps`` clipped to ``domain``. The numerator is the exact radius of the
    linearised network's output box (obtained row by row from the Jacobian, the paper's sign
    trick), the denominator is what IBP computes for the same linear network, so every ratio lies
    in (0, 1] (triangle inequality); a ratio of 1 means IBP loses nothing.

    Args:
        model: a module in eval mode that the engine converts (as for :func:`certify.bounds`) to a
            chain of Linear, Conv2d, ReLU, Flatten, BatchNorm1d/2d, :class:`certify.Normalize`
            (contributes ``1 / std``), Identity or Dropout layers (``nn.Sequential`` or not).
        x: ``(N, ...)`` clean inputs.
        eps: L-inf radius > 0.
        labels: ``(N,)`` true classes; when given, outputs are the ``K - 1`` margins
            ``z_y - z_j`` with the margin matrix merged into the last linear layer, else the
            ``K`` logits.
        relu_adjust: ``"local"``: ReLUs whose clean pre-activation is negative are zeroed (same
            mask in numerator and denominator); ``None``: ReLUs act as the identity (DLN).
        domain: ``(low, high)`` data range the box is clipped to, or None for no clipping.

    Returns:
        A :class:`Tightness` with ``(N, M)`` ratios, numerators, denominators and the batch mean.
    """
    check_module(model)
    eps = check_positive(eps, "eps")
    if not isinstance(x, Tensor):
        raise TypeError(f"Expected argument `x` to be a torch tensor, but got {type(x).__name__}")
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"Expected argument `x` to have shape (N, ...) with N >= 1, but got {tuple(x.shape)}")
    check_array(x, "x", tensor=True)
    if relu_adjust not in ("local", None):
        raise ValueError(f"Expected argument `relu_adjust` to be 'local' or None, but got {relu_adjust!r}")
    if domain is not None and not (len(domain) == 2 and domain[0] < domain[1]):
        raise ValueError(f"Expected argument `domain` to be a pair (low, high) with low < high, but got {domain!r}")
    check_eval_mode(model)
    x64 = x.detach().to(torch.float64)
    nodes = _chain(cached_graph(model, x64, torch.float64))

    if domain is None:
        r = torch.full_like(x64, eps)
    else:
        r = ((x64 + eps).clamp(max=domain[1]) - (x64 - eps).clamp(min=domain[0])).clamp(min=0) / 2
    masks = _relu_masks(nodes, x64) if relu_adjust == "local" else None
    spec = None
    if labels is not None:
        with torch.no_grad():
            num_classes = model(x[:1]).shape[-1]
        if not isinstance(labels, Tensor) or labels.shape != (len(x),) or labels.dtype.is_floating_point:
            raise ValueError(
                f"Expected argument `labels` to be an integer tensor of shape ({len(x)},), but got {labels!r}"
            )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"Expected argument `labels` to hold classes in [0, {num_classes - 1}], but got {labels}")
        labels = labels.to(x.device)
        others = torch.arange(num_classes, device=x.device)[None] != labels[:, None]
        # rows e_y - e_j of the engine's margin specification, without the zero row j = y
        spec = margin_spec(labels, num_classes, torch.float64)[others].view(len(x), num_classes - 1, num_classes)

    with torch.enable_grad():
        v = torch.zeros_like(x64, requires_grad=True)
        out = _linear_part(nodes, v, masks, spec, absolute=False)
        rows = []
        for j in range(out.shape[1]):
            (jac_row,) = torch.autograd.grad(out[:, j].sum(), v, retain_graph=j < out.shape[1] - 1)
            rows.append((jac_row.abs() * r).flatten(1).sum(1))
    numerator = torch.stack(rows, dim=1)
    with torch.no_grad():
        denominator = _linear_part(nodes, r, masks, spec, absolute=True)
    # The reference clamps numerator and denominator at 1e-8 before dividing; for deep networks
    # or tiny eps both fall below 1e-8 and the clamp distorts the ratio. The ratio is invariant to
    # the scale of r, so we divide exactly (in float64) and define 0 / 0 = 1 (an output that does
    # not depend on the input is bounded exactly by IBP).
    ratio = torch.where(denominator > 0, numerator / denominator.clamp(min=torch.finfo(torch.float64).tiny), 1.0)
    return Tightness(ratio=ratio, numerator=numerator, denominator=denominator, value=float(ratio.mean()))


def tightness(
    model: nn.Module,
    x: Tensor,
    eps: float,
    *,
    labels: Tensor | None = None,
    relu_adjust: ReluAdjust = "local",
    domain: tuple[float, float] | None = (0.0, 1.0),
) -> float:
    """Batch-mean propagation tightness in (0, 1] (Mao et al., ICLR 2024); see :func:`propagation_tightness`."""
    return propagation_tightness(model, x, eps, labels=labels, relu_adjust=relu_adjust, domain=domain).value
