"""Running autograd-based routines (alpha-CROWN, PGD, branch and bound) under ``torch.inference_mode()``.

Inference mode turns autograd off in a way ``torch.enable_grad()`` cannot undo, and its tensors cannot be saved
for a backward pass: without this, a caller's ``with torch.inference_mode():`` made those routines fail deep
inside with torch's "element 0 of tensors does not require grad". They run instead with inference mode off, on
normal copies of their tensor arguments (the converted graph is then built outside inference mode too; its cache
is keyed by the mode).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def _normal(value: Any) -> Any:
    """``value``, or a normal (non-inference) copy of it if it is an inference tensor."""
    if isinstance(value, torch.Tensor) and value.is_inference():
        return value.clone()
    return value


def outside_inference_mode(fn: F) -> F:
    """``fn`` run with ``torch.inference_mode`` off when it is on, its inference-tensor arguments copied."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        with torch.inference_mode(False):
            return fn(*[_normal(a) for a in args], **{k: _normal(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
