"""Model adapters: anything that gives per-token log-probabilities with character spans.

A *token scorer* is any callable ``scorer(source) -> TokenLogProbs``: the log-probability of
each token of ``source`` under the model (conditioned on the preceding text) and the token's
character span. :func:`score_program` turns it into the per-node NLL the partial-program MILP
needs. :class:`HuggingFaceScorer` wraps a ``transformers`` causal LM and a fast tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from certkit._validation import check_eval_mode
from conformal.code.tree import CodeTree, node_nll, python_tree

__all__ = ["HuggingFaceScorer", "ScoredProgram", "TokenLogProbs", "TokenScorer", "score_program"]


@dataclass(frozen=True)
class TokenLogProbs:
    """Per-token log-probabilities (T,) and character spans (T, 2) [start, end) into the scored source."""

    logprobs: np.ndarray
    spans: np.ndarray


TokenScorer = Callable[[str], TokenLogProbs]


@dataclass(frozen=True, eq=False)
class ScoredProgram:
    """A program's tree and its (N,) per-node NLL (clipped token NLL over each node's own tokens)."""

    tree: CodeTree
    nll: np.ndarray


def score_program(source: str, scorer: TokenScorer, tree: CodeTree | None = None, clip: float = 10.0) -> ScoredProgram:
    """Score ``source`` with a token scorer and aggregate to per-node NLL.

    Args:
        source: the generated program.
        scorer: callable returning :class:`TokenLogProbs` for ``source``.
        tree: the program's tree; parsed as Python when omitted (other languages pass their own).
        clip: per-node NLL clip (Khakhar et al. use 10).
    """
    tree = python_tree(source) if tree is None else tree
    if tree.source != source:
        raise ValueError("Expected argument `tree` to be the tree of `source`, but its source text differs")
    out = scorer(source)
    if not isinstance(out, TokenLogProbs):
        raise TypeError(f"Expected argument `scorer` to return a TokenLogProbs, but it returned {type(out).__name__}")
    return ScoredProgram(tree=tree, nll=node_nll(tree, out.logprobs, out.spans, clip=clip))


class HuggingFaceScorer:
    """Token scorer over a Hugging Face causal LM with a fast tokenizer (character offsets needed).

    Token j's log-probability is log p(token_j | prefix, tokens_<j) from one forward pass. When the
    tokenizer has a BOS token it is prepended, so the first token is scored too; otherwise the
    first token of ``prefix + source`` has no context and is left out (give a ``prefix``).

    Args:
        model: a ``transformers`` causal LM in eval mode (``model(ids).logits`` of shape (1, T, V)).
        tokenizer: a fast tokenizer (``return_offsets_mapping`` support).
        prefix: text the program is conditioned on (e.g. a prompt); it is not scored.
    """

    def __init__(self, model: Any, tokenizer: Any, *, prefix: str = "") -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("Expected argument `tokenizer` to be a fast tokenizer (offset mapping), but it is not")
        if not isinstance(prefix, str):
            raise TypeError(f"Expected argument `prefix` to be a str, but got {type(prefix).__name__}")
        check_eval_mode(model)
        self.model = model
        self.tokenizer = tokenizer
        self.prefix = prefix

    @torch.no_grad()
    def __call__(self, source: str) -> TokenLogProbs:
        """(T,) log-probabilities and (T, 2) spans (into ``source``) of the tokens of ``source``."""
        enc = self.tokenizer(self.prefix + source, return_offsets_mapping=True, add_special_tokens=False)
        ids = list(enc["input_ids"])
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if bos is not None:  # score the first token too
            ids = [bos, *ids]
            offsets = [(0, 0), *offsets]
        device = next(self.model.parameters()).device
        x = torch.tensor([ids], dtype=torch.long, device=device)
        logp = torch.log_softmax(self.model(x).logits[0].double(), dim=-1)
        target = x[0, 1:]
        token_lp = logp[:-1].gather(1, target[:, None])[:, 0].cpu().numpy()  # token j+1 given tokens <= j
        p = len(self.prefix)
        lps: list[float] = []
        spans: list[tuple[int, int]] = []
        for j in range(1, len(ids)):  # token 0 (BOS, or the unconditioned first token) is not scored
            a, b = offsets[j]
            if b <= p:
                continue  # inside the prefix
            lps.append(float(token_lp[j - 1]))
            spans.append((max(a - p, 0), b - p))
        return TokenLogProbs(np.asarray(lps, dtype=np.float64), np.asarray(spans, dtype=np.int64).reshape(-1, 2))
