"""The one place where smoothing turns a ``generator`` (or the deprecated ``seed``) into a generator."""

from __future__ import annotations

import warnings

import torch

from certkit._validation import check_generator, check_positive_int

__all__ = ["resolve_generator"]


def resolve_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device | str, where: str
) -> torch.Generator:
    """``generator``, or one seeded with the deprecated ``seed`` (DeprecationWarning), or one seeded 0.

    ``None`` means a generator seeded with 0, so the functions that used to take ``seed: int = 0``
    stay reproducible by default and give the same results as before. ``where`` names the caller in
    the warning.
    """
    if seed is not None:
        warnings.warn(
            f"Argument `seed` of {where} is deprecated and will be removed in the next release; "
            "pass `generator=torch.Generator(device).manual_seed(seed)` instead",
            DeprecationWarning,
            stacklevel=3,
        )
        if generator is not None:
            raise ValueError(f"Expected either argument `generator` or the deprecated `seed` of {where}, but got both")
        return torch.Generator(device=device).manual_seed(check_positive_int(seed, "seed", minimum=0))
    if generator is None:
        return torch.Generator(device=device).manual_seed(0)
    check_generator(generator)
    return generator
