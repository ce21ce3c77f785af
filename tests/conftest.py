"""Shared fixtures: the digits data and the standard reference models' probabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def digits_pool() -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (797, 10) of the digits CNN on the calibration + test splits, and their labels."""
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn
    from conformal import predict_proba

    cal, test = load_digits_split("calibration"), load_digits_split("test")
    x = torch.cat([cal.images, test.images])
    y = torch.cat([cal.labels, test.labels])
    return predict_proba(digits_cnn(), x).double(), y


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The `../shared` folder beside the checkout; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (it exists only on the project's machines)")
    return SHARED


@pytest.fixture(autouse=True)
def _isolate_global_rng():  # type: ignore[no-untyped-def]
    """Tests that seed torch's global RNG must not change it for the tests that follow on the same worker."""
    with torch.random.fork_rng(devices=[]):
        yield
