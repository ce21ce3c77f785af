from __future__ import annotations

import pytest

from certkit_app.demos.nap import demo_nap


def test_demo_nap_runs_and_reports_consistent_counts(capsys: pytest.CaptureFixture[str]) -> None:
    out = demo_nap(deltas=(0.99,), eps_values=(0.05,), n_test=4, timeout=0.5)
    text = capsys.readouterr().out
    assert "recall" in text and "ball AND NAP" in text
    row = out["delta=0.99"]
    assert isinstance(row, dict) and len(row["verdicts"]) == 10 and 0.5 < row["recall"] <= 1
    ball = out["eps=0.05"]
    assert isinstance(ball, dict) and 0 <= ball["nap"] <= ball["n"] == 4 and 0 <= ball["ball"] <= 4
