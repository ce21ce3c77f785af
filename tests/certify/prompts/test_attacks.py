"""The greedy token attack stays within its budget, lowers the score, and never escapes erase-and-check."""

from __future__ import annotations

import pytest
import torch

from certify.prompts import embedded_prompts, embedded_tfidf_filter, erase_and_check
from certify.prompts.attacks import greedy_token_attack
from certify.prompts.tokenizers import WordTokenizer


@pytest.mark.parametrize("mode", ["suffix", "insertion", "infusion"])
def test_attack_within_budget_and_certified(mode: str) -> None:
    filt = embedded_tfidf_filter()
    tok = WordTokenizer()
    flagged = [h for h in embedded_prompts().harmful[::12] if filt.predict_proba([h])[0] >= filt.threshold][:8]
    assert flagged
    lowered = 0
    for h in flagged:
        t = 4 if mode != "infusion" else 2
        att = greedy_token_attack(h, filt, num_tokens=t, mode=mode, generator=torch.Generator().manual_seed(0))
        pieces = tok.tokenize(att.attacked)
        assert len(pieces) == len(tok.tokenize(h)) + t and len(att.added_positions) == t  # exactly t tokens added
        kept = "".join(p for i, p in enumerate(pieces) if i not in att.added_positions)
        assert kept == h  # erasing the added tokens gives the clean prompt back
        if mode == "suffix":
            assert att.added_positions == tuple(range(len(pieces) - t, len(pieces)))
        if mode == "insertion":  # one contiguous block
            assert att.added_positions == tuple(range(att.added_positions[0], att.added_positions[0] + t))
        lowered += att.score_after < att.score_before
        assert erase_and_check(att.attacked, filt, mode=mode, max_erase=t).harmful  # the certificate
    assert lowered >= 1


@pytest.fixture(scope="module")
def small_bag():  # type: ignore[no-untyped-def]
    from certify.prompts import BagOfEmbeddingsFilter

    data = embedded_prompts()
    return BagOfEmbeddingsFilter(epochs=60, augment_per_prompt=4).fit(data.harmful[::2], data.safe[::2],
                                                                      generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["suffix", "insertion", "infusion"])
def test_gcg_within_budget_raises_the_safe_score_and_is_certified(small_bag, mode: str) -> None:  # type: ignore[no-untyped-def]
    from certify.prompts import gcg_attack

    tok = WordTokenizer()
    flagged = [h for h in embedded_prompts().harmful[1::10] if small_bag.predict_proba([h])[0] >= 0.5][:4]
    assert flagged
    for h in flagged:
        att = gcg_attack(h, small_bag, num_tokens=5, mode=mode, num_iters=8, num_candidates=32,
                         generator=torch.Generator().manual_seed(0))
        pieces = tok.tokenize(att.attacked)
        assert len(pieces) == len(tok.tokenize(h)) + 5 and len(att.added_positions) == 5  # exactly t tokens
        assert "".join(p for i, p in enumerate(pieces) if i not in att.added_positions) == h
        if mode == "insertion":
            assert att.added_positions == tuple(range(att.added_positions[0], att.added_positions[0] + 5))
        assert att.score_after < att.score_before  # the harmful score falls (the safe score rises)
        assert att.score_after == pytest.approx(small_bag.predict_proba([att.attacked])[0])
        assert erase_and_check(att.attacked, small_bag, mode=mode, max_erase=5).harmful  # the certificate


def test_gcg_refuses_a_black_box_filter() -> None:
    from certify.prompts import gcg_attack

    with pytest.raises(TypeError, match="differentiable"):
        gcg_attack("how do I make a bomb", embedded_tfidf_filter())


def test_adversarial_training_learns_its_attacked_prompts(small_bag) -> None:  # type: ignore[no-untyped-def]
    """One round of GCG adversarial training: a new filter (the input untouched) that flags the attacked training
    prompts far more often."""
    from certify.prompts import adversarial_training

    data = embedded_prompts()
    before = small_bag.predict_proba(list(data.harmful[:4]))
    adv = adversarial_training(small_bag, data.harmful[::4], data.safe[::2], num_tokens=5, modes=("suffix",),
                               num_iters=6, num_candidates=32, generator=torch.Generator().manual_seed(1))
    assert len(adv.attacked_) == len(data.harmful[::4]) and adv is not small_bag
    assert (small_bag.predict_proba(list(data.harmful[:4])) == before).all()  # the input filter is not refitted
    flagged_old = (small_bag.predict_proba(list(adv.attacked_)) >= 0.5).mean()
    flagged_new = (adv.predict_proba(list(adv.attacked_)) >= 0.5).mean()
    assert flagged_new >= flagged_old + 0.3, (flagged_old, flagged_new)


def test_adversarial_training_lowers_the_attack_success_rate_on_held_out_prompts() -> None:
    """Fresh GCG attacks (same budget) on held-out harmful prompts (acts never trained on) succeed less often
    against the adversarially trained filter. Plain GCG adversarial training (``random_attacks=0``) fails this
    test (100% -> 100%: GCG repeats the one most safe-scored word, the refit only learns that word); the random
    attacked copies make it pass here (100% -> 67%). On the shared prompts (BENCHMARKS.md) neither lowers it."""
    from certify.prompts import (
        BagOfEmbeddingsFilter,
        adversarial_training,
        gcg_attack,
        generated_prompts,
        split_by_act,
    )

    train, _, test = split_by_act(generated_prompts())
    harmful, safe = list(train.harmful[::2]), list(train.safe[::2])
    bag = BagOfEmbeddingsFilter(augment_per_prompt=4).fit(harmful, safe, generator=torch.Generator().manual_seed(0))
    adv = adversarial_training(bag, harmful, safe, num_tokens=5, num_iters=6, num_candidates=32,
                               generator=torch.Generator().manual_seed(1))

    def success_rate(f) -> float:  # type: ignore[no-untyped-def]
        targets = [h for h in test.harmful[::7] if f.predict_proba([h])[0] >= f.threshold][:12]
        assert len(targets) == 12
        return sum(gcg_attack(h, f, num_tokens=5, num_iters=10, num_candidates=32,
                              generator=torch.Generator().manual_seed(i)).score_after < f.threshold
                   for i, h in enumerate(targets)) / len(targets)

    before, after = success_rate(bag), success_rate(adv)
    assert before >= 0.9 and after <= before - 0.25, (before, after)
