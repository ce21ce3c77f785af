"""COLEP: certifiably robust learning-reasoning conformal prediction (Kang, Gürel, Li, Li, ICLR 2024).

Learning component: a main classifier (class probabilities ``p``) and binary concept *sensors*
(attribute probabilities ``q``), any torch models, smoothed by Gaussian noise through a smoothing
certifier (``kind="smoothing"``), so each smoothed sensor probability ``p_bar_v(x) = E p_v(x + delta)``
has a ``1/sigma``-Lipschitz ``Phi^-1`` (Salman et al. 2019). Reasoning component: probabilistic
circuits over weighted rules "label => attribute" (:mod:`conformal._circuit`) correct the class
probabilities, ``pi_hat = PC(p_bar, q_bar)``. Conformal prediction then runs on the corrected score
``S(x, y) = 1 - pi_hat_y(x)``.

Certification (the paper's Theorems 1-2, with the Monte Carlo error made explicit):

1. sensor bounds: at a test input ``x~``, with probability >= 1 - beta over the noise,
   ``p_bar_v(x~)`` lies in ``[p_hat_v -+ b_v]`` for every sensor v (empirical-Bernstein margins, each
   side at beta / (2V), union bound), and every ``x`` with ``||x - x~||_2 <= eps`` has
   ``p_bar_v(x)`` in ``[Phi(Phi^-1(p_hat_v - b_v) - eps/sigma), Phi(Phi^-1(p_hat_v + b_v) + eps/sigma)]``;
2. the box is propagated through the circuits exactly (:func:`conformal._circuit.circuit_bounds`);
3. calibration uses the worst corrected score over the Monte Carlo box of each clean calibration
   point, at level ``alpha - 2 beta``; the robust set at ``x~`` keeps every label whose *best*
   corrected score over the perturbation box is within the threshold.

Guarantee of :meth:`COLEP.predict` (robust set): for exchangeable calibration and test points and
any ``x~`` with ``||x~ - x||_2 <= eps``, ``P[y in C(x~)] >= 1 - alpha`` (marginally over calibration,
test point and Monte Carlo noise: alpha - 2 beta conformal, beta per Monte Carlo box). The guarantee
holds for *any* sensors and rule weights: a wrong or corrupted sensor can only make sets larger.

Certified coverage of the standard set (the paper's Theorem 3, worst case of the non-robust set
``{y : 1 - pi_hat_y(x~) <= tau_std}``): :meth:`COLEP.certified_mask` says per labelled point whether
the label stays in the standard set for every perturbation in the ball (w.p. >= 1 - 2 beta); its mean
on labelled data is the certified coverage, and :func:`finite_sample_coverage` is the calibration-
conditional lower bound of the conformal coverage for a finite calibration set.

Differences from the authors' code, following the paper: the bounds are exact per circuit (vertex
from monotonicity, instead of bounding each leaf factor separately), and the Monte Carlo error of
the smoothed sensors is accounted for by explicit margins at failure probability beta (the reference
treats the Monte Carlo means as the smoothed probabilities, which voids the guarantee).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import torch
from scipy.stats import beta as beta_dist
from torch import nn

from certkit._validation import (
    check_array,
    check_eval_mode,
    check_generator,
    check_labels,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_probability,
)
from certkit.certifier import Certifier, SmoothedScores
from certkit.threat import LpBall
from conformal._base import Calibrator, resolve_certifier, resolve_threat
from conformal._circuit import Rule, RuleCircuits, circuit_bounds, circuit_log_partition, circuit_marginals
from conformal.attacks import _project_l2
from conformal.functional import conformal_quantile, conformal_rank
from conformal.rscp import bernstein_margin, hoeffding_margin
from conformal.sets import PredictionSets
from smoothing.certifier import SmoothingCertifier

__all__ = [
    "COLEP",
    "CertifiedCoverage",
    "Rule",
    "RuleCircuits",
    "Sensors",
    "circuit_bounds",
    "circuit_log_partition",
    "circuit_marginals",
    "colep_score_pgd",
    "finite_sample_coverage",
    "fit_rule_weights",
    "sensor_bounds",
]

_DEFAULT_EPS = 0.125


class _Positive(nn.Module):
    """A binary sensor as a two-logit classifier: softmax column 1 is its probability."""

    def __init__(self, sensor: nn.Module) -> None:
        super().__init__()
        self.sensor = sensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.sensor(x)
        if z.ndim == 2 and z.shape[1] == 2:
            return z
        if z.ndim == 2 and z.shape[1] == 1:
            z = z[:, 0]
        if z.ndim != 1:
            raise ValueError(f"Expected a binary sensor to return (M,), (M, 1) or (M, 2) logits, but got {tuple(z.shape)}")
        return torch.stack([torch.zeros_like(z), z], dim=1)


class Sensors(nn.Module):
    """The learning component: a main classifier and binary attribute sensors (any torch models).

    ``forward(x)`` returns ``(M, K + C)`` probabilities: the main classifier's softmax, then each
    sensor's probability of its attribute (sigmoid of a ``(M,)``/``(M, 1)`` logit, or column 1 of
    the softmax of ``(M, 2)`` logits).

    Args:
        main: classifier ``(M, ...) -> (M, K)`` logits.
        attributes: the C binary sensors, in attribute order.
    """

    def __init__(self, main: nn.Module, attributes: Sequence[nn.Module]) -> None:
        super().__init__()
        if not isinstance(main, nn.Module):
            raise TypeError(f"Expected argument `main` to be an nn.Module, but got {type(main).__name__}")
        if len(attributes) == 0 or not all(isinstance(a, nn.Module) for a in attributes):
            raise TypeError("Expected argument `attributes` to be a non-empty sequence of nn.Module sensors")
        self.main = main
        self.attributes = nn.ModuleList([_Positive(a) for a in attributes])

    @property
    def num_attributes(self) -> int:
        """C, the number of binary sensors."""
        return len(self.attributes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [torch.softmax(self.main(x), dim=-1)]
        probs += [torch.softmax(a(x), dim=-1)[:, 1:] for a in self.attributes]
        return torch.cat(probs, dim=1)


def _identity(p: torch.Tensor) -> torch.Tensor:
    return p


def _positive_column(p: torch.Tensor) -> torch.Tensor:
    return p[:, 1:]


def smoothed_sensor_scores(sensors: Sensors, x: torch.Tensor, certifier: Certifier, threat: LpBall) -> SmoothedScores:
    """Monte Carlo smoothed probabilities of every sensor, ``(N, K + C)``, through a smoothing certifier."""
    check_eval_mode(sensors)
    parts = [certifier.certify(sensors.main, x, threat, score_fn=_identity)]
    parts += [certifier.certify(a, x, threat, score_fn=_positive_column) for a in sensors.attributes]
    if not all(isinstance(s, SmoothedScores) for s in parts):
        raise TypeError(f"Expected the certifier {certifier!r} to return SmoothedScores")
    n_mc = {s.n_mc for s in parts}  # type: ignore[union-attr]
    sig = {s.sigma for s in parts}  # type: ignore[union-attr]
    if len(n_mc) != 1 or len(sig) != 1:
        raise ValueError("Expected every sensor to be smoothed with the same n_mc and sigma")
    mean = torch.cat([s.mean for s in parts], dim=1)  # type: ignore[union-attr]
    var = torch.cat([s.variance for s in parts], dim=1)  # type: ignore[union-attr]
    return SmoothedScores(mean, var, n_mc.pop(), sig.pop())


def sensor_bounds(scores: SmoothedScores, *, eps: float, beta: float, sigma: float | None = None,
                  margin: str = "bernstein", extra_margin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds ``(lower, upper)`` ``(N, V)`` on the smoothed sensor probabilities over the L2 ball of radius ``eps``.

    Guarantee: with probability >= 1 - beta over the Monte Carlo noise behind ``scores`` (every one of
    the 2V one-sided margins at beta / (2V), union bound), for every ``x`` with ``||x - x~||_2 <= eps``
    and every sensor v, ``lower[v] <= p_bar_v(x) <= upper[v]`` (Phi^-1 of a smoothed probability is
    1/sigma-Lipschitz, Salman et al. 2019). ``eps = 0`` bounds the smoothed probabilities at ``x~``.

    Args:
        scores: Monte Carlo means and variances ``(N, V)`` of the sensor probabilities at ``x~``.
        eps: L2 radius >= 0.
        beta: total failure probability in (0, 1).
        sigma: noise level (default: the one ``scores`` carries).
        margin: ``"bernstein"`` (empirical Bernstein, Maurer and Pontil 2009) or ``"hoeffding"``.
        extra_margin: also widen by a Hoeffding margin at beta (per side, union bound) *after* the
            Lipschitz step: the box then also holds a fresh Monte Carlo estimate at any ``x`` of the
            ball (with probability >= 1 - beta more), which certifies the standard (Monte Carlo) set.
    """
    eps = check_nonnegative(eps, "eps")
    beta = check_probability(beta, "beta")
    s = scores.sigma if sigma is None else check_positive(sigma, "sigma")
    if s is None:
        raise ValueError("Expected argument `sigma` (the scores carry no noise level)")
    mean = scores.mean.to(torch.float64).clamp(0, 1)
    v = mean.shape[1]
    per_side = beta / (2 * v)
    if margin == "bernstein":
        # Maurer and Pontil's Theorem 4 is one-sided at failure beta' (its ln(2/beta') comes from the proof)
        b = bernstein_margin(scores.variance.to(torch.float64), scores.n_mc, per_side)
    elif margin == "hoeffding":
        b = torch.full_like(mean, hoeffding_margin(scores.n_mc, per_side))
    else:
        raise ValueError(f"Expected argument `margin` to be 'bernstein' or 'hoeffding', but got {margin!r}")
    shift = eps / s
    lo = torch.special.ndtr(torch.special.ndtri((mean - b).clamp(0, 1)) - shift)
    hi = torch.special.ndtr(torch.special.ndtri((mean + b).clamp(0, 1)) + shift)
    if extra_margin:
        h = hoeffding_margin(scores.n_mc, per_side)
        lo, hi = (lo - h).clamp(0, 1), (hi + h).clamp(0, 1)
    return lo, hi


def fit_rule_weights(probs: torch.Tensor, labels: torch.Tensor, circuits: RuleCircuits, *, epochs: int = 300,
                     lr: float = 0.05, init: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learn the rule weights ``(C, K)`` >= 0 and circuit mixture ``(C,)`` by maximum likelihood.

    Minimises the binary cross-entropy of the corrected probabilities ``pi_hat_k`` against the
    one-hot labels (the paper learns the PC weights on training data; here full-batch Adam on a
    softplus / softmax parametrisation). Deterministic given the data.

    Args:
        probs: ``(N, K + C)`` sensor probabilities (e.g. Monte Carlo smoothed, on held-out training data).
        labels: ``(N,)`` true classes.
        circuits: the rule groups.
        epochs: full-batch Adam steps.
        lr: Adam learning rate.
        init: initial weight of every rule (> 0).

    Returns:
        ``(weights, mixture)``, detached float64.
    """
    k, c = circuits.num_classes, circuits.num_attributes
    if probs.ndim != 2 or probs.shape[1] != k + c:
        raise ValueError(f"Expected argument `probs` of shape (N, {k + c}), but got {tuple(probs.shape)}")
    check_labels(labels, probs.shape[0], k)
    epochs = check_positive_int(epochs, "epochs")
    init = check_positive(init, "init")
    p, q = probs[:, :k].detach().to(torch.float64), probs[:, k:].detach().to(torch.float64)
    target = nn.functional.one_hot(labels.long(), k).to(torch.float64)
    raw_w = torch.full((c, k), math.log(math.expm1(init)), dtype=torch.float64, requires_grad=True)
    raw_b = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([raw_w, raw_b], lr=check_positive(lr, "lr"))
    with torch.enable_grad():
        for _ in range(epochs):
            pi = circuit_marginals(p, q, circuits, nn.functional.softplus(raw_w), torch.softmax(raw_b, 0))
            loss = nn.functional.binary_cross_entropy(pi.clamp(1e-9, 1 - 1e-9), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return nn.functional.softplus(raw_w).detach(), torch.softmax(raw_b, 0).detach()


def finite_sample_coverage(n: int, alpha: float | Fraction, delta: float) -> float:
    """Calibration-conditional coverage bound of split conformal with ``n`` calibration points.

    With the threshold at rank k = ceil((n + 1)(1 - alpha)), the coverage given the calibration
    set is distributed as Beta(k, n + 1 - k) (Vovk 2012), so with probability >= 1 - delta over the
    calibration draw the coverage is at least its delta-quantile (returned; 0 if k > n).
    """
    n = check_positive_int(n, "n")
    delta = check_probability(delta, "delta")
    k = conformal_rank(n, alpha)
    if k > n:
        return 1.0
    return float(beta_dist.ppf(delta, k, n + 1 - k))


@dataclass(frozen=True)
class CertifiedCoverage:
    """Certified coverage of COLEP on labelled data.

    Attributes:
        robust: the marginal coverage guarantee of the robust set, ``1 - alpha``, under any perturbation
            in the ball.
        robust_conditional: with probability >= 1 - delta over calibration, the coverage of the robust
            set is >= this (finite-sample correction, :func:`finite_sample_coverage`, minus 2 beta).
        standard: the fraction of the labelled points whose label is certified to stay in the standard
            set for every perturbation in the ball (each certificate fails with probability <= 2 beta).
        n: number of labelled points behind ``standard``.
    """

    robust: float
    robust_conditional: float
    standard: float
    n: int


class COLEP(Calibrator):
    """COLEP robust conformal sets on the corrected score ``1 - pi_hat_y`` (Kang et al., ICLR 2024).

    Guarantee (see the module docstring): ``P[y in predict(x~)] >= 1 - alpha`` for every ``x~`` in the
    L2 ball of radius ``eps`` around an exchangeable test point, for any sensors and rule weights.

    Args:
        rules: the weighted rules (:class:`Rule`), grouped into one circuit per attribute.
        num_classes: K; num_attributes: C (the number of sensors).
        alpha: miscoverage level in (0, 1).
        beta: failure probability of each Monte Carlo box, in (0, alpha / 2).
        weights: initial rule weight (float > 0) or a ``(C, K)`` tensor; :meth:`fit_rules` learns them.
        mixture: ``(C,)`` circuit weights on the simplex (uniform if None).
        threat: the L2 ball (or ``eps``, default 0.125).
        certifier: a smoothing certifier (or ``sigma``, ``n_mc``), the same for calibration and test.
    """

    _param_names: ClassVar[tuple[str, ...] | None] = ("rules", "num_classes", "num_attributes", "alpha", "beta",
                                                      "weights", "mixture", "threat", "certifier")

    def __init__(
        self,
        *,
        rules: Sequence[Rule],
        num_classes: int,
        num_attributes: int,
        alpha: float = 0.1,
        beta: float = 0.001,
        weights: float | torch.Tensor = 1.0,
        mixture: torch.Tensor | None = None,
        sigma: float | None = None,
        eps: float | None = None,
        n_mc: int | None = None,
        threat: LpBall | None = None,
        certifier: Certifier | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.num_classes = num_classes
        self.num_attributes = num_attributes
        self.circuits = RuleCircuits.from_rules(self.rules, num_classes, num_attributes)
        self.alpha = check_probability(alpha, "alpha")
        beta_f = check_probability(beta, "beta")
        if not beta_f < self.alpha / 2:
            raise ValueError(f"Expected argument `beta` to be in (0, alpha/2) = (0, {self.alpha / 2}), but got {beta!r}")
        self.beta = beta_f
        if isinstance(weights, torch.Tensor):
            check_array(weights, "weights", kind="real")  # NaN weights made every corrected probability NaN
            if weights.shape != (num_attributes, num_classes) or bool((weights < 0).any()):
                raise ValueError(f"Expected argument `weights` to be a ({num_attributes}, {num_classes}) tensor >= 0, "
                                 f"but got {weights!r:.80}")
            self._w0 = weights.detach().to(torch.float64)
        else:
            self._w0 = torch.full((num_attributes, num_classes), check_nonnegative(weights, "weights"),
                                  dtype=torch.float64)
        if mixture is not None:  # off the simplex, the circuit marginals are not probabilities (silently)
            check_array(mixture, "mixture", kind="real", ndim=1, tensor=True)
            if mixture.shape != (num_attributes,) or bool((mixture < 0).any()) or abs(float(mixture.sum()) - 1) > 1e-6:
                raise ValueError(f"Expected argument `mixture` to be a ({num_attributes},) tensor of weights >= 0 "
                                 f"summing to 1, but got {mixture!r:.80}")
        self.weights = weights
        self.mixture = mixture
        self.threat = resolve_threat(threat, eps=eps, norm=None, domain=None, default_norm=2.0,
                                     default_eps=_DEFAULT_EPS)
        self.certifier = resolve_certifier(certifier, "smoothing", "COLEP", SmoothingCertifier, sigma=sigma, n_mc=n_mc)
        self.certifier.check_threat(self.threat)
        self.threshold_ = None

    def _param_defaults(self) -> dict[str, Any]:
        return {**self._signature_defaults(), "certifier": SmoothingCertifier(), "threat": LpBall(2, _DEFAULT_EPS)}

    @property
    def eps(self) -> float:
        """The L2 radius of the threat model."""
        return self.threat.eps

    @property
    def rule_weights(self) -> torch.Tensor:
        """The rule weights in use ``(C, K)``: learned (``weights_``) if :meth:`fit_rules` ran, else the initial ones."""
        return getattr(self, "weights_", self._w0)

    @property
    def circuit_mixture(self) -> torch.Tensor | None:
        """The circuit weights in use ``(C,)`` (learned ``mixture_`` if :meth:`fit_rules` ran)."""
        return getattr(self, "mixture_", self.mixture)

    # ----------------------------------------------------------------------------------- scores
    def score_model(self, sensors: Sensors, x: torch.Tensor) -> SmoothedScores:
        """Monte Carlo smoothed sensor probabilities ``(N, K + C)`` from the certifier."""
        if not isinstance(sensors, Sensors):
            raise TypeError(f"Expected argument `model` to be a conformal.colep.Sensors, but got {type(sensors).__name__}")
        if sensors.num_attributes != self.num_attributes:
            raise ValueError(f"Expected {self.num_attributes} sensors, but got {sensors.num_attributes}")
        return smoothed_sensor_scores(sensors, x, self.certifier, self.threat)

    def _scores(self, data: Any, model: nn.Module | None) -> SmoothedScores:
        if model is not None:
            return self.score_model(model, data)  # type: ignore[arg-type]
        if not isinstance(data, SmoothedScores) or data.mean.ndim != 2 or \
                data.mean.shape[1] != self.num_classes + self.num_attributes:
            raise TypeError(f"Expected SmoothedScores of shape (N, {self.num_classes + self.num_attributes}) "
                            f"(sensor probabilities), or inputs with `model=`, but got {type(data).__name__}")
        return data

    def corrected(self, probs: torch.Tensor) -> torch.Tensor:
        """Corrected class probabilities ``pi_hat`` ``(N, K)`` from sensor probabilities ``(N, K + C)``."""
        k = self.num_classes
        p = probs.to(torch.float64)
        return circuit_marginals(p[:, :k], p[:, k:], self.circuits, self.rule_weights, self.circuit_mixture)

    def corrected_bounds(self, scores: SmoothedScores, eps: float, *, extra_margin: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds ``(N, K)`` of ``pi_hat`` over the ball of radius ``eps`` (w.p. >= 1 - beta, or 1 - 2 beta)."""
        lo, hi = sensor_bounds(scores, eps=eps, beta=self.beta, extra_margin=extra_margin)
        k = self.num_classes
        return circuit_bounds(lo[:, :k], hi[:, :k], lo[:, k:], hi[:, k:], self.circuits, self.rule_weights,
                              self.circuit_mixture)

    # ------------------------------------------------------------------------------ protocol
    def fit_rules(self, data: SmoothedScores | torch.Tensor, labels: torch.Tensor, *, model: nn.Module | None = None,
                  epochs: int = 300, lr: float = 0.05) -> COLEP:
        """Learn the rule weights and circuit mixture on training data (not the calibration set). Returns self."""
        probs = data.mean if isinstance(data, SmoothedScores) else data
        if model is not None:
            probs = self.score_model(model, data).mean  # type: ignore[arg-type]
        init = float(self._w0.mean()) if float(self._w0.mean()) > 0 else 1.0
        self.weights_, self.mixture_ = fit_rule_weights(probs, labels, self.circuits, epochs=epochs, lr=lr, init=init)
        return self

    def calibrate(self, data: SmoothedScores | torch.Tensor, labels: torch.Tensor, *,
                  model: nn.Module | None = None) -> COLEP:
        """Fit the robust and standard thresholds on clean calibration data. Returns self.

        Args:
            data: ``SmoothedScores`` of the sensors ``(N, K + C)`` (:meth:`score_model`), or, with
                ``model=`` (a :class:`Sensors`), the ``(N, ...)`` calibration inputs.
            labels: ``(N,)`` true classes.
        """
        scores = self._scores(data, model)
        check_labels(labels, scores.mean.shape[0], self.num_classes)
        y = labels.long().to(scores.mean.device)[:, None]
        lo, _ = self.corrected_bounds(scores, 0.0)
        worst = 1 - lo.gather(1, y).squeeze(1)
        plain = 1 - self.corrected(scores.mean).gather(1, y).squeeze(1)
        alpha_cal = Fraction(repr(self.alpha)) - 2 * Fraction(repr(self.beta))
        self.sigma_ = scores.sigma
        self.n_mc_ = scores.n_mc
        self.n_calibration_ = int(worst.shape[0])
        self.standard_threshold_ = conformal_quantile(plain.cpu(), self.alpha)
        self.threshold_ = conformal_quantile(worst.cpu(), alpha_cal)
        return self

    def _check_same(self, scores: SmoothedScores) -> None:
        if scores.n_mc != self.n_mc_ or scores.sigma != self.sigma_:
            raise ValueError(f"Expected scores estimated as at calibration (n_mc={self.n_mc_}, sigma={self.sigma_}), "
                             f"but got n_mc={scores.n_mc}, sigma={scores.sigma}")

    def predict(self, data: SmoothedScores | torch.Tensor, *, model: nn.Module | None = None) -> PredictionSets:
        """Robust sets ``{y : 1 - upper(pi_hat_y over the eps-ball) <= threshold_}`` ``(N, K)``."""
        self._check_calibrated()
        scores = self._scores(data, model)
        self._check_same(scores)
        _, hi = self.corrected_bounds(scores, self.eps)
        assert self.threshold_ is not None
        return PredictionSets(1 - hi <= self.threshold_, self.threshold_)

    def predict_standard(self, data: SmoothedScores | torch.Tensor, *, model: nn.Module | None = None
                         ) -> PredictionSets:
        """Standard (non-robust) COLEP sets ``{y : 1 - pi_hat_y(x) <= standard_threshold_}``: valid on clean inputs."""
        self._check_calibrated()
        scores = self._scores(data, model)
        self._check_same(scores)
        return PredictionSets(1 - self.corrected(scores.mean) <= self.standard_threshold_, self.standard_threshold_)

    def certified_mask(self, data: SmoothedScores | torch.Tensor, labels: torch.Tensor, *,
                       model: nn.Module | None = None) -> torch.Tensor:
        """``(N,)`` bool: the label is certified to stay in the standard set for every perturbation in the ball.

        Each True fails with probability <= 2 beta (the Monte Carlo box at the clean point, and the
        Monte Carlo estimate the standard set draws at the perturbed one).
        """
        self._check_calibrated()
        scores = self._scores(data, model)
        self._check_same(scores)
        check_labels(labels, scores.mean.shape[0], self.num_classes)
        lo, _ = self.corrected_bounds(scores, self.eps, extra_margin=True)
        return 1 - lo.gather(1, labels.long().to(lo.device)[:, None]).squeeze(1) <= self.standard_threshold_

    def certified_coverage(self, data: SmoothedScores | torch.Tensor, labels: torch.Tensor, *,
                           model: nn.Module | None = None, delta: float = 0.05) -> CertifiedCoverage:
        """Certified coverage on labelled data (see :class:`CertifiedCoverage`)."""
        mask = self.certified_mask(data, labels, model=model)
        alpha_cal = Fraction(repr(self.alpha)) - 2 * Fraction(repr(self.beta))
        cond = finite_sample_coverage(self.n_calibration_, alpha_cal, delta) - 2 * self.beta
        return CertifiedCoverage(1 - self.alpha, max(cond, 0.0), float(mask.double().mean()), int(mask.shape[0]))


def colep_score_pgd(
    sensors: Sensors,
    colep: COLEP,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    sigma: float,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    n_noise: int = 16,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L2 PGD that maximises COLEP's smoothed corrected score ``1 - pi_hat_y(p_bar(x + delta))``.

    Each step estimates the smoothed sensor probabilities from ``n_noise`` Gaussian draws, passes
    them through the circuits and ascends the gradient of the true label's score (the adaptive
    attack on the whole pipeline, sensors and reasoning). An attack: no guarantee; coverage under it
    upper-bounds the robust coverage. Returns ``(N, ...)`` inputs with ``||x_adv - x||_2 <= eps``.
    """
    sigma = check_positive(sigma, "sigma")
    eps = check_nonnegative(eps, "eps")
    steps = check_positive_int(steps, "steps")
    n_noise = check_positive_int(n_noise, "n_noise")
    check_generator(generator)
    check_eval_mode(sensors)
    step = 2.5 * eps / steps if step_size is None else check_positive(step_size, "step_size")
    if eps == 0:
        return x.detach().clone()
    if generator is None:
        generator = torch.Generator(device=x.device)
        generator.seed()
    k, shape = colep.num_classes, x.shape[1:]
    y = labels.long().to(x.device)[:, None]
    xb = x.detach()
    delta = torch.zeros_like(xb)
    for _ in range(steps):
        delta.requires_grad_(True)
        noise = torch.randn((xb.shape[0], n_noise, *shape), generator=generator, device=x.device, dtype=x.dtype)
        batch = ((xb + delta).unsqueeze(1) + sigma * noise).view(-1, *shape)
        probs = sensors(batch).view(xb.shape[0], n_noise, -1).mean(1).to(torch.float64)
        pi = circuit_marginals(probs[:, :k], probs[:, k:], colep.circuits, colep.rule_weights, colep.circuit_mixture)
        score = (1 - pi.gather(1, y)).sum()
        (grad,) = torch.autograd.grad(score, delta)
        with torch.no_grad():
            g_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * len(shape)))
            delta = _project_l2(delta + step * grad / g_norm, eps)
        delta = delta.detach()
    return (xb + delta).detach()
