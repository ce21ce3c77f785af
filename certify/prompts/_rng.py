"""Randomness of certify.prompts: a ``generator: torch.Generator | None`` argument, never a global RNG.

``None`` means a fresh CPU generator seeded with 0, so every sample (augmentation, RandEC, data
splits, filter initialisation) is reproducible by default and torch's global RNG is untouched. The
old ``seed: int`` arguments still work for one release with a DeprecationWarning: the prompts code
resolves ``generator``/``seed`` with :func:`certkit._validation.generator_or_seed`, as every package does.
"""

from __future__ import annotations

import torch

__all__ = ["sample_indices"]


def sample_indices(n: int, m: int, generator: torch.Generator) -> list[int]:
    """``m`` distinct indices of ``range(n)`` drawn uniformly without replacement, sorted."""
    if m >= n:
        return list(range(n))
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return sorted(perm[:m].tolist())
