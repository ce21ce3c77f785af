"""GreedyEC: greedily erase the token whose removal most raises the harmful score (empirical).

Kumar et al. (arXiv 2309.02705, Section 5): if the filter does not flag the prompt, then
for each of ``num_iters`` rounds score every single-token deletion of the current
sequence in one batch; if the best is flagged, the prompt is harmful; otherwise keep the
deletion with the highest harmful probability and repeat. The paper tries 0, 3, 6, 9 and
12 rounds; against 20-token GCG suffixes 9 rounds detect about 94% and 12 about 98%,
while flagging 1-3% of safe prompts.

**No certificate**: greedy search may miss the erasure that exposes a harmful prompt.
A prompt the filter flags unattacked is always flagged (round 0 checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from certify.prompts.erase_and_check import EmpiricalCheck, _resolve, _scores
from certify.prompts.protocol import as_filter
from certify.prompts.tokenizers import Tokenizer, resolve_tokenizer
from certkit._validation import check_budget, check_positive_int, has_visible

__all__ = ["greedy_erase_and_check"]


def greedy_erase_and_check(
    prompt: str | Sequence[int],
    filter: Any,
    *,
    num_iters: int = 9,
    tokenizer: Tokenizer | None = None,
    budget: int | None = 100_000,
) -> EmpiricalCheck:
    """GreedyEC on one prompt.

    Args:
        prompt: a string, or token ids of ``tokenizer``.
        filter: a safety filter (``predict_proba`` + ``threshold``) or a callable.
        num_iters: the number of greedy erasure rounds (>= 0); each scores n - i strings.
        tokenizer: defaults to a :class:`certify.prompts.tokenizers.WordTokenizer`.
        budget: refuse (``BudgetExceededError``) a call that may score more strings than this, counted
            in closed form before anything is scored: ``1 + sum_{i < min(num_iters, n - 1)} (n - i)``.

    Returns:
        An :class:`EmpiricalCheck` (``method="greedyec"``); no guarantee for attacked prompts.
    """
    num_iters = check_positive_int(num_iters, "num_iters", minimum=0)
    filt = as_filter(filter)
    tok = resolve_tokenizer(tokenizer)
    if budget is not None:
        budget = check_positive_int(budget, "budget")
    ids, text = _resolve(prompt, tok, tokenizer is not None)
    n, rounds = len(ids), min(num_iters, max(len(ids) - 1, 0))
    check_budget(1 + rounds * n - rounds * (rounds - 1) // 2, budget,
                 f"greedy erase-and-check with n={n} tokens and num_iters={num_iters} (filter evaluations)",
                 "lower `num_iters` or raise `budget`")
    checked = 1
    if _scores(filt, [text])[0] >= filt.threshold:
        return EmpiricalCheck(text, True, "greedyec", checked, text, "harmful: the filter flags the prompt itself")
    cur = ids
    for _ in range(num_iters):
        if len(cur) <= 1:
            break
        cands = list(dict.fromkeys(cur[:i] + cur[i + 1 :] for i in range(len(cur))))
        texts = [tok.decode(c) for c in cands]
        p = np.where([has_visible(t) for t in texts], _scores(filt, texts), 0.0)  # "" is never harmful
        checked += len(texts)
        best = int(np.argmax(p))
        if p[best] >= filt.threshold:
            return EmpiricalCheck(text, True, "greedyec", checked, texts[best],
                                  f"harmful: the filter flags {texts[best]!r} (empirical GreedyEC; no certificate)")
        cur = cands[best]
    return EmpiricalCheck(text, False, "greedyec", checked, None,
                          f"safe under GreedyEC ({num_iters} rounds): empirical only, no certificate")
