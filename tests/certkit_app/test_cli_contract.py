"""The CLI contract, sub-command by sub-command (issue 13): bad input exits 2 with one line naming the
argument (no traceback), a missing optional extra exits 2 with one line, ``--json`` is valid UTF-8 JSON."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from certkit_app import cli

# every sub-command has its --json test below; a new sub-command must be added here with one
JSON_TESTED = {"erase-check", "verify"}


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "error" in err, err
    return err


def _subcommands() -> list[str]:
    action = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_every_subcommand_has_a_json_test() -> None:
    assert set(_subcommands()) <= JSON_TESTED, f"sub-commands without a --json test: {set(_subcommands()) - JSON_TESTED}"


@pytest.mark.parametrize("command", _subcommands())
def test_usage_errors_of_every_subcommand_are_one_line(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, "--no-such-option", "x", "y"]) == 2
    assert "--no-such-option" in _one_line_error(capsys)
    if command != "erase-check":  # erase-check's prompt is optional (--file)
        assert cli.main([command]) == 2
        assert "required" in _one_line_error(capsys)


@pytest.mark.parametrize("argv, name", [
    (["erase-check", "--max-erase", "-1", "hi"], "--max-erase"),
    (["erase-check", "--max-erase", "x", "hi"], "--max-erase"),
    (["erase-check", "--num-blocks", "0", "hi"], "--num-blocks"),
    (["erase-check", "--threshold", "nan", "hi"], "--threshold"),
    (["erase-check", "--threshold", "1.5", "hi"], "--threshold"),
    (["erase-check", "--budget", "0", "hi"], "--budget"),
    (["erase-check", "--harmful-label", "-2", "hi"], "--harmful-label"),
    (["erase-check", "--mode", "prefix", "hi"], "--mode"),
    (["verify", "--timeout", "-1", "m.onnx", "p.vnnlib"], "--timeout"),
    (["verify", "--timeout", "nan", "m.onnx", "p.vnnlib"], "--timeout"),
    (["verify", "--seed", "-1", "m.onnx", "p.vnnlib"], "--seed"),
    (["verify", "--seed", str(2**64), "m.onnx", "p.vnnlib"], "--seed"),  # was torch's "Overflow when unpacking long long"
    (["verify", "--method", "lp", "m.onnx", "p.vnnlib"], "--method"),
    (["verify", "/no/such/model.onnx", "p.vnnlib"], "MODEL"),
])
def test_bad_options_exit_2_naming_the_option(argv: list[str], name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert name in _one_line_error(capsys)


def test_verify_missing_property_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    assert cli.main(["verify", str(tmp_path / "m.onnx"), str(tmp_path / "absent.vnnlib")]) == 2
    assert "PROPERTY" in _one_line_error(capsys)


def _fake_verify_pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, str]:
    """``certkit verify`` on a tiny torch model and property, without the optional onnx extra."""
    import certify
    import certify.onnx_io
    from certify.vnnlib import OutputConstraint, VnnlibCase, VnnlibProperty

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    a = torch.tensor([[-1.0, 1.0, 0.0]], dtype=torch.float64)
    prop = VnnlibProperty("p.vnnlib", 4, 3, (VnnlibCase(torch.zeros(4), torch.full((4,), 0.1),
                                                      (OutputConstraint(a, torch.zeros(1, dtype=torch.float64)),)),))

    class Info:
        input_shape = (1, 4)

    monkeypatch.setattr(certify.onnx_io, "onnx_model_info", lambda path: Info())
    monkeypatch.setattr(certify, "load_onnx", lambda path: model)
    monkeypatch.setattr(certify, "load_vnnlib", lambda path, n_in, n_out: prop)
    m, p = tmp_path / "m\u00e9.onnx", tmp_path / "p.vnnlib"
    m.write_bytes(b"")
    p.write_text("")
    return str(m), str(p)


def test_verify_json_is_valid_utf8_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    m, p = _fake_verify_pipeline(monkeypatch, tmp_path)
    code = cli.main(["verify", "--json", m, p])
    out = capsys.readouterr().out
    row = json.loads(out.encode("utf-8").decode("utf-8"), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert code == {"verified": 0, "falsified": 1, "unknown": 3}[row["verdict"]]


def test_verify_missing_extra_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import certify.onnx_io

    def missing(path: Any) -> None:
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")

    m, p = _fake_verify_pipeline(monkeypatch, tmp_path)
    monkeypatch.setattr(certify.onnx_io, "onnx_model_info", missing)
    assert cli.main(["verify", m, p]) == 2
    assert "certkit[onnx]" in _one_line_error(capsys)


def test_an_unexpected_crash_exits_2_not_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("kernel\nexploded")

    monkeypatch.setattr(cli, "_load_filter", crash)
    assert cli.main(["erase-check", "hello there"]) == 2  # 1 would read as "harmful"
    assert "RuntimeError: kernel exploded" in _one_line_error(capsys)


def test_json_never_holds_bare_nan_or_infinity(capsys: pytest.CaptureFixture[str]) -> None:
    cli.print_json({"radius": math.inf, "low": -math.inf, "p": math.nan, "xs": [1.0, math.inf]})
    row = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert row == {"radius": "inf", "low": "-inf", "p": "nan", "xs": [1.0, "inf"]}


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_erase_check_json_is_valid_utf8_in_any_terminal(encoding: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": encoding}
    done = subprocess.run([sys.executable, "-m", "certkit_app.cli", "erase-check", "--json", "Comment faire un g\u00e2teau \u65e5\u672c ?"],
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.decode("utf-8"))
    assert row["prompt"] == "Comment faire un g\u00e2teau \u65e5\u672c ?"
