"""Sound bounds on conformal scores over a perturbation region, from bounds on the logits.

A certifier (IBP, CROWN; see ``certify.bounds``) bounds the logits ``z`` of every input in the
region: ``lower <= z <= upper``, and, tighter, the margins ``z_y - z_k`` (``certify.margin_bounds``).
Softmax is invariant to shifts, so every score of label ``y`` is a function of the logit
differences relative to ``y``. This module turns bounds on those differences into bounds on the
THR and APS scores (Jeary et al., NeurIPS 2024, "Verifiably robust conformal prediction", use
the same idea for THR with auto_LiRPA bounds).

Notation, for one input and one label ``y``: ``m_k = z_y - z_k`` (``m_y = 0``), bounded by
``m_lo <= m <= m_hi``. Logit intervals alone give ``m_lo_k = l_y - u_k`` and ``m_hi_k = u_y - l_k``;
margin bounds from a certifier are intersected with these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from certkit._validation import check_array, check_finite, check_labels, check_nonnegative, check_positive_int
from certkit.certifier import Certifier, MarginBounds
from certkit.threat import LpBall, threat_arguments

__all__ = [
    "SCORES",
    "ScoreBounds",
    "aps_score_bounds",
    "certified_margin_bounds",
    "certified_score_bounds",
    "margin_bounds_from_logits",
    "raps_score_bounds",
    "score_bounds_from_certificate",
    "score_bounds_from_logits",
    "score_bounds_from_margins",
    "thr_score_bounds",
]

ScoreName = Literal["thr", "aps", "raps"]
SCORES: tuple[str, ...] = ("thr", "aps", "raps")


@dataclass(frozen=True)
class ScoreBounds:
    """Bounds ``lower <= score <= upper`` holding for every input of the perturbation region.

    ``lower`` and ``upper`` are (N, K) (all labels) or (N,) (one label per input), float64.
    """

    lower: torch.Tensor
    upper: torch.Tensor


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch tensor, but got {type(x).__name__}")
    check_array(x, name, kind="float", finite=False)  # bool/int/complex bounds are refused, never cast
    return x.to(torch.float64)


def _check_margins(m_lo: torch.Tensor, m_hi: torch.Tensor) -> None:
    if m_lo.shape != m_hi.shape or m_lo.ndim < 1 or m_lo.shape[-1] < 2:
        raise ValueError(
            "Expected arguments `margin_lower` and `margin_upper` to have the same shape (..., K) with K >= 2, "
            f"but got {tuple(m_lo.shape)} and {tuple(m_hi.shape)}"
        )
    if torch.isnan(m_lo).any() or torch.isnan(m_hi).any():
        raise ValueError("Expected arguments `margin_lower` and `margin_upper` to hold no NaN, but they contain NaN")
    if (m_lo > m_hi + 1e-9).any():
        raise ValueError("Expected `margin_lower <= margin_upper` elementwise, but some lower bound exceeds its upper bound")


def thr_score_bounds(margin_lower: torch.Tensor, margin_upper: torch.Tensor) -> ScoreBounds:
    """Bounds on the THR score ``1 - softmax(z)_y`` from bounds on the margins ``m_k = z_y - z_k``.

    ``softmax(z)_y = 1 / sum_k exp(-m_k)`` (with ``m_y = 0``) is increasing in every margin, so
    ``1 / sum_k exp(-m_lo_k) <= p_y <= 1 / sum_k exp(-m_hi_k)``; both are exact extrema over the
    box of margins. Computed as ``-expm1(-logsumexp(-m))`` for stability.

    Args:
        margin_lower: (..., K) lower bounds on ``z_y - z_k``; the entry ``k = y`` must be 0.
        margin_upper: (..., K) upper bounds on ``z_y - z_k``; the entry ``k = y`` must be 0.

    Returns:
        ScoreBounds with (...)-shaped ``lower`` and ``upper``: sound (they contain the score of every
        logit vector whose margins lie in the box; no failure probability).
    """
    m_lo, m_hi = _as_tensor(margin_lower, "margin_lower"), _as_tensor(margin_upper, "margin_upper")
    _check_margins(m_lo, m_hi)
    log_p_lo = -torch.logsumexp(-m_lo, dim=-1)
    log_p_hi = -torch.logsumexp(-m_hi, dim=-1)
    return ScoreBounds(lower=-torch.expm1(log_p_hi), upper=-torch.expm1(log_p_lo))


def aps_score_bounds(margin_lower: torch.Tensor, margin_upper: torch.Tensor) -> ScoreBounds:
    """Bounds on the (non-randomised, inclusive) APS score from bounds on the margins ``m_k = z_y - z_k``.

    ``APS(x, y) = sum_{k : p_k >= p_y} p_k``. With ``r_k = z_k - z_y = -m_k`` (``r_y = 0``) in the
    box ``[a_k, b_k] = [-m_hi_k, -m_lo_k]``, write ``APS = T / (T + L)`` with
    ``T = sum_{k : r_k >= 0} exp(r_k)`` (labels ranked at or above ``y``, ``y`` included) and
    ``L = sum_{k : r_k < 0} exp(r_k)``. ``APS`` increases with ``T`` and decreases with ``L``, and the
    box is a product of intervals, so each label ``k != y`` can be optimised on its own:

    * Upper bound. If ``b_k >= 0`` label ``k`` may rank above ``y``; putting it there at ``r_k = b_k``
      adds ``exp(b_k) >= 1`` to ``T``, which beats any contribution to ``L``. Otherwise ``k`` surely
      ranks below, and ``r_k = a_k`` keeps ``L`` smallest. So
      ``APS <= T_hi / (T_hi + L_lo)``, ``T_hi = 1 + sum_{b_k >= 0} exp(b_k)``, ``L_lo = sum_{b_k < 0} exp(a_k)``.
    * Lower bound. If ``a_k > 0`` label ``k`` must rank above ``y`` and adds at least
      ``exp(a_k)`` to ``T``. Otherwise ``k`` may rank below, where it adds at most
      ``exp(min(b_k, 0))`` to ``L``; that is worse for the score than ranking above (``(T+1)/(T+L+1)``
      vs ``T/(T+L+1)``). So ``APS >= T_lo / (T_lo + L_hi)``, ``T_lo = 1 + sum_{k != y, a_k > 0} exp(a_k)``,
      ``L_hi = sum_{k != y, a_k <= 0} exp(min(b_k, 0))``.

    Both are the exact supremum/infimum over the box of margins, computed in the log domain
    (``sigmoid(log T - log L)``). Ties (``p_k = p_y``) may be ranked either way (``conformal.scores.aps``
    ranks them by label index): the upper bound counts a possible tie above ``y``, the lower bound
    below, so the bounds hold for either tie-breaking.

    Args:
        margin_lower: (..., K) lower bounds on ``z_y - z_k``; the entry ``k = y`` must be 0.
        margin_upper: (..., K) upper bounds on ``z_y - z_k``; the entry ``k = y`` must be 0.

    Returns:
        ScoreBounds with (...)-shaped ``lower`` and ``upper`` (sound; no failure probability).
    """
    m_lo, m_hi = _as_tensor(margin_lower, "margin_lower"), _as_tensor(margin_upper, "margin_upper")
    _check_margins(m_lo, m_hi)
    a, b = -m_hi, -m_lo
    ninf = torch.tensor(-torch.inf, dtype=torch.float64, device=a.device)
    log_t_hi = torch.logsumexp(torch.where(b >= 0, b, ninf), dim=-1)
    log_l_lo = torch.logsumexp(torch.where(b < 0, a, ninf), dim=-1)
    log_t_lo = torch.log1p(torch.exp(torch.logsumexp(torch.where(a > 0, a, ninf), dim=-1)))
    # Labels with a_k <= 0, y itself included (it adds exp(0) = 1): remove y's term.
    log_l_hi = torch.log(torch.expm1(torch.logsumexp(torch.where(a <= 0, b.clamp(max=0.0), ninf), dim=-1)))
    return ScoreBounds(lower=torch.sigmoid(log_t_lo - log_l_hi), upper=torch.sigmoid(log_t_hi - log_l_lo))


def raps_score_bounds(
    margin_lower: torch.Tensor, margin_upper: torch.Tensor, *, lam: float = 0.01, k_reg: int = 5
) -> ScoreBounds:
    """Bounds on the non-randomised RAPS score ``APS + lam * max(0, rank - k_reg)``.

    The 1-based rank of ``y`` lies between ``1 + #{k : a_k > 0}`` and ``#{k : b_k >= 0}`` (notation of
    :func:`aps_score_bounds`, ties either way); adding the bounds of the two terms is sound, though not
    always tight.
    """
    lam = check_nonnegative(lam, "lam")
    if isinstance(k_reg, bool) or not isinstance(k_reg, int) or k_reg < 0:
        raise ValueError(f"Expected argument `k_reg` to be an integer >= 0, but got {k_reg!r}")
    aps = aps_score_bounds(margin_lower, margin_upper)
    m_lo, m_hi = margin_lower.to(torch.float64), margin_upper.to(torch.float64)
    rank_lo = 1 + (m_hi < 0).sum(-1).to(torch.float64)  # y and the labels with a_k > 0
    rank_hi = (m_lo <= 0).sum(-1).to(torch.float64)  # b_k >= 0, y included
    return ScoreBounds(
        lower=aps.lower + lam * (rank_lo - k_reg).clamp(min=0),
        upper=aps.upper + lam * (rank_hi - k_reg).clamp(min=0),
    )


def margin_bounds_from_logits(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairwise margin bounds implied by logit intervals: ``l_y - u_k <= z_y - z_k <= u_y - l_k``.

    Args:
        lower: (N, K) logit lower bounds.
        upper: (N, K) logit upper bounds.

    Returns:
        ``(margin_lower, margin_upper)``, each (N, K, K) with entry ``[n, y, k]`` bounding
        ``z_y - z_k`` and a zero diagonal.
    """
    lo, hi = _as_tensor(lower, "lower"), _as_tensor(upper, "upper")
    if lo.ndim != 2 or lo.shape != hi.shape or lo.shape[1] < 2:
        raise ValueError(
            "Expected arguments `lower` and `upper` to have the same shape (N, K) with K >= 2, "
            f"but got {tuple(lo.shape)} and {tuple(hi.shape)}"
        )
    check_finite(lo, "lower")
    check_finite(hi, "upper")
    if (lo > hi).any():
        raise ValueError("Expected `lower <= upper` elementwise, but some logit lower bound exceeds its upper bound")
    eye = torch.eye(lo.shape[1], dtype=torch.bool, device=lo.device)
    m_lo = (lo[:, :, None] - hi[:, None, :]).masked_fill(eye, 0.0)
    m_hi = (hi[:, :, None] - lo[:, None, :]).masked_fill(eye, 0.0)
    return m_lo, m_hi


def _apply(score: str, m_lo: torch.Tensor, m_hi: torch.Tensor, lam: float, k_reg: int) -> ScoreBounds:
    if score == "thr":
        return thr_score_bounds(m_lo, m_hi)
    if score == "aps":
        return aps_score_bounds(m_lo, m_hi)
    return raps_score_bounds(m_lo, m_hi, lam=lam, k_reg=k_reg)


def _check_score(score: Any) -> str:
    if score not in SCORES:
        raise ValueError(f"Expected argument `score` to be one of {list(SCORES)}, but got {score!r}")
    return str(score)


def score_bounds_from_margins(
    score: ScoreName,
    margin_lower: torch.Tensor,
    margin_upper: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    lam: float = 0.01,
    k_reg: int = 5,
) -> ScoreBounds:
    """Sound score bounds from bounds on all pairwise margins ``z_y - z_k``.

    Args:
        score: ``"thr"``, ``"aps"`` or ``"raps"`` (non-randomised; ``lam``, ``k_reg`` for RAPS).
        margin_lower: (N, K, K) lower bounds, entry ``[n, y, k]`` bounding ``z_y - z_k``.
        margin_upper: (N, K, K) upper bounds.
        labels: (N,) labels to bound the score of; ``None`` bounds every label.

    Returns:
        ScoreBounds, (N,) when ``labels`` is given, else (N, K) (sound; no failure probability).
    """
    score = _check_score(score)  # type: ignore[assignment]
    check_array(margin_lower, "margin_lower", finite=False)
    check_array(margin_upper, "margin_upper", finite=False)
    m_lo, m_hi = _as_tensor(margin_lower, "margin_lower"), _as_tensor(margin_upper, "margin_upper")
    for m, name in ((m_lo, "margin_lower"), (m_hi, "margin_upper")):
        if bool(torch.isnan(m).any()):
            raise ValueError(f"Expected argument `{name}` to hold no NaN, but it contains NaN")
    check_nonnegative(lam, "lam")
    check_positive_int(k_reg, "k_reg", minimum=0)
    if m_lo.ndim != 3 or m_lo.shape[1] != m_lo.shape[2] or m_lo.shape != m_hi.shape:
        raise ValueError(
            "Expected arguments `margin_lower` and `margin_upper` to have the same shape (N, K, K), "
            f"but got {tuple(m_lo.shape)} and {tuple(m_hi.shape)}"
        )
    n, k = m_lo.shape[0], m_lo.shape[1]
    eye = torch.eye(k, dtype=torch.bool, device=m_lo.device)
    m_lo, m_hi = m_lo.masked_fill(eye, 0.0), m_hi.masked_fill(eye, 0.0)
    # Rounding in a certifier may leave lower > upper by a hair on tight regions; keep the box valid.
    m_hi = torch.maximum(m_hi, m_lo)
    if labels is not None:
        check_labels(labels, n, k)
        rows = torch.arange(n, device=m_lo.device)
        idx = labels.to(device=m_lo.device, dtype=torch.long)
        return _apply(score, m_lo[rows, idx], m_hi[rows, idx], lam, k_reg)
    return _apply(score, m_lo, m_hi, lam, k_reg)


def score_bounds_from_logits(
    score: ScoreName,
    lower: torch.Tensor,
    upper: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    margin_lower: torch.Tensor | None = None,
    margin_upper: torch.Tensor | None = None,
    lam: float = 0.01,
    k_reg: int = 5,
) -> ScoreBounds:
    """Sound score bounds over a perturbation region from logit (and optionally margin) bounds.

    Margin bounds, where given, are intersected with those implied by the logit intervals
    (:func:`margin_bounds_from_logits`), so the result is never looser than either; CROWN margin
    bounds (``certify.margin_bounds``) are much tighter than differences of its logit bounds.

    Args:
        score: ``"thr"``, ``"aps"`` or ``"raps"`` (non-randomised; ``lam``, ``k_reg`` for RAPS).
        lower: (N, K) lower bounds on the logits over the region.
        upper: (N, K) upper bounds on the logits over the region.
        labels: (N,) labels to bound the score of; ``None`` bounds every label.
        margin_lower: lower bounds on ``z_y - z_k``: (N, K) for the given ``labels`` (as returned by
            ``certify.margin_bounds``) or (N, K, K) (entry ``[n, y, k]``) when ``labels`` is None.
        margin_upper: upper bounds on ``z_y - z_k``, same shape as ``margin_lower``.

    Returns:
        ScoreBounds, (N,) when ``labels`` is given, else (N, K). Sound whenever the logit and margin
        bounds are (no failure probability; exact up to floating-point rounding).
    """
    score = _check_score(score)  # type: ignore[assignment]
    m_lo, m_hi = margin_bounds_from_logits(lower, upper)
    n, k = m_lo.shape[0], m_lo.shape[1]
    if labels is not None:
        check_labels(labels, n, k)
    for given, name in ((margin_lower, "margin_lower"), (margin_upper, "margin_upper")):
        if given is None:
            continue
        g = _as_tensor(given, name).to(m_lo.device)
        if labels is not None and g.ndim == 2 and g.shape == (n, k):
            # (N, K) margins of the given labels: scatter into the rows of those labels.
            full = torch.full_like(m_lo, -torch.inf if name == "margin_lower" else torch.inf)
            full[torch.arange(n, device=m_lo.device), labels.to(m_lo.device).long()] = g
            g = full
        if g.shape != m_lo.shape:
            want = f"({n}, {k}) or ({n}, {k}, {k})" if labels is not None else f"({n}, {k}, {k})"
            raise ValueError(f"Expected argument `{name}` to have shape {want}, but got {tuple(g.shape)}")
        if torch.isnan(g).any():
            raise ValueError(f"Expected argument `{name}` to hold no NaN, but it contains NaN")
        m_lo, m_hi = (torch.maximum(m_lo, g), m_hi) if name == "margin_lower" else (m_lo, torch.minimum(m_hi, g))
    return score_bounds_from_margins(score, m_lo, m_hi, labels, lam=lam, k_reg=k_reg)  # type: ignore[arg-type]


def certified_margin_bounds(
    model: torch.nn.Module,
    x: torch.Tensor,
    eps: float | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    norm: float | str = math.inf,
    method: str = "crown",
    domain: tuple[float, float] | None = None,
    sound: bool = False,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the margins ``z_y - z_k`` over the ball of radius ``eps`` around each input, by ``certify``.

    With ``labels``, the (N, K) margins of those labels (``certify.margin_bounds``); without, all
    (N, K, K) pairwise margins (:func:`certify.certifier.pairwise_margin_bounds`, which
    ``certify.BoundCertifier`` uses too).

    Returns:
        ``(margin_lower, margin_upper)``, float64.
    """
    from certify.certifier import pairwise_margin_bounds

    return pairwise_margin_bounds(model, x, eps, labels=labels, norm=norm, method=method, domain=domain,
                                  sound=sound, batch_size=batch_size)


def score_bounds_from_certificate(score: ScoreName, bounds: MarginBounds, *, lam: float = 0.01,
                                  k_reg: int = 5) -> ScoreBounds:
    """Score bounds from a bound certifier's :class:`certkit.certifier.MarginBounds`.

    Returns:
        ScoreBounds, (N,) when the margins are of given labels ((N, K) margins), else (N, K).
        As sound as the margin bounds (no failure probability).
    """
    score = _check_score(score)  # type: ignore[assignment]
    if not isinstance(bounds, MarginBounds):
        raise TypeError(f"Expected argument `bounds` to be a MarginBounds, but got {type(bounds).__name__}")
    m_lo, m_hi = _as_tensor(bounds.lower, "lower"), _as_tensor(bounds.upper, "upper")
    if bounds.labels is None:
        return score_bounds_from_margins(score, m_lo, m_hi, lam=lam, k_reg=k_reg)
    # (N, K) margins of the given labels: entry y of each row is 0 (certify.margin_bounds).
    return _apply(score, m_lo, torch.maximum(m_hi, m_lo), lam, k_reg)


def certified_score_bounds(
    model: torch.nn.Module,
    x: torch.Tensor,
    eps: float | torch.Tensor | None = None,
    *,
    score: ScoreName = "thr",
    labels: torch.Tensor | None = None,
    norm: float | str | None = None,
    method: str = "crown",
    domain: tuple[float, float] | None = None,
    sound: bool = False,
    lam: float = 0.01,
    k_reg: int = 5,
    batch_size: int = 128,
    threat: LpBall | None = None,
    certifier: Certifier | None = None,
) -> ScoreBounds:
    """Bounds on the score of a model's softmax over the ``norm``-ball of radius ``eps`` around each input.

    Thin layer over ``certify``: margin bounds by IBP, CROWN or CROWN-IBP (specification folded
    into the last layer), then :func:`score_bounds_from_margins`. With ``certifier=`` (any
    ``certkit.certifier.Certifier`` of kind ``"bounds"``) the margins come from it instead, over
    ``threat``.

    Args:
        model: eval-mode classifier returning (N, K) logits.
        x: (N, ...) inputs.
        eps: radius (number or (N,) tensor).
        score: ``"thr"``, ``"aps"`` or ``"raps"``.
        labels: (N,) labels to bound; ``None`` bounds every label (K(K-1)/2 margin specifications).
        norm: ``float("inf")`` (default) or ``2``.
        method: ``"ibp"``, ``"crown"`` or ``"crown-ibp"``.
        domain: optional input box ``(low, high)`` intersected with the ball (e.g. ``(0, 1)``).
        sound: float64 bounds rounded outward (slower; see ``certify.bounds``).
        lam: RAPS penalty weight.
        k_reg: RAPS rank from which the penalty applies.
        batch_size: inputs per certifier call (memory: CROWN holds K(K-1)/2 specifications per input).
        threat: the threat model as a :class:`certkit.threat.LpBall`, instead of ``eps``/``norm``/``domain``.
        certifier: a bound certifier object, instead of ``method``/``sound``/``batch_size`` (needs ``threat``
            or a scalar ``eps``).

    Returns:
        ScoreBounds, (N,) with ``labels``, else (N, K). Guarantee: for every ``x'`` in the region,
        ``lower <= s(x', y) <= upper`` (deterministic; as sound as the certifier's bounds).
    """
    _check_score(score)
    check_array(x, "x", tensor=True)
    if certifier is not None:
        if getattr(certifier, "kind", None) != "bounds":
            raise ValueError(f"Expected argument `certifier` to be of kind 'bounds', but got {certifier!r}")
        ball = threat if threat is not None else LpBall(math.inf if norm is None else norm, eps, domain)  # type: ignore[arg-type]
        if threat is not None and (eps is not None or norm is not None or domain is not None):
            threat_arguments(threat, eps, norm, domain)  # raises: both spellings
        out = certifier.certify(model, x, certifier.check_threat(ball), labels=labels)
        if not isinstance(out, MarginBounds):
            raise TypeError(f"Expected the certifier to return MarginBounds, but it returned {type(out).__name__}")
        return score_bounds_from_certificate(score, out, lam=lam, k_reg=k_reg)
    eps, norm, domain = threat_arguments(threat, eps, norm, domain)
    m_lo, m_hi = certified_margin_bounds(model, x, eps, labels=labels, norm=norm, method=method, domain=domain,
                                         sound=sound, batch_size=batch_size)
    return score_bounds_from_certificate(score, MarginBounds(m_lo, m_hi, labels), lam=lam, k_reg=k_reg)
