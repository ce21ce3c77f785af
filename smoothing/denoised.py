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
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from certkit._validation import (
    check_array,
    check_generator,
    check_positive,
    check_positive_int,
    warn_low_precision_training,
)

__all__ = ["DenoisedClassifier", "make_conv_denoiser", "train_denoiser"]

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


def train_denoiser(
    denoiser: nn.Module,
    inputs: torch.Tensor,
    sigma: float,
    *,
    objective: Objective = "mse",
    classifier: nn.Module | None = None,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Train ``denoiser`` in place on ``inputs`` (N, *input_shape) under N(0, σ² I) noise; return it in eval mode.

    ``objective="mse"`` minimises ||D(x + δ) - x||²; ``"stability"`` minimises
    CE(classifier(D(x + δ)), argmax classifier(x)) with ``classifier`` frozen (its parameters are not
    updated and its train/eval mode is left as it is; it should be in eval mode). No labels are used.
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
            noisy = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            out = denoiser(noisy)
            if targets is None:
                loss = nn.functional.mse_loss(out, x)
            else:
                assert classifier is not None
                loss = nn.functional.cross_entropy(classifier(out), targets[idx])
            # Gradients for the denoiser only: the classifier's .grad fields are never written.
            for param, grad in zip(params, torch.autograd.grad(loss, params)):
                param.grad = grad
            opt.step()
        sched.step()
    return denoiser.eval()
