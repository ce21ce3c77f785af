"""Erasure augmentation (Kumar et al., arXiv 2309.02705): erased versions of safe prompts, trained as safe.

Erase-and-check scores erased subsequences of every prompt, so a filter must not flag fragments of
safe prompts. Adding the suffix / insertion erasures of the safe training prompts as safe examples
teaches it exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from certify.prompts._rng import sample_indices
from certify.prompts.erase_and_check import erased_texts
from certify.prompts.protocol import check_texts
from certify.prompts.tokenizers import WordTokenizer
from certkit._validation import check_positive_int, generator_or_seed

__all__ = ["augment_safe"]


def augment_safe(
    safe: Sequence[str],
    *,
    modes: Sequence[str] = ("suffix", "insertion"),
    max_erase: int = 30,
    max_per_prompt: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> list[str]:
    """Erased versions of the safe prompts (word tokens), to be labelled safe when training.

    Args:
        safe: safe prompts.
        modes: erase-and-check modes whose erasures are added (infusion is not supported:
            it grows as C(n, d)).
        max_erase: the erasure budget used for augmentation (>= the d used at test time).
        max_per_prompt: keep at most this many erasures per prompt (a uniform sample); None: all.
        generator: draws the sample (None: a generator seeded with 0, so the result is reproducible).
        seed: deprecated; pass ``generator``.
    """
    for m in modes:
        if m not in ("suffix", "insertion"):
            raise ValueError(f"Expected argument `modes` to hold 'suffix' or 'insertion', but got {m!r}")
    d = check_positive_int(max_erase, "max_erase", minimum=0)
    g = generator_or_seed(generator, seed, where="augment_safe")
    tok = WordTokenizer()
    out: list[str] = []
    for prompt in check_texts(safe, "safe"):
        if not prompt.strip():
            continue
        texts = sorted({t for m in modes for t in erased_texts(prompt, m, d, tokenizer=tok, budget=None)})
        if max_per_prompt is not None and len(texts) > max_per_prompt:
            texts = [texts[i] for i in sample_indices(len(texts), max_per_prompt, g)]
        out.extend(texts)
    return out
