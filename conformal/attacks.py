"""Attacks used to measure coverage under attack: PGD on a smoothed score, and PGD on the true-label probability.

``smoothed_score_pgd``: PGD against a smoothed score in the L2 ball (the SmoothAdv attack of Salman et
al. 2019, aimed at a score).
The attack is the empirical counterpart of RSCP's guarantee: it searches ||delta||_2 <= eps for a
perturbation that raises the smoothed score S_bar(x + delta, y_true) = E_noise S(x + delta + noise, y_true),
i.e. pushes the true label out of the prediction set. Each PGD step estimates the gradient of the
smoothed score from ``n_noise`` fresh Gaussian samples, takes an L2-normalised ascent step and
projects back onto the ball.

``pgd_attack``: PGD in an L-p ball (intersected with the input domain) that minimises ``log p_y`` of
the plain classifier, the empirical counterpart of the certified sets built on bound propagation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from certify.attacks import pgd_minimize
from certkit._validation import (
    check_array,
    check_eval_mode,
    check_model_labels,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from certkit.threat import LpBall, threat_arguments
from smoothing.scores import PerInputScore

__all__ = ["pgd_attack", "smoothed_score_pgd"]


def _project_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (eps / norms).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.ndim - 1)))


def smoothed_score_pgd(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    score_fn: Callable[[torch.Tensor], torch.Tensor] | PerInputScore,
    *,
    sigma: float,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    n_noise: int = 16,
    generator: torch.Generator | None = None,
    clip: tuple[float, float] | None = None,
    batch_size: int = 4096,
) -> torch.Tensor:
    """L2 PGD that maximises the Monte Carlo smoothed score of the true label.

    An attack, so no guarantee: it gives an upper bound on robust coverage. RSCP+'s coverage
    must hold against it (and any other attack within the eps-ball); vanilla smoothed CP's need not.

    Args:
        model: base classifier ``(M, *shape)`` -> ``(M, K)`` logits, in eval mode.
        x: ``(N, *shape)`` clean inputs.
        labels: ``(N,)`` true labels (the attacked label of each input).
        score_fn: differentiable score of every label, probs ``(M, K)`` -> ``(M, K)`` (e.g. THR, APS), or a
            :class:`smoothing.scores.PerInputScore` (randomised APS/RAPS: input j's noisy samples are
            scored with its own u, as in :func:`smoothing.smoothed_scores`).
        sigma: smoothing noise level > 0.
        eps: L2 radius >= 0 (0 returns ``x`` unchanged).
        steps: PGD steps >= 1.
        step_size: L2 length of each step; ``2.5 * eps / steps`` if None (Madry et al. 2018).
        n_noise: noise samples per input and step for the gradient estimate.
        generator: source of the noise (on ``x.device``); fresh nondeterministic one if None.
        clip: optional ``(low, high)`` range the adversarial input is clamped to (e.g. pixel range).
        batch_size: forward batch size in samples.

    Returns:
        ``(N, *shape)`` adversarial inputs with ``||x_adv - x||_2 <= eps`` per input (detached).

    References:
        Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers", NeurIPS 2019.
        Gendler et al., "Adversarially Robust Conformal Prediction", ICLR 2022.
    """
    sigma = check_positive(sigma, "sigma")
    eps = check_nonnegative(eps, "eps")
    steps = check_positive_int(steps, "steps")
    check_array(x, "x", tensor=True)
    check_model_labels(model, x, labels, "labels")
    n_noise = check_positive_int(n_noise, "n_noise")
    batch_size = check_positive_int(batch_size, "batch_size")
    step = 2.5 * eps / steps if step_size is None else check_positive(step_size, "step_size")
    check_eval_mode(model)
    if not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],):
        raise ValueError(
            f"Expected argument `labels` to be a tensor of shape ({x.shape[0]},), but got "
            f"{type(labels).__name__} {tuple(getattr(labels, 'shape', ()))}"
        )
    if eps == 0:
        return x.detach().clone()
    if isinstance(score_fn, PerInputScore) and score_fn.u.shape != (x.shape[0],):
        raise ValueError(f"Expected the PerInputScore's `u` to have shape ({x.shape[0]},), but got "
                         f"{tuple(score_fn.u.shape)}")
    if generator is None:
        generator = torch.Generator(device=x.device)
        generator.seed()

    per_chunk = max(1, batch_size // n_noise)
    shape = x.shape[1:]
    out = []
    for i in range(0, x.shape[0], per_chunk):
        xb, yb = x[i : i + per_chunk].detach(), labels[i : i + per_chunk].long().to(x.device)
        b = xb.shape[0]
        delta = torch.zeros_like(xb)
        for _ in range(steps):
            delta.requires_grad_(True)
            x_adv = xb + delta
            noise = torch.randn((b, n_noise, *shape), generator=generator, device=x.device, dtype=x.dtype) * sigma
            batch = (x_adv.unsqueeze(1) + noise).view(b * n_noise, *shape)
            with warnings.catch_warnings():
                # certkit's score functions validate probs with float(...), harmless on a graph tensor
                warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
                probs = torch.softmax(model(batch), dim=-1)
                if isinstance(score_fn, PerInputScore):
                    u_rows = score_fn.u[i : i + b].to(x.device, probs.dtype).repeat_interleave(n_noise)
                    s = score_fn.fn(probs, u=u_rows)
                else:
                    s = score_fn(probs)
            s_true = s.view(b, n_noise, -1).mean(1).gather(1, yb[:, None]).sum()
            (grad,) = torch.autograd.grad(s_true, delta)
            with torch.no_grad():
                g_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * len(shape)))
                delta = _project_l2(delta + step * grad / g_norm, eps)
                if clip is not None:
                    delta = (xb + delta).clamp(clip[0], clip[1]) - xb
            delta = delta.detach()
        out.append(xb + delta)
    return torch.cat(out)


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float | None = None,
    *,
    norm: float | str | None = None,
    steps: int = 20,
    restarts: int = 1,
    domain: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    seed: int | None = None,
    threat: LpBall | None = None,
) -> torch.Tensor:
    """PGD inside the ball that minimises ``log p_y`` (maximises the THR score ``1 - p_y`` of the true label).

    Thin wrapper over ``certify.attacks.pgd_minimize`` (restarts drawn from ``generator``, None: seeded
    with 0; ``seed`` is deprecated; never leaves the ball intersected with ``domain``). Returns (N, ...)
    perturbed inputs. The region is ``threat=LpBall(norm, eps, domain)`` or, spelled out, the ``norm`` ball
    (default L-inf) of radius ``eps`` intersected with ``domain`` (default ``(0, 1)``).
    """
    if threat is not None:
        eps, norm, domain = threat_arguments(threat, eps, norm, None if domain == (0.0, 1.0) else domain)
    check_eval_mode(model)
    check_array(x, "x", tensor=True)
    check_model_labels(model, x, labels, "labels")

    def log_p_true(z: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(model(z), dim=-1).gather(1, labels[:, None]).squeeze(1)

    x_adv, _ = pgd_minimize(log_p_true, x, eps, norm=norm, domain=domain, steps=steps, restarts=restarts,
                            generator=generator, seed=seed)
    return x_adv.detach()
