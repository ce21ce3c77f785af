"""certify.TokenPositions: L-p regions on chosen token embeddings of a transformer classifier (issue 14)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import certify
from tests.certify.test_layers import assert_sound


def _classifier(dtype: torch.dtype, norm_first: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, activation="gelu",
                                       norm_first=norm_first, dtype=dtype)
    return nn.Sequential(layer, nn.Flatten(), nn.Linear(4 * 8, 3, dtype=dtype)).eval()


def _emb(dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(4, 8, generator=torch.Generator().manual_seed(5), dtype=dtype)


def test_forward_is_the_model_on_the_substituted_sentence() -> None:
    clf, emb = _classifier(torch.float64), _emb(torch.float64)
    g = certify.TokenPositions(clf, emb, positions=[3, -4]).eval()  # order kept; -4 is position 0
    assert g.positions == (3, 0) and g.clean.shape == (1, 2, 8)
    assert torch.equal(g.clean[0], emb[[3, 0]])
    z = torch.randn(5, 2, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    full = emb.expand(5, 4, 8).clone()
    full[:, 3], full[:, 0] = z[:, 0], z[:, 1]
    with torch.no_grad():
        assert torch.allclose(g(z), clf(full), atol=1e-12)
        assert torch.allclose(g(g.clean), clf(emb[None]), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [math.inf, 2.0])
@pytest.mark.parametrize("method", ["ibp", "crown", "crown-ibp"])
def test_bounds_over_the_token_region_are_sound(method: str, norm: float, dtype: torch.dtype) -> None:
    """>= 10^4 sampled points and PGD inside the ball around the chosen embeddings stay in the bounds, and the
    bounds are those of the classifier over every sentence that differs only there (checked by substitution)."""
    g = certify.TokenPositions(_classifier(dtype, norm_first=norm == 2.0), _emb(dtype), positions=[1, 3]).eval()
    z = g.clean.repeat(2, 1, 1) + 0.01 * torch.arange(2, dtype=dtype).reshape(2, 1, 1)
    b = assert_sound(g, z, 0.02, norm=norm, method=method, samples=10_000)
    if method == "crown":
        assert float((b.upper - b.lower).detach().max()) < 1.0  # informative, not only sound


def test_sound_mode_has_no_violation() -> None:
    g = certify.TokenPositions(_classifier(torch.float64), _emb(torch.float64), positions=[2]).eval()
    assert_sound(g, g.clean, 0.02, norm=math.inf, method="crown", samples=10_000, sound=True)


def test_only_the_chosen_positions_move() -> None:
    """A region on position 1 is narrower than the same radius on positions 1 and 2 (more freedom, wider bounds),
    and at eps 0 the bounds are the model's output at the sentence."""
    clf, emb = _classifier(torch.float64), _emb(torch.float64)
    one = certify.TokenPositions(clf, emb, [1]).eval()
    two = certify.TokenPositions(clf, emb, [1, 2]).eval()
    b1 = certify.bounds(one, one.clean, 0.05, method="crown")
    b2 = certify.bounds(two, two.clean, 0.05, method="crown")
    assert bool(((b1.upper - b1.lower) <= (b2.upper - b2.lower) + 1e-12).all())
    assert float((b2.upper - b2.lower - (b1.upper - b1.lower)).max()) > 1e-6
    b0 = certify.bounds(one, one.clean, 0.0, method="crown")
    with torch.no_grad():
        y = clf(emb[None])
    assert torch.allclose(b0.lower, y, atol=1e-9) and torch.allclose(b0.upper, y, atol=1e-9)


def test_nothing_is_mutated_and_verify_works() -> None:
    clf, emb = _classifier(torch.float64), _emb(torch.float64)
    state, emb0 = copy.deepcopy(clf.state_dict()), emb.clone()
    g = certify.TokenPositions(clf, emb[None], [0, 1]).eval()
    with torch.no_grad():
        label = clf(emb[None]).argmax(1)
    ok = certify.verify(g, g.clean, label, 1e-4, method="crown")
    assert bool(ok.all())
    assert torch.equal(emb, emb0) and not clf.training
    assert all(torch.equal(v, state[k]) for k, v in clf.state_dict().items())


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"model": "not a module"}, TypeError, "`model`"),
    ({"embeddings": [[0.0]]}, TypeError, "`embeddings`"),
    ({"embeddings": torch.zeros(4, 8, dtype=torch.int64)}, TypeError, "`embeddings`"),
    ({"embeddings": torch.zeros(2, 4, 8)}, ValueError, r"`embeddings` of shape \(T, D\)"),
    ({"embeddings": torch.full((4, 8), math.nan)}, ValueError, "`embeddings` to be finite"),
    ({"positions": []}, ValueError, "at least one position"),
    ({"positions": [4]}, ValueError, r"positions in \[-4, 4\)"),
    ({"positions": [1, -3]}, ValueError, "distinct"),
    ({"positions": [1.0]}, TypeError, "hold ints"),
    ({"positions": 1}, TypeError, "sequence of ints"),
])
def test_bad_arguments_name_the_argument(kwargs: dict, exc: type, match: str) -> None:
    args = {"model": _classifier(torch.float32), "embeddings": torch.zeros(4, 8), "positions": [1]}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        certify.TokenPositions(**args)
