"""Certified training with IBP and CROWN-IBP (Gowal et al. 2018; Zhang et al., ICLR 2020; Shi et al., NeurIPS 2021).

The loss is cross-entropy on the worst-case logits ``-m`` where ``m`` (N, K) lower-bounds the
margins ``z_y - z_j`` over the L-inf ball (``m_y = 0``); minimising it pushes every lower margin
above zero, i.e. makes the input verifiable. Schedules:

* eps ramp: :func:`smoothed_eps` (auto_LiRPA's ``SmoothedScheduler``, Shi et al.): zero during
  warm-up, then ``eps_max (s / T)^4``-like growth up to ``mid`` of the ramp, then linear.
* ``kappa`` (Zhang et al.): loss ``kappa * natural + (1 - kappa) * robust`` with kappa going from 1
  to ``final_kappa`` as eps ramps up.
* ``beta`` (Zhang et al.): the margin bound is ``beta * CROWN-IBP + (1 - beta) * IBP``, beta from
  1 to ``final_beta`` as eps ramps up.

The bounds are the engine's (:func:`certify.margin_bounds` with ``method="ibp"`` or ``"crown-ibp"``
and ``intersect_ibp=False``: the paper's CROWN-IBP bound, which the loss mixes with IBP's through ``beta``,
computed with autograd on, of the model in eval mode): one relaxation in the code base, and any
model the engine supports can be trained.

The IBP-friendly initialisation of Shi et al. draws weights ``N(0, (sqrt(2 pi) / fan_in)^2)`` so that
interval widths neither explode nor vanish with depth at initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from certify._graph import cached_graph
from certify.api import _margin_lower_bounds
from certify.ibp import InputRegion, interval_forward
from certkit._validation import (
    check_bool,
    check_generator,
    check_model_input,
    check_module,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_range,
    check_real,
    check_training_data,
    check_unit_interval,
    generator_or_seed,
)

__all__ = [
    "CertifiedTrainer",
    "TrainingHistory",
    "certified_train",
    "crown_ibp_margin_lower",
    "ibp_init_",
    "ibp_margin_lower",
    "mixing_coefficient",
    "robust_cross_entropy",
    "smoothed_eps",
    "stability_regularizer",
]

Method = Literal["ibp", "crown-ibp"]
Domain = tuple[float, float] | None


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


def smoothed_eps(step: float, *, ramp_start: float, ramp_length: float, eps_max: float,
                 mid: float = 0.25, exponent: float = 4.0) -> float:
    """The eps ramp of auto_LiRPA's ``SmoothedScheduler`` (Shi et al. 2021), in continuous steps.

    ``0`` before ``ramp_start``; then ``a s^exponent`` (``s = step - ramp_start``) up to
    ``mid * ramp_length``; then linear up to ``eps_max`` at ``ramp_start + ramp_length``; then
    ``eps_max``. ``a`` makes the two pieces meet with equal slope. With the defaults the ramp is
    ``eps_max / 13`` at its mid point ``0.25`` and ``5 eps_max / 13`` half-way.
    """
    step, ramp_start = check_real(step, "step"), check_real(ramp_start, "ramp_start")
    check_nonnegative(eps_max, "eps_max")
    check_positive(ramp_length, "ramp_length")
    if not 0 < mid < 1:
        raise ValueError(f"Expected argument `mid` to be in the open interval (0, 1), but got {mid!r}")
    if check_real(exponent, "exponent") < 1:
        raise ValueError(f"Expected argument `exponent` to be >= 1, but got {exponent!r}")
    s = step - ramp_start
    if s <= 0:
        return 0.0
    if s >= ramp_length:
        return float(eps_max)
    m = mid * ramp_length
    a = eps_max / (m ** (exponent - 1) * ((ramp_length - m) * exponent + m))
    if s < m:
        return float(a * s**exponent)
    eps_mid = a * m**exponent
    return float(eps_mid + (eps_max - eps_mid) * (s - m) / (ramp_length - m))


def mixing_coefficient(eps: float, eps_max: float, final: float) -> float:
    """CROWN-IBP's ``kappa`` / ``beta``: ``(eps_max - eps (1 - final)) / eps_max``, from 1 at eps 0 to ``final``."""
    eps, eps_max = check_nonnegative(eps, "eps"), check_nonnegative(eps_max, "eps_max")
    final = check_unit_interval(final, "final")
    if eps_max <= 0:
        return 1.0
    return (eps_max - min(eps, eps_max) * (1.0 - final)) / eps_max


# ---------------------------------------------------------------------------------------------
# Differentiable bounds on the margins: the engine's (certify.margin_bounds), with autograd on
# ---------------------------------------------------------------------------------------------


@contextmanager
def _in_eval_mode(model: nn.Module) -> Iterator[None]:
    """Bound the model as the fixed function it is in eval mode; restore every module's mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _margin_lower(model: nn.Module, x: Tensor, labels: Tensor, eps: float, domain: Domain, method: str) -> Tensor:
    with _in_eval_mode(model):
        return _margin_lower_bounds(model, x, labels, eps, method=method, domain=domain)


def ibp_margin_lower(model: nn.Module, x: Tensor, labels: Tensor, eps: float, *,
                     domain: Domain = (0.0, 1.0)) -> Tensor:
    """Differentiable IBP lower bounds ``(N, K)`` on the margins ``z_y - z_j`` over the L-inf ball.

    Interval bound propagation (Gowal et al. 2018) with the margin matrix merged into the last
    linear layer (elision): exactly ``certify.margin_bounds(model, x, labels, eps, method="ibp",
    domain=domain).lower``, computed with autograd on (gradients reach the parameters), of the
    model in eval mode (modes are restored afterwards). Guarantee: for every ``x'`` with
    ``|x' - x|_inf <= eps`` inside ``domain``, ``z_y(x') - z_j(x') >= bound[:, j]``; column ``y`` is 0.
    Any model :func:`certify.bounds` supports.
    """
    return _margin_lower(model, x, labels, eps, domain, "ibp")


def crown_ibp_margin_lower(model: nn.Module, x: Tensor, labels: Tensor, eps: float, *,
                           domain: Domain = (0.0, 1.0)) -> tuple[Tensor, Tensor]:
    """Differentiable CROWN-IBP and IBP lower bounds ``(N, K)`` on the margins (Zhang et al., ICLR 2020).

    Intermediate (pre-activation) bounds come from IBP; the margins are bounded by a CROWN backward
    pass (linear relaxation of every ReLU, adaptive lower slope). Both are the engine's bounds,
    ``certify.margin_bounds(..., method="crown-ibp", intersect_ibp=False)`` (not intersected with IBP's, as
    in the paper) and ``(..., method="ibp")``, with autograd on;
    both are sound lower bounds on ``z_y - z_j`` over the L-inf ball in ``domain``; returns
    ``(crown_ibp, ibp)``.
    """
    return (_margin_lower(model, x, labels, eps, domain, "crown-ibp"),
            _margin_lower(model, x, labels, eps, domain, "ibp"))


def _ibp_preactivations(model: nn.Module, x: Tensor, eps: float, domain: Domain) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """The engine's IBP bounds ``(l, u)`` of every activation's input, in order, and the input radius ``(N, ...)``."""
    with _in_eval_mode(model):
        g = cached_graph(model, x)
        region = InputRegion(x, torch.full((len(x),), float(eps), dtype=x.dtype, device=x.device), math.inf, domain)
        ivs = interval_forward(g, region, keep_all=True)
    pre = []
    for i in g.preactivations():
        iv = ivs[i]
        assert iv is not None
        pre.append((iv.l, iv.u))
    return pre, (region.box.u - region.box.l) / 2


def stability_regularizer(pre_bounds: Sequence[tuple[Tensor, Tensor]], input_radius: Tensor, *,
                          tolerance: float = 0.5) -> Tensor:
    """The IBP-initialisation regulariser of Shi et al. 2021 (Sec. 3.3), before its ``lambda (1 - eps / eps_max)`` weight.

    For each ReLU layer with IBP pre-activation bounds ``[l, u]`` (centres ``c``): a tightness term
    ``relu(tau - mean(r_in) / mean((u - l) / 2)) / tau`` that keeps the interval radius from growing
    layer to layer, and a balance term ``(relu(tau - rho_mean) + relu(tau - rho_var)) / tau`` with
    ``rho = min(a / b, b / a)`` comparing the mean (and spread) of the centres of the stably active
    (``l > 0``) and stably inactive (``u < 0``) neurons. Averaged over layers; ``tau = tolerance``.
    A balance term that is undefined (no active or no inactive neuron) is skipped, as in the reference.
    """
    if not pre_bounds:
        return input_radius.new_zeros(())
    r_in = input_radius.mean()
    total = input_radius.new_zeros(())
    for lo, hi in pre_bounds:
        centre, radius = (hi + lo) / 2, ((hi - lo) / 2).mean()
        total = total + F.relu(tolerance - r_in / radius.clamp(min=1e-12)) / tolerance
        active, inactive = lo > 0, hi < 0
        mean_ratio = (centre * active).mean() / -(centre * inactive).mean()
        delta = (centre - centre.mean()) ** 2
        var_ratio = (delta * active).sum() / (delta * inactive).sum()
        mean_ratio = torch.minimum(mean_ratio, 1 / mean_ratio.clamp(min=1e-12))
        var_ratio = torch.minimum(var_ratio, 1 / var_ratio.clamp(min=1e-12))
        balance = (F.relu(tolerance - mean_ratio) + F.relu(tolerance - var_ratio)) / tolerance
        if bool(torch.isfinite(balance)):
            total = total + balance
    return total / len(pre_bounds)


def robust_cross_entropy(margin_lower: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy on the worst-case logits ``-margin_lower`` (N, K): an upper bound on the worst-case CE."""
    return F.cross_entropy(-margin_lower, labels)


# ---------------------------------------------------------------------------------------------
# Initialisation and training loop
# ---------------------------------------------------------------------------------------------


def ibp_init_(model: nn.Module, *, generator: torch.Generator | None = None, seed: int | None = None) -> nn.Module:
    """IBP initialisation of Shi et al. 2021: hidden weights ``N(0, (sqrt(2 pi) / fan_in)^2)``, in place.

    The last layer keeps its initialisation (as in the reference). Weights are drawn (on the CPU)
    from ``generator`` (None: a generator seeded with 0, so the default is reproducible); torch's
    global RNG is untouched. ``seed`` is deprecated: pass a generator.
    """
    check_module(model)
    g = generator_or_seed(generator, seed, where="certify.training.ibp_init_")
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    with torch.no_grad():
        for layer in layers[:-1]:
            fan_in = layer.weight[0].numel()
            std = math.sqrt(2 * math.pi) / fan_in
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, device=g.device) * std)
            if layer.bias is not None:
                layer.bias.zero_()
    return model


@dataclass(frozen=True)
class TrainingHistory:
    """Per-epoch record of certified training (all lists have one entry per epoch).

    Attributes:
        eps: training eps at the end of the epoch.
        loss: mean total loss ``kappa * natural + (1 - kappa) * robust``.
        natural_loss: mean clean cross-entropy.
        robust_loss: mean robust cross-entropy (0 during warm-up).
    """

    eps: list[float]
    loss: list[float]
    natural_loss: list[float]
    robust_loss: list[float]


class CertifiedTrainer:
    """IBP / CROWN-IBP certified training (Zhang et al., ICLR 2020; Shi et al., NeurIPS 2021).

    Each step draws a minibatch, sets ``eps`` by :func:`smoothed_eps` (``warmup_epochs`` of clean
    training, then a ``ramp_epochs`` ramp to ``eps``), bounds the margins with IBP or with
    ``beta * CROWN-IBP + (1 - beta) * IBP`` and minimises ``kappa * CE(z) + (1 - kappa) *
    CE(-margin_lower)`` with Adam (gradient norm clipped). Learned state: ``history_``.

    Args:
        method: ``"ibp"`` or ``"crown-ibp"``.
        eps: final training L-inf radius.
        epochs: number of epochs (``>= warmup_epochs + ramp_epochs``).
        warmup_epochs: epochs of clean training (eps 0) first.
        ramp_epochs: epochs over which eps ramps from 0 to ``eps`` (:func:`smoothed_eps`).
        lr: Adam learning rate (divided by 5 at 75% and again at 90% of the epochs).
        batch_size: minibatch size.
        final_kappa: natural-loss weight at the end of the ramp.
        final_beta: CROWN-IBP weight at the end of the ramp (CROWN-IBP only).
        grad_clip: max gradient norm.
        reg_lambda: weight of :func:`stability_regularizer` (Shi et al. use 0.5), decayed by
            ``1 - eps / eps_max`` during the ramp; 0 disables it.
        domain: data range inputs are clipped to.
        generator: draws the minibatch order (on the CPU); None: a generator seeded with 0 at each
            :meth:`fit`, so the default is reproducible. A generator passed here advances with each fit.
        seed: deprecated; pass ``generator=torch.Generator().manual_seed(seed)``.
        progress: show a tqdm bar.
    """

    def __init__(self, *, method: Method = "crown-ibp", eps: float = 0.15, epochs: int = 100,
                 warmup_epochs: int = 5, ramp_epochs: int = 50, lr: float = 2e-3, batch_size: int = 32,
                 final_kappa: float = 0.5, final_beta: float = 0.0, grad_clip: float = 10.0,
                 reg_lambda: float = 0.0, domain: Domain = (0.0, 1.0),
                 generator: torch.Generator | None = None, seed: int | None = None,
                 progress: bool = True) -> None:
        if method not in ("ibp", "crown-ibp"):
            raise ValueError(f"Expected argument `method` to be 'ibp' or 'crown-ibp', but got {method!r}")
        self.method = method
        self.eps = check_positive(eps, "eps")
        self.epochs = check_positive_int(epochs, "epochs")
        self.warmup_epochs = check_positive_int(warmup_epochs, "warmup_epochs", minimum=0)
        self.ramp_epochs = check_positive_int(ramp_epochs, "ramp_epochs")
        if self.warmup_epochs + self.ramp_epochs > self.epochs:
            raise ValueError(
                f"Expected argument `epochs` to be >= warmup_epochs + ramp_epochs = "
                f"{self.warmup_epochs + self.ramp_epochs}, but got {epochs!r}"
            )
        self.lr = check_positive(lr, "lr")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.final_kappa = check_unit_interval(final_kappa, "final_kappa")
        self.final_beta = check_unit_interval(final_beta, "final_beta")
        self.grad_clip = check_positive(grad_clip, "grad_clip")
        self.reg_lambda = check_nonnegative(reg_lambda, "reg_lambda")
        self.domain = None if domain is None else check_range(domain, "domain")
        self.generator = (check_generator(generator) if seed is None
                          else generator_or_seed(generator, seed, where="certify.training.CertifiedTrainer"))
        self.progress = check_bool(progress, "progress")
        self.history_: TrainingHistory | None = None

    def margin_lower(self, model: nn.Module, x: Tensor, labels: Tensor, eps: float) -> Tensor:
        """Training-time lower bound on the margins (N, K) at ``eps`` (mixing CROWN-IBP and IBP by ``beta``)."""
        if self.method == "ibp":
            return ibp_margin_lower(model, x, labels, eps, domain=self.domain)
        beta = mixing_coefficient(eps, self.eps, self.final_beta)
        if beta == 0:
            return ibp_margin_lower(model, x, labels, eps, domain=self.domain)
        if beta == 1:
            return _margin_lower(model, x, labels, eps, self.domain, "crown-ibp")
        crown, ibp = crown_ibp_margin_lower(model, x, labels, eps, domain=self.domain)
        return beta * crown + (1 - beta) * ibp

    def fit(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> CertifiedTrainer:
        """Train ``model`` in place on ``inputs`` (N, ...) and ``labels`` (N,), leaving it in eval mode; returns self.

        Dropout draws from torch's global RNG, whose state is restored afterwards (left untouched)."""
        # every check that can fail runs before the first step: an unsupported layer or a bad label
        # must not be reported after the weights have already changed
        check_model_input(check_module(model), inputs, "inputs")  # the dtype before a forward pass fails on it
        check_training_data(model, inputs, labels)
        if len(inputs) == 0:
            raise ValueError("Expected argument `inputs` to hold at least one sample, but got shape "
                             f"{tuple(inputs.shape)}")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("Expected argument `model` to have trainable parameters (requires_grad=True), "
                             "but it has none")
        with _in_eval_mode(model), torch.no_grad():
            cached_graph(model, inputs[:1])  # raises UnsupportedLayerError for a layer the bounds lack
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout's draws leave the global RNG as it was
            self._fit(model, inputs, labels)
        return self

    def _fit(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> None:
        g = self.generator if self.generator is not None else torch.Generator().manual_seed(0)
        n = len(labels)
        steps_per_epoch = math.ceil(n / self.batch_size)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        decay_at = [int(self.epochs * 0.75) * steps_per_epoch, int(self.epochs * 0.9) * steps_per_epoch]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=decay_at, gamma=0.2)
        history = TrainingHistory([], [], [], [])
        model.train()
        bar = tqdm(range(self.epochs), desc=f"{self.method} training", disable=not self.progress, leave=False)
        step = 0
        for _ in bar:
            perm = torch.randperm(n, generator=g).to(inputs.device)
            totals = [0.0, 0.0, 0.0]
            eps = 0.0
            for i in range(0, n, self.batch_size):
                idx = perm[i : i + self.batch_size]
                xb, yb = inputs[idx], labels[idx]
                step += 1
                eps = smoothed_eps(step, ramp_start=self.warmup_epochs * steps_per_epoch,
                                   ramp_length=self.ramp_epochs * steps_per_epoch, eps_max=self.eps)
                natural = F.cross_entropy(model(xb), yb)
                if eps > 0:
                    robust = robust_cross_entropy(self.margin_lower(model, xb, yb, eps), yb)
                    kappa = mixing_coefficient(eps, self.eps, self.final_kappa)
                    loss = kappa * natural + (1 - kappa) * robust
                    if self.reg_lambda > 0 and eps < self.eps:
                        pre, r = _ibp_preactivations(model, xb, eps, self.domain)
                        loss = loss + self.reg_lambda * (1 - eps / self.eps) * stability_regularizer(pre, r)
                else:
                    robust = torch.zeros(())
                    loss = natural
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                opt.step()
                sched.step()
                w = len(idx) / n
                totals = [t + w * float(v.detach()) for t, v in zip(totals, (loss, natural, robust))]
            history.eps.append(eps)
            history.loss.append(totals[0])
            history.natural_loss.append(totals[1])
            history.robust_loss.append(totals[2])
            bar.set_postfix(eps=f"{eps:.3f}", loss=f"{totals[0]:.3f}")
        model.eval()
        self.history_ = history


def certified_train(model: nn.Module, inputs: Tensor, labels: Tensor, **kwargs: object) -> TrainingHistory:
    """Train ``model`` in place with :class:`CertifiedTrainer` (keyword hyperparameters, including
    ``generator``); returns its history."""
    trainer = CertifiedTrainer(**kwargs).fit(model, inputs, labels)  # type: ignore[arg-type]
    assert trainer.history_ is not None
    return trainer.history_
