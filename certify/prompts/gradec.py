"""GradEC: optimise a soft token mask through a differentiable filter (empirical).

Kumar et al. (arXiv 2309.02705, Section 5): mask logits start at 1 (all tokens kept);
each iteration binarises the mask (keep where sigmoid >= 0.5), scores the kept tokens
with the filter and stops if flagged; otherwise it takes an SGD step (lr 10, weight
decay 1e-2) on the cross-entropy toward the harmful class of the filter fed the
soft-masked embeddings. The paper tries 0, 5, 10, 25 and 100 iterations (about 78-88%
of 20-token GCG suffixes detected, no false positives).

The filter must be differentiable (:func:`certify.prompts.attacks.check_differentiable`): the bag of
embeddings, the MiniLM :class:`~certify.prompts.filters.EmbeddingFilter` or an
:class:`~certify.prompts.filters.HFClassifierFilter`. For the transformer filters the soft mask mixes
``sigma * E(tok) + (1 - sigma) * E([PAD])`` as the reference does; the bag of embeddings takes a
sigma-weighted mean (with ``pooling="max"`` the largest ``logit_i + log sigma_i``), which equals the binarised
erasure exactly when sigma is 0/1 (the reference's mix still counts erased positions in the mean).

**No certificate**: gradient search may miss the erasure that exposes a harmful prompt.
"""

from __future__ import annotations

from typing import Any

import torch

from certify.prompts.attacks import _ids_in_context, check_differentiable
from certify.prompts.erase_and_check import EmpiricalCheck, _flags
from certify.prompts.tokenizers import WordTokenizer, check_prompt
from certkit._validation import check_nonnegative, check_positive, check_positive_int

__all__ = ["grad_erase_and_check"]


def grad_erase_and_check(
    prompt: str,
    filter: Any,
    *,
    num_iters: int = 10,
    lr: float = 10.0,
    weight_decay: float = 1e-2,
) -> EmpiricalCheck:
    """GradEC on one prompt.

    The mask lives on the prompt's word tokens (:class:`certify.prompts.tokenizers.WordTokenizer`); each word's
    filter tokens (word pieces for MiniLM / Hugging Face filters, one row for the bag of embeddings) share its
    keep-weight, and an erased candidate is the text of the kept words, scored by ``predict_proba``. The mask
    and the search run on the device and dtype of the filter's embedding table. A transformer filter sees at most
    its truncation length of word pieces (``max_length`` of an :class:`~certify.prompts.filters.HFClassifierFilter`,
    the encoder's ``max_seq_length`` for MiniLM), as ``predict_proba`` does: words past it get no gradient.

    Args:
        prompt: the prompt string.
        filter: a differentiable filter (:func:`certify.prompts.attacks.check_differentiable`).
        num_iters: SGD steps on the mask logits (>= 0; 0 checks the prompt only).
        lr: SGD learning rate (paper: 10).
        weight_decay: SGD weight decay (paper: 1e-2).

    Returns:
        An :class:`EmpiricalCheck` (``method="gradec"``); no guarantee for attacked prompts.
    """
    check_differentiable(filter)
    text = check_prompt(prompt)
    num_iters = check_positive_int(num_iters, "num_iters", minimum=0)
    lr = check_positive(lr, "lr")
    weight_decay = check_nonnegative(weight_decay, "weight_decay")
    pieces = WordTokenizer().tokenize(text)
    table = filter.token_embeddings().detach()
    dev = table.device  # the mask lives with the filter's embeddings (CPU or an accelerator), in their dtype
    per_word = _ids_in_context(filter, pieces)  # not each word alone: SentencePiece would add "▁" before "?"
    owner = torch.tensor([w for w, ids in enumerate(per_word) for _ in ids], dtype=torch.long, device=dev)
    flat = torch.tensor([i for ids in per_word for i in ids], dtype=torch.long, device=dev)
    emb = table[flat]
    logits = torch.ones(len(pieces), dtype=table.dtype, device=dev, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=lr, weight_decay=weight_decay)
    seen: set[tuple[bool, ...]] = set()
    for it in range(num_iters + 1):
        keep = tuple((torch.sigmoid(logits) >= 0.5).cpu().tolist())
        if keep not in seen:
            seen.add(keep)
            candidate = "".join(p for p, k in zip(pieces, keep) if k)
            if _flags(filter, [candidate])[0]:  # the empty sequence is never harmful
                return EmpiricalCheck(text, True, "gradec", len(seen), candidate,
                                      f"harmful: the filter flags {candidate!r} (empirical GradEC; no certificate)")
        if it == num_iters or len(flat) == 0:
            break
        z = filter.logit_from_embeddings(emb, torch.sigmoid(logits)[owner])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.ones_like(z))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return EmpiricalCheck(text, False, "gradec", len(seen), None,
                          f"safe under GradEC ({num_iters} iterations): empirical only, no certificate")
