"""RandEC: erase-and-check on a random fraction of the erased subsequences (empirical).

Kumar et al. (arXiv 2309.02705, Section 5): check the clean prompt plus a uniformly
random sample of ``floor(ratio * (N - 1))`` of the other ``N - 1`` distinct erased
subsequences. The paper runs it in suffix mode with d = 20 and ratio in {0.1, 0.2, 0.3,
0.4}; against GCG suffixes of 20 tokens ratio 0.3 detects about 95%.

**No certificate** beyond the clean prompt: the one subsequence that equals the
unattacked prompt is checked only with probability about ``ratio``. A harmful prompt
that the filter flags unattacked is still always flagged (the clean prompt is checked).
The reference samples with Python's global ``random`` and no seed; here the sample comes
from a ``generator: torch.Generator | None`` (None: seeded with 0), so runs are reproducible
and no global RNG is touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from certify.prompts._rng import sample_indices
from certify.prompts.erase_and_check import (
    EmpiricalCheck,
    _check_erase_args,
    _resolve,
    _scan,
    erased_subsequences,
)
from certify.prompts.protocol import as_filter
from certify.prompts.tokenizers import Tokenizer, WordTokenizer, resolve_tokenizer
from certkit._validation import check_positive_int, generator_or_seed

__all__ = ["random_erase_and_check"]


def random_erase_and_check(
    prompt: str | Sequence[int],
    filter: Any,
    *,
    ratio: float = 0.2,
    mode: str = "suffix",
    max_erase: int = 20,
    num_blocks: int = 1,
    generator: torch.Generator | None = None,
    seed: int | np.random.Generator | None = None,
    tokenizer: Tokenizer | None = None,
    batch_size: int = 1024,
    budget: int | None = 100_000,
) -> EmpiricalCheck:
    """RandEC on one prompt.

    Args:
        prompt: a string, or token ids of ``tokenizer``.
        filter: a safety filter (``predict_proba`` + ``threshold``) or a callable.
        ratio: fraction in [0, 1] of the erased subsequences (clean prompt excluded) to check.
        mode: ``"suffix"``, ``"insertion"`` or ``"infusion"``, as in
            :func:`certify.prompts.erase_and_check.erase_and_check`.
        max_erase: ``d``, the most tokens erased (per block in insertion mode).
        num_blocks: ``k``, the number of inserted blocks (insertion mode).
        tokenizer: defaults to a fresh word tokenizer, as in ``erase_and_check``.
        batch_size: strings per filter call.
        budget: refuse a prompt needing more subsequences, as in ``erase_and_check``; None: no limit.
        generator: draws the sample (None: a generator seeded with 0).
        seed: deprecated (an int or a ``numpy.random.Generator``); pass ``generator``.

    Returns:
        An :class:`EmpiricalCheck` (``method="randec"``); no guarantee holds for attacked prompts.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int | float | np.floating) or not 0.0 <= float(ratio) <= 1.0:
        raise ValueError(f"Expected argument `ratio` to be a number in [0, 1], but got {ratio!r}")
    mode, d, k = _check_erase_args(mode, max_erase, num_blocks)
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(seed, np.random.Generator):  # deprecated form: derive a torch seed from it
        seed = int(seed.integers(2**63 - 1))
    g = generator_or_seed(generator, seed, where="random_erase_and_check")
    filt = as_filter(filter)
    tok = resolve_tokenizer(tokenizer)
    ids, text = _resolve(prompt, tok, tokenizer is not None)
    subs = list(erased_subsequences(ids, mode, d, num_blocks=k, budget=budget))
    m = math.floor(float(ratio) * (len(subs) - 1))
    picked = sample_indices(len(subs) - 1, m, g) if m else []
    chosen = [subs[0], *(subs[1 + i] for i in picked)]
    first = chosen[0] if isinstance(tok, WordTokenizer) else text  # WordTokenizer: decode(ids) == text
    (checked,), (flagged,) = _scan([iter([[first, *chosen[1:]]])], filt, batch_size, tok)
    if flagged is not None:
        return EmpiricalCheck(text, True, "randec", checked, flagged,
                              f"harmful: the filter flags {flagged!r} (empirical RandEC, ratio={ratio}; no certificate)")
    return EmpiricalCheck(text, False, "randec", checked, None,
                          f"safe under RandEC (ratio={ratio}, {mode}, d={d}): empirical only, no certificate")
