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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from certify._graph import Normalize
from certkit._validation import check_eval_mode, check_finite, check_positive

__all__ = ["Tightness", "propagation_tightness", "tightness"]

ReluAdjust = Literal["local"] | None
_PASS_THROUGH = (nn.Identity, nn.Dropout)
_SUPPORTED = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d, Normalize, *_PASS_THROUGH)


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


def _layers(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in _layers(child)]
    return [model]


def _check_supported(layers: Sequence[nn.Module]) -> None:
    for layer in layers:
        if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            raise ValueError(
                f"Expected argument `model` to use zero-padded convolutions, but got padding_mode="
                f"{layer.padding_mode!r}"
            )
        if not isinstance(layer, _SUPPORTED):
            raise TypeError(
                "Expected argument `model` to be an nn.Sequential of Linear, Conv2d, ReLU, Flatten, "
                f"BatchNorm1d/2d, Normalize, Identity or Dropout layers, but got a {type(layer).__name__}"
            )


def _margin_spec(labels: Tensor, num_classes: int) -> Tensor:
    """``(N, K-1, K)`` margin specification with rows ``e_y - e_j`` for ``j != y``."""
    eye = torch.eye(num_classes, dtype=torch.float64, device=labels.device)
    others = torch.arange(num_classes, device=labels.device).expand(len(labels), num_classes)
    others = others[others != labels[:, None]].view(len(labels), num_classes - 1)
    return eye[labels][:, None, :] - eye[others]


def _relu_masks(layers: Sequence[nn.Module], x: Tensor) -> list[Tensor]:
    """Activation pattern at the clean input: 1 where the pre-activation is >= 0, as in Mao et al."""
    masks = []
    h = x
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.ReLU):
                masks.append((h >= 0).to(torch.float64))
            h = layer(h)
    return masks


def _elided_index(layers: Sequence[nn.Module]) -> int | None:
    """Index of the last Linear layer if only pass-through layers follow it (it absorbs ``C``)."""
    for i in range(len(layers) - 1, -1, -1):
        if isinstance(layers[i], nn.Linear):
            return i
        if not isinstance(layers[i], _PASS_THROUGH):
            return None
    return None


def _linear_part(
    layers: Sequence[nn.Module], v: Tensor, masks: list[Tensor] | None, spec: Tensor | None, *, absolute: bool
) -> Tensor:
    """Apply the bias-free linear map ``C W_L D ... W_1`` (or ``|C W_L| D ... |W_1|``) to ``v`` in float64."""

    def w(t: Tensor) -> Tensor:
        t = t.detach().to(torch.float64)
        return t.abs() if absolute else t

    elide = _elided_index(layers) if spec is not None else None
    relu = 0
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            if i == elide:
                assert spec is not None
                v = torch.einsum("nmh,nh->nm", w(spec @ layer.weight.detach().to(torch.float64)), v)
            else:
                v = F.linear(v, w(layer.weight))
        elif isinstance(layer, nn.Conv2d):
            v = F.conv2d(v, w(layer.weight), None, layer.stride, layer.padding, layer.dilation, layer.groups)
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            assert layer.running_var is not None
            scale = 1.0 / torch.sqrt(layer.running_var.to(torch.float64) + layer.eps)
            if layer.weight is not None:
                scale = scale * layer.weight.detach().to(torch.float64)
            v = v * w(scale).view(1, -1, *([1] * (v.dim() - 2)))
        elif isinstance(layer, Normalize):
            scale = 1.0 / layer.std.to(torch.float64)  # positive: the same in both products
            v = v * (scale.reshape(()) if scale.numel() == 1 else scale.view(1, -1, *([1] * (v.dim() - 2))))
        elif isinstance(layer, nn.ReLU):
            if masks is not None:
                v = v * masks[relu]
            relu += 1
        elif isinstance(layer, nn.Flatten):
            v = layer(v)
    if spec is not None and elide is None:
        v = torch.einsum("nmk,nk->nm", w(spec), v)
    return v


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
        model: ``nn.Sequential`` (nested allowed) of Linear, Conv2d, ReLU, Flatten, BatchNorm1d/2d
            (eval mode), :class:`certify.Normalize` (contributes ``1 / std``), Identity or Dropout.
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
    eps = check_positive(eps, "eps")
    if not isinstance(x, Tensor):
        raise TypeError(f"Expected argument `x` to be a torch tensor, but got {type(x).__name__}")
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"Expected argument `x` to have shape (N, ...) with N >= 1, but got {tuple(x.shape)}")
    check_finite(x, "x")
    if relu_adjust not in ("local", None):
        raise ValueError(f"Expected argument `relu_adjust` to be 'local' or None, but got {relu_adjust!r}")
    if domain is not None and not (len(domain) == 2 and domain[0] < domain[1]):
        raise ValueError(f"Expected argument `domain` to be a pair (low, high) with low < high, but got {domain!r}")
    check_eval_mode(model)
    layers = _layers(model)
    _check_supported(layers)

    x64 = x.detach().to(torch.float64)
    if domain is None:
        r = torch.full_like(x64, eps)
    else:
        r = ((x64 + eps).clamp(max=domain[1]) - (x64 - eps).clamp(min=domain[0])).clamp(min=0) / 2
    masks = _relu_masks(layers, x) if relu_adjust == "local" else None
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
        spec = _margin_spec(labels.to(x.device), num_classes)

    with torch.enable_grad():
        v = torch.zeros_like(x64, requires_grad=True)
        out = _linear_part(layers, v, masks, spec, absolute=False)
        rows = []
        for j in range(out.shape[1]):
            (jac_row,) = torch.autograd.grad(out[:, j].sum(), v, retain_graph=j < out.shape[1] - 1)
            rows.append((jac_row.abs() * r).flatten(1).sum(1))
    numerator = torch.stack(rows, dim=1)
    with torch.no_grad():
        denominator = _linear_part(layers, r, masks, spec, absolute=True)
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
