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

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from certify.prompts.erase_and_check import EmpiricalCheck, _resolve, _scores
from certify.prompts.protocol import as_filter, check_texts
from certify.prompts.tokenizers import Tokenizer, resolve_tokenizer
from certkit._validation import check_budget, check_positive_int, has_visible

__all__ = ["empirical_threshold", "greedy_erase_and_check"]


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


class _MaxScore:
    """Wraps a filter: records the highest score it returns and flags nothing (scores capped below 1), so that
    GreedyEC / GradEC run their full search and report the largest score they would have compared."""

    def __init__(self, filt: Any) -> None:
        self.filt, self.threshold, self.max_ = filt, 1.0, 0.0
        for name in ("token_ids", "token_embeddings", "token_strings", "logit_from_embeddings"):
            if hasattr(filt, name):
                setattr(self, name, getattr(filt, name))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        p = np.asarray(self.filt.predict_proba(texts), dtype=np.float64)
        if len(p):
            self.max_ = max(self.max_, float(p.max()))
        return np.minimum(p, np.nextafter(1.0, 0.0))


def empirical_threshold(
    safe: Sequence[str],
    filter: Any,
    *,
    method: str = "greedyec",
    alpha: float = 0.05,
    **kwargs: Any,
) -> float:
    """The filter threshold at which GreedyEC (or GradEC) flags at most a fraction ``alpha`` of safe prompts.

    For each calibration safe prompt the search is run to the end and its largest score ``m`` is kept (the
    search path does not depend on the threshold, only where it stops, so the prompt is flagged iff
    ``m >= threshold``). The threshold is the ``ceil((n + 1)(1 - alpha))``-th smallest ``m``, nudged up: if
    the calibration and test safe prompts are exchangeable, the expected fraction of test safe prompts flagged
    is at most ``alpha`` (split conformal; Vovk et al. 2005). Nothing is said about harmful prompts, whose
    recall drops as the threshold rises. Returns 1.0 when n is too small (n < 1 / alpha - 1).

    Args:
        safe: calibration safe prompts (not used to train the filter).
        filter: the safety filter.
        method: ``"greedyec"`` or ``"gradec"``.
        alpha: the target false-positive rate in (0, 1).
        **kwargs: the method's settings (``num_iters``, ...).
    """
    from certify.prompts.gradec import grad_erase_and_check

    if method not in ("greedyec", "gradec"):
        raise ValueError(f"Expected argument `method` to be 'greedyec' or 'gradec', but got {method!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"Expected argument `alpha` to be a number in (0, 1), but got {alpha!r}")
    safe = check_texts(safe, "safe")
    if not safe:
        raise ValueError("Expected argument `safe` to hold at least one prompt, but it is empty")
    filt = as_filter(filter)
    if method == "gradec":
        from certify.prompts.attacks import check_differentiable

        check_differentiable(filt)  # names the user's filter, not the wrapper
    maxima = []
    for prompt in safe:
        rec = _MaxScore(filt)
        (grad_erase_and_check if method == "gradec" else greedy_erase_and_check)(prompt, rec, **kwargs)
        maxima.append(rec.max_)
    n = len(maxima)
    k = math.ceil((n + 1) * (1.0 - float(alpha)))
    if k > n:
        return 1.0
    return float(min(1.0, np.nextafter(np.sort(maxima)[k - 1], 2.0)))
