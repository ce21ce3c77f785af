"""Thin model-wrapping layer: from a torch classifier to the probabilities the calibrators take."""

from __future__ import annotations

import torch
from torch import nn

from certkit._validation import check_array, check_eval_mode, check_positive, check_positive_int

__all__ = ["predict_proba"]


def predict_proba(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 1024,
                  temperature: float = 1.0) -> torch.Tensor:
    """Softmax probabilities (N, K) of an eval-mode classifier, computed in batches.

    Inputs are moved to the model's device; the result is returned on that device.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}")
    check_eval_mode(model)
    check_array(inputs, "inputs", tensor=True)
    check_positive_int(batch_size, "batch_size")
    check_positive(temperature, "temperature")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else inputs.device
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            logits = model(inputs[i : i + batch_size].to(device))
            out.append(torch.softmax(logits / temperature, dim=-1))
    probs = torch.cat(out)
    if not bool(torch.isfinite(probs).all()):
        raise ValueError("Expected argument `model` to output finite logits on `inputs`, but it produced NaN or inf")
    return probs
