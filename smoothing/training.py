"""Base classifiers for smoothing: Gaussian noise augmentation (Cohen et al. 2019, Section 4).

A base classifier that has only seen clean images is almost constant under N(0, σ² I) noise, so
its smoothed version abstains or certifies tiny radii. Training on x + δ, δ ~ N(0, σ² I), at the
σ used for smoothing is the recipe of Cohen et al. The digits CNNs trained this way live in the
application layer (``certkit_app.digits.digits_base_model``).
"""

from __future__ import annotations

import torch
from torch import nn

from certkit._validation import (
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_training_data,
    generator_or_seed,
)

__all__ = ["consistency_loss", "train_consistency", "train_noise_augmented"]


def train_noise_augmented(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    sigma: float,
    *,
    epochs: int = 40,
    lr: float = 2e-3,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``(inputs, labels)`` with inputs x + δ, δ ~ N(0, σ² I) (Cohen et al. 2019).

    Adam with cosine learning-rate decay and cross-entropy; each epoch visits a fresh permutation in
    batches of ``batch_size``, each batch with fresh noise.

    Args:
        model: the base classifier, trained in place.
        inputs: (N, ...) floating-point training inputs.
        labels: (N,) integer class labels.
        sigma: noise level σ > 0; use the same σ for training and for ``Smooth``.
        epochs: passes over the data.
        lr: Adam learning rate.
        batch_size: minibatch size.
        generator: source of the permutations and the noise, on ``inputs``' device (torch's global RNG
            is untouched); ``None``: a generator seeded with 0, so training is reproducible by default.
        seed: deprecated (DeprecationWarning; removed in the next release): pass
            ``generator=torch.Generator().manual_seed(seed)``.

    Returns:
        The model, in eval mode.
    """
    check_training_data(model, inputs, labels)
    sigma = check_positive(sigma, "sigma")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    g = generator_or_seed(generator, seed, where="smoothing.train_noise_augmented", device=inputs.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    model.train()
    n = len(labels)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g, device=inputs.device)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb = inputs[idx] + sigma * torch.randn(inputs[idx].shape, generator=g, device=inputs.device,
                                                   dtype=inputs.dtype)
            loss = nn.functional.cross_entropy(model(xb), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def consistency_loss(logits: torch.Tensor, labels: torch.Tensor, lam: float, eta: float) -> torch.Tensor:
    """Jeong & Shin 2020 ("Consistency Regularization for Certified Robustness of Smoothed Classifiers",
    NeurIPS 2020), for logits (m, B, K) of m noisy copies of each of B inputs and labels (B,):

        (1/m) Σ_i CE(f(x + δ_i), y) + λ (1/m) Σ_i KL(p̄ || softmax f(x + δ_i)) + η H(p̄),

    p̄ the mean softmax over the m copies. The KL term makes the copies agree (a consistent f has a
    large smoothed margin); the entropy term keeps p̄ from spreading out.
    """
    m, b, k = logits.shape
    lam, eta = check_nonnegative(lam, "lam"), check_nonnegative(eta, "eta")
    log_probs = logits.log_softmax(-1)
    ce = nn.functional.cross_entropy(logits.reshape(m * b, k), labels.repeat(m))
    mean_probs = log_probs.exp().mean(0)
    log_mean = mean_probs.clamp_min(1e-12).log()
    kl = (mean_probs * (log_mean - log_probs)).sum(-1).mean()  # averaged over copies and inputs
    entropy = -(mean_probs * log_mean).sum(-1).mean()
    return ce + lam * kl + eta * entropy


def train_consistency(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    sigma: float,
    *,
    copies: int = 2,
    lam: float = 10.0,
    eta: float = 0.5,
    epochs: int = 40,
    lr: float = 2e-3,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Train ``model`` in place with Gaussian augmentation plus consistency regularisation
    (``consistency_loss``; Jeong & Shin 2020: m = ``copies`` = 2, λ in {5, 10, 20}, η = 0.5).

    Shapes: ``inputs`` (N, ...) float, ``labels`` (N,) int. Adam with cosine decay; permutations and
    noise come from ``generator`` (torch's global RNG is untouched). Returns the model in eval mode.
    """
    check_training_data(model, inputs, labels)
    sigma, lr = check_positive(sigma, "sigma"), check_positive(lr, "lr")
    copies = check_positive_int(copies, "copies", minimum=2)
    epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size")
    lam, eta = check_nonnegative(lam, "lam"), check_nonnegative(eta, "eta")
    if generator is None:
        generator = torch.Generator(device=inputs.device)
        generator.seed()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(labels), generator=generator, device=inputs.device)
        for i in range(0, len(labels), batch_size):
            idx = perm[i : i + batch_size]
            x = inputs[idx]
            noise = torch.randn((copies, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
            logits = model((x.unsqueeze(0) + sigma * noise).flatten(0, 1)).view(copies, len(idx), -1)
            loss = consistency_loss(logits, labels[idx], lam, eta)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()
