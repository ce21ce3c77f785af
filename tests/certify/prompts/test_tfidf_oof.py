"""The TF-IDF fallback's threshold cap is reproducible from the training side alone (issue 18, session 14)."""

from __future__ import annotations

import pytest

from certify.prompts import filters
from certify.prompts._tfidf_oof import _fold_of, out_of_fold_thresholds


def test_folds_are_whole_groups_dealt_evenly() -> None:
    import numpy as np

    groups = [3, 3, 1, 7, 7, 7, 2, 9, 1, 4]
    folds = _fold_of(groups, np.random.default_rng(0))
    for g in set(groups):  # every item of a group in one fold
        assert len({int(f) for f, h in zip(folds, groups) if h == g}) == 1
    per_fold = [len({h for f, h in zip(folds, groups) if f == k}) for k in range(3)]
    assert sorted(per_fold) == [2, 2, 2] or max(per_fold) - min(per_fold) <= 1


@pytest.mark.slow
def test_stored_out_of_fold_thresholds_are_reproduced() -> None:
    # The cap of generated_filter(kind="tfidf")'s threshold is a stored constant; it must be what the documented
    # cross-validation gives (a changed recipe or corpus must update it, or the cap is no longer the recipe's).
    assert out_of_fold_thresholds() == pytest.approx(filters._TFIDF_OOF_THRESHOLDS, abs=1e-4)
