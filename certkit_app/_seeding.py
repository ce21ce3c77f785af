"""The one rule for the application layer's ``generator`` arguments (which replaced ``seed: int``)."""

from __future__ import annotations

import torch

from certkit._validation import check_generator, generator_or_seed

__all__ = ["base_seed"]


def base_seed(generator: torch.Generator | None, seed: int | None, *, where: str) -> int:
    """An int seed for the fixed sub-seeds (``base``, ``base + 1``, ...) of a multi-stage evaluation.

    None and None give 0 (the documented numbers); the deprecated ``seed`` gives itself (with a
    ``DeprecationWarning``); a generator gives one draw from it.
    """
    if seed is not None:
        generator_or_seed(generator, seed, where=where, stacklevel=4)
        return int(seed)
    if generator is None:
        return 0
    check_generator(generator)
    return int(torch.randint(0, 2**31 - 16, (1,), generator=generator, device=generator.device))
