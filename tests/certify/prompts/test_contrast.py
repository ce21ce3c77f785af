"""The harm-word contrast prompts of the MiniLM training side (certify/prompts/_contrast.py, _harmword.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certify.prompts import _blind as B
from certify.prompts import _contrast as K
from certify.prompts import corpus as C
from certify.prompts._generic import GENERIC_HARMFUL_ACTS
from certify.prompts._harmword import HARMWORD_BENIGN_ACTS, HARMWORD_HARMFUL_ACTS, TERSE_FRAMES


def test_harmword_tables_are_well_formed() -> None:
    for acts in (HARMWORD_BENIGN_ACTS, HARMWORD_HARMFUL_ACTS):
        assert len(acts) == len(set(acts)) == 90
        assert all(4 <= len(a.split()) <= 14 and not a.endswith(".") and "{" not in a for a in acts)
    assert not set(HARMWORD_BENIGN_ACTS) & set(HARMWORD_HARMFUL_ACTS)
    assert len(set(TERSE_FRAMES)) == 12 and all(f.count("{a}") == 1 for f in TERSE_FRAMES)


def test_kept_contrast_acts_are_not_close_to_calibration_held_out_or_evaluation_texts() -> None:
    """The rule that keeps the PAC threshold valid (no harmful paraphrase of a calibration act in training) and the
    evaluation sets unseen; and the rule is not vacuous (it drops acts of the full tables)."""
    _, held_harmful, _, held_benign = K._parts()
    ref_h = [*held_harmful, *(a for cat in C._EVALUATION_HARMFUL_ACTS.values() for a in cat)]
    ref_b = [*held_benign, *(a for cat in C._EVALUATION_BENIGN_ACTS.values() for a in cat), *C._EVALUATION_BENIGN,
             *C._knowledge_prompts(held_out=True)]
    harmful, benign = K.decontaminated_acts()
    assert (len(harmful), len(benign)) == (59, 81)
    for full, kept, ref in ((HARMWORD_HARMFUL_ACTS, harmful, ref_h), (HARMWORD_BENIGN_ACTS, benign, ref_b)):
        sim = C._text_similarity(list(full), ref).max(axis=1)  # the rule's TF-IDF fit: the full table + references
        assert kept == [a for a, s in zip(full, sim) if s < K.CONTRAST_COSINE]
        assert len(kept) < len(full)  # not vacuous


def test_training_contrast_prompts_use_only_training_part_acts_and_both_classes_get_terse_frames() -> None:
    harmful, benign = K.training_contrast_prompts()
    assert (len(harmful), len(benign)) == (59 * 4 + 163 * 2, 81 * 4 + 61 * 2)
    assert K.training_contrast_prompts() == (harmful, benign)  # deterministic
    _, cal, held = C.split_by_act(C.generated_prompts())
    held_back = {p for part in (cal, held) for p in part.prompts}
    assert not held_back & {*harmful, *benign}
    terse = [f.split("{a}")[0] for f in TERSE_FRAMES]
    for prompts in (harmful, benign):  # the terse style carries no label by itself
        assert sum(any(p.startswith(t) for t in terse) for p in prompts) >= len(prompts) // 3
    cal_acts = K._parts()[1]
    assert not any(a in p for a in cal_acts for p in harmful)  # no calibration / held-out act in any frame


def test_generic_acts_are_well_formed_and_not_close_to_the_shared_prompts(shared_dir: Path) -> None:
    """The generic harmful acts (session 15) kept in the module are the ones text-far (< 0.25) from every shared
    prompt: the 12 close ones were deleted before training, so a shared-set evaluation sees unseen phrasings."""
    from certify.prompts import load_prompt_dir

    assert len(GENERIC_HARMFUL_ACTS) == len(set(GENERIC_HARMFUL_ACTS)) == 88
    assert all(3 <= len(a.split()) <= 12 and not a.endswith(".") and "{" not in a for a in GENERIC_HARMFUL_ACTS)
    train, test = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    shared = [*train.harmful, *test.harmful, *train.safe, *test.safe]
    assert len(shared) == 795
    assert C._text_similarity(list(GENERIC_HARMFUL_ACTS), shared).max() < K.CONTRAST_COSINE


def test_generic_prompts_drop_acts_close_to_calibration_held_out_or_evaluation_acts() -> None:
    _, held_harmful, _, _ = K._parts()
    ref = [*held_harmful, *(a for cat in C._EVALUATION_HARMFUL_ACTS.values() for a in cat)]
    sim = C._text_similarity(list(GENERIC_HARMFUL_ACTS), ref).max(axis=1)
    kept = [a for a, s in zip(GENERIC_HARMFUL_ACTS, sim) if s < K.CONTRAST_COSINE]
    prompts = K.generic_prompts()
    assert len(prompts) == 4 * len(kept) == 4 * 68
    assert all(any(a in p or a[:1].upper() + a[1:] in p for p in prompts) for a in kept)
    assert not any(a in p for a in set(GENERIC_HARMFUL_ACTS) - set(kept) for p in prompts)


def test_fresh2_acts_are_well_formed_and_kept_ones_are_far_from_training_side_texts() -> None:
    """The session-15 fresh acts (a future calibration part of generic harmful acts and two evaluation-only sets):
    distinct, in act form, and ``kept()`` drops exactly the ones text-close to a training-side text."""
    from certify.prompts import _fresh2 as F

    tables = (F.CALIBRATION_GENERIC_HARMFUL_ACTS, F.EVALUATION_HARMFUL_ACTS, F.EVALUATION_BENIGN_ACTS)
    assert [len(t) for t in tables] == [138, 78, 76]
    everything = [a.lower() for t in tables for a in t]
    assert len(everything) == len(set(everything))
    assert all(3 <= len(a.split()) <= 14 and not a.endswith(".") and "{" not in a for a in everything)
    kept = F.kept()
    assert [len(v) for v in kept.values()] == [73, 48, 42]
    ref = F._training_side_texts()
    for (name, acts), table in zip(kept.items(), tables):
        sim = C._text_similarity(list(table), ref).max(axis=1)
        assert acts == tuple(a for a, s in zip(table, sim) if s < K.CONTRAST_COSINE), name


def test_fresh2_acts_are_in_no_training_data(shared_dir: Path) -> None:
    """No kept fresh act appears in any text a certkit filter trains on, and no written one is text-close to a shared
    prompt (the 8 that were are deleted from the module)."""
    from certify.prompts import _fresh2 as F
    from certify.prompts import load_prompt_dir
    from certify.prompts.filters import _training_data

    harmful, safe, _, _ = _training_data()
    contrast_h, contrast_b = K.training_contrast_prompts()
    train = " ".join([*harmful, *safe, *contrast_h, *contrast_b, *K.generic_prompts()]).lower()
    acts = [a for t in F.kept().values() for a in t]
    assert not [a for a in acts if a.lower() in train]
    written = [*F.CALIBRATION_GENERIC_HARMFUL_ACTS, *F.EVALUATION_HARMFUL_ACTS, *F.EVALUATION_BENIGN_ACTS]
    assert [a for a in written if a.lower() in train]  # independent writers converge: kept() is what removes them
    tr, te = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    assert C._text_similarity(written, [*tr.harmful, *te.harmful, *tr.safe, *te.safe]).max() < K.CONTRAST_COSINE


def test_generic2_acts_are_well_formed_and_not_close_to_the_shared_prompts(shared_dir: Path) -> None:
    """The second generic harmful acts (session 16): the 24 of the 200 written that were text-close to a shared
    prompt were deleted before training."""
    from certify.prompts import load_prompt_dir
    from certify.prompts._generic2 import GENERIC_HARMFUL_ACTS_2 as G2

    assert len(G2) == len({a.lower() for a in G2}) == 176
    assert all(3 <= len(a.split()) <= 12 and not a.endswith(".") and "{" not in a for a in G2)
    train, test = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    shared = [*train.harmful, *test.harmful, *train.safe, *test.safe]
    assert C._text_similarity(list(G2), shared).max() < K.CONTRAST_COSINE


def test_generic2_prompts_drop_acts_close_to_held_back_or_fresh2_acts() -> None:
    """No training act of ``generic2_prompts`` paraphrases a calibration, held-out or evaluation act, nor a fresh-2
    act (whose calibration acts calibrate the mixture threshold): the rule keeps the PAC threshold valid."""
    from certify.prompts import _fresh2
    from certify.prompts._generic2 import GENERIC_HARMFUL_ACTS_2 as G2

    _, held_harmful, _, _ = K._parts()
    ref = [*held_harmful, *(a for cat in C._EVALUATION_HARMFUL_ACTS.values() for a in cat),
           *_fresh2.CALIBRATION_GENERIC_HARMFUL_ACTS, *_fresh2.EVALUATION_HARMFUL_ACTS, *_fresh2.EVALUATION_BENIGN_ACTS]
    sim = C._text_similarity(list(G2), ref).max(axis=1)
    kept = [a for a, s in zip(G2, sim) if s < K.CONTRAST_COSINE]
    prompts = B.generic2_prompts()
    assert len(prompts) == 4 * len(kept) == 4 * 100
    assert all(any(a in p or a[:1].upper() + a[1:] in p for p in prompts) for a in kept)
    assert not any(a in p for a in set(G2) - set(kept) for p in prompts)
    mixture = set(_calibration_prompts(mixture=True))
    assert not mixture & set(prompts)


def _calibration_prompts(*, mixture: bool) -> list[str]:
    from certify.prompts.filters import _calibration_acts

    return _calibration_acts(mixture=mixture)[0]


def test_mixture_calibration_adds_the_kept_fresh2_generic_acts_as_new_groups_of_four_frames() -> None:
    from certify.prompts import _fresh2
    from certify.prompts.filters import _calibration_acts

    base, base_groups = _calibration_acts()
    prompts, groups = _calibration_acts(mixture=True)
    acts = _fresh2.kept()["CALIBRATION_GENERIC_HARMFUL_ACTS"]
    assert prompts[:len(base)] == base and groups[:len(base)] == base_groups
    assert len(set(base_groups)) == 130 and len(prompts) == len(base) + 4 * len(acts) == 520 + 4 * 73
    new = groups[len(base):]
    assert min(new) > max(base_groups) and [new.count(g) for g in sorted(set(new))] == [4] * len(acts)
    for i, act in enumerate(acts):  # each act's 4 frames carry its own group id
        frames = prompts[len(base) + 4 * i: len(base) + 4 * i + 4]
        assert all(act in p or act[:1].upper() + act[1:] in p for p in frames) and len(set(frames)) == 4
        assert len({groups[len(base) + 4 * i + j] for j in range(4)}) == 1


@pytest.mark.parametrize(("n", "written", "halves", "kept_counts"),
                         [(3, [95, 98], (46, 49), [40, 49]), (4, [99, 99], (49, 50), [72, 70]),
                          (5, [99, 98], (50, 50), [65, 69])])
def test_fresh_session16_acts_are_well_formed_and_kept_ones_are_far_from_training_side_texts(
        n: int, written: list[int], halves: tuple[int, int], kept_counts: list[int]) -> None:
    """The session-16 evaluation acts (``_fresh3`` to ``_fresh5``): distinct, in act form, and ``kept()`` drops
    exactly those text-close to a training-side text (the generic2 acts included)."""
    import importlib

    from certify.prompts import _fresh2
    from certify.prompts._generic2 import GENERIC_HARMFUL_ACTS_2

    mod = importlib.import_module(f"certify.prompts._fresh{n}")
    tables = (getattr(mod, f"EVALUATION_HARMFUL_ACTS_{n}"), getattr(mod, f"EVALUATION_BENIGN_ACTS_{n}"))
    assert [len(t) for t in tables] == written and (mod.N_GENERIC, mod.N_HARMWORD) == halves
    everything = [a.lower() for t in tables for a in t]
    assert len(everything) == len(set(everything))
    assert all(3 <= len(a.split()) <= 14 and not a.endswith(".") and "{" not in a for a in everything)
    kept = mod.kept()
    assert [len(v) for v in kept.values()] == kept_counts
    ref = [*_fresh2._training_side_texts(), *GENERIC_HARMFUL_ACTS_2]
    for (name, acts), table in zip(kept.items(), tables):
        sim = C._text_similarity(list(table), ref).max(axis=1)
        assert acts == tuple(a for a, s in zip(table, sim) if s < K.CONTRAST_COSINE), name
        assert len(acts) < len(table)  # not vacuous


def test_fresh3_acts_are_in_no_training_data_and_not_close_to_the_shared_prompts(shared_dir: Path) -> None:
    from certify.prompts import _fresh3, load_prompt_dir
    from certify.prompts.filters import _training_data

    harmful, safe, _, _ = _training_data()
    contrast_h, contrast_b = K.training_contrast_prompts()
    train = " ".join([*harmful, *safe, *contrast_h, *contrast_b, *K.generic_prompts(), *B.generic2_prompts()]).lower()
    assert not [a for t in _fresh3.kept().values() for a in t if a.lower() in train]
    tr, te = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    shared = [*tr.harmful, *te.harmful, *tr.safe, *te.safe]
    written = [*_fresh3.EVALUATION_HARMFUL_ACTS_3, *_fresh3.EVALUATION_BENIGN_ACTS_3]
    assert C._text_similarity(written, shared).max() < K.CONTRAST_COSINE


@pytest.mark.parametrize("n", [4, 5])
def test_fresh4_and_fresh5_acts_are_not_close_to_the_shared_prompts(shared_dir: Path, n: int) -> None:
    import importlib

    from certify.prompts import load_prompt_dir

    mod = importlib.import_module(f"certify.prompts._fresh{n}")
    tr, te = load_prompt_dir(shared_dir / "data" / "prompts", test_fraction=1.0)
    written = [*getattr(mod, f"EVALUATION_HARMFUL_ACTS_{n}"), *getattr(mod, f"EVALUATION_BENIGN_ACTS_{n}")]
    assert C._text_similarity(written, [*tr.harmful, *te.harmful, *tr.safe, *te.safe]).max() < K.CONTRAST_COSINE
