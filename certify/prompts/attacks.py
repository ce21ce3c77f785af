"""Adversarial prompts for evaluating the defences: a black-box greedy token attack on any filter.

The attacker adds ``num_tokens`` tokens to a harmful prompt (appended: ``suffix``; one contiguous block
inserted: ``insertion``; tokens at arbitrary positions: ``infusion``), choosing each token greedily
from a vocabulary to lower the filter's harmful probability (a black-box analogue of GCG, Zou et al.
2023, which needs only ``predict_proba``). The result is always within the threat model of
erase-and-check with ``max_erase = num_tokens``: the original token sequence is a subsequence obtained
by erasing exactly the added tokens, so erase-and-check with that budget certifiably flags every
attacked prompt whose clean prompt the filter flags.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from certify.prompts.erase_and_check import _check_mode, _scores
from certify.prompts.protocol import as_filter
from certify.prompts.tokenizers import WordTokenizer, check_prompt
from certkit._validation import check_positive_int, generator_or_seed

__all__ = ["TokenAttack", "greedy_token_attack"]

_WORD_START = re.compile(r"\w")


@dataclass(frozen=True)
class TokenAttack:
    """An attacked prompt: the text, the positions (in the attacked token sequence) of the added tokens,
    and the filter's harmful probability before and after."""

    prompt: str
    attacked: str
    mode: str
    added_positions: tuple[int, ...]
    score_before: float
    score_after: float


def greedy_token_attack(
    prompt: str,
    filter: Any,
    *,
    num_tokens: int = 20,
    mode: str = "suffix",
    vocab: Sequence[str] = (),
    candidates: int = 64,
    generator: torch.Generator | None = None,
) -> TokenAttack:
    """Add ``num_tokens`` word tokens to ``prompt``, each chosen greedily to lower the harmful score.

    Args:
        prompt: the prompt to attack.
        filter: any safety filter (``predict_proba`` + ``threshold``) or a callable; black-box.
        num_tokens: ``t >= 0`` tokens added (the attack budget).
        mode: ``"suffix"`` (append), ``"insertion"`` (one contiguous block at the best position) or
            ``"infusion"`` (each token at its best position).
        vocab: candidate words (each becomes one token, " word"); default: the words of a few
            benign sentences.
        candidates: (token, position) pairs tried per step, drawn from ``generator`` (None: seed 0).

    Returns:
        A :class:`TokenAttack`; the attacked prompt equals ``prompt`` with exactly ``num_tokens`` tokens added.
    """
    prompt = check_prompt(prompt)
    mode = _check_mode(mode)
    t = check_positive_int(num_tokens, "num_tokens", minimum=0)
    candidates = check_positive_int(candidates, "candidates")
    g = generator_or_seed(generator, None, where="greedy_token_attack")
    filt = as_filter(filter)
    words = list(vocab) or (
        "please thanks kindly garden party recipe tea flowers cake sunny walk poem birthday friendly happy "
        "school homework story picnic music").split()
    tok = WordTokenizer()
    pieces = tok.tokenize(prompt)
    added: list[bool] = [False] * len(pieces)
    before = float(_scores(filt, [prompt])[0])
    score = before
    block_start: int | None = None
    for _ in range(t):
        if mode == "suffix":
            positions = [len(pieces)]
        elif mode == "insertion" and block_start is not None:
            positions = [block_start + sum(added[block_start:])]  # extend the one block at its end
        else:  # never right before a token that starts with a word character: it would glue to " w"
            positions = [p for p in range(len(pieces) + 1) if p == len(pieces) or not _WORD_START.match(pieces[p])]
        pairs = [(w, p) for w in words for p in positions]
        if len(pairs) > candidates:
            idx = torch.randperm(len(pairs), generator=g, device=g.device)[:candidates].tolist()
            pairs = [pairs[i] for i in idx]
        texts = ["".join([*pieces[:p], " " + w.strip(), *pieces[p:]]) for w, p in pairs]
        scores = _scores(filt, texts)
        best = int(np.argmin(scores))
        w, p = pairs[best]
        pieces[p:p] = [" " + w.strip()]
        added[p:p] = [True]
        if mode == "insertion" and block_start is None:
            block_start = p
        score = float(scores[best])
    attacked = "".join(pieces)
    return TokenAttack(prompt, attacked, mode, tuple(i for i, a in enumerate(added) if a), before, score)
