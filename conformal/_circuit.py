"""Probabilistic circuits over weighted rules "label implies attribute" (the reasoning component of COLEP).

Kang et al., "COLEP: Certifiably Robust Learning-Reasoning Conformal Prediction via Probabilistic
Circuits", ICLR 2024, Section 3. The sensors give independent Bernoulli probabilities: ``p_k`` for
each class variable ``mu_k`` (the main classifier's softmax, one Bernoulli per class as in the
paper) and ``q_c`` for each attribute variable ``nu_c`` (a binary concept sensor). A rule
``k => c`` (or ``k => not c``) of weight ``w >= 0`` multiplies the probability of every assignment
that satisfies it by ``exp(w)``. One circuit encodes one *rule group*, here all the rules about one
attribute ``c``:

    P_c(mu, nu_c)  ∝  O(mu, nu_c) F_c(mu, nu_c),
    O = q_c^nu_c (1 - q_c)^(1 - nu_c) prod_k p_k^mu_k (1 - p_k)^(1 - mu_k),
    F_c = exp(sum_k w_ck [mu_k => (nu_c == s_ck)]),

with ``s_ck = 1`` for ``k => c`` and 0 for ``k => not c``. The circuit is a sum node over ``nu_c``
whose children are products over the classes of sum nodes over ``mu_k``, so the partition function
and every class marginal ``pi_k^(c) = P_c(mu_k = 1)`` cost O(K) (no enumeration):

    phi_k(m) = sum_{mu_k} p_k^mu_k (1-p_k)^(1-mu_k) F_ck = e^w          if m == s_ck,
                                                        = p_k + (1-p_k) e^w   otherwise,
    Z_c = sum_m q_c(m) prod_k phi_k(m),
    pi_k^(c) = sum_m rho(m) r_k(m),  rho(m) = q_c(m) prod phi(m) / Z_c,
    r_k(m) = p_k  if m == s_ck,  p_k / (p_k + (1 - p_k) e^w)  otherwise.

The corrected class probability mixes the circuits, ``pi_hat_k = sum_c beta_c pi_k^(c)`` (the
paper's weighted combination of PCs, beta on the simplex); a class no rule of circuit ``c`` names
keeps ``pi_k^(c) = p_k``.

Monotonicity (the basis of the interval propagation): with ``w >= 0``, ``pi_j^(c)`` is increasing
in ``p_j``; increasing in ``q_c`` if ``s_cj = 1`` and decreasing if ``s_cj = 0``; and, for another
class ``k`` of the group, increasing in ``p_k`` if ``s_ck = s_cj`` and decreasing otherwise (raising
``p_k`` moves ``nu_c`` towards ``s_ck``). So the exact extremes of ``pi_j^(c)`` over a box of sensor
probabilities sit at one known vertex each, found without search. (The paper's Theorem 1 bounds
each factor of ``O`` separately, a relaxation that treats ``p`` and ``1 - p`` as independent; per
group circuits make the exact vertex available, which is never looser and is what we use.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Rule", "RuleCircuits", "circuit_bounds", "circuit_log_partition", "circuit_marginals"]


@dataclass(frozen=True)
class Rule:
    """A weighted rule ``label => attribute`` (or ``label => not attribute`` with ``negated=True``).

    Attributes:
        label: the class index k.
        attribute: the attribute index c (a binary sensor).
        negated: whether the rule is ``k => not c``.
    """

    label: int
    attribute: int
    negated: bool = False


@dataclass(frozen=True)
class RuleCircuits:
    """The rule groups as tensors: one circuit per attribute.

    Attributes:
        signs: ``(C, K)`` float64 tensor, ``s_ck`` (1 for ``k => c``, 0 for ``k => not c``; 0 where no rule).
        mask: ``(C, K)`` bool, whether a rule links class k and attribute c.
        num_classes: K.
        num_attributes: C.
    """

    signs: torch.Tensor
    mask: torch.Tensor
    num_classes: int
    num_attributes: int

    @staticmethod
    def from_rules(rules: Sequence[Rule], num_classes: int, num_attributes: int) -> RuleCircuits:
        """Group ``rules`` by attribute. Raises ValueError on out-of-range indices or contradictory duplicates."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"Expected argument `num_classes` to be an int >= 2, but got {num_classes!r}")
        if isinstance(num_attributes, bool) or not isinstance(num_attributes, int) or num_attributes < 1:
            raise ValueError(f"Expected argument `num_attributes` to be an int >= 1, but got {num_attributes!r}")
        if not isinstance(rules, Sequence) or len(rules) == 0:
            raise ValueError(f"Expected argument `rules` to be a non-empty sequence of Rule, but got {rules!r:.80}")
        signs = torch.zeros(num_attributes, num_classes, dtype=torch.float64)
        mask = torch.zeros(num_attributes, num_classes, dtype=torch.bool)
        for r in rules:
            if not isinstance(r, Rule):
                raise TypeError(f"Expected argument `rules` to hold Rule objects, but got {type(r).__name__}")
            if not (0 <= r.label < num_classes and 0 <= r.attribute < num_attributes):
                raise ValueError(f"Expected rule indices within {num_classes} classes and {num_attributes} "
                                 f"attributes, but got {r!r}")
            s = 0.0 if r.negated else 1.0
            if mask[r.attribute, r.label] and float(signs[r.attribute, r.label]) != s:
                raise ValueError(f"Expected no contradictory rules, but got both signs for {r!r}")
            mask[r.attribute, r.label] = True
            signs[r.attribute, r.label] = s
        return RuleCircuits(signs, mask, num_classes, num_attributes)


def _check_probs(p: torch.Tensor, q: torch.Tensor, circuits: RuleCircuits, weights: torch.Tensor) -> None:
    if p.shape[-1] != circuits.num_classes or q.shape[-1] != circuits.num_attributes:
        raise ValueError(f"Expected class probabilities (..., {circuits.num_classes}) and attribute probabilities "
                         f"(..., {circuits.num_attributes}), but got {tuple(p.shape)} and {tuple(q.shape)}")
    if weights.shape != circuits.mask.shape:
        raise ValueError(f"Expected argument `weights` of shape {tuple(circuits.mask.shape)} (attributes, classes), "
                         f"but got {tuple(weights.shape)}")


def _group_terms(p: torch.Tensor, q: torch.Tensor, signs: torch.Tensor, w: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per circuit: log Z, log of the unnormalised mass of nu_c = m, and r_k(m).

    Shapes: ``p`` (..., C, K) class probabilities as seen by each circuit, ``q`` (..., C), ``signs`` and
    ``w`` (C, K). Returns ``log_z`` (..., C), ``log_mass`` (..., C, 2) and ``r`` (..., C, K, 2).
    """
    tiny = torch.finfo(p.dtype).tiny
    m = torch.tensor([0.0, 1.0], dtype=p.dtype, device=p.device)
    match = signs.unsqueeze(-1) == m  # (C, K, 2)
    pk = p.unsqueeze(-1)  # (..., C, K, 1)
    ew = torch.exp(w).unsqueeze(-1)  # (C, K, 1)
    off = pk + (1 - pk) * ew  # phi when the rule can be violated
    log_phi = torch.where(match, w.unsqueeze(-1), torch.log(off.clamp_min(tiny)))
    r = torch.where(match, pk.expand_as(off), pk / off)
    log_q = torch.stack([torch.log1p(-q.clamp(max=1.0)).clamp_min(-1e300),
                         torch.log(q.clamp_min(tiny))], dim=-1)  # (..., C, 2)
    log_mass = log_q + log_phi.sum(dim=-2)
    return torch.logsumexp(log_mass, dim=-1), log_mass, r


def circuit_log_partition(p: torch.Tensor, q: torch.Tensor, circuits: RuleCircuits,
                          weights: torch.Tensor) -> torch.Tensor:
    """log Z_c of every circuit: ``(N, C)`` from class probabilities ``p`` (N, K) and attribute ones ``q`` (N, C).

    ``Z_c = sum over all (mu, nu_c) of O * F_c`` (a product of Bernoulli leaves times the rule factor).
    """
    _check_probs(p, q, circuits, weights)
    w = torch.where(circuits.mask.to(p.device), weights.to(p), torch.zeros_like(weights, dtype=p.dtype))
    pc = p.unsqueeze(-2).expand(*p.shape[:-1], circuits.num_attributes, circuits.num_classes)
    return _group_terms(pc, q, circuits.signs.to(p), w)[0]


def _marginals_per_circuit(p: torch.Tensor, q: torch.Tensor, signs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # p (..., C, K), q (..., C) -> (..., C, K) class marginals of each circuit
    _, log_mass, r = _group_terms(p, q, signs, w)
    rho = torch.softmax(log_mass, dim=-1).unsqueeze(-2)  # (..., C, 1, 2)
    return (rho * r).sum(-1)


def circuit_marginals(p: torch.Tensor, q: torch.Tensor, circuits: RuleCircuits, weights: torch.Tensor,
                      mixture: torch.Tensor | None = None) -> torch.Tensor:
    """Corrected class probabilities ``pi_hat`` ``(N, K)``: the mixture over circuits of exact class marginals.

    Args:
        p: ``(N, K)`` class probabilities of the main classifier (each read as a Bernoulli leaf).
        q: ``(N, C)`` attribute probabilities of the binary sensors.
        circuits: the rule groups (:class:`RuleCircuits`).
        weights: ``(C, K)`` rule weights >= 0 (entries without a rule are ignored).
        mixture: ``(C,)`` circuit weights on the simplex (uniform if None).

    Returns:
        ``(N, K)`` corrected probabilities in [0, 1] (differentiable in all arguments).
    """
    _check_probs(p, q, circuits, weights)
    w = torch.where(circuits.mask.to(p.device), weights.to(p), torch.zeros_like(weights, dtype=p.dtype))
    pc = p.unsqueeze(-2).expand(*p.shape[:-1], circuits.num_attributes, circuits.num_classes)
    per = _marginals_per_circuit(pc, q, circuits.signs.to(p), w)
    beta = _mixture(mixture, circuits.num_attributes, p)
    return (beta.unsqueeze(-1) * per).sum(-2)


def _mixture(mixture: torch.Tensor | None, c: int, like: torch.Tensor) -> torch.Tensor:
    if mixture is None:
        return torch.full((c,), 1.0 / c, dtype=like.dtype, device=like.device)
    beta = mixture.detach().to(like) if not mixture.requires_grad else mixture.to(like)
    if beta.shape != (c,) or bool((beta.detach() < 0).any()) or abs(float(beta.detach().sum()) - 1.0) > 1e-6:
        raise ValueError(f"Expected argument `mixture` to be ({c},) weights >= 0 summing to 1, but got {mixture!r:.80}")
    return beta


def circuit_bounds(p_lower: torch.Tensor, p_upper: torch.Tensor, q_lower: torch.Tensor, q_upper: torch.Tensor,
                   circuits: RuleCircuits, weights: torch.Tensor, mixture: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact bounds of the corrected probabilities over a box of sensor probabilities (interval propagation).

    Guarantee: for every ``p`` in ``[p_lower, p_upper]`` and ``q`` in ``[q_lower, q_upper]``
    (elementwise), ``lower <= circuit_marginals(p, q, ...) <= upper``. Each circuit's bound is attained
    (at the vertex given by the monotonicity of the module docstring), so it is tight per circuit;
    the mixture of the circuits' bounds is sound (the circuits may pick different vertices).

    Args:
        p_lower: ``(N, K)`` lower bounds of the class probabilities.
        p_upper: ``(N, K)`` upper bounds of the class probabilities.
        q_lower: ``(N, C)`` lower bounds of the concept probabilities.
        q_upper: ``(N, C)`` upper bounds of the concept probabilities.
        circuits: as in :func:`circuit_marginals`.
        weights: as in :func:`circuit_marginals` (must be >= 0).
        mixture: as in :func:`circuit_marginals`.

    Returns:
        ``(lower, upper)``, each ``(N, K)``.
    """
    _check_probs(p_lower, q_lower, circuits, weights)
    if bool((weights.detach()[circuits.mask] < 0).any()):
        raise ValueError("Expected argument `weights` to be >= 0 (the monotonicity behind the bounds needs it)")
    if bool((p_lower > p_upper).any()) or bool((q_lower > q_upper).any()):
        raise ValueError("Expected lower <= upper elementwise for the sensor probability bounds")
    dt = p_lower.dtype
    k, c = circuits.num_classes, circuits.num_attributes
    signs = circuits.signs.to(p_lower)
    w = torch.where(circuits.mask.to(p_lower.device), weights.to(p_lower), torch.zeros(c, k, dtype=dt,
                                                                                       device=p_lower.device))
    # For target class j in circuit c: class k at its upper end iff k == j or s_ck == s_cj.
    same = signs.unsqueeze(-1) == signs.unsqueeze(-2)  # (C, K_j, K_k)
    eye = torch.eye(k, dtype=torch.bool, device=p_lower.device)
    up_k = same | eye  # where the upper bound of pi_j takes p_k's upper end
    att_up = signs.bool()  # (C, K_j): attribute at upper end iff s_cj = 1

    def extreme(hi: torch.Tensor, lo: torch.Tensor, qh: torch.Tensor, ql: torch.Tensor) -> torch.Tensor:
        # (N, K) / (N, C) ends -> (N, C, K) pi_j^(c) at the vertex maximising it
        pv = torch.where(up_k, hi[:, None, None, :], lo[:, None, None, :])  # (N, C, K_j, K_k)
        qv = torch.where(att_up, qh[:, :, None], ql[:, :, None])  # (N, C, K_j)
        # evaluate circuit c with the j-th configuration: move j in front as a batch dim
        per = _marginals_per_circuit(pv.permute(0, 2, 1, 3), qv.permute(0, 2, 1), signs, w)  # (N, K_j, C, K)
        return per.diagonal(dim1=1, dim2=3)  # (N, C, K_j)

    upper_c = extreme(p_upper, p_lower, q_upper, q_lower)
    lower_c = extreme(p_lower, p_upper, q_lower, q_upper)
    beta = _mixture(mixture, c, p_lower)
    return (beta[:, None] * lower_c).sum(1), (beta[:, None] * upper_c).sum(1)
