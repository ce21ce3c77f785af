"""Contrastive denoising pretraining: the seed's robust representation consistency model, digits-scale.

Lei, Berner, Wang, Chen, Ba, Ren, Zhu & Anandkumar, "Robust Representation Consistency Model via
Contrastive Denoising" (2025, arXiv 2501.13094). Diffusion-denoised smoothing (Carlini et al. 2023)
denoises every noisy copy with a diffusion model, then classifies it; the rRCM replaces both with one
encoder whose *representation* of x + t ε is the same for every noise level t on the trajectory, so
one forward pass both "denoises" and classifies. Pretraining minimises two InfoNCE losses
(instance discrimination: the positive is the same image, the negatives the other images of the batch):

* consistency along the trajectory: the representation of x + t_i ε must identify the representation
  of x + t_{i+1} ε (the next, smaller noise level, same ε; stop-gradient on the target), for a random
  level i of the Karras et al. (2022) schedule t_0 = σ_max > ... > t_{L-1} = σ_min;
* contrastive views: two augmented views of x at noise σ_min, the target from an exponential moving
  average of the network (MoCo v3).

Fine-tuning then trains the encoder and a new linear head with Gaussian noise and consistency
regularisation (:func:`smoothing.train_consistency`, Jeong & Shin 2020), as the paper does. Nothing
here is needed for the certificate: ``Smooth`` certifies the fine-tuned classifier like any other.

Differences from the paper's ImageNet recipe (a ViT on a cluster): a small conv encoder, one
projection head for both losses, no timestep input to the encoder, noise levels in pixel units
(inputs in [0, 1]), random 1-pixel shifts as the view augmentation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from certkit._validation import (
    check_array,
    check_generator,
    check_positive,
    check_positive_int,
    check_probability,
    warn_low_precision_training,
)

__all__ = ["info_nce", "karras_levels", "pretrain_contrastive_denoising", "random_shift"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def info_nce(z: torch.Tensor, z_target: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018) for B positive pairs (z_b, z_target_b), (B, D) each:
    mean_b CE(softmax_j cos(z_b, z_target_j) / τ, b). The other B - 1 targets are the negatives."""
    check_array(z, "z", tensor=True, ndim=2)
    check_array(z_target, "z_target", tensor=True, ndim=2)
    tau = check_positive(tau, "tau")
    z, z_target = nn.functional.normalize(z, dim=1), nn.functional.normalize(z_target, dim=1)
    logits = z @ z_target.T / tau
    return nn.functional.cross_entropy(logits, torch.arange(len(z), device=z.device))


def karras_levels(sigma_min: float, sigma_max: float, levels: int, rho: float = 7.0) -> torch.Tensor:
    """The noise levels of Karras et al. 2022, decreasing from σ_max to σ_min: (levels,) float64,
    t_i = (σ_max^(1/ρ) + i/(L-1) (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ."""
    sigma_min, sigma_max = check_positive(sigma_min, "sigma_min"), check_positive(sigma_max, "sigma_max")
    if sigma_min >= sigma_max:
        raise ValueError(f"Expected `sigma_min` < `sigma_max`, but got {sigma_min} and {sigma_max}")
    levels, rho = check_positive_int(levels, "levels", minimum=2), check_positive(rho, "rho")
    i = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    return (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Images (B, C, H, W) each translated by an independent random offset in [-max_shift, max_shift]²,
    zero-filled: the view augmentation used for the digits."""
    check_array(x, "x", tensor=True, ndim=4, finite=False)
    if check_generator(generator) is None:
        raise TypeError("Expected argument `generator` to be a torch.Generator, but got None")
    max_shift = check_positive_int(max_shift, "max_shift", minimum=0)
    b, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator, device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def pretrain_contrastive_denoising(
    encoder: nn.Module,
    inputs: torch.Tensor,
    *,
    sigma_min: float = 0.02,
    sigma_max: float = 1.0,
    levels: int = 12,
    tau: float = 0.2,
    projection_dim: int = 64,
    momentum: float = 0.99,
    augment: Augment | None = random_shift,
    epochs: int = 60,
    lr: float = 1e-3,
    batch_size: int = 128,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Pretrain ``encoder`` in place by contrastive denoising (Lei et al. 2025; module docstring).

    Args:
        encoder: maps inputs (B, ...) to representations (B, D).
        inputs: (N, ...) unlabeled floating-point training inputs (no labels are used).
        sigma_min: the smallest noise level (:func:`karras_levels`).
        sigma_max: the largest noise level; it should exceed the largest σ you will smooth with (the
            digits recipe: 1.0 for σ up to 0.5).
        levels: the number of noise levels.
        tau: InfoNCE temperature of both losses.
        projection_dim: output width of the projection head (an MLP D -> D -> projection_dim, trained
            with the encoder and discarded: the representation is the encoder's output).
        momentum: EMA rate of the target network of the contrastive-views loss.
        augment: ``(x, generator) -> view``; ``None``: views differ only in their noise.
        epochs: passes over ``inputs`` (Adam with cosine decay).
        lr: Adam's initial learning rate.
        batch_size: inputs per step.
        generator: source of the permutations, noise and augmentations, on ``inputs``' device (torch's
            global RNG is untouched); ``None`` seeds a fresh one from the OS.

    Returns:
        The encoder, in eval mode. Fine-tune it with a head: ``train_consistency(nn.Sequential(encoder,
        nn.Linear(D, K)), inputs, labels, sigma)``.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"Expected argument `encoder` to be a torch.nn.Module, but got {type(encoder).__name__}")
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point() or inputs.ndim < 2 or len(inputs) < 2:
        raise TypeError(f"Expected argument `inputs` to be a floating-point tensor (N >= 2, ...), but got {inputs!r:.80}")
    check_array(inputs, "inputs", tensor=True)
    warn_low_precision_training(encoder, inputs)
    ts = karras_levels(sigma_min, sigma_max, levels).to(device=inputs.device, dtype=inputs.dtype)
    tau, lr = check_positive(tau, "tau"), check_positive(lr, "lr")
    projection_dim = check_positive_int(projection_dim, "projection_dim")
    momentum = check_probability(momentum, "momentum")
    epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size", minimum=2)
    if augment is not None and not callable(augment):
        raise TypeError(f"Expected argument `augment` to be callable or None, but got {augment!r}")
    g = check_generator(generator)
    if g is None:
        g = torch.Generator(device=inputs.device)
        g.seed()
    with torch.no_grad():
        width = encoder(inputs[:2]).shape[1]
    with torch.random.fork_rng(devices=[]):  # the default init draws from the global RNG: redrawn below
        head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection_dim))
    with torch.no_grad():  # PyTorch's default uniform(±1/√fan_in) init, drawn from ``generator``
        for p in head.parameters():
            bound = 1.0 / width**0.5
            p.copy_(torch.rand(p.shape, generator=g, device=g.device) * 2 * bound - bound)
    online = nn.Sequential(encoder, head.to(inputs.device))
    target = copy.deepcopy(online).requires_grad_(False)
    opt = torch.optim.Adam(online.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    def noise(x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)

    def view(x: torch.Tensor) -> torch.Tensor:
        return (augment(x, g) if augment is not None else x) + ts[-1] * noise(x)

    online.train()
    target.train()
    for _ in range(epochs):
        perm = torch.randperm(len(inputs), generator=g, device=inputs.device)
        for start in range(0, len(inputs), batch_size):
            x = inputs[perm[start : start + batch_size]]
            if len(x) < 2:
                continue  # a batch of one has no negatives
            # Consistency along the trajectory: level i -> i + 1 (less noise), same ε, stop-gradient target.
            i = torch.randint(0, levels - 1, (len(x),), generator=g, device=g.device).to(x.device)
            shape = (len(x),) + (1,) * (x.ndim - 1)
            eps = noise(x)
            z = online(x + ts[i].view(shape) * eps)
            with torch.no_grad():
                z_next = online(x + ts[i + 1].view(shape) * eps)
            # Contrastive views at σ_min, the target from the EMA network.
            z_view = online(view(x))
            with torch.no_grad():
                z_view_target = target(view(x))
            loss = info_nce(z, z_next, tau) + info_nce(z_view, z_view_target, tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p_target, p in zip(target.parameters(), online.parameters()):
                    p_target.lerp_(p, 1.0 - momentum)
        sched.step()
    return encoder.eval()
