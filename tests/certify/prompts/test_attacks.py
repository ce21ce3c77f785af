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
