"""Certified training: schedules, the differentiable margin bounds it trains on, a short run, and the
cached CROWN-IBP digits CNN."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn

import certify
from certify.attacks import pgd_margins
from certify.training import (
    CertifiedTrainer,
    TrainingHistory,
    certified_train,
    crown_ibp_margin_lower,
    ibp_init_,
    ibp_margin_lower,
    mixing_coefficient,
    robust_cross_entropy,
    smoothed_eps,
    stability_regularizer,
)
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn_certified, make_digits_cnn, make_digits_mlp


def _seeded(build: type[nn.Module] | object, seed: int = 0) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()  # type: ignore[operator,no-any-return]


def test_smoothed_eps_documented_values() -> None:
    kw = {"ramp_start": 10.0, "ramp_length": 100.0, "eps_max": 0.26}
    assert smoothed_eps(0, **kw) == 0.0
    assert smoothed_eps(10, **kw) == 0.0  # ramp start
    assert smoothed_eps(35, **kw) == pytest.approx(0.26 / 13)  # mid point 0.25 of the ramp
    assert smoothed_eps(60, **kw) == pytest.approx(5 * 0.26 / 13)  # middle of the ramp
    assert smoothed_eps(110, **kw) == pytest.approx(0.26)  # ramp end
    assert smoothed_eps(500, **kw) == 0.26
    # polynomial piece: a s^4 with a = eps_max / (m^3 ((T - m) 4 + m)), m = 25, T = 100
    a = 0.26 / (25**3 * (75 * 4 + 25))
    assert smoothed_eps(20, **kw) == pytest.approx(a * 10**4)
    values = [smoothed_eps(s / 4, **kw) for s in range(0, 500)]
    assert all(b >= a_ for a_, b in itertools.pairwise(values))
    # equal slopes where the pieces meet
    h = 1e-4
    left = (smoothed_eps(35, **kw) - smoothed_eps(35 - h, **kw)) / h
    right = (smoothed_eps(35 + h, **kw) - smoothed_eps(35, **kw)) / h
    assert left == pytest.approx(right, rel=1e-3)


def test_mixing_coefficient_kappa_and_beta() -> None:
    assert mixing_coefficient(0.0, 0.2, 0.5) == 1.0
    assert mixing_coefficient(0.1, 0.2, 0.5) == pytest.approx(0.75)
    assert mixing_coefficient(0.2, 0.2, 0.5) == pytest.approx(0.5)
    assert mixing_coefficient(0.2, 0.2, 0.0) == pytest.approx(0.0)  # beta: CROWN-IBP -> IBP
    assert mixing_coefficient(0.3, 0.2, 0.0) == pytest.approx(0.0)


def test_schedule_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="`mid`"):
        smoothed_eps(1, ramp_start=0, ramp_length=10, eps_max=0.1, mid=1.0)
    with pytest.raises(ValueError, match="`ramp_length`"):
        smoothed_eps(1, ramp_start=0, ramp_length=0, eps_max=0.1)
    with pytest.raises(ValueError, match="`method`"):
        CertifiedTrainer(method="pgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`epochs`"):
        CertifiedTrainer(epochs=10, warmup_epochs=5, ramp_epochs=8)
    with pytest.raises(ValueError, match="`final_kappa`"):
        CertifiedTrainer(final_kappa=1.5)
    with pytest.raises(ValueError, match="`eps`"):
        CertifiedTrainer(eps=-0.1)
    with pytest.raises(TypeError, match="`labels`"):
        CertifiedTrainer().fit(nn.Linear(4, 2), torch.rand(3, 4), torch.rand(3))
    with pytest.raises(ValueError, match="same length"):
        CertifiedTrainer().fit(nn.Linear(4, 2), torch.rand(3, 4), torch.tensor([0, 1]))
    with pytest.raises(NotImplementedError, match="GRU"):  # the engine's refusal of a layer it cannot bound
        ibp_margin_lower(nn.Sequential(nn.GRU(4, 4)), torch.rand(2, 3, 4), torch.tensor([0, 1]), 0.1)


@pytest.mark.parametrize("build", [make_digits_cnn, make_digits_mlp])
def test_training_bounds_match_the_shared_engine_and_are_sound(build: object) -> None:
    model = _seeded(build).eval()
    data = load_digits_split("test")
    x, y = data.images[:32], data.labels[:32]
    eps = 0.05
    crown_ibp, ibp = crown_ibp_margin_lower(model, x, y, eps)
    torch.testing.assert_close(ibp, ibp_margin_lower(model, x, y, eps))
    ref_ibp = certify.margin_bounds(model, x, y, eps, method="ibp", domain=(0.0, 1.0)).lower
    ref_crown_ibp = certify.margin_bounds(model, x, y, eps, method="crown-ibp", domain=(0.0, 1.0),
                                          intersect_ibp=False).lower  # the paper's CROWN-IBP bound, not intersected
    assert torch.equal(ibp, ref_ibp) and torch.equal(crown_ibp, ref_crown_ibp)  # the engine's bounds, exactly
    # soundness: no sampled point of the clipped box has a smaller margin
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(50):
            corner = torch.randint(0, 2, x.shape, generator=g) * 2.0 - 1.0
            xs = (x + eps * corner).clamp(0, 1)
            z = model(xs)
            margin = z.gather(1, y[:, None]) - z
            assert bool((crown_ibp <= margin + 1e-5).all()) and bool((ibp <= margin + 1e-5).all())
    # the bounds are differentiable in the parameters
    robust_cross_entropy(crown_ibp, y).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_trainer_bound_is_the_engines_margin_bound(method: str) -> None:
    # one relaxation in the code base: the loss is certify.margin_bounds(..., method, intersect_ibp=False).lower,
    # bit for bit,
    # computed with autograd on and the model in training mode (restored afterwards)
    model = ibp_init_(_seeded(make_digits_cnn)).train()
    data = load_digits_split("train")
    x, y = data.images[:16], data.labels[:16]
    trainer = CertifiedTrainer(method=method, eps=0.1, final_beta=1.0)  # beta 1: CROWN-IBP alone
    got = trainer.margin_lower(model, x, y, 0.07)
    assert got.requires_grad and all(m.training for m in model.modules())
    want = certify.margin_bounds(model.eval(), x, y, 0.07, method=method, domain=(0.0, 1.0), intersect_ibp=False).lower
    assert torch.equal(got.detach(), want.detach())
    with torch.no_grad():  # without autograd the engine reorders some float operations (in-place, fused)
        torch.testing.assert_close(certify.margin_bounds(model, x, y, 0.07, method=method, domain=(0.0, 1.0),
                                                         intersect_ibp=False).lower, want.detach(), rtol=0, atol=1e-6)


def test_trainer_trains_what_the_engine_bounds() -> None:
    # a layer the old hand-written trainer refused (Tanh) trains through the engine, and stays sound
    model = _seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)))
    data = load_digits_split("train")
    x, y = data.images[:64], data.labels[:64]
    history = certified_train(model, x, y, method="crown-ibp", eps=0.05, epochs=2, warmup_epochs=0, ramp_epochs=1,
                              batch_size=32, progress=False)
    assert all(math.isfinite(v) for v in history.loss)
    lower = certify.margin_bounds(model, x, y, 0.05, method="crown-ibp", domain=(0.0, 1.0)).lower
    assert bool((lower <= pgd_margins(model, x, y, 0.05, domain=(0.0, 1.0), steps=10) + 1e-5).all())


def test_stability_regularizer_hand_computed_values() -> None:
    # centres (2, -2), radius 1, input radius 0.25: tightness term relu(0.5 - 0.25) / 0.5 = 0.5,
    # active and inactive centres balanced in mean and spread: balance term 0
    lo, hi = torch.tensor([[1.0, -3.0]]), torch.tensor([[3.0, -1.0]])
    r_in = torch.full((1, 4), 0.25)
    assert float(stability_regularizer([(lo, hi)], r_in)) == pytest.approx(0.5)
    # centres (3, -1), radius 0.75: tightness relu(0.5 - 1/3) / 0.5 = 1/3; mean ratio 1/3 -> 1/3
    lo, hi = torch.tensor([[2.0, -1.5]]), torch.tensor([[4.0, -0.5]])
    assert float(stability_regularizer([(lo, hi)], r_in)) == pytest.approx(2 / 3)
    # averaged over layers; no inactive neuron -> balance term skipped
    lo2, hi2 = torch.tensor([[1.0, 1.0]]), torch.tensor([[3.0, 3.0]])
    assert float(stability_regularizer([(lo, hi), (lo2, hi2)], r_in)) == pytest.approx((2 / 3 + 0.5) / 2)


def test_regularised_training_runs() -> None:
    data = load_digits_split("train")
    x, y = data.images[:100], data.labels[:100]
    kw = {"method": "ibp", "eps": 0.05, "epochs": 3, "warmup_epochs": 0, "ramp_epochs": 2, "batch_size": 50,
          "progress": False}
    plain = ibp_init_(_seeded(make_digits_cnn), generator=torch.Generator().manual_seed(0))
    certified_train(plain, x, y, reg_lambda=0.0, **kw)
    again = ibp_init_(_seeded(make_digits_cnn), generator=torch.Generator().manual_seed(0))
    certified_train(again, x, y, reg_lambda=0.0, **kw)
    model = ibp_init_(_seeded(make_digits_cnn), generator=torch.Generator().manual_seed(0))
    history = certified_train(model, x, y, reg_lambda=0.5, **kw)
    assert all(math.isfinite(v) for v in history.loss)
    assert torch.equal(plain[0].weight, again[0].weight)  # training is deterministic ...
    assert not torch.equal(plain[0].weight, model[0].weight)  # ... so the regulariser changed the updates
    with pytest.raises(ValueError, match="`reg_lambda`"):
        CertifiedTrainer(reg_lambda=-1.0)


def test_ibp_init_scale_seed_and_last_layer() -> None:
    model = _seeded(make_digits_mlp)
    last = model[-1].weight.detach().clone()
    state = torch.random.get_rng_state()
    ibp_init_(model, generator=torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(model[-1].weight, last)
    w = model[1].weight.detach()  # fan_in 64
    assert float(w.std()) == pytest.approx(math.sqrt(2 * math.pi) / 64, rel=0.03)
    assert float(model[3].weight.detach().std()) == pytest.approx(math.sqrt(2 * math.pi) / 256, rel=0.03)
    assert float(model[1].bias.detach().abs().max()) == 0.0
    other = ibp_init_(_seeded(make_digits_mlp), generator=torch.Generator().manual_seed(3))
    assert torch.equal(other[1].weight, model[1].weight)


def test_seed_is_deprecated_in_favour_of_generator() -> None:
    data = load_digits_split("train")
    x, y = data.images[:40], data.labels[:40]
    kw = {"method": "ibp", "eps": 0.05, "epochs": 2, "warmup_epochs": 0, "ramp_epochs": 1, "batch_size": 10,
          "progress": False}
    with pytest.warns(DeprecationWarning, match="`seed`"):
        a = ibp_init_(_seeded(make_digits_mlp), seed=5)
    b = ibp_init_(_seeded(make_digits_mlp), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[1].weight, b[1].weight)
    with pytest.warns(DeprecationWarning, match="`seed`"):
        certified_train(a, x, y, seed=5, **kw)
    certified_train(b, x, y, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a[1].weight, b[1].weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default draws no warning and is the generator seeded with 0
        c = certified_train(ibp_init_(_seeded(make_digits_mlp)), x, y, **kw)
        d = certified_train(ibp_init_(_seeded(make_digits_mlp), generator=torch.Generator().manual_seed(0)), x, y,
                            generator=torch.Generator().manual_seed(0), **kw)
    assert c == d
    with pytest.raises(ValueError, match="`generator` or the deprecated `seed`"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CertifiedTrainer(seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="`generator`"):
        CertifiedTrainer(generator=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`generator`"):
        ibp_init_(_seeded(make_digits_mlp), generator=3)  # type: ignore[arg-type]


def test_short_ibp_run_reduces_the_robust_loss() -> None:
    data = load_digits_split("train")
    x, y = data.images[:200], data.labels[:200]
    model = ibp_init_(_seeded(make_digits_mlp), generator=torch.Generator().manual_seed(0)).eval()
    eps = 0.05
    with torch.no_grad():
        before = float(robust_cross_entropy(ibp_margin_lower(model, x, y, eps), y))
    history = certified_train(model, x, y, method="ibp", eps=eps, epochs=10, warmup_epochs=1, ramp_epochs=4,
                              batch_size=50, lr=5e-3, progress=False)
    with torch.no_grad():
        after = float(robust_cross_entropy(ibp_margin_lower(model, x, y, eps), y))
    assert isinstance(history, TrainingHistory)
    assert len(history.eps) == 10
    assert history.eps[0] == 0.0 and history.eps[-1] == pytest.approx(eps)
    assert history.robust_loss[0] == 0.0 and history.robust_loss[-1] > 0
    assert not model.training
    assert after < 0.7 * before


def test_crown_ibp_trainer_runs_and_mixes_bounds() -> None:
    data = load_digits_split("train")
    x, y = data.images[:100], data.labels[:100]
    model = ibp_init_(_seeded(make_digits_cnn), generator=torch.Generator().manual_seed(0))
    trainer = CertifiedTrainer(method="crown-ibp", eps=0.05, epochs=3, warmup_epochs=0, ramp_epochs=2,
                               batch_size=50, progress=False, final_beta=0.5)
    # beta = 1 at eps -> 0 and 0.5 at eps_max: the mixed bound interpolates CROWN-IBP and IBP
    crown, ibp = crown_ibp_margin_lower(model.eval(), x, y, 0.05)
    torch.testing.assert_close(trainer.margin_lower(model, x, y, 0.05), 0.5 * crown + 0.5 * ibp)
    trainer.fit(model, x, y)
    assert trainer.history_ is not None and len(trainer.history_.loss) == 3
    assert all(math.isfinite(v) for v in trainer.history_.loss)


@pytest.mark.slow
def test_cached_certified_cnn_reaches_the_targets() -> None:
    model = digits_cnn_certified()
    data = load_digits_split("test")
    with torch.no_grad():
        clean = float((model(data.images).argmax(1) == data.labels).float().mean())
    verified = certify.verified_accuracy(model, data.images, data.labels, 0.1, method="crown", domain=(0.0, 1.0),
                                         progress=False)
    assert clean >= 0.90
    assert verified >= 0.80


def _tiny() -> nn.Sequential:
    return _seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)))


_KW: dict[str, Any] = {"method": "ibp", "eps": 0.05, "epochs": 2, "warmup_epochs": 0, "ramp_epochs": 1, "batch_size": 10,
       "progress": False}


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"final_kappa": "0.5"}, TypeError, "final_kappa"),  # was "'<=' not supported between 'int' and 'str'"
    ({"final_beta": True}, TypeError, "final_beta"),  # was accepted as 1.0
    ({"domain": (1.0, 0.0)}, ValueError, "domain"),  # was accepted, failing (or not) at fit
    ({"domain": (float("nan"), 1.0)}, ValueError, "domain"),
    ({"domain": "01"}, TypeError, "domain"),
    ({"progress": "no"}, TypeError, "progress"),  # was truthy: a progress bar
])
def test_trainer_arguments_are_checked_up_front(kwargs: dict[str, object], error: type, name: str) -> None:
    with pytest.raises(error, match=f"`{name}`"):
        CertifiedTrainer(**{**_KW, **kwargs})  # type: ignore[arg-type]


def test_schedule_functions_refuse_nan_and_out_of_range() -> None:
    kw = {"ramp_start": 0.0, "ramp_length": 10.0, "eps_max": 0.1}
    for bad in ({"step": math.nan}, {"ramp_start": math.nan}, {"exponent": math.nan}):
        with pytest.raises(ValueError, match=f"`{next(iter(bad))}`"):  # each returned nan
            smoothed_eps(**{"step": 1.0, **kw, **bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`final`"):
        mixing_coefficient(0.1, 0.1, 2.0)  # returned 2.0: a weight outside [0, 1]
    with pytest.raises(ValueError, match="`final`"):
        mixing_coefficient(0.1, 0.1, math.nan)
    with pytest.raises(ValueError, match="`eps`"):
        mixing_coefficient(-0.1, 0.1, 0.5)  # returned 1.5


def test_fit_refuses_bad_data_before_touching_the_model() -> None:
    x, y = torch.rand(20, 4, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 3
    model = _tiny().eval()
    with pytest.raises(TypeError, match=r"`inputs`.*dtype"):  # was torch's "mat1 and mat2 must have the same dtype"
        CertifiedTrainer(**_KW).fit(model, x.double(), y)
    with pytest.raises(ValueError, match=r"`inputs`.*at least one"):  # was a silent no-op 'training'
        CertifiedTrainer(**_KW).fit(model, x[:0], y[:0])
    model.requires_grad_(False)
    with pytest.raises(ValueError, match=r"`model`.*trainable"):  # was torch's error after model.train()
        CertifiedTrainer(**_KW).fit(model, x, y)
    assert not model.training
    with pytest.raises(TypeError, match="`model`"):
        ibp_init_("model")  # type: ignore[arg-type]


def test_fit_with_dropout_leaves_the_global_rng_alone() -> None:
    x, y = torch.rand(20, 4, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 3
    state = torch.random.get_rng_state()
    CertifiedTrainer(**_KW).fit(_tiny(), x, y)
    assert torch.equal(state, torch.random.get_rng_state())


def test_fit_names_inputs_of_another_feature_shape() -> None:
    """Inputs with 5 features for a 4-input model: a ValueError naming `inputs` before any step (was torch's
    "mat1 and mat2 shapes cannot be multiplied"), the model untouched."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"`inputs`.*shape \(5,\)"):
        CertifiedTrainer(eps=0.1).fit(model, torch.rand(20, 5), torch.randint(0, 3, (20,)))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
