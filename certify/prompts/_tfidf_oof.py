"""The out-of-fold thresholds that cap the TF-IDF fallback's threshold (issue 18, session 14).

``python -m certify.prompts._tfidf_oof`` recomputes :data:`certify.prompts.filters._TFIDF_OOF_THRESHOLDS`: a grouped
3-fold cross-validation of the fallback's recipe (``generated_filter(kind="tfidf")``'s training data and
``TfidfFilter(class_balance=2.0)``) on the TRAINING side only, for fold seeds 1-5. Items and their groups: the
training part's harmful and benign acts of :func:`certify.prompts.corpus.split_by_act` (by act), the training
knowledge questions (by topic), the benign prompts of other styles (by style) and the decontaminated harmful extras
(by act); certkit's embedded prompts are always trained on. Folds are drawn per kind of item. Per seed, the threshold
is the group PAC rule (:func:`certify.prompts.filters.pac_threshold`, epsilon = delta = 0.05, groups = act ids) on the
out-of-fold scores of the generated training harmful acts. Neither the calibration part nor any held-out, evaluation
or shared prompt is used. Deterministic (numpy generators seeded with the fold seed; liblinear is deterministic);
about 2 CPU minutes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

__all__ = ["out_of_fold_thresholds"]


def _fold_of(groups: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Fold 0-2 of each item: the sorted distinct groups permuted by ``rng``, dealt round-robin."""
    distinct = sorted(set(groups))
    fold = {g: int(r) % 3 for g, r in zip(distinct, rng.permutation(len(distinct)))}
    return np.array([fold[g] for g in groups])


def out_of_fold_thresholds(seeds: Sequence[int] = (1, 2, 3, 4, 5)) -> tuple[float, ...]:
    """The group PAC threshold on the out-of-fold scores of the training harmful acts, one per fold seed."""
    from certify.prompts.corpus import (
        _knowledge_prompts,
        _training_benign_prompts,
        _training_harmful_extra,
        generated_prompts,
        split_by_act,
    )
    from certify.prompts.data import embedded_prompts
    from certify.prompts.filters import TfidfFilter, pac_threshold

    train = split_by_act(generated_prompts())[0]
    own = embedded_prompts()
    knowledge = _knowledge_prompts()
    styles, style_groups = _training_benign_prompts()
    extras, extra_groups = _training_harmful_extra(decontaminated=True)
    kinds: dict[str, tuple[list[str], list[int], bool]] = {  # kind -> (prompts, groups, harmful?)
        "harmful acts": ([p for p, y in zip(train.prompts, train.labels) if y == 1],
                         [g for g, y in zip(train.groups, train.labels) if y == 1], True),
        "benign acts": ([p for p, y in zip(train.prompts, train.labels) if y == 0],
                        [g for g, y in zip(train.groups, train.labels) if y == 0], False),
        "knowledge": (list(knowledge), [i // 4 for i in range(len(knowledge))], False),
        "styles": (list(styles), list(style_groups), False),
        "extras": (list(extras), list(extra_groups), True),
    }
    thresholds = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        folds = {kind: _fold_of(groups, rng) for kind, (_, groups, _) in kinds.items()}
        harmful_scores = np.zeros(len(kinds["harmful acts"][0]))
        for k in range(3):
            fit = {True: list(own.harmful), False: list(own.safe)}
            for kind, (prompts, _, harmful) in kinds.items():
                fit[harmful] += [p for p, f in zip(prompts, folds[kind]) if f != k]
            model = TfidfFilter(class_balance=2.0).fit(fit[True], fit[False])
            held = np.flatnonzero(folds["harmful acts"] == k)
            harmful_scores[held] = model.predict_proba([kinds["harmful acts"][0][i] for i in held])
        thresholds.append(float(pac_threshold(harmful_scores, 0.05, 0.05, groups=kinds["harmful acts"][1])))
    return tuple(thresholds)


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    from certify.prompts.filters import _TFIDF_OOF_THRESHOLDS

    ts = out_of_fold_thresholds()
    print("out-of-fold thresholds, fold seeds 1-5:", ", ".join(f"{t:.4f}" for t in ts), f"(max {max(ts):.4f})")
    print("stored in certify.prompts.filters._TFIDF_OOF_THRESHOLDS:", ", ".join(f"{t:.4f}" for t in _TFIDF_OOF_THRESHOLDS))


if __name__ == "__main__":
    main()
