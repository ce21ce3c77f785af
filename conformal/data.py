"""Model and DataLoader conveniences beside the probability API: the calibrators never see a model.

``collect_probs(model, data)`` runs an eval-mode classifier over a tensor of inputs, an ``(inputs, labels)``
pair, a ``torch.utils.data.Dataset`` of ``(x, y)`` items or any iterable of ``(x, y)`` batches (a
``DataLoader``), and returns the (N, K) probabilities with the (N,) labels, ready for ``calibrate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from certkit._validation import check_bool, check_eval_mode, check_positive, check_positive_int

__all__ = ["ModelProbs", "collect_probs"]


@dataclass(frozen=True)
class ModelProbs:
    """Probabilities of a model on a data set, with the labels the data carried.

    Attributes:
        probs: (N, K) class probabilities, on the model's device.
        labels: (N,) int64 labels on the same device, or None when the data had no labels.
    """

    probs: torch.Tensor
    labels: torch.Tensor | None


def _batches(data: Any, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size], None
        return
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"Expected argument `data` to be (inputs, labels) of one length, but got {len(x)} "
                             f"inputs and {len(y)} labels")
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        n = len(data)  # type: ignore[arg-type]
        for i in range(0, n, batch_size):
            items = [data[j] for j in range(i, min(n, i + batch_size))]
            yield (torch.stack([torch.as_tensor(it[0]) for it in items]),
                   torch.as_tensor([int(it[1]) for it in items]))
        return
    if not isinstance(data, Iterable):
        raise TypeError("Expected argument `data` to be a tensor of inputs, an (inputs, labels) pair of tensors, a "
                        f"Dataset or an iterable of (x, y) batches (a DataLoader), but got {type(data).__name__}")
    for batch in data:
        if isinstance(batch, torch.Tensor):
            yield batch, None
        elif isinstance(batch, list | tuple) and len(batch) >= 2 and isinstance(batch[0], torch.Tensor):
            yield batch[0], torch.as_tensor(batch[1])
        else:
            raise TypeError("Expected argument `data` to yield tensors or (x, y) batches, but got a batch of type "
                            f"{type(batch).__name__}")


def collect_probs(model: nn.Module, data: Any, *, from_logits: bool = True, batch_size: int = 1024,
                  temperature: float = 1.0) -> ModelProbs:
    """(N, K) probabilities of an eval-mode classifier on ``data``, and the (N,) labels it carried.

    Args:
        model: an eval-mode ``nn.Module`` mapping a batch of inputs to (B, K) outputs.
        data: a tensor of inputs (no labels), an ``(inputs, labels)`` pair of tensors, a ``Dataset`` of
            ``(x, y)`` items, or an iterable of ``(x, y)`` batches such as a ``DataLoader``.
        from_logits: the model outputs logits (softmax of ``outputs / temperature`` is taken); False: it
            outputs probabilities, used as they are.
        batch_size: batch size for tensors and datasets (a DataLoader keeps its own).
        temperature: softmax temperature (> 0), with ``from_logits``.

    Returns:
        :class:`ModelProbs` with ``probs`` (N, K) and ``labels`` (N,) (None for a tensor of inputs), on the
        model's device. Neither the model nor torch's global RNG is changed (inference mode).

    Example:
        >>> out = collect_probs(model, DataLoader(cal_set, batch_size=256))  # doctest: +SKIP
        >>> cp = SplitConformal().calibrate(out.probs, out.labels)  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}")
    check_eval_mode(model)
    from_logits = check_bool(from_logits, "from_logits")
    batch_size = check_positive_int(batch_size, "batch_size")
    temperature = check_positive(temperature, "temperature")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else None
    probs, labels, unlabelled = [], [], False
    # a DataLoader draws its base seed from torch's global RNG when iterated: fork it so the caller's stream is kept
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        for x, y in _batches(data, batch_size):
            if not x.is_floating_point():
                raise TypeError(f"Expected argument `data` to hold floating-point inputs, but got dtype {x.dtype}")
            out = model(x.to(device) if device is not None else x)
            probs.append(torch.softmax(out / temperature, dim=-1) if from_logits else out)
            if y is None:
                unlabelled = True
            else:
                labels.append(y.to(out.device).long())
    if not probs:
        raise ValueError("Expected argument `data` to hold at least one input, but it is empty")
    p = torch.cat(probs)
    if not bool(torch.isfinite(p).all()):
        raise ValueError("Expected argument `model` to output finite values on `data`, but it produced NaN or inf")
    if not from_logits and (bool((p < 0).any()) or not torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-3)):
        raise ValueError("Expected argument `model` to output probabilities with from_logits=False (rows >= 0 "
                         "summing to 1), but it did not: pass from_logits=True for logits")
    return ModelProbs(p, None if unlabelled or not labels else torch.cat(labels))
