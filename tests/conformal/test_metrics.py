import numpy as np
import pytest

from conformal import metrics

MASK = np.array([[True, False, False], [True, True, False], [False, False, False], [True, True, True]])
Y = np.array([0, 2, 1, 1])


def test_values() -> None:
    assert metrics.coverage(MASK, Y) == 0.5
    assert metrics.average_size(MASK) == 1.5
    assert metrics.singleton_rate(MASK) == 0.25
    assert metrics.empty_rate(MASK) == 0.25
    # strata: size 0-1 -> covered [1, 0] = .5; size 2-3 -> [0, 1] = .5
    assert metrics.size_stratified_coverage_violation(MASK, Y, 0.1) == pytest.approx(0.4)
    # classes: 0 -> 1.0, 1 -> .5, 2 -> 0 ; gaps .1, .4, .9
    assert metrics.class_coverage_gap(MASK, Y, 0.1) == pytest.approx(1.4 / 3)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="bool mask"):
        metrics.average_size(np.ones((2, 2)))
    with pytest.raises(ValueError, match="class indices"):
        metrics.coverage(MASK, np.array([0, 3, 0, 0]))
