"""Adversarial prompts for evaluating the defences: a black-box greedy token attack on any filter, and GCG.

The attacker adds ``num_tokens`` word tokens (of :class:`~certify.prompts.tokenizers.WordTokenizer`) to a
harmful prompt (appended: ``suffix``; one contiguous block inserted: ``insertion``; tokens at arbitrary
positions: ``infusion``), choosing each token greedily from a vocabulary to lower the filter's harmful
probability (a black-box analogue of GCG, Zou et al. 2023, which needs only ``predict_proba``). The result is
always within the threat model of erase-and-check with ``max_erase = num_tokens`` and its default word
tokenizer (a custom ``vocab`` must hold single word tokens, which is checked; with
``tokenizer=HFTokenizer(...)`` an added word may be several tokens): the original token sequence is a
subsequence obtained by erasing exactly the added tokens, so erase-and-check with that budget certifiably flags
every attacked prompt whose clean prompt the filter flags.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from certify.prompts.erase_and_check import _check_mode, _scores
from certify.prompts.protocol import as_filter, check_texts
from certify.prompts.tokenizers import WordTokenizer, check_prompt
from certkit._validation import check_positive_int, generator_or_seed

__all__ = ["DEFAULT_VOCAB", "DIFFERENTIABLE", "TokenAttack", "check_differentiable", "gcg_attack", "greedy_token_attack"]

_WORD_START = re.compile(r"\w")
#: the greedy attack's default candidate words (words of a few benign sentences)
DEFAULT_VOCAB = tuple(
    "please thanks kindly garden party recipe tea flowers cake sunny walk poem birthday friendly happy "
    "school homework story picnic music".split())


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


def _check_vocab(vocab: Any) -> list[str]:
    """``vocab`` as a list of stripped words, each exactly one word token (" word"); TypeError / ValueError naming
    ``vocab`` and the offending entry otherwise."""
    if isinstance(vocab, str):
        raise TypeError(f"Expected argument `vocab` to be a sequence of words, not one string ({vocab!r:.40}): "
                        f"pass [{vocab!r:.40}] for a single word")
    words = [w.strip() for w in check_texts(vocab, "vocab")]
    tok = WordTokenizer()
    for raw, w in zip(vocab, words):
        n = len(tok.tokenize(" " + w)) if w else 0
        if n != 1:
            raise ValueError(f"Expected every entry of argument `vocab` to be exactly one word token (a run of letters, "
                             f"digits and underscores, or one punctuation mark), but {raw!r} is {n} tokens: the "
                             "attack's budget counts word tokens")
    return words


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
        vocab: candidate words, each exactly one token of certkit's word tokenizer
            (:class:`~certify.prompts.tokenizers.WordTokenizer`: a run of letters, digits and underscores, or one
            punctuation mark), added as " word"; default (empty): the words of a few benign sentences. An entry
            of several tokens ("two words", "don't", "e.g.") would add more tokens than the budget says, so it is
            refused (ValueError), as are a bare string and non-string entries (TypeError).
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
    words = _check_vocab(vocab) or list(DEFAULT_VOCAB)
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
        texts = ["".join([*pieces[:p], " " + w, *pieces[p:]]) for w, p in pairs]
        scores = _scores(filt, texts)
        best = int(np.argmin(scores))
        w, p = pairs[best]
        pieces[p:p] = [" " + w]
        added[p:p] = [True]
        if mode == "insertion" and block_start is None:
            block_start = p
        score = float(scores[best])
    attacked = "".join(pieces)
    return TokenAttack(prompt, attacked, mode, tuple(i for i, a in enumerate(added) if a), before, score)


DIFFERENTIABLE = ("token_ids", "token_embeddings", "token_strings", "logit_from_embeddings", "predict_proba", "threshold")


def _ids_in_context(filter: Any, parts: list[str]) -> list[list[int]]:
    """Per part, the filter's token ids of that part as tokenized inside ``"".join(parts)``.

    Tokenizing each part alone is not the same on every tokenizer: a SentencePiece one (XLM-R, DeBERTa-v3, T5: a
    Metaspace pre-tokenizer) prepends "▁" to the start of every text it is given, so "bomb?" is ["▁bomb", "?"] but
    "bomb" and "?" apart are ["▁bomb"] + ["▁", "?"]: GradEC's per-word ids and GCG's per-segment ids fed the gradient
    path a text other than the one scored. Where the parts' own ids already concatenate to the whole text's (WordPiece,
    byte-level BPE), those are returned (one call per part); otherwise each part's ids are the new ones that part
    adds to the ids of the text before it (one call per prefix), or its own ids where a prefix's ids are not a prefix
    of the next one's (a tokenizer merging across the boundary)."""
    own = [filter.token_ids(part) for part in parts]
    if [i for ids in own for i in ids] == filter.token_ids("".join(parts)):
        return own
    out: list[list[int]] = []
    prev: list[int] = []
    for k in range(len(parts)):
        ids = filter.token_ids("".join(parts[: k + 1]))
        out.append(ids[len(prev):] if ids[: len(prev)] == prev else own[k])
        prev = ids
    return out


def check_differentiable(filt: Any) -> None:
    """TypeError unless ``filt`` has the differentiable-filter protocol (:data:`DIFFERENTIABLE`): ``token_ids(text)``,
    ``token_embeddings() -> (V, D)``, ``token_strings()`` (per id, the text " word" that adds exactly that token:
    one word token that ``token_ids`` maps back to ``[id]``; or None) and
    ``logit_from_embeddings(emb (L, D), keep (L,) | None) -> harmful logit``; ``BagOfEmbeddingsFilter``,
    ``EmbeddingFilter`` (MiniLM) and ``HFClassifierFilter`` have it."""
    missing = [a for a in DIFFERENTIABLE if not hasattr(filt, a)]
    if missing:
        raise TypeError(
            "Expected argument `filter` to be differentiable (BagOfEmbeddingsFilter, EmbeddingFilter or "
            f"HFClassifierFilter), but {type(filt).__name__} lacks {', '.join(missing)}"
        )


def gcg_attack(
    prompt: str,
    filter: Any,
    *,
    num_tokens: int = 20,
    mode: str = "suffix",
    num_iters: int = 50,
    top_k: int = 50,
    num_candidates: int = 128,
    generator: torch.Generator | None = None,
) -> TokenAttack:
    """Greedy Coordinate Gradient (Zou et al. 2023, arXiv 2307.15043) against a differentiable safety filter.

    ``num_tokens`` adversarial tokens (whole words of the filter's vocabulary, initialised to the first usable
    one) are appended (``suffix``), inserted as one block at a random word boundary (``insertion``) or at
    ``num_tokens`` random boundaries (``infusion``). Each iteration takes the gradient of the filter's harmful
    logit w.r.t. the one-hot adversarial tokens, draws ``num_candidates`` single-token swaps from the ``top_k``
    most promising tokens per position, scores the candidate prompts exactly with ``predict_proba`` and keeps
    the best (as the reference's ``gcg.py``, which minimises the harmful-class probability of its filter).
    Stops early once the filter no longer flags the prompt and 10 more iterations bring nothing.

    Every added token is one word token (" word") of certkit's word tokenizer
    (:class:`~certify.prompts.tokenizers.WordTokenizer`, erase-and-check's default), so the attacked prompt is
    the clean prompt plus exactly ``num_tokens`` word tokens: inside erase-and-check's threat model with
    ``max_erase = num_tokens`` *for the default word tokenizer* (with ``tokenizer=HFTokenizer(...)`` an added word
    may be several word pieces). The candidate tokens are the filter's ``token_strings()``: for a Hugging Face
    filter, the vocabulary entries whose " word" text tokenizes back to exactly that id (WordPiece, byte-level
    BPE and SentencePiece vocabularies alike), so the gradient GCG follows is that of the text it scores. The
    search runs on the device and dtype of the filter's embedding table. Randomness (positions, swaps) from
    ``generator`` (None: seeded with 0).

    Returns:
        A :class:`TokenAttack`: ``attacked`` is the best-scoring prompt of those scored (the initial one, every
        adversarial token the filter's first usable token, included) and ``score_after`` its score. It can be
        above ``score_before`` (the clean prompt's) when no ``num_tokens``-token addition the search tried scores
        lower; the attack never returns the clean prompt itself.
    """
    prompt = check_prompt(prompt)
    mode = _check_mode(mode)
    check_differentiable(filter)
    t = check_positive_int(num_tokens, "num_tokens", minimum=0)
    num_iters = check_positive_int(num_iters, "num_iters", minimum=0)
    top_k = check_positive_int(top_k, "top_k")
    num_candidates = check_positive_int(num_candidates, "num_candidates")
    g = generator_or_seed(generator, None, where="gcg_attack")
    strings = filter.token_strings()
    table = filter.token_embeddings().detach()
    dev = table.device  # every tensor of the search lives with the filter's embeddings (CPU or an accelerator)
    usable = torch.tensor([i for i, w in enumerate(strings) if w is not None], dtype=torch.long, device=dev)
    if len(usable) == 0:
        raise ValueError("Expected the filter's `token_strings()` to hold at least one usable token, but it has none")
    pieces = WordTokenizer().tokenize(prompt)
    bounds = [p for p in range(len(pieces) + 1) if p == len(pieces) or not _WORD_START.match(pieces[p])]
    if mode == "suffix":
        slots = [len(pieces)] * t
    elif mode == "insertion":
        slots = [bounds[int(torch.randint(len(bounds), (1,), generator=g, device=g.device))]] * t
    else:
        slots = sorted(bounds[int(i)] for i in torch.randint(len(bounds), (t,), generator=g, device=g.device))
    adv = torch.full((t,), int(usable[0]), dtype=torch.long, device=dev)

    def text_of(tokens: list[int]) -> tuple[str, tuple[int, ...]]:
        out: list[str] = []
        added: list[int] = []
        j = 0
        for p in range(len(pieces) + 1):
            while j < t and slots[j] == p:
                added.append(len(out))
                out.append(strings[tokens[j]])
                j += 1
            if p < len(pieces):
                out.append(pieces[p])
        return "".join(out), tuple(added)

    segments = _ids_in_context(filter, ["".join(pieces[a:b]) for a, b in
                                       zip([0, *slots], [*slots, len(pieces)])])  # the prompt's between the added
    seg_emb = [table[torch.tensor(s, dtype=torch.long, device=dev)] if s else table[:0] for s in segments]
    before = float(_scores(as_filter(filter), [prompt])[0])
    best_text, added = text_of(adv.cpu().tolist())
    best = float(_scores(filter, [best_text])[0]) if t else before
    stale = 0
    for _ in range(num_iters if t else 0):
        onehot = torch.zeros(t, table.shape[0], dtype=table.dtype, device=dev)
        onehot[torch.arange(t, device=dev), adv] = 1.0
        onehot.requires_grad_(True)
        adv_emb = onehot @ table
        parts = [seg_emb[0]]
        for j in range(t):
            parts += [adv_emb[j : j + 1], seg_emb[j + 1]]
        logit = filter.logit_from_embeddings(torch.cat(parts))
        (grad,) = torch.autograd.grad(logit, onehot)
        grad = grad[:, usable]  # lower the harmful logit: the most negative gradient coordinates
        top = usable[grad.topk(min(top_k, len(usable)), dim=1, largest=False).indices]  # (t, k)
        pos = torch.randint(t, (num_candidates,), generator=g, device=g.device).to(dev)
        pick = torch.randint(top.shape[1], (num_candidates,), generator=g, device=g.device).to(dev)
        cands = adv.repeat(num_candidates, 1)
        cands[torch.arange(num_candidates, device=dev), pos] = top[pos, pick]
        texts = [text_of(c)[0] for c in cands.cpu().tolist()]
        scores = _scores(filter, texts)
        i = int(np.argmin(scores))
        if scores[i] < best:
            best, adv, best_text = float(scores[i]), cands[i].clone(), texts[i]
            stale = 0
        else:
            stale += 1
        if best < filter.threshold and stale >= 10:
            break
    best_text, added = text_of(adv.cpu().tolist())
    return TokenAttack(prompt, best_text, mode, added, before, best)
