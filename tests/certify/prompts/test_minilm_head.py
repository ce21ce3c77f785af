"""The default MiniLM filter's shipped head (issue 18): reproduced by its script, accurate on prompts it has never
seen, and trained with short fragments of safe prompts that lower GreedyEC's false positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from certify.prompts import has_minilm

needs_minilm = pytest.mark.skipif(not has_minilm(), reason="the MiniLM weights (extra `llm`) are not installed here")


def test_short_fragments_are_in_order_subsequences_of_at_most_max_keep_words() -> None:
    from certify.prompts._minilm_head import short_fragments
    from certify.prompts.tokenizers import WordTokenizer

    tok = WordTokenizer()
    prompt = "Could you suggest a good recipe for a quick vegetarian dinner tonight?"
    ids = tok.encode(prompt)
    frags = short_fragments([prompt, ""], 20, 3, torch.Generator().manual_seed(0))
    assert len(frags) == 20 and len(set(frags)) > 5
    for f in frags:
        sub = tok.encode(f)
        assert 1 <= len(sub) <= 3
        it = iter(ids)
        assert all(t in it for t in sub)  # an in-order subsequence of the prompt's tokens
    again = short_fragments([prompt], 20, 3, torch.Generator().manual_seed(0))
    assert again == frags  # deterministic given the generator


@pytest.mark.slow
@needs_minilm
def test_default_filter_accuracy_on_unseen_prompts(shared_dir: Path) -> None:
    """The shipped default on the held-out generated prompts (acts never trained on) and on all of the shared
    prompts (never trained on); the numbers (docs/certify/erase-and-check.md) are those of
    ``bench_erase_and_check.py --minilm-accuracy``."""
    from certify.prompts import default_filter, generated_prompts, load_prompt_dir, split_by_act

    filt = default_filter()
    _, _, held = split_by_act(generated_prompts())
    a, b = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    gh, gs = filt.predict_proba(list(held.harmful)), filt.predict_proba(list(held.safe))
    sh, ss = filt.predict_proba(list(a.harmful + b.harmful)), filt.predict_proba(list(a.safe + b.safe))
    pac = filt.threshold  # measured 0.231: 99.5% / 74.5% held out, 99.2% / 95.4% shared
    assert np.mean(gh >= pac) >= 0.95 and np.mean(sh >= pac) >= 0.98 and np.mean(ss < pac) >= 0.94
    # at 0.5, measured 98.6% / 92.3% held out, 95.8% / 99.2% shared
    assert np.mean(gh >= 0.5) >= 0.96 and np.mean(gs < 0.5) >= 0.90
    assert np.mean(sh >= 0.5) >= 0.94 and np.mean(ss < 0.5) >= 0.98


@pytest.mark.slow
@needs_minilm
def test_shipped_head_is_reproduced_and_short_fragments_lower_greedyec_false_positives(shared_dir: Path) -> None:
    """``python -m certify.prompts._minilm_head`` reproduces the shipped head, and its short fragments of safe
    prompts lower GreedyEC-12's false positives on 40 held-out shared safe prompts at each head's PAC threshold
    (measured: 75.0% without them, 37.5% with them; the harmful recall of both stays >= 98% there)."""
    from certify.prompts import default_filter, greedy_erase_and_check, load_prompt_dir
    from certify.prompts._minilm_head import train_head

    shipped = default_filter()
    new, pac = train_head()
    assert pac == pytest.approx(shipped.pac_threshold_, abs=1e-3)
    np.testing.assert_allclose(new.head_.coef_, shipped.head_.coef_, atol=1e-3)
    old, _ = train_head(per_prompt=0)
    _, test = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=0.2)
    safe, harmful = list(test.safe)[:40], list(test.harmful)

    def fp(f) -> float:  # type: ignore[no-untyped-def]
        assert np.mean(f.predict_proba(harmful) >= f.threshold) >= 0.98
        return float(np.mean([greedy_erase_and_check(s, f, num_iters=12).harmful for s in safe]))

    before, after = fp(old), fp(shipped)
    assert after <= before - 0.2, (before, after)
