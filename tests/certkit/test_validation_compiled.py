"""The compiled verdict of check_probs (certkit._kernels, numba: the extra ``certkit[fast]``) against the numpy
path: the same pass/fail on every matrix (good, NaN, +-inf, negative, > 1, rows off by just more / just less than
the tolerance, float32/float64, C- and F-ordered, numpy and torch) and the same error message, and each validated
calibrate/predict call checks its matrix once."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("numba", reason="numba is not installed (pip install 'certkit[fast]'): no compiled check to test")

from certkit import _kernels
from certkit import _validation as v


def _numpy_outcome(monkeypatch: pytest.MonkeyPatch, p: Any, tol: float | None) -> str | None:
    monkeypatch.setattr(v, "_USE_COMPILED", False)
    try:
        v.check_probs(p, "probs", atol=tol)
    except ValueError as err:
        return str(err)
    return None


def _compiled_outcome(monkeypatch: pytest.MonkeyPatch, p: Any, tol: float | None) -> str | None:
    monkeypatch.setattr(v, "_USE_COMPILED", True)
    try:
        v.check_probs(p, "probs", atol=tol)
    except ValueError as err:
        return str(err)
    return None


def _matrices() -> list[tuple[str, np.ndarray, float | None]]:
    """(case, float64 matrix, atol) pairs; each is also tried in float32, F-ordered and as a tensor."""
    k, tol = 50, 1e-4
    rng = np.random.default_rng(0)
    good = rng.dirichlet(np.ones(k), size=40)
    out: list[tuple[str, np.ndarray, float | None]] = [("good", good, None), ("good tol", good, tol)]
    for row in (0, 17, 39):  # the first, a middle and the last row fail: every row is read
        for what, val in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
            p = good.copy()
            p[row, 3] = val
            out.append((f"{what} row {row}", p, None))
        p = good.copy()
        p[row, 0], p[row, 1] = -0.25, p[row, 1] + p[row, 0] + 0.25  # negative, the row still sums to 1
        out.append((f"negative row {row}", p, None))
        p = good.copy()
        p[row, :] = 0.0
        p[row, 0] = 1.5  # > 1 (the row sum is off too)
        out.append((f"above one row {row}", p, None))
    base = np.full((40, k), 1.0 / k)
    # off by just less / just more than tol: decided by the kernel (1e-9) or within its rounding bound (1e-13,
    # re-summed by numpy), and well inside / outside
    for rel in (1e-9, 1e-13, 0.5, 3.0):
        for sign in (1, -1):
            for factor in ((1 - rel, 1 + rel) if rel < 1 else (rel,)):
                p = base.copy()
                p[25, 0] += sign * tol * factor
                out.append((f"off {sign * factor} tol", p, tol))
    p = good.copy()
    p[5, 0] = -0.0  # -0.0 >= 0: accepted by both
    out.append(("negative zero", p, None))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_compiled_verdict_equals_the_numpy_verdict(monkeypatch: pytest.MonkeyPatch, dtype: type, order: str,
                                                   kind: str) -> None:
    seen_pass = seen_fail = 0
    for case, p64, tol in _matrices():
        p = np.asarray(p64, dtype=dtype, order=order)
        x: Any = torch.from_numpy(p) if kind == "torch" else p
        want = _numpy_outcome(monkeypatch, x, tol)
        assert _compiled_outcome(monkeypatch, x, tol) == want, case
        # the compiled verdict itself (not only the message of the numpy fallback): True iff numpy accepts
        t = v.probs_atol(p.dtype, p.shape[1]) if tol is None else tol
        assert v._compiled_verdict_ok(p, t) == (want is None), case
        seen_pass += want is None
        seen_fail += want is not None
    assert seen_pass >= 5 and seen_fail >= 20  # both verdicts are exercised


def test_compiled_verdict_runs_and_finds_the_rounding_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel leaves rows within its float64 rounding bound of the tolerance to numpy, decides the others."""
    k, tol = 50, 1e-4
    p = np.full((8, k), 1.0 / k)
    p[3, 0] += tol * (1 + 1e-13)
    p[5, 0] += tol * (1 - 1e-9)
    unsure = np.empty(8, dtype=np.int64)
    m = _kernels.probs_verdict(p, tol, unsure)
    assert m == 1 and unsure[0] == 3
    p[6, 0] += 3 * tol
    assert _kernels.probs_verdict(p, tol, unsure) == -1


class _Spy:
    def __init__(self) -> None:
        self.calls = 0

    def probs_verdict(self, p: np.ndarray, tol: float, unsure: np.ndarray) -> int:
        self.calls += 1
        return int(_kernels.probs_verdict(p, tol, unsure))


@pytest.mark.parametrize("score", ["thr", "aps", "raps", "saps"])
def test_each_validated_call_checks_each_matrix_once(monkeypatch: pytest.MonkeyPatch, score: str) -> None:
    from conformal import SplitConformal

    spy = _Spy()
    monkeypatch.setattr(v, "_USE_COMPILED", True)
    monkeypatch.setattr(v, "_KERNELS", [types.SimpleNamespace(probs_verdict=spy.probs_verdict)])
    g = torch.Generator().manual_seed(0)
    cal = torch.softmax(3 * torch.randn(500, 10, generator=g), -1).numpy()
    labels = np.arange(500) % 10
    cp = SplitConformal(score=score, alpha=0.1).calibrate(cal, labels)
    assert spy.calls == 1
    cp.predict(cal)
    assert spy.calls == 2
    SplitConformal(score=score, alpha=0.1, validate=False).calibrate(cal, labels).predict(cal)
    assert spy.calls == 2


def test_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """None follows CERTKIT_NO_NUMBA from the size floor on (the rule of conformal.scores); False never; True
    always, and without numba is an ImportError."""
    big, small = v._COMPILED_MIN_ENTRIES, v._COMPILED_MIN_ENTRIES - 1
    monkeypatch.setattr(v, "_USE_COMPILED", None)
    monkeypatch.delenv("CERTKIT_NO_NUMBA", raising=False)
    assert v._compiled_checks(big) is _kernels and v._compiled_checks(small) is None
    monkeypatch.setenv("CERTKIT_NO_NUMBA", "1")
    assert v._compiled_checks(big) is None
    monkeypatch.setattr(v, "_USE_COMPILED", True)
    assert v._compiled_checks(small) is _kernels
    monkeypatch.setattr(v, "_USE_COMPILED", False)
    monkeypatch.delenv("CERTKIT_NO_NUMBA")
    assert v._compiled_checks(big) is None
    monkeypatch.setattr(v, "_KERNELS", [None])  # as when numba does not import
    monkeypatch.setattr(v, "_USE_COMPILED", None)
    assert v._compiled_checks(big) is None
    monkeypatch.setattr(v, "_USE_COMPILED", True)
    with pytest.raises(ImportError, match="certkit\\[fast\\]"):
        v._compiled_checks(big)
