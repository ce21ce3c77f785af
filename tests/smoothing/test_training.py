"""Noise-augmented base classifiers: they classify noisy inputs better than the standard model."""

from __future__ import annotations

import pytest
import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import DIGITS_NOISE_SIGMAS, digits_base_model, digits_cnn, make_digits_cnn
from smoothing import train_noise_augmented


def noisy_accuracy(model: torch.nn.Module, sigma: float, seed: int = 0) -> float:
    data = load_digits_split("test")
    g = torch.Generator().manual_seed(seed)
    noisy = data.images + sigma * torch.randn(data.images.shape, generator=g)
    with torch.inference_mode():
        return float((model(noisy).argmax(1) == data.labels).float().mean())


def test_noise_trained_model_beats_standard_model_under_noise() -> None:
    model, standard = digits_base_model(0.25), digits_cnn()
    assert not any(m.training for m in model.modules())
    # Measured on the 400 test images (seed 0): 0.947 against 0.877 for the standard CNN.
    assert noisy_accuracy(model, 0.25) >= noisy_accuracy(standard, 0.25) + 0.03
    assert noisy_accuracy(model, 0.0) >= 0.95
    again = digits_base_model(0.25)  # loaded from the cache: same weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [s for s in DIGITS_NOISE_SIGMAS if s != 0.25])
def test_other_sigmas(sigma: float) -> None:
    assert noisy_accuracy(digits_base_model(sigma), sigma) >= noisy_accuracy(digits_cnn(), sigma) + 0.01


def test_train_noise_augmented_is_seeded_and_leaves_global_rng_alone() -> None:
    a, b = make_digits_cnn(), make_digits_cnn()
    b.load_state_dict(a.state_dict())
    data = load_digits_split("train")
    state = torch.get_rng_state()
    train_noise_augmented(a, data.images, data.labels, 0.25, epochs=1, generator=torch.Generator().manual_seed(3))
    with pytest.warns(DeprecationWarning, match="`seed`"):  # deprecated spelling, same weights
        train_noise_augmented(b, data.images, data.labels, 0.25, epochs=1, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`sigma`"):
        digits_base_model(0.3)
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="`sigma`"):
        train_noise_augmented(make_digits_cnn(), x, y, 0.0)
    with pytest.raises(ValueError, match="`epochs`"):
        train_noise_augmented(make_digits_cnn(), x, y, 0.25, epochs=0)
    with pytest.raises(TypeError, match="`inputs`"):
        train_noise_augmented(make_digits_cnn(), 0.25, y, 0.25)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same length"):
        train_noise_augmented(make_digits_cnn(), x, y[:3], 0.25)


# -- consistency regularisation (Jeong & Shin 2020) ---------------------------------------------------


def test_consistency_loss_terms() -> None:
    from smoothing import consistency_loss

    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2, 5, 3, generator=g), torch.tensor([0, 1, 2, 0, 1])
    ce = torch.nn.functional.cross_entropy(logits.reshape(10, 3), labels.repeat(2))
    assert torch.allclose(consistency_loss(logits, labels, 0.0, 0.0), ce)
    same = logits[:1].expand(2, 5, 3)
    p = same[0].softmax(-1)
    entropy = -(p * p.log()).sum(-1).mean()
    # Identical copies: the KL term vanishes, whatever λ; the entropy term is that of their softmax.
    assert torch.allclose(consistency_loss(same, labels, 10.0, 0.5),
                          torch.nn.functional.cross_entropy(same[0], labels) + 0.5 * entropy, atol=1e-6)
    assert consistency_loss(logits, labels, 10.0, 0.0) > ce  # disagreeing copies are penalised


def test_train_consistency_is_seeded_leaves_global_rng_and_validates() -> None:
    from smoothing import train_consistency

    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long()

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    a, b = build(), build()
    state = torch.get_rng_state()
    for model in (a, b):
        train_consistency(model, x, y, 0.5, epochs=10, batch_size=32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not a.training
    with pytest.raises(ValueError, match="`copies`"):
        train_consistency(a, x, y, 0.5, copies=1)
    with pytest.raises(ValueError, match="`lam`"):
        train_consistency(a, x, y, 0.5, lam=-1.0)


@pytest.mark.slow
def test_consistency_training_beats_gaussian_augmentation_at_sigma_half() -> None:
    # Measured over 3 training seeds (BENCHMARKS.md, "Training-seed stability", rerun end to end in session 7):
    # ACR 0.407-0.414 against 0.380-0.387 on these 100 images (smallest difference 0.020), every seed ordered the
    # same way. At r = 0.5: 0.40-0.44 against 0.39 for every Gaussian seed, also every seed above, but by as
    # little as one image of 100 (0.40 vs 0.39), so the margin there is that one image.
    from certkit_app.digits import digits_consistency_model
    from smoothing import Smooth, average_certified_radius, certified_accuracy, certify_dataset

    test = load_digits_split("test")
    xs, ys = test.images[::4], test.labels[::4]
    acc, acr = {}, {}
    for name, model in (("gaussian", digits_base_model(0.5)), ("consistency", digits_consistency_model(0.5))):
        rec = certify_dataset(Smooth(model, 10, 0.5), xs, ys, n0=100, n=2000, alpha=1e-3, batch_size=2100,
                              inputs_per_task=10, progress=False)
        acc[name], acr[name] = float(certified_accuracy(rec, [0.5])[0]), average_certified_radius(rec)
    assert acr["consistency"] >= acr["gaussian"] + 0.01
    assert acc["consistency"] >= acc["gaussian"] + 0.01 - 1e-9  # one image; 1e-9: float sums of 0.01 steps
