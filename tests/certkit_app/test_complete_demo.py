from __future__ import annotations

import pytest

from certkit_app.demos.complete import demo_complete_verification


def test_demo_complete_verification_counts(capsys: pytest.CaptureFixture[str]) -> None:
    demo_complete_verification(eps_values=(0.05,), n_test=8, timeout=0.5)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("0.05"))
    crown, alpha, verified, falsified, unknown = (int(v) for v in row.split()[1:])
    assert crown <= alpha <= verified and verified + falsified + unknown == 8
