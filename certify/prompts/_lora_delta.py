"""Apply a LoRA fine-tuning delta of the MiniLM encoder (written by ``python -m certify.prompts._minilm_lora``).

Kept apart from the training script so that :mod:`certify.prompts.filters` loads a delta without importing the
script (which imports the filters: no import cycle).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TARGETS", "apply_delta"]

#: the linear maps of each BERT layer that get an adapter
TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")


def _get(module: nn.Module, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    *path, last = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    setattr(module, last, value)


def apply_delta(model: Any, delta: dict[str, np.ndarray]) -> None:
    """Add the LoRA products ``B @ A`` (float16 factors, computed in float32) to the encoder's weights in place and
    store the delta's ``key`` so that applying it twice is refused."""
    done = getattr(model, "_certkit_delta", None)
    if done is not None:
        raise RuntimeError("the MiniLM encoder already carries a fine-tuning delta")
    with torch.no_grad():
        for i, layer in enumerate(model.encoder.layer):
            for name in TARGETS:
                a = torch.as_tensor(np.asarray(delta[f"{i}.{name}.a"], dtype=np.float32))
                b = torch.as_tensor(np.asarray(delta[f"{i}.{name}.b"], dtype=np.float32))
                _get(layer, name).weight.add_(b @ a)
    model._certkit_delta = True
