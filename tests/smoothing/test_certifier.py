"""The smoothing certifier objects: Gaussian noise only, and equality that matches hashing."""

from __future__ import annotations

import pytest
import torch

from smoothing import (
    GaussianNoise,
    LaplaceNoise,
    SmoothedRegressionCertifier,
    SmoothingCertifier,
    UniformNoise,
)
from smoothing.scores import smoothed_scores


def test_gaussian_noise_object_is_its_sigma_and_other_noise_is_refused() -> None:
    assert SmoothingCertifier(sigma=GaussianNoise(0.5)) == SmoothingCertifier(sigma=0.5)
    for noise in (UniformNoise(0.5), LaplaceNoise(0.25)):
        with pytest.raises(ValueError, match="Gaussian noise only"):
            SmoothingCertifier(sigma=noise)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="Gaussian noise only"):
            smoothed_scores(torch.nn.Flatten(), torch.zeros(2, 3), lambda p: p, sigma=noise, n_mc=4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`sigma`"):
        SmoothingCertifier(sigma="0.5")  # type: ignore[arg-type]


def test_equality_is_by_value_except_generator_and_transform_and_agrees_with_hash() -> None:
    g = torch.Generator()
    transform = lambda s: s  # noqa: E731
    a = SmoothingCertifier(sigma=0.5, n_mc=64, generator=g, transform=transform)
    b = SmoothingCertifier(sigma=0.5, n_mc=64, generator=g, transform=transform)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != SmoothingCertifier(sigma=0.5, n_mc=64, generator=torch.Generator(), transform=transform)
    assert a != SmoothingCertifier(sigma=0.5, n_mc=65, generator=g, transform=transform)
    assert a != SmoothingCertifier(sigma=0.5, n_mc=64, generator=g, transform=lambda s: s)

    class Unhashable:  # e.g. a fitted transform with value equality: compared (and hashed) by identity
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Unhashable)

        def __call__(self, s: torch.Tensor) -> torch.Tensor:
            return s

    t1, t2 = Unhashable(), Unhashable()
    c = SmoothingCertifier(transform=t1)
    assert c == SmoothingCertifier(transform=t1) and hash(c) == hash(SmoothingCertifier(transform=t1))
    assert c != SmoothingCertifier(transform=t2)
    r = SmoothedRegressionCertifier(sigma=0.5, output_range=(0.0, 1.0), generator=g)
    assert r == SmoothedRegressionCertifier(sigma=0.5, output_range=(0, 1), generator=g)
    assert hash(r) == hash(SmoothedRegressionCertifier(sigma=0.5, output_range=(0, 1), generator=g))
    assert r != SmoothedRegressionCertifier(sigma=0.5, output_range=(0.0, 1.0))
    assert r != a
