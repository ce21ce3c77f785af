"""Denoised smoothing: certify an off-the-shelf classifier through a learned denoiser.

Salman, Sun, Yang, Kapoor & Kolter, "Denoised Smoothing: A Provable Defense for Pretrained
Classifiers", NeurIPS 2020 (arXiv 2003.01908). A classifier trained only on clean inputs is almost
useless under N(0, σ² I) noise. Prepending a denoiser D trained to undo that noise gives a base
classifier f∘D that ``Smooth`` certifies like any other: the certificate's guarantee (Cohen et al.
2019) holds for *any* base classifier, so nothing about D needs to be trusted; only the certified
radii depend on how well D works.

Two training objectives for D (the classifier f stays frozen):

* MSE: E ||D(x + δ) - x||² (plain denoising);
* stability: E CE(f(D(x + δ)), f(x)), the cross-entropy between f's prediction on the denoised noisy
  input and its (hard) prediction on the clean input, which needs only unlabeled data and query
  access to f's gradients. Salman et al. found it (after MSE pre-training) the better of the two.
  With ``copies`` = m > 1 noisy copies per input and ``lam`` > 0 it adds the consistency term of Jeong
  & Shin (2020) on f∘D, λ (1/m) Σ_i KL(p̄ || softmax f(D(x + δ_i))) (:func:`smoothing.consistency_loss`
  with η = 0): the copies are pushed to agree, which raises the smoothed margin of f∘D.

Architectures: :func:`make_conv_denoiser` (DnCNN-style, local) and :func:`make_unet_denoiser` (a small
U-Net with a global bottleneck; on digits at σ = 0.5, trained with stability + consistency for 240 epochs,
it lets a frozen, never noise-trained CNN certify more than the noise-trained CNN at r = 0.5 for every
training seed measured, docs/smoothing/denoised.md).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from certkit._validation import (
    check_array,
    check_generator,
    check_nonnegative,
    check_positive,
    check_positive_int,
    warn_low_precision_training,
)
from smoothing.training import consistency_loss

__all__ = ["DenoisedClassifier", "make_conv_denoiser", "make_unet_denoiser", "train_denoiser"]

Objective = Literal["mse", "stability"]


class DenoisedClassifier(nn.Module):
    """The base classifier x -> classifier(denoiser(x)), for ``Smooth``.

    Args:
        denoiser: maps (m, *input_shape) to (m, *input_shape).
        classifier: maps (m, *input_shape) to logits (m, K); any classifier, noise-trained or not.
    """

    def __init__(self, denoiser: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        for name, module in (("denoiser", denoiser), ("classifier", classifier)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"Expected argument `{name}` to be a torch.nn.Module, but got {type(module).__name__}")
        self.denoiser = denoiser
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.denoiser(x))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)  # the body predicts the noise (DnCNN-style residual learning)


def make_conv_denoiser(channels: int = 1, width: int = 32, depth: int = 4, *,
                       generator: torch.Generator | None = None) -> nn.Module:
    """A small DnCNN-style residual denoiser (Zhang et al. 2017): ``depth`` 3x3 convs, output x - noise.

    Shapes: (m, channels, H, W) -> (m, channels, H, W). The initial weights come from ``generator``
    (None: seeded with 0); torch's global RNG is untouched (the layers are built inside a forked RNG).
    """
    channels = check_positive_int(channels, "channels")
    width, depth = check_positive_int(width, "width"), check_positive_int(depth, "depth", minimum=2)
    g = check_generator(generator)
    seed = 0 if g is None else int(torch.randint(0, 2**62, (1,), generator=g, device=g.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
    return _Residual(nn.Sequential(*layers))


class _UNet(nn.Module):
    """Two down- and two up-sampling stages, skip connections, a dense bottleneck; output x - noise."""

    def __init__(self, channels: int, width: int, height: int, image_width: int) -> None:
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(nn.Conv2d(channels, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.enc3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU())
        h3, w3 = (height + 3) // 4, (image_width + 3) // 4  # spatial size after two stride-2 convs
        self.middle = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * h3 * w3, 4 * w * h3 * w3), nn.ReLU(),
                                    nn.Unflatten(1, (4 * w, h3, w3)))
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = nn.Sequential(nn.Conv2d(4 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.enc1(x)
        h2 = self.enc2(h1)
        g2 = self.dec2(torch.cat([self.up2(self.middle(self.enc3(h2)))[..., : h2.shape[-2], : h2.shape[-1]], h2], 1))
        noise = self.dec1(torch.cat([self.up1(g2)[..., : h1.shape[-2], : h1.shape[-1]], h1], 1))
        return x - noise  # predicts the noise, like the DnCNN


def make_unet_denoiser(channels: int = 1, width: int = 32, image_size: tuple[int, int] = (8, 8), *,
                       generator: torch.Generator | None = None) -> nn.Module:
    """A small U-Net denoiser (Ronneberger et al. 2015) that predicts the noise: output x - noise.

    Encoder: two 3x3 convs of ``width`` channels, a stride-2 stage of 2·width, a stride-2 conv to 4·width;
    a dense layer over the whole bottleneck (every output pixel sees the whole image); decoder: transposed
    convs back up with skip connections. Shapes: (m, channels, H, W) -> (m, channels, H, W) with
    (H, W) = ``image_size`` (the bottleneck layer's size depends on it). For 8x8 digits at width 32:
    535,105 parameters. The initial weights come from ``generator`` (None: seeded with 0); torch's global
    RNG is untouched (the layers are built inside a forked RNG).
    """
    channels, width = check_positive_int(channels, "channels"), check_positive_int(width, "width")
    if (not isinstance(image_size, tuple) or len(image_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 4 for v in image_size)):
        raise ValueError(f"Expected argument `image_size` to be a tuple (H, W) of ints >= 4, but got {image_size!r}")
    g = check_generator(generator)
    seed = 0 if g is None else int(torch.randint(0, 2**62, (1,), generator=g, device=g.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _UNet(channels, width, *image_size)


def train_denoiser(
    denoiser: nn.Module,
    inputs: torch.Tensor,
    sigma: float,
    *,
    objective: Objective = "mse",
    classifier: nn.Module | None = None,
    copies: int = 1,
    lam: float = 0.0,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Train ``denoiser`` in place on ``inputs`` (N, *input_shape) under N(0, σ² I) noise; return it in eval mode.

    ``objective="mse"`` minimises ||D(x + δ) - x||²; ``"stability"`` minimises
    CE(classifier(D(x + δ)), argmax classifier(x)) with ``classifier`` frozen (its parameters are not
    updated and its train/eval mode is left as it is; it should be in eval mode). No labels are used.
    With ``copies`` = m > 1 (stability only) each input gets m noise draws per step and the loss is
    :func:`smoothing.consistency_loss` (m, B, K) with λ = ``lam``, η = 0: the mean cross-entropy plus λ
    times the consistency term of Jeong & Shin (2020) between the copies.
    Adam with cosine decay; permutations and noise come from ``generator`` (torch's global RNG is
    untouched; ``None`` seeds a fresh generator from the OS). Use the σ you will smooth with.
    """
    if not isinstance(denoiser, nn.Module):
        raise TypeError(f"Expected argument `denoiser` to be a torch.nn.Module, but got {type(denoiser).__name__}")
    check_array(inputs, "inputs", tensor=True)
    warn_low_precision_training(denoiser, inputs)
    if inputs.ndim < 2:
        raise ValueError(f"Expected argument `inputs` to have shape (N, ...), but got shape {tuple(inputs.shape)}")
    sigma = check_positive(sigma, "sigma")
    epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    if objective not in ("mse", "stability"):
        raise ValueError(f"Expected argument `objective` to be 'mse' or 'stability', but got {objective!r}")
    if objective == "stability" and not isinstance(classifier, nn.Module):
        raise TypeError("Expected argument `classifier` to be a torch.nn.Module when objective='stability'")
    copies, lam = check_positive_int(copies, "copies"), check_nonnegative(lam, "lam")
    if copies > 1 and objective != "stability":
        raise ValueError(f"Expected argument `copies` to be 1 with objective='mse', but got {copies}")
    if generator is None:
        generator = torch.Generator(device=inputs.device)
        generator.seed()
    targets = None
    if objective == "stability":
        assert classifier is not None
        with torch.no_grad():
            targets = torch.cat([classifier(inputs[i : i + 1024]).argmax(1) for i in range(0, len(inputs), 1024)])
    params = list(denoiser.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    denoiser.train()
    for _ in range(epochs):
        perm = torch.randperm(len(inputs), generator=generator, device=inputs.device)
        for i in range(0, len(inputs), batch_size):
            idx = perm[i : i + batch_size]
            x = inputs[idx]
            if targets is None:
                noisy = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                loss = nn.functional.mse_loss(denoiser(noisy), x)
            elif copies == 1:
                assert classifier is not None
                noisy = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                loss = nn.functional.cross_entropy(classifier(denoiser(noisy)), targets[idx])
            else:
                assert classifier is not None
                noise = torch.randn((copies, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
                logits = classifier(denoiser((x.unsqueeze(0) + sigma * noise).flatten(0, 1)))
                loss = consistency_loss(logits.view(copies, len(idx), -1), targets[idx], lam, 0.0)
            # Gradients for the denoiser only: the classifier's .grad fields are never written.
            for param, grad in zip(params, torch.autograd.grad(loss, params)):
                param.grad = grad
            opt.step()
        sched.step()
    return denoiser.eval()
