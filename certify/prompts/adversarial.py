"""Adversarial training of a safety filter (as the reference's greedy / adversarial training scripts).

Each round attacks the harmful training prompts against the current filter (GCG for a differentiable
filter, the black-box greedy token attack otherwise; adversarial tokens appended, inserted or infused in
turn), adds the attacked prompts as harmful examples and refits a fresh copy of the filter on everything
gathered so far. Every refit also sees ``random_attacks`` copies of each harmful prompt with 1..t tokens
drawn uniformly from the attack's vocabulary (the same modes): the "random restarts" of the attacker.

Why the random copies matter: against a filter that pools its tokens (a mean of word embeddings, TF-IDF),
an attack dilutes the harmful words with the tokens the filter scores most safe. GCG finds the single most
safe-scored word and repeats it, so one round of GCG examples only teaches the filter about that word and
the next attack takes the next one (measured: 100% -> 100% attack success after 1 and 3 rounds). Random
tokens from the whole vocabulary next to harmful requests teach the filter that *no* added word makes a
harmful request safe; with them the success rate of fresh GCG attacks on held-out prompts falls (numbers in
BENCHMARKS.md). **No guarantee**: erase-and-check's certificate needs no such training (it holds for any
filter), but the empirical defences (RandEC, GreedyEC, GradEC) inherit the filter's robustness.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from certify.prompts.attacks import DIFFERENTIABLE, gcg_attack, greedy_token_attack
from certify.prompts.erase_and_check import MODES
from certify.prompts.protocol import check_texts
from certify.prompts.tokenizers import WordTokenizer
from certkit._validation import check_positive_int, check_unit_interval, generator_or_seed

__all__ = ["adversarial_training", "fragment_training"]

_WORD_START = re.compile(r"\w")


def _random_attack(prompt: str, words: Sequence[str], t: int, mode: str, g: torch.Generator) -> str:
    """``prompt`` with 1..t tokens drawn uniformly from ``words`` (" word" strings), placed as ``mode`` places
    them (appended; one block at a random word boundary; each at a random word boundary)."""
    pieces = WordTokenizer().tokenize(prompt)
    bounds = [p for p in range(len(pieces) + 1) if p == len(pieces) or not _WORD_START.match(pieces[p])]
    k = 1 + int(torch.randint(t, (1,), generator=g, device=g.device))
    if mode == "suffix":
        slots = [len(pieces)] * k
    elif mode == "insertion":
        slots = [bounds[int(torch.randint(len(bounds), (1,), generator=g, device=g.device))]] * k
    else:
        slots = sorted(bounds[int(i)] for i in torch.randint(len(bounds), (k,), generator=g, device=g.device))
    tokens = [words[int(i)] for i in torch.randint(len(words), (k,), generator=g, device=g.device)]
    out: list[str] = []
    j = 0
    for p in range(len(pieces) + 1):
        while j < k and slots[j] == p:
            out.append(tokens[j])
            j += 1
        if p < len(pieces):
            out.append(pieces[p])
    return "".join(out)


def adversarial_training(
    filter: Any,
    harmful: Sequence[str],
    safe: Sequence[str],
    *,
    rounds: int = 1,
    num_tokens: int = 10,
    modes: Sequence[str] = ("suffix", "insertion", "infusion"),
    random_attacks: int = 8,
    extra_safe: Sequence[str] = (),
    generator: torch.Generator | None = None,
    **attack_kwargs: Any,
) -> Any:
    """A copy of ``filter`` refitted on ``harmful`` + their attacked versions (as harmful) and ``safe``.

    Args:
        filter: a fitted filter with ``fit(harmful, safe)`` (e.g. ``BagOfEmbeddingsFilter``, ``TfidfFilter``);
            not modified.
        harmful: harmful training prompts (each is attacked once per round).
        safe: safe training prompts.
        rounds: attack-and-refit rounds (>= 1); each attacks the filter of the previous round and refits on
            the attacked prompts of all rounds so far.
        num_tokens: adversarial tokens per attack (``t``).
        modes: attack modes used in turn over the prompts (a sequence: ``("suffix",)`` for one mode).
        random_attacks: copies (>= 0) of each harmful prompt with 1..t random tokens of the attack's vocabulary
            (the differentiable filter's ``token_strings()``, else the greedy attack's ``vocab``), added as harmful
            to every refit. 0 gives plain GCG / greedy adversarial training.
        extra_safe: more safe examples for the refit (e.g. erased safe prompts), as in ``fit``.
        generator: randomness of the attacks, the random copies and the refit (None: seeded with 0).
        **attack_kwargs: passed to :func:`certify.prompts.attacks.gcg_attack` (differentiable filters) or
            :func:`certify.prompts.attacks.greedy_token_attack`.

    Returns:
        The retrained filter (same class and threshold); ``attacked_`` holds the attacked prompts of the rounds,
        ``random_attacked_`` the random copies.
    """
    if not hasattr(filter, "fit"):
        raise TypeError(f"Expected argument `filter` to have `fit(harmful, safe)`, but got {type(filter).__name__}")
    harmful, safe = check_texts(harmful, "harmful"), check_texts(safe, "safe")
    if not harmful or not safe:
        raise ValueError("Expected arguments `harmful` and `safe` to be non-empty lists of prompts")
    rounds = check_positive_int(rounds, "rounds")
    t = check_positive_int(num_tokens, "num_tokens")
    copies = check_positive_int(random_attacks, "random_attacks", minimum=0)
    if isinstance(modes, str):
        raise TypeError(f"Expected argument `modes` to be a sequence of mode names, not one string: pass "
                        f"({modes!r},) for a single mode")
    if not isinstance(modes, Sequence):
        raise TypeError(f"Expected argument `modes` to be a sequence of mode names, but got {type(modes).__name__}")
    modes = tuple(modes)
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"Expected argument `modes` to be a non-empty sequence of {MODES}, but got {modes!r}")
    extra = check_texts(extra_safe, "extra_safe")
    g = generator_or_seed(generator, None, where="adversarial_training")
    differentiable = all(hasattr(filter, a) for a in DIFFERENTIABLE)
    tok = WordTokenizer()
    words = sorted({" " + w for p in safe for w in (x.strip() for x in tok.tokenize(p)) if w.isalpha()})
    randomised = [_random_attack(h, words, 2 * t, modes[(i + c) % len(modes)], g)
                  for i, h in enumerate(harmful) for c in range(copies)] if words else []
    current, added = filter, []  # type: ignore[var-annotated]
    for _ in range(rounds):
        attack = gcg_attack if differentiable else greedy_token_attack
        for i, prompt in enumerate(harmful):
            res = attack(prompt, current, num_tokens=t, mode=modes[i % len(modes)], generator=g, **attack_kwargs)
            added.append(res.attacked)
        current = copy.deepcopy(filter)
        fit_kw = {"generator": g} if "generator" in current.fit.__code__.co_varnames else {}
        current.fit([*harmful, *randomised, *added], safe, extra_safe=extra, **fit_kw)
        current.threshold = filter.threshold
    current.attacked_ = tuple(added)
    current.random_attacked_ = tuple(randomised)
    return current


class _Recorder:
    """Wraps a filter for a search run to its end: records every scored text with its score and flags nothing
    (scores capped below 1, threshold 1)."""

    def __init__(self, filt: Any) -> None:
        self.filt, self.threshold, self.seen = filt, 1.0, {}  # type: ignore[var-annotated]
        for name in ("token_ids", "token_embeddings", "token_strings", "logit_from_embeddings"):
            if hasattr(filt, name):
                setattr(self, name, getattr(filt, name))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        p = np.asarray(self.filt.predict_proba(texts), dtype=np.float64)
        for t, v in zip(texts, p.tolist()):
            self.seen[t] = max(v, self.seen.get(t, 0.0))
        return np.minimum(p, np.nextafter(1.0, 0.0))


def fragment_training(
    filter: Any,
    harmful: Sequence[str],
    safe: Sequence[str],
    *,
    methods: Sequence[str] | None = None,
    greedy_iters: int = 12,
    grad_iters: int = 25,
    rounds: int = 2,
    min_score: float | None = None,
    extra_safe: Sequence[str] = (),
    generator: torch.Generator | None = None,
) -> Any:
    """A copy of ``filter`` refitted with the fragments that GreedyEC / GradEC reach on ``safe`` added as safe.

    Each round runs the searches (:func:`certify.prompts.greedyec.greedy_erase_and_check`,
    :func:`certify.prompts.gradec.grad_erase_and_check`) to their end on every safe training prompt against the
    current filter, keeps every fragment they score (each erased candidate of every greedy round, each binarised
    GradEC mask) with a harmful probability ``>= min_score`` (the clean prompt excluded), and refits a fresh copy
    of ``filter`` on ``harmful``, ``safe``, ``extra_safe`` and all fragments kept so far (as safe). These are the
    hard negatives of the empirical defences: with them their false positives on held-out safe prompts fall
    (numbers in BENCHMARKS.md; the paper trains its filter with erased safe prompts for the same reason). No
    guarantee: held-out safe prompts have fragments of their own; erase-and-check's certificate is unaffected
    (it holds for any filter).

    Args:
        filter: a fitted filter with ``fit(harmful, safe, extra_safe=...)``; not modified.
        harmful: harmful training prompts.
        safe: safe training prompts (searched, and trained on as safe).
        methods: searches to mine with, from ``"greedyec"`` and ``"gradec"``; None: both for a differentiable
            filter (:func:`certify.prompts.attacks.check_differentiable`), GreedyEC only otherwise.
        greedy_iters: GreedyEC rounds (paper: up to 12).
        grad_iters: GradEC iterations (paper: up to 100; 25 by default).
        rounds: mine-and-refit rounds (>= 1); each searches the filter of the previous round.
        min_score: keep fragments scored at least this (None: half the filter's threshold).
        extra_safe: more safe examples for the refit (e.g. erased safe prompts), as in ``fit``.
        generator: passed to ``fit`` where it takes one (None: ``fit``'s default seeding).

    Returns:
        The refitted filter (same class and threshold); ``fragments_`` holds the fragments added.
    """
    from certify.prompts.gradec import grad_erase_and_check
    from certify.prompts.greedyec import greedy_erase_and_check

    if not hasattr(filter, "fit"):
        raise TypeError(f"Expected argument `filter` to have `fit(harmful, safe)`, but got {type(filter).__name__}")
    harmful, safe = check_texts(harmful, "harmful"), check_texts(safe, "safe")
    if not harmful or not safe:
        raise ValueError("Expected arguments `harmful` and `safe` to be non-empty lists of prompts")
    differentiable = all(hasattr(filter, a) for a in DIFFERENTIABLE)
    methods = (("greedyec", "gradec") if differentiable else ("greedyec",)) if methods is None else tuple(methods)
    if not methods or any(m not in ("greedyec", "gradec") for m in methods):
        raise ValueError(f"Expected argument `methods` to hold 'greedyec' and/or 'gradec', but got {methods!r}")
    if "gradec" in methods and not differentiable:
        raise ValueError("Expected argument `methods` to leave out 'gradec' for a filter without gradients "
                         f"({type(filter).__name__})")
    greedy_iters = check_positive_int(greedy_iters, "greedy_iters", minimum=0)
    grad_iters = check_positive_int(grad_iters, "grad_iters", minimum=0)
    rounds = check_positive_int(rounds, "rounds")
    floor = float(filter.threshold) / 2 if min_score is None else check_unit_interval(min_score, "min_score")
    extra = check_texts(extra_safe, "extra_safe")
    if generator is not None:
        generator_or_seed(generator, None, where="fragment_training")  # validates
    current, mined = filter, {}  # type: ignore[var-annotated]
    for _ in range(rounds):
        for prompt in safe:
            if not prompt.strip():
                continue
            rec = _Recorder(current)
            if "greedyec" in methods:
                greedy_erase_and_check(prompt, rec, num_iters=greedy_iters, budget=None)
            if "gradec" in methods:
                grad_erase_and_check(prompt, rec, num_iters=grad_iters)
            for text, score in rec.seen.items():
                if score >= floor and text != prompt and text.strip():
                    mined.setdefault(text, None)
        current = copy.deepcopy(filter)
        fit_kw = {}
        if generator is not None and "generator" in current.fit.__code__.co_varnames:
            fit_kw["generator"] = generator
        current.fit(harmful, safe, extra_safe=[*extra, *mined], **fit_kw)
        current.threshold = filter.threshold
    current.fragments_ = tuple(mined)
    return current
