"""Session-16 additions to the MiniLM filter's data (issue 18): the second generic harmful training acts and the
decontamination rule of the blind evaluation sets ``_fresh3`` to ``_fresh5``.

Kept apart from :mod:`certify.prompts._contrast` because both depend on :mod:`certify.prompts._fresh2`, which itself
depends on ``_contrast`` (one-way imports: ``_contrast`` <- ``_fresh2`` <- this module <- ``_fresh3`` ... ``_fresh5``).
"""

from __future__ import annotations

from certify.prompts import _fresh2
from certify.prompts._contrast import _framed, _held_back_harmful, _kept, _parts
from certify.prompts._generic2 import GENERIC_HARMFUL_ACTS_2

__all__: list[str] = []


def generic2_prompts() -> list[str]:
    """Harmful training prompts of the second set of generic acts
    (:data:`certify.prompts._generic2.GENERIC_HARMFUL_ACTS_2`, written blind by helper gen16 in session 16), each in
    2 frames + 2 terse frames. An act is dropped if text-close
    (>= :data:`certify.prompts._contrast.CONTRAST_COSINE`) to a held-back harmful act (as
    :func:`certify.prompts._contrast.generic_prompts`) or to any act of :mod:`certify.prompts._fresh2`, calibration
    or evaluation (its calibration acts calibrate the mixture threshold; a paraphrase in training would void it). (The
    evaluation acts of :mod:`certify.prompts._fresh3`, written later, are decontaminated the other way:
    ``_fresh3.kept()`` drops those close to these acts.)"""
    ref = [*_held_back_harmful(_parts()[1]), *_fresh2.CALIBRATION_GENERIC_HARMFUL_ACTS,
           *_fresh2.EVALUATION_HARMFUL_ACTS, *_fresh2.EVALUATION_BENIGN_ACTS]
    return _framed(_kept(GENERIC_HARMFUL_ACTS_2, ref), 2, 2)


def far_from_training_side(acts: tuple[str, ...]) -> tuple[str, ...]:
    """``acts`` without those text-close (>= :data:`certify.prompts._contrast.CONTRAST_COSINE`) to a training-side
    text: those of :func:`certify.prompts._fresh2.kept` plus :data:`certify.prompts._generic2.GENERIC_HARMFUL_ACTS_2`
    (the rule of the session-16 evaluation sets ``_fresh3``, ``_fresh4``, ``_fresh5``)."""
    return tuple(_kept(acts, [*_fresh2._training_side_texts(), *GENERIC_HARMFUL_ACTS_2]))
