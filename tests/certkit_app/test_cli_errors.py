"""The CLI's documented exit codes hold for every failure (issue 13): 2 with a one-line message, no traceback."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from certkit_app import cli


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_missing_optional_extra_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    def missing(*_: object, **__: object) -> None:
        raise ModuleNotFoundError("No module named 'transformers'", name="transformers")

    monkeypatch.setattr(cli, "_load_filter", missing)
    assert cli.main(["erase-check", "hello there"]) == 2
    assert "certkit[llm]" in _err(capsys)


def test_unreadable_and_non_utf8_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["erase-check", "--file", str(tmp_path / "absent.txt")]) == 2
    assert "--file" in _err(capsys)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    assert cli.main(["erase-check", "--file", str(bad)]) == 2
    assert "UTF-8" in _err(capsys)
    assert cli.main(["erase-check", "--file", str(tmp_path)]) == 2  # a directory
    _err(capsys)


def test_bad_prompt_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    for prompt in ["\u200b\u200b", "bad \udcff surrogate"]:
        assert cli.main(["erase-check", prompt]) == 2
        assert "prompt" in _err(capsys)


def test_json_is_valid_in_an_ascii_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", out)
    cli.print_json({"prompt": "café 日本 \udcff"})
    out.flush()
    raw = out.buffer.getvalue()  # type: ignore[attr-defined]
    assert json.loads(raw.decode("ascii"))["prompt"] == "café 日本 \udcff"


@pytest.mark.parametrize(("argv", "names"), [
    (["erase-check", "--num-blocks", "3", "hi"], ["--num-blocks", "--mode insertion"]),  # was ignored, yet reported
    (["erase-check", "--mode", "infusion", "--num-blocks", "2", "hi"], ["--num-blocks"]),
    (["erase-check", "--filter", "tfidf", "--harmful-label", "0", "hi"], ["--harmful-label", "--filter"]),
])
def test_flags_that_would_be_ignored_exit_2(argv: list[str], names: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = _err(capsys)
    assert all(n in err for n in names), err


def test_bad_filter_names_the_option_and_every_builtin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.txt").write_text("x\n")
    assert cli.main(["erase-check", "--filter", str(tmp_path / "p.txt"), "hi"]) == 2
    assert "'specific'" in _err(capsys)  # the documented built-in was missing from the list
    pytest.importorskip("transformers", reason="the optional 'llm' extra is not installed")
    assert cli.main(["erase-check", "--filter", str(tmp_path), "hi"]) == 2  # a directory holding no model
    err = _err(capsys)
    assert "--filter" in err and str(tmp_path) in err, err  # was transformers' message alone
