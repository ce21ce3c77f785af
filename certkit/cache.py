"""The on-disk model cache: train once, load afterwards.

The cache directory is ``$CERTKIT_CACHE`` when set, else the platform's user cache directory for
``certkit`` (``platformdirs.user_cache_dir``: ``$XDG_CACHE_HOME/certkit`` or ``~/.cache/certkit`` on
Linux, ``~/Library/Caches/certkit`` on macOS, ``%LOCALAPPDATA%\\certkit\\Cache`` on Windows). A cached
file is keyed by its name, which includes a recipe version, so a changed recipe never loads stale
weights. Training is seeded and never touches torch's global random state (it runs inside
``torch.random.fork_rng``). Concurrent first uses (e.g. pytest-xdist workers on a cold cache) are
serialised by a cross-platform file lock (``filelock``): one process trains, the others wait and load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock
from platformdirs import user_cache_dir
from torch import nn

__all__ = ["cache_dir", "load_or_train"]


def cache_dir() -> Path:
    """The model cache directory (created on first use)."""
    root = os.environ.get("CERTKIT_CACHE")
    path = Path(root) if root else Path(user_cache_dir("certkit", appauthor=False))
    where = "$CERTKIT_CACHE" if root else "the user cache directory"
    if path.exists() and not path.is_dir():
        raise ValueError(f"Expected {where} ({path}) to be a directory, but it is a file; set CERTKIT_CACHE to a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"Expected {where} ({path}) to be a creatable directory, but: {e.strerror}") from e
    return path


def load_or_train(name: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], object]) -> nn.Module:
    """Load ``name`` from the cache, or build it, train it in place, save it atomically.

    Args:
        name: cache key, including a recipe version (e.g. ``"digits_cnn-v1"``).
        build: returns a freshly initialised module (called under a seeded, forked RNG).
        train: trains the module in place.

    Returns:
        The model in eval mode, on the CPU.
    """
    if not isinstance(name, str) or not name or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"Expected argument `name` to be a non-empty file name without separators, but got {name!r}")
    path = cache_dir() / f"{name}.pt"
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False):
        torch.manual_seed(0)
        model = build()
    with FileLock(str(path.with_suffix(".lock"))):
        if path.exists():
            try:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                return model.eval()
            except (RuntimeError, OSError, EOFError, ValueError):
                pass  # corrupt or stale file: retrain below
        with torch.inference_mode(False), torch.enable_grad():  # callers may be inside inference_mode/no_grad
            train(model)
        model.eval()
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    return model
