"""Randomness of certify.prompts: a ``generator: torch.Generator | None`` argument, never a global RNG.

``None`` means a fresh CPU generator seeded with 0, so every sample (augmentation, RandEC, data
splits, filter initialisation) is reproducible by default and torch's global RNG is untouched. The
old ``seed: int`` arguments still work for one release with a DeprecationWarning, as in
``certify.attacks``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from certkit._validation import check_generator, check_positive_int

__all__ = ["resolve_generator", "sample_indices"]


def resolve_generator(generator: Any, seed: Any, where: str, *, stacklevel: int = 3) -> torch.Generator:
    """The generator to draw from: ``generator``, or one seeded by the deprecated ``seed``, or seed 0."""
    if seed is not None:
        warnings.warn(
            f"Argument `seed` of {where} is deprecated and will be removed in the next release; "
            "pass `generator=torch.Generator().manual_seed(seed)` instead",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        if generator is not None:
            raise ValueError("Expected either argument `generator` or the deprecated `seed`, but got both")
        return torch.Generator().manual_seed(check_positive_int(seed, "seed", minimum=0))
    if generator is None:
        return torch.Generator().manual_seed(0)
    return check_generator(generator)  # type: ignore[return-value]


def sample_indices(n: int, m: int, generator: torch.Generator) -> list[int]:
    """``m`` distinct indices of ``range(n)`` drawn uniformly without replacement, sorted."""
    if m >= n:
        return list(range(n))
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return sorted(perm[:m].tolist())
