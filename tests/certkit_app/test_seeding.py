"""The application layer's ``generator`` arguments (which replaced ``seed: int``): same numbers by default,
``seed=`` deprecated for one release."""

from __future__ import annotations

import warnings

import pytest
import torch

from certkit_app._seeding import base_seed
from certkit_app.diabetes import diabetes_mlp
from certkit_app.digits import make_digits_mlp, train_classifier


def test_base_seed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert base_seed(None, None, where="f") == 0
        g = torch.Generator().manual_seed(3)
        first = base_seed(g, None, where="f")
        assert first == base_seed(torch.Generator().manual_seed(3), None, where="f")
        assert base_seed(g, None, where="f") != first  # a generator advances
    with pytest.warns(DeprecationWarning, match="`seed` of f"):
        assert base_seed(None, 7, where="f") == 7
    with pytest.raises(ValueError, match="`generator` or the deprecated `seed`"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base_seed(torch.Generator(), 7, where="f")
    with pytest.raises(TypeError, match="`generator`"):
        base_seed(7, None, where="f")  # type: ignore[arg-type]


def test_recipes_take_a_generator_and_deprecate_seed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = diabetes_mlp(steps=2)
    with pytest.warns(DeprecationWarning, match="`seed`"):
        seeded = diabetes_mlp(steps=2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(default.parameters(), seeded.parameters()))
    start = make_digits_mlp().state_dict()
    a, b = make_digits_mlp(), make_digits_mlp()
    a.load_state_dict(start)
    b.load_state_dict(start)
    with pytest.warns(DeprecationWarning, match="`seed`"):
        train_classifier(a, epochs=1, seed=4)
    train_classifier(b, epochs=1, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
