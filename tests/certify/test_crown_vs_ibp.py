"""CROWN, CROWN-IBP and alpha-CROWN are never looser than IBP (issue 14, "Must show").

CROWN's linear relaxations (of max pooling, LayerNorm, ...) and CROWN-IBP's (on any network) can be looser than
interval arithmetic on some outputs: the raw bounds of CROWN on ``maxpool2d_overlap_pad`` at eps 0.3 are looser
than IBP's on every output. By default (``intersect_ibp=True``) the final bounds are intersected with
``method="ibp"``'s. For CROWN (and alpha-CROWN) they are computed by the same code as that method, so the
comparison below is exact: no tolerance, in float32 as in float64 (the IBP bounds are bit-identical to
``method="ibp"``'s, and the intersection is an element-wise max / min, which does not round). CROWN-IBP's
intermediate bounds are IBP's already, so its final IBP bound is one more interval step from them (no second
pass): equal to ``method="ibp"``'s in exact arithmetic, but summed in another order (``method="ibp"`` runs compiled
kernels on the box's centre and radius), so it is compared up to 8 units in the last place of the bound
(measured: no difference at all on these models).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import certify
from tests.certify.test_layers import _layer_models

_SLOW = pytest.mark.slow
# float64 / L-inf in the fast suite, the other three combinations slow (as in test_layers.py)
DTYPE_NORM = [pytest.param(torch.float64, math.inf, id="float64-linf"),
              pytest.param(torch.float32, math.inf, id="float32-linf", marks=_SLOW),
              pytest.param(torch.float64, 2.0, id="float64-l2", marks=_SLOW),
              pytest.param(torch.float32, 2.0, id="float32-l2", marks=_SLOW)]
EPS = (0.02, 0.1, 0.3)
# the models on which the raw bounds are looser than IBP's somewhere (measured: 75-100% of the outputs at
# eps 0.3 on the max-pooling models, 33% for CROWN-IBP on LayerNorm's)
POOLING = ["maxpool2d", "maxpool2d_overlap_pad", "f_max_pool2d", "adaptive_maxpool2d", "global_maxpool", "layernorm"]


def _ulps(t: torch.Tensor, method: str) -> torch.Tensor | float:
    """The rounding allowance: none for CROWN, 8 ulps of the bound for CROWN-IBP (see the module docstring)."""
    return 0.0 if method != "crown-ibp" else 8 * torch.finfo(t.dtype).eps * (1 + t.abs())


def _setup(name: str, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.Tensor]:
    model, shape = _layer_models()[name]
    model = model.to(dtype).eval()
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    return model, x


@pytest.mark.parametrize(("dtype", "norm"), DTYPE_NORM)
@pytest.mark.parametrize("name", list(_layer_models()))
def test_crown_is_never_looser_than_ibp(name: str, dtype: torch.dtype, norm: float) -> None:
    """Fails without the intersection (on the max-pooling and LayerNorm models, see POOLING)."""
    model, x = _setup(name, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32's low-precision warning
        for eps in EPS:
            ibp = certify.bounds(model, x, eps, norm=norm, method="ibp")
            for method in ("crown", "crown-ibp"):
                b = certify.bounds(model, x, eps, norm=norm, method=method)
                assert bool((b.lower >= ibp.lower - _ulps(ibp.lower, method)).all()), (method, eps)
                assert bool((b.upper <= ibp.upper + _ulps(ibp.upper, method)).all()), (method, eps)


@pytest.mark.parametrize("name", POOLING)
def test_alpha_crown_and_margins_are_never_looser_than_ibp(name: str) -> None:
    """alpha-CROWN, and margins (a specification folded into the last layer): the IBP bound compared is that
    of the same specification."""
    model, x = _setup(name, torch.float64)
    y = torch.tensor([0, 1, 2])
    for eps in EPS:
        ibp = certify.bounds(model, x, eps, method="ibp")
        b = certify.bounds(model, x, eps, method="alpha-crown", iterations=3)
        assert bool((b.lower >= ibp.lower).all()) and bool((b.upper <= ibp.upper).all()), eps
        ibp_m = certify.margin_bounds(model, x, y, eps, method="ibp")
        for method in ("crown", "crown-ibp", "alpha-crown"):
            kw = {"iterations": 3} if method == "alpha-crown" else {}
            m = certify.margin_bounds(model, x, y, eps, method=method, **kw)  # type: ignore[arg-type]
            assert bool((m.lower >= ibp_m.lower - _ulps(ibp_m.lower, method)).all()), (method, eps)
            assert bool((m.upper <= ibp_m.upper + _ulps(ibp_m.upper, method)).all()), (method, eps)
            # verify: every input IBP verifies is verified (at a radius where IBP verifies some)
            ok_ibp = certify.verify(model, x, y, eps / 30, method="ibp")
            ok = certify.verify(model, x, y, eps / 30, method=method, **kw)  # type: ignore[arg-type]
            assert bool((ok | ~ok_ibp).all()), (method, eps)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", POOLING)
def test_sound_mode_crown_is_never_looser_than_sound_ibp(name: str, dtype: torch.dtype) -> None:
    model, x = _setup(name, dtype)
    for eps in EPS:
        ibp = certify.bounds(model, x, eps, method="ibp", sound=True)
        for method in ("crown", "crown-ibp"):
            b = certify.bounds(model, x, eps, method=method, sound=True)
            assert bool((b.lower >= ibp.lower).all()) and bool((b.upper <= ibp.upper).all()), (method, eps)


def test_intersect_ibp_false_gives_the_raw_bounds_and_true_their_intersection_with_ibp() -> None:
    """The keyword has an effect where CROWN is looser (it would be vacuous otherwise), and the default is
    exactly the element-wise intersection of the raw bounds with IBP's."""
    model, x = _setup("maxpool2d_overlap_pad", torch.float64)
    for method in ("crown", "crown-ibp"):
        raw = certify.bounds(model, x, 0.3, method=method, intersect_ibp=False)
        ibp = certify.bounds(model, x, 0.3, method="ibp")
        both = certify.bounds(model, x, 0.3, method=method)
        assert bool((raw.lower < ibp.lower).any())  # CROWN's relaxation of max pooling is the looser here
        torch.testing.assert_close(both.lower, torch.maximum(raw.lower, ibp.lower), rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(both.upper, torch.minimum(raw.upper, ibp.upper), rtol=1e-14, atol=1e-14)
        if method == "crown":  # the very same IBP computation: bit for bit
            assert torch.equal(both.lower, torch.maximum(raw.lower, ibp.lower))
            assert torch.equal(both.upper, torch.minimum(raw.upper, ibp.upper))
    # no effect with IBP itself
    assert torch.equal(certify.bounds(model, x, 0.3, method="ibp", intersect_ibp=False).lower, ibp.lower)


def test_intersection_keeps_crown_bounds_where_crown_is_tighter() -> None:
    """On a ReLU network at a small radius CROWN is tighter than IBP everywhere: the default changes nothing."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 20), torch.nn.ReLU(), torch.nn.Linear(20, 20),
                                    torch.nn.ReLU(), torch.nn.Linear(20, 4)).double().eval()
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    raw = certify.bounds(model, x, 0.01, intersect_ibp=False)
    assert torch.equal(certify.bounds(model, x, 0.01).lower, raw.lower)
    assert torch.equal(certify.bounds(model, x, 0.01).upper, raw.upper)


@pytest.mark.parametrize("value", ["no", None, 1])
def test_intersect_ibp_is_validated(value: object) -> None:
    model, x = _setup("maxpool2d", torch.float64)
    with pytest.raises(TypeError, match="Expected argument `intersect_ibp` to be True or False"):
        certify.bounds(model, x, 0.1, intersect_ibp=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected argument `intersect_ibp` to be True or False"):
        certify.verify(model, x, torch.tensor([0, 1, 2]), 0.1, intersect_ibp=value)  # type: ignore[arg-type]
