"""Training-side contrast prompts of the default MiniLM filter (issue 18, session 15; training data only).

The shipped default flags benign requests that use harm words ("kill" a process, "shoot" a photo) and, once trained
on benign prompts of other styles, misses terse imperative harmful requests ("Teach how to ..."; BENCHMARKS.md,
session 14, lora14). Contrast data for both, written for certkit (:mod:`certify.prompts._harmword`):

- harm-word benign acts and harm-word harmful acts (the same words in a harmless and a harmful meaning), each in two
  frames of :data:`~certify.prompts.corpus.FRAMES` and two terse imperative frames
  (:data:`~certify.prompts._harmword.TERSE_FRAMES`);
- every training-part act of :func:`~certify.prompts.corpus.split_by_act` (harmful and benign) in two terse frames,
  so that the terse style carries no label by itself.

Decontamination (:func:`~certify.prompts.corpus._text_similarity` >= :data:`CONTRAST_COSINE`, fixed before any
model was scored on these prompts): a harm-word harmful act is dropped if close to a calibration or held-out harmful act or an
evaluation-only harmful act (a paraphrase of a calibration act in training would inflate the calibration scores and
void the PAC threshold); a harm-word benign act is dropped if close to a calibration or held-out benign act, an
evaluation-only benign act or prompt, or a held-out knowledge question (so that the evaluation sets stay unseen).
The cut is 0.25, stricter than session 14's :data:`~certify.prompts.corpus.DECONTAMINATION_COSINE` (0.4): between
0.25 and 0.4 lay paraphrases in other words ("press fake pills laced with fentanyl for street sale" ~ "press
fentanyl into fake painkiller pills", 0.29; "dispose of my late father's expired prescription drugs safely" ~
"dispose of expired medicine safely", 0.25). It drops 31 of the 90 harmful and 9 of the 90 benign acts.
"""

from __future__ import annotations

from certify.prompts import corpus as C
from certify.prompts._harmword import HARMWORD_BENIGN_ACTS, HARMWORD_HARMFUL_ACTS, TERSE_FRAMES

__all__: list[str] = []

#: Two texts are "close" when their :func:`~certify.prompts.corpus._text_similarity` is at least this (session 15).
CONTRAST_COSINE = 0.25


def _kept(acts: tuple[str, ...], ref: list[str]) -> list[str]:
    sim = C._text_similarity(list(acts), ref).max(axis=1)
    return [a for a, s in zip(acts, sim) if s < CONTRAST_COSINE]


def _parts() -> tuple[list[str], list[str], list[str], list[str]]:
    """Acts by (class, part): training harmful, held-back harmful (calibration + held-out), training benign,
    held-back benign, by the act ids of :func:`~certify.prompts.corpus.split_by_act`."""
    acts = [a for table in (C.HARMFUL_ACTS, C.BENIGN_ACTS) for cat in table.values() for a in cat]
    train, cal, held = C.split_by_act(C.generated_prompts())

    def ids(parts: tuple[C.GeneratedPrompts, ...], label: int) -> list[int]:
        return sorted({g for p in parts for g, y in zip(p.groups, p.labels) if y == label})

    return ([acts[i] for i in ids((train,), 1)], [acts[i] for i in ids((cal, held), 1)],
            [acts[i] for i in ids((train,), 0)], [acts[i] for i in ids((cal, held), 0)])


def _held_back_harmful(held_harmful: list[str]) -> list[str]:
    """The harmful acts a training act must not paraphrase: calibration and held-out (``held_harmful``, from
    :func:`_parts`) and evaluation-only."""
    return [*held_harmful, *(a for cat in C._EVALUATION_HARMFUL_ACTS.values() for a in cat)]


def decontaminated_acts() -> tuple[list[str], list[str]]:
    """The harm-word (harmful, benign) acts kept by the decontamination rule of the module docstring."""
    _, held_harmful, _, held_benign = _parts()
    eval_benign = [a for cat in C._EVALUATION_BENIGN_ACTS.values() for a in cat]
    harmful = _kept(HARMWORD_HARMFUL_ACTS, _held_back_harmful(held_harmful))
    benign = _kept(HARMWORD_BENIGN_ACTS, [*held_benign, *eval_benign, *C._EVALUATION_BENIGN,
                                          *C._knowledge_prompts(held_out=True)])
    return harmful, benign


def _framed(acts: list[str], n_frames: int, n_terse: int) -> list[str]:
    out = []
    for i, act in enumerate(acts):
        out += [C._fill(C.FRAMES[(i * 7 + j) % len(C.FRAMES)], act) for j in range(n_frames)]
        out += [C._fill(TERSE_FRAMES[(i * 5 + j) % len(TERSE_FRAMES)], act) for j in range(n_terse)]
    return out


def training_contrast_prompts() -> tuple[list[str], list[str]]:
    """(harmful, benign) training prompts: the decontaminated harm-word acts in 2 frames + 2 terse frames each, and
    the training-part acts of :func:`~certify.prompts.corpus.split_by_act` in 2 terse frames each. Deterministic."""
    train_harmful, _, train_benign, _ = _parts()
    harmful, benign = decontaminated_acts()
    return ([*_framed(harmful, 2, 2), *_framed(train_harmful, 0, 2)],
            [*_framed(benign, 2, 2), *_framed(train_benign, 0, 2)])


def generic_prompts() -> list[str]:
    """Harmful training prompts of the generic acts (:data:`certify.prompts._generic.GENERIC_HARMFUL_ACTS`: a crime or
    attack with no named victim or purpose, "break into a bank's computer systems"), decontaminated like the harm-word
    harmful acts, each in 2 frames + 2 terse frames (session 15, candidate L4)."""
    from certify.prompts._generic import GENERIC_HARMFUL_ACTS

    return _framed(_kept(GENERIC_HARMFUL_ACTS, _held_back_harmful(_parts()[1])), 2, 2)

