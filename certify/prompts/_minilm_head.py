"""Train the logistic head of the frozen-encoder MiniLM filter and write it as ``minilm_head.txt`` (issue 18).

``python -m certify.prompts._minilm_head`` retrains the head shipped with certkit and rewrites
``certify/prompts/minilm_head.txt`` (``--out PATH`` writes elsewhere). Only certkit's own prompts are used, never
``../shared``: the training part of :func:`certify.prompts.corpus.generated_prompts` (split by act) plus the
embedded prompts (:func:`certify.prompts.data.embedded_prompts`), as ``generated_filter(kind="minilm")``.

Safe examples: the safe prompts, 2 suffix / insertion erasures per safe prompt (``EmbeddingFilter``'s erasure
augmentation) and :data:`SHORT_PER_PROMPT` *short fragments* per safe prompt (:func:`short_fragments`: 1 to
:data:`SHORT_MAX_KEEP` of its word tokens kept, in order). GreedyEC's 12 rounds erase a typical 12-word prompt down to
one or two words, so its false positives on safe prompts are short fragments that the sentence encoder maps near
harmful requests; trained as safe they stop being flagged (GreedyEC-12 false positives on 40 held-out shared safe
prompts at the PAC threshold: 75.0% with the head trained without them; numbers in BENCHMARKS.md). About 7,000
encoder calls (2-4 min on one CPU core). ``pac_threshold_`` is :func:`certify.prompts.filters.pac_threshold` with ``groups`` = act ids
(epsilon = delta = 0.05) on the calibration harmful prompts of the generated set.

Deterministic: the samples come from torch generators seeded with 0; the encoder runs on CPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from certify.prompts.tokenizers import WordTokenizer

if TYPE_CHECKING:
    from certify.prompts.filters import EmbeddingFilter

#: short fragments per safe training prompt
SHORT_PER_PROMPT = 4
#: a short fragment keeps 1..SHORT_MAX_KEEP of the prompt's word tokens
SHORT_MAX_KEEP = 4

_HEADER = (
    "# Logistic head of the frozen-encoder MiniLM filter (the head the default's LoRA fine-tuning starts from): "
    "all-MiniLM-L6-v2 embeddings "
    "(normalised, 384-d) -> p_harmful. Trained by `python -m certify.prompts._minilm_head` on the training part of "
    "generated_prompts() (split_by_act) plus the embedded prompts, with erasure augmentation (2 per safe prompt) and "
    "{per} short fragments (1..{keep} words kept) per safe prompt; pac_threshold by pac_threshold(epsilon=delta=0.05, "
    "groups=act ids) on the calibration harmful prompts. Never trained on ../shared.\n"
    "# line 3: pac_threshold; line 4: intercept; then the 384 coefficients\n"
)


def short_fragments(prompts: Sequence[str], per_prompt: int, max_keep: int, generator: torch.Generator) -> list[str]:
    """``per_prompt`` fragments of each prompt: ``k ~ uniform{1..min(max_keep, n)}`` of its ``n`` word tokens kept
    (a uniform k-subset, in order); blank results dropped."""
    tok = WordTokenizer()
    out: list[str] = []
    for prompt in prompts:
        ids = tok.encode(prompt)
        n = len(ids)
        if n == 0:
            continue
        for _ in range(per_prompt):
            k = 1 + int(torch.randint(min(max_keep, n), (1,), generator=generator))
            keep = sorted(torch.randperm(n, generator=generator)[:k].tolist())
            text = tok.decode([ids[i] for i in keep])
            if text.strip():
                out.append(text)
    return out


def train_head(per_prompt: int = SHORT_PER_PROMPT, max_keep: int = SHORT_MAX_KEEP) -> tuple[EmbeddingFilter, float]:
    """The fitted ``EmbeddingFilter`` (threshold: its PAC threshold) and that threshold: with the defaults, the head
    that ``minilm_head.txt`` ships; ``per_prompt=0``: the head trained without short fragments (the earlier one)."""
    from certify.prompts.filters import EmbeddingFilter, _default_pac_threshold, _training_data

    harmful, safe, _, _ = _training_data()
    short = short_fragments(safe, per_prompt, max_keep, torch.Generator().manual_seed(0))
    filt = EmbeddingFilter(augment_per_prompt=2).fit(harmful, safe, extra_safe=short)
    pac = _default_pac_threshold(filt)  # group-valid: act ids of the calibration prompts
    filt.pac_threshold_, filt.threshold = pac, max(0.0, pac)
    return filt, pac


def write_head(filt: EmbeddingFilter, pac: float, path: Path, per_prompt: int = SHORT_PER_PROMPT,
               max_keep: int = SHORT_MAX_KEEP) -> None:
    """Write the head in the format ``filters._frozen_minilm_filter`` reads."""
    head = filt.head_
    coef = np.asarray(head.coef_, dtype=np.float64).reshape(-1)
    lines = [repr(float(pac)), repr(float(np.asarray(head.intercept_).reshape(-1)[0])), *(repr(float(c)) for c in coef)]
    path.write_text(_HEADER.format(per=per_prompt, keep=max_keep) + "\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("minilm_head.txt"))
    args = parser.parse_args(argv)
    filt, pac = train_head()
    write_head(filt, pac, args.out)
    print(f"wrote {args.out} (pac_threshold {pac:.4f})")


if __name__ == "__main__":  # pragma: no cover - a maintenance script
    main()
