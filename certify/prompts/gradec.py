"""GradEC: optimise a soft token mask through a differentiable filter (empirical).

Kumar et al. (arXiv 2309.02705, Section 5): mask logits start at 1 (all tokens kept);
each iteration binarises the mask (keep where sigmoid >= 0.5), scores the kept tokens
with the filter and stops if flagged; otherwise it takes an SGD step (lr 10, weight
decay 1e-2) on the cross-entropy toward the harmful class of the filter fed the
soft-masked embeddings. The paper tries 0, 5, 10, 25 and 100 iterations (about 78-88%
of 20-token GCG suffixes detected, no false positives).

The filter must be differentiable in a soft keep-mask: it needs ``tokenizer`` (with
``encode``/``decode``), ``rows(ids) -> LongTensor`` and ``soft_logit(rows, keep) ->
scalar logit``, plus ``predict_proba``/``threshold``. :class:`certify.prompts.filters.
BagOfEmbeddingsFilter` provides them; TF-IDF, embedding, HF and callable filters do not.
The reference mixes ``sigma * E(tok) + (1 - sigma) * E(PAD)`` and averages over all
positions; our filter takes a sigma-weighted mean, which equals the binarised erasure
exactly when sigma is 0/1 (the reference's mix still counts erased positions in the mean).

**No certificate**: gradient search may miss the erasure that exposes a harmful prompt.
"""

from __future__ import annotations

from typing import Any

import torch

from certify.prompts.erase_and_check import EmpiricalCheck, _flags
from certify.prompts.tokenizers import check_prompt
from certkit._validation import check_nonnegative, check_positive, check_positive_int

__all__ = ["grad_erase_and_check"]


def _check_differentiable(filt: Any) -> None:
    need = ("tokenizer", "rows", "soft_logit", "predict_proba", "threshold")
    missing = [a for a in need if not hasattr(filt, a)]
    if missing:
        raise TypeError(
            "Expected argument `filter` to be differentiable (e.g. certify.prompts.BagOfEmbeddingsFilter), "
            f"but {type(filt).__name__} lacks {', '.join(missing)}"
        )


def grad_erase_and_check(
    prompt: str,
    filter: Any,
    *,
    num_iters: int = 10,
    lr: float = 10.0,
    weight_decay: float = 1e-2,
) -> EmpiricalCheck:
    """GradEC on one prompt.

    Args:
        prompt: the prompt string (tokenized by ``filter.tokenizer``).
        filter: a differentiable filter (see the module docstring).
        num_iters: SGD steps on the mask logits (>= 0; 0 checks the prompt only).
        lr: SGD learning rate (paper: 10).
        weight_decay: SGD weight decay (paper: 1e-2).

    Returns:
        An :class:`EmpiricalCheck` (``method="gradec"``); no guarantee for attacked prompts.
    """
    _check_differentiable(filter)
    text = check_prompt(prompt)
    num_iters = check_positive_int(num_iters, "num_iters", minimum=0)
    lr = check_positive(lr, "lr")
    weight_decay = check_nonnegative(weight_decay, "weight_decay")
    tok = filter.tokenizer
    ids = tok.encode(text)
    rows = filter.rows(ids)
    logits = torch.ones(len(ids), requires_grad=True)
    opt = torch.optim.SGD([logits], lr=lr, weight_decay=weight_decay)
    seen: set[tuple[int, ...]] = set()
    for it in range(num_iters + 1):
        keep = (torch.sigmoid(logits) >= 0.5).tolist()
        sub = tuple(i for i, k in zip(ids, keep) if k)
        if sub not in seen:
            seen.add(sub)
            candidate = tok.decode(sub)
            if _flags(filter, [candidate])[0]:  # the empty sequence is never harmful
                return EmpiricalCheck(text, True, "gradec", len(seen), candidate,
                                      f"harmful: the filter flags {candidate!r} (empirical GradEC; no certificate)")
        if it == num_iters:
            break
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            filter.soft_logit(rows, torch.sigmoid(logits)), torch.tensor(1.0)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return EmpiricalCheck(text, False, "gradec", len(seen), None,
                          f"safe under GradEC ({num_iters} iterations): empirical only, no certificate")
