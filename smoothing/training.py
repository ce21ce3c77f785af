"""Base classifiers for smoothing: Gaussian noise augmentation (Cohen et al. 2019, Section 4).

A base classifier that has only seen clean images is almost constant under N(0, σ² I) noise, so
its smoothed version abstains or certifies tiny radii. Training on x + δ, δ ~ N(0, σ² I), at the
σ used for smoothing is the recipe of Cohen et al. The digits CNNs trained this way live in the
application layer (``certkit_app.digits.digits_base_model``).
"""

from __future__ import annotations

import torch
from torch import nn

from certkit._validation import check_positive, check_positive_int

__all__ = ["train_noise_augmented"]


def train_noise_augmented(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    sigma: float,
    *,
    epochs: int = 40,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` in place on ``(inputs, labels)`` with inputs x + δ, δ ~ N(0, σ² I) (Cohen et al. 2019).

    Adam with cosine learning-rate decay and cross-entropy; each epoch visits a fresh permutation in
    batches of ``batch_size``, each batch with fresh noise.

    Args:
        model: the base classifier, trained in place.
        inputs: (N, ...) floating-point training inputs.
        labels: (N,) integer class labels.
        sigma: noise level σ > 0; use the same σ for training and for ``Smooth``.
        epochs, lr, batch_size: optimisation hyperparameters.
        seed: seeds a local generator for the permutations and the noise (torch's global RNG is untouched).

    Returns:
        The model, in eval mode.
    """
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise TypeError(f"Expected argument `inputs` to be a floating-point tensor (N, ...), but got {inputs!r:.80}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise TypeError(f"Expected argument `labels` to be an integer tensor (N,), but got {labels!r:.80}")
    if len(inputs) != len(labels):
        raise ValueError(
            f"Expected arguments `inputs` and `labels` to have the same length, but got {len(inputs)} and {len(labels)}"
        )
    sigma = check_positive(sigma, "sigma")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    model.train()
    n = len(labels)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb = inputs[idx] + sigma * torch.randn(inputs[idx].shape, generator=g)
            loss = nn.functional.cross_entropy(model(xb), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()
