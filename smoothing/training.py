"""Base classifiers for smoothing: Gaussian noise augmentation (Cohen et al. 2019, Section 4).

A base classifier that has only seen clean images is almost constant under N(0, σ² I) noise, so
its smoothed version abstains or certifies tiny radii. Training on x + δ, δ ~ N(0, σ² I), at the
σ used for smoothing is the recipe of Cohen et al.; this module wraps ``certkit.zoo.train_classifier``
and caches the digits CNN trained that way at σ ∈ {0.12, 0.25, 0.5}.
"""

from __future__ import annotations

from torch import nn

from certkit._validation import check_positive, check_positive_int
from certkit.zoo import load_or_train, make_digits_cnn, train_classifier

__all__ = ["DIGITS_NOISE_SIGMAS", "digits_base_model", "train_noise_augmented"]

DIGITS_NOISE_SIGMAS = (0.12, 0.25, 0.5)


def train_noise_augmented(
    model: nn.Module,
    sigma: float,
    *,
    epochs: int = 40,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` in place on the digits train split with inputs x + δ, δ ~ N(0, σ² I).

    Seeded by ``seed`` through a local generator (torch's global RNG is untouched). Returns the model
    in eval mode. Use the same σ for training and for ``Smooth``.
    """
    sigma = check_positive(sigma, "sigma")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    return train_classifier(model, epochs=epochs, lr=lr, batch_size=batch_size, noise_sigma=sigma, seed=seed)


def digits_base_model(sigma: float) -> nn.Sequential:
    """The digits CNN (``certkit.zoo.make_digits_cnn``) noise-trained at ``sigma``, cached on disk.

    Args:
        sigma: one of ``DIGITS_NOISE_SIGMAS`` = (0.12, 0.25, 0.5).

    Returns:
        The model in eval mode on the CPU, mapping (N, 1, 8, 8) images in [0, 1] to (N, 10) logits.
        Cache key ``digits_cnn_noise{sigma}-v1``; a cold cache trains it in a few seconds.
    """
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or float(sigma) not in DIGITS_NOISE_SIGMAS:
        raise ValueError(f"Expected argument `sigma` to be one of {DIGITS_NOISE_SIGMAS}, but got {sigma!r}")
    s = float(sigma)
    model = load_or_train(f"digits_cnn_noise{s}-v1", make_digits_cnn, lambda m: train_noise_augmented(m, s))
    assert isinstance(model, nn.Sequential)
    return model
