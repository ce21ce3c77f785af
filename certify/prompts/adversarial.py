"""Adversarial training of a safety filter (as the reference's greedy / adversarial training scripts).

Each round attacks the harmful training prompts against the current filter (GCG for a differentiable
filter, the black-box greedy token attack otherwise; adversarial tokens appended, inserted or infused in
turn), adds the attacked prompts as harmful examples and refits a fresh copy of the filter on the enlarged
set. The filter learns that adversarial words next to a harmful request do not make it safe, which lowers
the attack success rate of the *filter alone*; erase-and-check's certificate needs no such training (it
holds for any filter), but the empirical defences (RandEC, GreedyEC, GradEC) inherit the filter's
robustness. **No guarantee**: the measured drop is reported in BENCHMARKS.md.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from certify.prompts.attacks import DIFFERENTIABLE, gcg_attack, greedy_token_attack
from certify.prompts.erase_and_check import MODES
from certify.prompts.protocol import check_texts
from certkit._validation import check_positive_int, generator_or_seed

__all__ = ["adversarial_training"]


def adversarial_training(
    filter: Any,
    harmful: Sequence[str],
    safe: Sequence[str],
    *,
    rounds: int = 1,
    num_tokens: int = 10,
    modes: Sequence[str] = ("suffix", "insertion", "infusion"),
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
        rounds: attack-and-refit rounds (>= 1); each attacks the filter of the previous round.
        num_tokens: adversarial tokens per attack.
        modes: attack modes used in turn over the prompts.
        extra_safe: more safe examples for the refit (e.g. erased safe prompts), as in ``fit``.
        generator: randomness of the attacks and of the refit (None: seeded with 0).
        **attack_kwargs: passed to :func:`certify.prompts.attacks.gcg_attack` (differentiable filters) or
            :func:`certify.prompts.attacks.greedy_token_attack`.

    Returns:
        The retrained filter (same class and threshold); ``attacked_`` holds the attacked prompts added.
    """
    if not hasattr(filter, "fit"):
        raise TypeError(f"Expected argument `filter` to have `fit(harmful, safe)`, but got {type(filter).__name__}")
    harmful, safe = check_texts(harmful, "harmful"), check_texts(safe, "safe")
    if not harmful or not safe:
        raise ValueError("Expected arguments `harmful` and `safe` to be non-empty lists of prompts")
    rounds = check_positive_int(rounds, "rounds")
    t = check_positive_int(num_tokens, "num_tokens")
    modes = tuple(modes)
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"Expected argument `modes` to be a non-empty sequence of {MODES}, but got {modes!r}")
    g = generator_or_seed(generator, None, where="adversarial_training")
    current, added = filter, []  # type: ignore[var-annotated]
    for _ in range(rounds):
        attack = gcg_attack if all(hasattr(current, a) for a in DIFFERENTIABLE) else greedy_token_attack
        for i, prompt in enumerate(harmful):
            res = attack(prompt, current, num_tokens=t, mode=modes[i % len(modes)], generator=g, **attack_kwargs)
            added.append(res.attacked)
        current = copy.deepcopy(filter)
        fit_kw = {"generator": g} if "generator" in current.fit.__code__.co_varnames else {}
        current.fit([*harmful, *added], safe, extra_safe=check_texts(extra_safe, "extra_safe"), **fit_kw)
        current.threshold = filter.threshold
    current.attacked_ = tuple(added)
    return current
