import pytest

from certkit_app.demos.code_sets import demo_code_sets


@pytest.mark.slow
def test_demo_code_sets_runs_and_reports_monotone_removal() -> None:
    rows = demo_code_sets(n_tasks=80, epsilons=(0.1, 0.4), n_splits=5, verbose=False)
    assert [r.epsilon for r in rows] == [0.1, 0.4]
    assert all(0 <= r.fraction_removed <= 1 and 0 <= r.coverage <= 1 for r in rows)
    assert rows[0].fraction_removed >= rows[1].fraction_removed  # a looser epsilon removes less
