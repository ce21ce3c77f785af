"""The node type of certify's graph IR and the refusal error, shared by the graph builders."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["AUTO_LIRPA_HINT", "Node", "UnsupportedLayerError"]

AUTO_LIRPA_HINT = (
    "see docs/certify/layers.md for the supported layers; rewrite the model with supported layers, or "
    "file an issue naming the layer (delegating to auto_LiRPA with method='auto_lirpa:<METHOD>' works only "
    "where auto_LiRPA can be installed: it does not install with torch 2.x)"
)


class UnsupportedLayerError(NotImplementedError):
    """Raised when a model holds a layer or operation the built-in bound propagation cannot handle."""


@dataclass
class Node:
    """One operation of the IR; ``shape`` is the per-sample output shape (no batch dimension)."""

    op: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    name: str
    weight: Tensor | None = None
    bias: Tensor | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    #: tensors derived from the weights (|W|, a dense conv matrix), valid for this node's life
    derived: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def derive(self, key: str, make: Callable[[], Tensor]) -> Tensor:
        """``make()``, cached on the node unless autograd must see it (weights that require grad)."""
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (self.weight, self.bias)):
            return make()
        t = self.derived.get(key)
        if t is None:
            t = self.derived[key] = make()
        return t


def _unsupported(what: str, where: str) -> UnsupportedLayerError:
    loc = f" (at '{where}')" if where else ""
    return UnsupportedLayerError(
        f"Layer or operation {what}{loc} is not supported by certify's built-in bound propagation "
        f"(supported: Linear, Conv2d, ReLU, Sigmoid, Tanh, Flatten/reshape, BatchNorm1d/2d in eval mode, "
        f"AvgPool2d, AdaptiveAvgPool2d, MaxPool1d/2d, AdaptiveMaxPool1d/2d, padding layers and F.pad, "
        f"LeakyReLU, PReLU, ELU, GELU, SiLU, Softplus, Softmax, LogSoftmax, LayerNorm, Conv1d, ConvTranspose2d, "
        f"Upsample, MultiheadAttention, TransformerEncoder(Layer), products and matmul of activations, "
        f"certify.Normalize, residual add, cat/stack, slicing, permute/transpose, Identity, "
        f"Dropout in eval mode); {AUTO_LIRPA_HINT}"
    )
