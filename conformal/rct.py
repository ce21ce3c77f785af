"""Robust Conformal Training (RCT, Yan, Zhang, Kang, ICLR 2024): ConfTr through the smoothed score.

ConfTr (Stutz et al., ICLR 2022) simulates split conformal prediction inside each training batch:
half the batch calibrates a *soft* quantile of the true-label scores, the other half pays for its
*soft* set sizes. RCT does this on the robust sets of RSCP: scores are the Gaussian quantile
Phi^-1 of the Monte Carlo smoothed score, and the threshold is widened by eps/sigma. The score is THR
(1 - p_y, the paper's), or APS / RAPS (RAPS scaled into [0, 1] as :func:`conformal.rscp.unit_raps`),
randomised by default: one u ~ U(0, 1) per training input, drawn from the caller's generator afresh
at every step and shared by all noise draws of that input, exactly as
:func:`conformal.rscp.per_input_score` scores calibration and test inputs for RSCP/RSCP+.
Only the last layer of a noise-trained base model is trained.

Differentiability: THR is smooth in the logits. APS/RAPS sort each noisy softmax row; the sort
*order* is piecewise constant, so the loss uses the almost-everywhere gradient with the order held
fixed: between changes of order the APS score sum_{j ranked at or above y} p_j - u p_y is linear in
the probabilities (the RAPS rank penalty is constant), and autograd differentiates exactly that
(through ``gather``/``cumsum``/``scatter``). At a change of order the score jumps and the gradient
ignores the jump, so the loss is a surrogate; this only affects how well training shrinks sets,
never validity (below).

Loss per batch: log(L_class + lam * mean(max(soft_size - 1, 0))), L_class the cross-entropy of the
smoothed softmax. Everything is torch (no torchsort): soft ranks come from pairwise sigmoids.

Training changes only the model; the conformal guarantee of RSCP/RSCP+ applied afterwards holds as
for any model (RCT data are the train split, disjoint from calibration), whatever the surrogate's
gradient: calibrate and predict with the same score (``RSCPPlus(score="aps")`` is randomised by default).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from certkit._validation import (
    check_bool,
    check_generator,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_probability,
    check_seed,
    check_training_data,
)
from conformal.rscp import unit_raps
from conformal.scores import aps

_SCORES = ("thr", "aps", "raps")

__all__ = ["RCTConfig", "rct_loss", "soft_quantile", "soft_rank", "soft_set_size", "train_rct"]


def soft_rank(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Differentiable 1-based ranks of a ``(n,)`` vector: r_i = 1/2 + sum_j sigmoid((x_i - x_j) / temperature).

    Tends to the ordinal ranks (ties averaged) as ``temperature`` -> 0.
    """
    return 0.5 + torch.sigmoid((x[:, None] - x[None, :]) / temperature).sum(1)


def soft_quantile(scores: torch.Tensor, q: float, *, temperature: float = 0.1, bandwidth: float = 0.5) -> torch.Tensor:
    """Smooth version of the conformal quantile: the ceil((n + 1) q)-th smallest of ``scores`` ``(n,)``.

    Weights each score by a Gaussian kernel (``bandwidth``, in rank units) of the distance
    between its soft rank and the target rank k = ceil((n + 1) q), clipped to [1, n]; as
    ``temperature`` and ``bandwidth`` go to 0 this is the k-th order statistic.
    """
    temperature = check_positive(temperature, "temperature")
    bandwidth = check_positive(bandwidth, "bandwidth")
    q = check_probability(q, "q")
    n = scores.shape[0]
    k = min(max(math.ceil((n + 1) * q), 1), n)
    r = soft_rank(scores, temperature)
    w = torch.softmax(-((r - k) ** 2) / (2 * bandwidth**2), dim=0)
    return (w * scores).sum()


def soft_set_size(scores: torch.Tensor, threshold: torch.Tensor | float, temperature: float) -> torch.Tensor:
    """Soft sizes ``(N,)`` of {y : s(x, y) <= threshold}: sum_y sigmoid((threshold - s(x, y)) / temperature)."""
    return torch.sigmoid((threshold - scores) / temperature).sum(1)


@dataclass(frozen=True)
class RCTConfig:
    """Hyperparameters of :func:`train_rct` (defaults tuned for the digits CNN; training <= ~30 s on 2 cores).

    ``score`` is the smoothed score trained through: ``"thr"`` (default, the paper's), ``"aps"`` or
    ``"raps"``. ``randomized`` (APS/RAPS only; None: True for them) draws one u ~ U(0, 1) per training
    input per step, shared by its noise draws; False uses u = 0 (the inclusive form). ``k_reg`` and
    ``lam`` are RAPS's (None: 5 and 0.01, the defaults of :func:`conformal.scores.raps`). Use the same
    score, ``randomized`` and RAPS parameters in RSCP/RSCP+ afterwards.
    """

    alpha: float = 0.1
    sigma: float = 0.25
    eps: float = 0.125
    n_noise: int = 8
    n_bank: int = 32
    epochs: int = 150
    batch_size: int = 500
    lr: float = 0.01
    temperature: float = 0.1
    size_weight: float = 1.0
    seed: int | None = None  # deprecated: pass ``generator=`` to :func:`train_rct`
    score: str = "thr"
    randomized: bool | None = None
    k_reg: int | None = None
    lam: float | None = None

    def __post_init__(self) -> None:
        if self.seed is not None:
            warnings.warn(
                "RCTConfig(seed=...) is deprecated and will be removed in the next release; pass "
                "`generator=torch.Generator().manual_seed(seed)` to train_rct instead",
                DeprecationWarning,
                stacklevel=3,
            )
        if self.seed is not None:
            check_seed(self.seed, "seed")
        check_probability(self.alpha, "alpha")
        check_positive(self.sigma, "sigma")
        check_nonnegative(self.eps, "eps")
        check_positive_int(self.n_noise, "n_noise")
        check_positive_int(self.n_bank, "n_bank", minimum=self.n_noise)
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size", minimum=4)
        check_positive(self.lr, "lr")
        check_positive(self.temperature, "temperature")
        check_nonnegative(self.size_weight, "size_weight")
        _check_score(self.score, self.randomized, self.k_reg, self.lam)

    @property
    def is_randomized(self) -> bool:
        """Whether training draws one u ~ U(0, 1) per input (APS/RAPS unless ``randomized=False``)."""
        return self.score != "thr" and self.randomized is not False

    @property
    def score_kwargs(self) -> dict[str, Any]:
        """The RAPS parameters to pass on to RSCP/RSCP+ (``score_kwargs=``); empty for THR and APS."""
        if self.score != "raps":
            return {}
        return {"k_reg": 5 if self.k_reg is None else self.k_reg, "lam": 0.01 if self.lam is None else self.lam}


def _check_score(score: Any, randomized: Any, k_reg: Any, lam: Any) -> None:
    if not isinstance(score, str) or score not in _SCORES:
        raise ValueError(f"Expected argument `score` to be one of {_SCORES}, but got {score!r}")
    if randomized is not None:
        check_bool(randomized, "randomized")
        if randomized and score == "thr":
            raise ValueError("Expected argument `randomized` to be None or False with score='thr' (THR has no "
                             "randomised form; use score='aps' or 'raps'), but got True")
    if score != "raps" and (k_reg is not None or lam is not None):
        raise ValueError(f"Expected arguments `k_reg` and `lam` to be None unless score='raps' (they are RAPS's), "
                         f"but got k_reg={k_reg!r}, lam={lam!r} with score={score!r}")
    if k_reg is not None and (isinstance(k_reg, bool) or not isinstance(k_reg, int) or k_reg < 0):
        raise ValueError(f"Expected argument `k_reg` to be an integer >= 0, but got {k_reg!r}")
    if lam is not None:
        check_nonnegative(lam, "lam")


def _smoothed_phi(probs: torch.Tensor, score: str, u: torch.Tensor | None, k_reg: int | None,
                  lam: float | None) -> torch.Tensor:
    """(B, n_noise, K) probabilities -> (B, K) Phi^-1 of the smoothed score (mean over the noise draws).

    ``u`` ``(B,)`` is each input's u, repeated over its noise draws (None: u = 0); the APS/RAPS sort is
    differentiated with its order held fixed (see the module docstring).
    """
    if score == "thr":
        s = 1 - probs.mean(1)
    else:
        b, m, k = probs.shape
        flat = probs.reshape(b * m, k)
        uu = torch.zeros(b * m, dtype=probs.dtype, device=probs.device) if u is None else \
            u.to(device=probs.device, dtype=probs.dtype).repeat_interleave(m)
        kr = 5 if k_reg is None else k_reg
        la = 0.01 if lam is None else lam
        if score == "aps":
            per = aps(flat, u=uu, validate=False)
        else:
            per = unit_raps(flat, k_reg=kr, lam=la, u=uu, validate=False)
        s = per.reshape(b, m, k).mean(1)
    return torch.special.ndtri(s.clamp(1e-4, 1 - 1e-4))


def rct_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, alpha: float, sigma: float, eps: float,
    temperature: float, size_weight: float, score: str = "thr", u: torch.Tensor | None = None,
    k_reg: int | None = None, lam: float | None = None,
) -> torch.Tensor:
    """RCT loss of one batch: ``logits`` (B, n_noise, K) of noisy copies, ``labels`` (B,).

    ``score`` is ``"thr"``, ``"aps"`` or ``"raps"`` (``k_reg``, ``lam``); ``u`` ``(B,)`` in [0, 1] is
    each input's u for the randomised APS/RAPS, shared by its noise draws (None: u = 0; THR takes none).
    """
    _check_score(score, None, k_reg, lam)
    if u is not None:
        if score == "thr":
            raise ValueError("Expected argument `u` to be None with score='thr' (THR has no randomised form), "
                             "but got a tensor")
        if not isinstance(u, torch.Tensor) or u.shape != labels.shape[:1]:
            raise ValueError(f"Expected argument `u` to be a (B,) = {tuple(labels.shape[:1])} tensor, one value "
                             f"per input, but got {tuple(getattr(u, 'shape', ()))}")
        if u.numel() and bool(((u < 0) | (u > 1)).any()):
            raise ValueError("Expected argument `u` to lie in [0, 1], but got values outside it")
    probs = torch.softmax(logits, dim=-1)
    phi = _smoothed_phi(probs, score, u, k_reg, lam)
    half = labels.shape[0] // 2
    cal_scores = phi[:half].gather(1, labels[:half, None]).squeeze(1)
    tau = soft_quantile(cal_scores, 1 - alpha, temperature=temperature)
    size = soft_set_size(phi[half:] - eps / sigma, tau, temperature)
    class_loss = -torch.log(probs.mean(1).gather(1, labels[:, None]).clamp_min(1e-12)).mean()
    return torch.log(class_loss + size_weight * (size - 1).clamp_min(0).mean())


def train_rct(model: nn.Sequential, x: torch.Tensor, labels: torch.Tensor, config: RCTConfig | None = None, *,
              generator: torch.Generator | None = None) -> nn.Sequential:
    """Fine-tune the last layer of ``model`` with the RCT loss; returns a trained copy (``model`` is untouched).

    Noisy features of the frozen body are computed once for ``n_bank`` noise draws per input; each
    step samples ``n_noise`` of them per input (a cheap stand-in for fresh noise: the body never
    changes). With ``config.score`` ``"aps"``/``"raps"`` randomised, each step draws one u ~ U(0, 1) per
    input of the batch (shared by its noise draws) from ``generator``. All randomness (noise bank, minibatch order, noise picks) comes from ``generator`` (on
    ``x``'s device; None: one seeded with 0, so training is reproducible by default, as the model cache
    needs); torch's global RNG is untouched.

    Args:
        model: ``nn.Sequential`` base classifier whose last module is the trainable ``nn.Linear`` head.
        x: ``(N, *shape)`` training inputs (never the calibration set).
        labels: ``(N,)`` labels.
        config: hyperparameters (defaults: alpha 0.1, sigma 0.25, eps 0.125).
        generator: source of all randomness; the deprecated ``config.seed`` is used when it is None.

    Returns:
        The fine-tuned copy, in eval mode.
    """
    cfg = config or RCTConfig()
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise TypeError("Expected argument `model` to be an nn.Sequential ending in nn.Linear, but got "
                        f"{type(model).__name__}")
    check_training_data(model, x, labels, "x")
    model = copy.deepcopy(model).eval()
    body, head = model[:-1], model[-1]
    if generator is not None and cfg.seed is not None:
        raise ValueError("Expected either argument `generator` or the deprecated `config.seed`, but got both")
    check_generator(generator)
    g = generator if generator is not None else torch.Generator(device=x.device).manual_seed(0 if cfg.seed is None else cfg.seed)
    with torch.no_grad():
        feats = torch.stack([body(x + cfg.sigma * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype))
                             for _ in range(cfg.n_bank)], dim=1)  # (N, n_bank, F)
    labels = labels.long().to(x.device)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    n = x.shape[0]
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=g, device=x.device)
        for i in range(0, n - cfg.batch_size + 1, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            pick = torch.rand((idx.shape[0], cfg.n_bank), generator=g, device=x.device).argsort(1)[:, : cfg.n_noise]
            f = feats[idx[:, None], pick]  # (B, n_noise, F)
            # one u per input, shared by its noise draws (drawn only for randomised scores: THR's stream is unchanged)
            u = torch.rand(idx.shape[0], generator=g, device=x.device) if cfg.is_randomized else None
            loss = rct_loss(head(f), labels[idx], alpha=cfg.alpha, sigma=cfg.sigma, eps=cfg.eps,
                            temperature=cfg.temperature, size_weight=cfg.size_weight, score=cfg.score, u=u,
                            k_reg=cfg.k_reg, lam=cfg.lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
