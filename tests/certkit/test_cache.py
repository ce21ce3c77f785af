"""The model cache: one training under concurrent first uses, the cache directory, bad names."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from certkit import cache


def test_concurrent_first_uses_train_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTKIT_CACHE", str(tmp_path))
    calls: list[int] = []

    def train(m: torch.nn.Module) -> None:
        calls.append(1)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        with torch.no_grad():
            m.weight.fill_(1.0)

    results: list[torch.nn.Module] = []
    threads = [threading.Thread(target=lambda: results.append(
        cache.load_or_train("lock-v1", lambda: torch.nn.Linear(2, 2), train))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert all(torch.equal(m.weight, torch.ones(2, 2)) for m in results) and len(results) == 2


def test_cache_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTKIT_CACHE", str(tmp_path / "a" / "b"))
    assert cache.cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    if sys.platform.startswith("linux"):  # platformdirs follows XDG on Linux; elsewhere the OS's own folder
        monkeypatch.delenv("CERTKIT_CACHE")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache.cache_dir() == tmp_path / "xdg" / "certkit"


def test_bad_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTKIT_CACHE", str(tmp_path))
    for name in ("", "a/b", 3):
        with pytest.raises(ValueError, match="`name`"):
            cache.load_or_train(name, lambda: torch.nn.Linear(1, 1), lambda m: None)  # type: ignore[arg-type]


def test_cache_dir_pointing_to_a_file_is_named(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest as _pytest

    from certkit.cache import cache_dir

    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("CERTKIT_CACHE", str(f))
    with _pytest.raises(ValueError, match=r"CERTKIT_CACHE.*is a file"):
        cache_dir()
