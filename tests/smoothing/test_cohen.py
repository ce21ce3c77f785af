"""Cohen et al.'s CERTIFY / PREDICT: exact reference values, soundness on a model with a known radius."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from torch import nn

from smoothing import (
    Certificate,
    Smooth,
    binomial_p_value,
    certificate_from_counts,
    clopper_pearson_lower,
    min_predict_samples,
    prediction_from_counts,
)

SIGMA = 0.25


def constant_model(num_classes: int = 3, label: int = 1, dim: int = 4) -> nn.Module:
    """f(x) = ``label`` for every x."""
    model = nn.Linear(dim, num_classes)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.bias[label] = 1.0
    return model.eval()


def linear_model(dim: int = 4) -> nn.Module:
    """f(x) = argmax[x_0, 0]: class 0 iff x_0 > 0.

    Under x + δ, P[f = 0] = Φ(x_0 / σ), so g(x) = 0 iff x_0 > 0, p_A = Φ(|x_0| / σ), and Cohen's
    radius σ Φ⁻¹(p_A) = |x_0| is also the exact L2 distance to g's decision boundary {x_0 = 0}.
    """
    model = nn.Linear(dim, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 0] = 1.0
    return model.eval()


# -- exact values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_a", "n", "expected"),
    [(100_000, 100_000, 0.9999309248330094), (99_000, 100_000, 0.9889893403774748), (95, 100, 0.8446326941895317)],
)
def test_clopper_pearson_reference_values(n_a: int, n: int, expected: float) -> None:
    assert clopper_pearson_lower(n_a, n, 1e-3) == pytest.approx(expected, rel=1e-13, abs=0)


def test_clopper_pearson_is_beta_quantile_and_matches_alpha_to_the_1_over_n() -> None:
    assert clopper_pearson_lower(100_000, 100_000, 1e-3) == pytest.approx(1e-3 ** (1 / 100_000), rel=1e-14)
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    # One-sided coverage: P[Bin(n, p) >= k] at the bound equals alpha exactly.
    p = clopper_pearson_lower(37, 50, 0.05)
    assert binom.sf(36, 50, p) == pytest.approx(0.05, rel=1e-9)


def test_half_count_abstains() -> None:
    cert = certificate_from_counts([0, 100], [50_000, 50_000], 1e-3, SIGMA)
    assert cert.abstained and cert.label is None and cert.radius == 0.0
    assert cert.p_lower < 0.5
    assert cert.counts == (50_000, 50_000) and cert.samples == 100_100


def test_certificate_uses_selection_class_not_estimation_argmax() -> None:
    # The selection draw picks class 0; the estimation counts of class 0 are what is bounded.
    cert = certificate_from_counts([60, 40], [10, 99_990], 1e-3, SIGMA)
    assert cert.abstained and cert.p_lower < 1e-3


def test_constant_classifier_certifies_reference_radius() -> None:
    smooth = Smooth(constant_model(), 3, SIGMA)
    gen = torch.Generator().manual_seed(0)
    cert = smooth.certify(torch.zeros(4), n0=100, n=100_000, alpha=1e-3, batch_size=50_000, generator=gen)
    assert cert.label == 1 and not cert.abstained
    assert cert.radius == pytest.approx(3.8114565633899145 * SIGMA, rel=1e-12)
    assert cert.counts == (0, 100_000, 0) and cert.samples == 100_100


def test_predict_reference_p_values() -> None:
    assert binomial_p_value(560, 440) == pytest.approx(1.6504987055045286e-4, rel=1e-10)
    pred = prediction_from_counts([440, 560, 0], 1e-3)
    assert pred.label == 1 and not pred.abstained and pred.p_value == pytest.approx(1.6504987055045286e-4, rel=1e-10)
    tie = prediction_from_counts([550, 450, 0], 1e-3)
    assert tie.abstained and tie.label is None and tie.p_value > 1e-3


def test_predict_needs_enough_samples() -> None:
    assert min_predict_samples(1e-3) == 11  # at n = 10 the smallest p-value is 2^-9 > 0.001
    assert binomial_p_value(10, 0) == pytest.approx(2.0**-9)
    assert binomial_p_value(11, 0) <= 1e-3
    smooth = Smooth(constant_model(), 3, SIGMA)
    with pytest.raises(ValueError, match=r"`n` to be >= 11"):
        smooth.predict(torch.zeros(4), n=10, alpha=1e-3, batch_size=10)
    pred = smooth.predict(torch.zeros(4), n=11, alpha=1e-3, batch_size=10, generator=torch.Generator().manual_seed(0))
    assert pred.label == 1 and not pred.abstained


# -- soundness on a model with a known exact radius ------------------------------------------------


def test_linear_model_radius_is_sound_and_tight_at_100k() -> None:
    x = torch.zeros(4)
    x[0] = -0.3  # g(x) = 1, exact radius 0.3
    smooth = Smooth(linear_model(), 2, SIGMA)
    cert = smooth.certify(x, 100, 100_000, 1e-3, 50_000, torch.Generator().manual_seed(1))
    assert cert.label == 1
    assert 0.9 * 0.3 <= cert.radius <= 0.3


def test_linear_model_failure_rate_is_at_most_alpha() -> None:
    # 2,000 independent certificates of the same x (each input of certify_batch gets its own draws).
    # With alpha = 0.05 and n = 200 the Clopper-Pearson bound overshoots the exact radius in at most
    # 5% of runs; a point estimate instead of the lower bound overshoots in about half of them.
    alpha, trials = 0.05, 2000
    exact = SIGMA * float(norm.ppf(0.9))  # p_A = 0.9
    x = torch.zeros(4)
    x[0] = exact
    smooth = Smooth(linear_model(), 2, SIGMA)
    certs = smooth.certify_batch(x.repeat(trials, 1), 10, 200, alpha, 100_000, torch.Generator().manual_seed(2))
    wrong = sum(c.label is not None and (c.label != 0 or c.radius > exact) for c in certs)
    # Binomial tolerance: P[Bin(2000, 0.05) > limit] < 1e-4.
    limit = int(binom.isf(1e-4, trials, alpha))
    assert wrong <= limit
    assert sum(c.label == 0 for c in certs) > 0.9 * trials  # the test has power: most runs certify


def test_predict_is_sound_on_a_tie() -> None:
    # x_0 = 0: both classes have probability 1/2, g is undefined; predict must abstain w.p. >= 1 - alpha.
    smooth = Smooth(linear_model(), 2, SIGMA)
    preds = smooth.predict_batch(torch.zeros(500, 4), 200, 0.05, 100_000, torch.Generator().manual_seed(3))
    answered = sum(not p.abstained for p in preds)
    assert answered <= int(binom.isf(1e-4, 500, 0.05))


# -- reproducibility, packing, devices -------------------------------------------------------------


def test_same_seed_same_certificate_and_batch_of_one_matches_certify() -> None:
    x = torch.zeros(4)
    x[0] = 0.1
    smooth = Smooth(linear_model(), 2, SIGMA)
    a = smooth.certify(x, 50, 1000, 1e-3, 300, torch.Generator().manual_seed(7))
    b = smooth.certify(x, 50, 1000, 1e-3, 300, torch.Generator().manual_seed(7))
    c = smooth.certify_batch(x[None], 50, 1000, 1e-3, 300, torch.Generator().manual_seed(7))[0]
    d = smooth.certify(x, 50, 1000, 1e-3, 300, torch.Generator().manual_seed(8))
    assert a == b == c
    assert a.counts != d.counts


def test_packed_inputs_are_certified_separately() -> None:
    xs = torch.zeros(3, 4)
    xs[:, 0] = torch.tensor([0.5, -0.5, 0.0])
    smooth = Smooth(linear_model(), 2, SIGMA)
    certs = smooth.certify_batch(xs, 100, 2000, 1e-3, 700, torch.Generator().manual_seed(0))
    assert [c.label for c in certs] == [0, 1, None]
    assert all(sum(c.counts) == 2000 and c.samples == 2100 for c in certs)


def test_global_rng_untouched() -> None:
    smooth = Smooth(linear_model(), 2, SIGMA)  # building the model draws from the global RNG: do it first
    state = torch.get_rng_state()
    smooth.certify(torch.zeros(4), 10, 100, 1e-3, 50)
    smooth.predict(torch.zeros(4), 20, 1e-3, 50)
    assert torch.equal(state, torch.get_rng_state())


def test_certificate_is_frozen() -> None:
    cert = certificate_from_counts([10, 0], [100, 0], 1e-3, SIGMA)
    assert isinstance(cert, Certificate)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cert.radius = 1.0  # type: ignore[misc]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, -0.25, float("nan")])
def test_bad_sigma(sigma: float) -> None:
    with pytest.raises(ValueError, match="`sigma`"):
        Smooth(linear_model(), 2, sigma)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="`num_classes`"):
        Smooth(linear_model(), 1, SIGMA)
    with pytest.raises(TypeError, match="`base_classifier`"):
        Smooth(lambda x: x, 2, SIGMA)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n0": 0}, "n0"),
        ({"n": 0}, "n"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
        ({"n": 10.5}, "n"),
    ],
)
def test_bad_certify_arguments(kwargs: dict[str, float], name: str) -> None:
    args: dict[str, float] = {"n0": 10, "n": 100, "alpha": 1e-3, "batch_size": 10, **kwargs}
    smooth = Smooth(linear_model(), 2, SIGMA)
    with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
        smooth.certify(torch.zeros(4), **args)  # type: ignore[arg-type]


def test_wrong_input_shape() -> None:
    smooth = Smooth(linear_model(), 2, SIGMA, input_shape=(4,))
    with pytest.raises(ValueError, match=r"`x` to have shape \(4,\)"):
        smooth.certify(torch.zeros(1, 4), 10, 100, 1e-3, 10)
    # Without input_shape, a shape the model rejects gives a clear error too.
    with pytest.raises(ValueError, match="forward pass"):
        Smooth(linear_model(), 2, SIGMA).certify(torch.zeros(5), 10, 100, 1e-3, 10)
    with pytest.raises(ValueError, match="logits of shape"):
        Smooth(linear_model(), 3, SIGMA).certify(torch.zeros(4), 10, 100, 1e-3, 10)
    with pytest.raises(ValueError, match="finite"):
        Smooth(linear_model(), 2, SIGMA).certify(torch.full((4,), float("nan")), 10, 100, 1e-3, 10)
    with pytest.raises(TypeError, match="floating-point"):
        Smooth(linear_model(), 2, SIGMA).certify(torch.zeros(4, dtype=torch.long), 10, 100, 1e-3, 10)


def test_model_in_training_mode_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
    with pytest.raises(ValueError, match="eval mode"):
        Smooth(model, 2, SIGMA).certify(torch.zeros(4), 10, 100, 1e-3, 10)


def test_bad_generator() -> None:
    with pytest.raises(TypeError, match="`generator`"):
        Smooth(linear_model(), 2, SIGMA).certify(torch.zeros(4), 10, 100, 1e-3, 10, generator=np.random.default_rng(0))  # type: ignore[arg-type]
