"""Erasure augmentation (Kumar et al., arXiv 2309.02705): erased versions of safe prompts, trained as safe.

Erase-and-check scores erased subsequences of every prompt, so a filter must not flag fragments of
safe prompts. Adding the suffix / insertion erasures of the safe training prompts as safe examples
teaches it exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from certify.prompts._rng import sample_indices
from certify.prompts.erase_and_check import MODES, erased_texts
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
        modes: erase-and-check modes whose erasures are added. ``"infusion"`` (any set of tokens erased, what
            GreedyEC and GradEC search) grows as C(n, d), so it adds ``max_per_prompt`` random ones per prompt
            (erase k ~ uniform{1..min(d, n - 1)} tokens, then a uniform k-subset) and needs ``max_per_prompt``.
        max_erase: the erasure budget used for augmentation (>= the d used at test time).
        max_per_prompt: keep at most this many erasures per prompt and mode group (a uniform sample of the
            suffix / insertion erasures; that many random infusion erasures); None: all (not with infusion).
        generator: draws the sample (None: a generator seeded with 0, so the result is reproducible).
        seed: deprecated; pass ``generator``.
    """
    for m in modes:
        if m not in MODES:
            raise ValueError(f"Expected argument `modes` to hold 'suffix', 'insertion' or 'infusion', but got {m!r}")
    if "infusion" in modes and max_per_prompt is None:
        raise ValueError("Expected argument `max_per_prompt` to be an int when `modes` holds 'infusion', but got None")
    d = check_positive_int(max_erase, "max_erase", minimum=0)
    g = generator_or_seed(generator, seed, where="augment_safe")
    tok = WordTokenizer()
    out: list[str] = []
    for prompt in check_texts(safe, "safe"):
        if not prompt.strip():
            continue
        texts = sorted({t for m in modes if m != "infusion"
                        for t in erased_texts(prompt, m, d, tokenizer=tok, budget=None)})
        if max_per_prompt is not None and len(texts) > max_per_prompt:
            texts = [texts[i] for i in sample_indices(len(texts), max_per_prompt, g)]
        out.extend(texts)
        if "infusion" in modes:
            out.extend(_random_erasures(tok.encode(prompt), tok, d, int(max_per_prompt or 0), g))
    return out


def _random_erasures(ids: list[int], tok: WordTokenizer, d: int, m: int, g: torch.Generator) -> list[str]:
    """``m`` random infusion erasures of ``ids``: k ~ uniform{1..min(d, n - 1)} tokens erased, a uniform k-subset
    (each draw independent; empty or blank results dropped)."""
    n = len(ids)
    top = min(d, n - 1)
    if top < 1:
        return []
    out = []
    for _ in range(m):
        k = 1 + int(torch.randint(top, (1,), generator=g, device=g.device))
        erase = set(torch.randperm(n, generator=g, device=g.device)[:k].tolist())
        text = tok.decode([t for i, t in enumerate(ids) if i not in erase])
        if text.strip():
            out.append(text)
    return out
