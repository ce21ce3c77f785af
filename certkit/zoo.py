"""Reference models for the digits dataset, trained on the fly and cached on disk.

The cache directory is ``$CERTKIT_CACHE`` when set, else ``$XDG_CACHE_HOME/certkit`` or
``~/.cache/certkit``. A cached file is keyed by the model's name and recipe version, so a
changed recipe never loads stale weights. Training is seeded and never touches torch's
global random state (it runs inside ``torch.random.fork_rng``).

Other packages register their own cached models with :func:`load_or_train` (e.g. the
certified-trained CNN in ``certify.training``, noise-trained models in ``smoothing``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from certkit.datasets import load_digits_split

__all__ = [
    "cache_dir",
    "digits_cnn",
    "digits_mlp",
    "load_or_train",
    "make_digits_cnn",
    "make_digits_mlp",
    "train_classifier",
]


def cache_dir() -> Path:
    """The model cache directory (created on first use)."""
    root = os.environ.get("CERTKIT_CACHE")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "certkit"
    path.mkdir(parents=True, exist_ok=True)
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
    path = cache_dir() / f"{name}.pt"
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False):
        torch.manual_seed(0)
        model = build()
    # One process trains, the others (e.g. pytest-xdist workers on a cold cache) wait and load.
    with _file_lock(path.with_suffix(".lock")):
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


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent first uses may both train; writes stay atomic
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_digits_mlp() -> nn.Sequential:
    """MLP 64-256-256-10 with ReLU, taking (N, 1, 8, 8) images."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def make_digits_cnn() -> nn.Sequential:
    """Small CNN: conv 16@3x3 pad 1, conv 32@4x4 stride 2, fc 128, fc 10 (ReLU between)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 3 * 3, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def train_classifier(
    model: nn.Module,
    *,
    epochs: int = 40,
    lr: float = 2e-3,
    batch_size: int = 64,
    noise_sigma: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` on the digits train split with Adam and cross-entropy.

    ``noise_sigma > 0`` adds Gaussian noise N(0, sigma^2 I) to every training image (the
    noise augmentation of Cohen et al. 2019 that makes a good base classifier for smoothing).
    Seeded by ``seed`` through a local ``torch.Generator``; global RNG state is untouched.
    """
    data = load_digits_split("train")
    x, y = data.images, data.labels
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            xb = x[idx]
            if noise_sigma > 0:
                xb = xb + noise_sigma * torch.randn(xb.shape, generator=g)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def digits_mlp() -> nn.Sequential:
    """The standard-trained digits MLP (cached). Test accuracy about 97%."""
    model = load_or_train("digits_mlp-v1", make_digits_mlp, train_classifier)
    assert isinstance(model, nn.Sequential)
    return model


def digits_cnn() -> nn.Sequential:
    """The standard-trained digits CNN (cached). Test accuracy about 98%."""
    model = load_or_train("digits_cnn-v1", make_digits_cnn, train_classifier)
    assert isinstance(model, nn.Sequential)
    return model
