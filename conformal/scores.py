"""Nonconformity scores of classification, vectorised over (N, K) class probabilities.

Each function takes ``probs`` (N, K) as a numpy array or a torch tensor and returns the same
type on the same device: with ``labels`` (N,), the (N,) scores of those labels; without, the
(N, K) scores of every label. Larger scores mean "less conforming"; a prediction set is
{y : s(x, y) <= threshold}.

APS forms. ``aps`` is Romano, Sesia and Candès (2020): the total probability of the labels
ranked at or above y (ties ranked by label index), minus ``u * p_y``:

- ``u = 0`` (default, non-randomised): the *inclusive* sum, ``sum_{j ranked <= y} p_j``;
- ``u = 1``: the *exclusive* sum (all of p_y subtracted), which is what the RSCP/RSCP+
  reference code computes when it is given no u;
- ``randomized=True``: u ~ U(0, 1) per input from the caller's ``generator`` (the randomised
  APS whose sets have exact 1 - alpha coverage).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from certkit._validation import Array, check_array_pair, check_labels, check_nonnegative, check_probs

__all__ = ["ScoreFunction", "aps", "get_score", "raps", "thr"]

ScoreFunction = Callable[..., Array]


def _to_torch(probs: Array) -> tuple[torch.Tensor, bool]:
    if isinstance(probs, torch.Tensor):
        return probs, False
    return torch.from_numpy(np.asarray(probs)), True


def _select(scores: torch.Tensor, labels: Array | None, was_numpy: bool) -> Array:
    if labels is not None:
        lab = torch.as_tensor(labels, device=scores.device).long()
        scores = scores.gather(1, lab[:, None]).squeeze(1)
    return scores.numpy() if was_numpy else scores


def _validate(probs: Array, labels: Array | None) -> None:
    check_probs(probs)
    if labels is not None:
        check_array_pair(probs, labels, "probs", "labels")
        check_labels(labels, probs.shape[0], probs.shape[1])


def thr(probs: Array, labels: Array | None = None) -> Array:
    """THR / LAC score 1 - p_y (Sadinle, Lei, Wasserman 2019).

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.

    Returns:
        (N,) scores of ``labels`` or (N, K) scores of every label.
    """
    _validate(probs, labels)
    p, was_numpy = _to_torch(probs)
    return _select(1 - p, labels, was_numpy)


def _uniform(n: int, like: torch.Tensor, randomized: bool, u: float | Array | None,
             generator: torch.Generator | None) -> torch.Tensor:
    if randomized:
        if u is not None:
            raise ValueError("Expected at most one of `randomized=True` and `u`, but got both")
        dev = generator.device if generator is not None else like.device
        return torch.rand(n, generator=generator, device=dev, dtype=like.dtype).to(like.device)
    if u is None:
        return torch.zeros(n, dtype=like.dtype, device=like.device)
    t = torch.as_tensor(u, dtype=like.dtype, device=like.device)
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError(f"Expected argument `u` to lie in [0, 1], but got {u!r}")
    return t.expand(n) if t.ndim == 0 else t


def _aps_all(p: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) APS scores and (N, K) 1-based ranks of every label."""
    order = torch.sort(p, dim=1, descending=True, stable=True).indices
    sorted_p = p.gather(1, order)
    cum = sorted_p.cumsum(1)
    ranks_sorted = torch.arange(1, p.shape[1] + 1, device=p.device).expand_as(order)
    scores = torch.empty_like(p).scatter_(1, order, cum)
    ranks = torch.empty_like(order).scatter_(1, order, ranks_sorted)
    return scores - u[:, None] * p, ranks


def aps(probs: Array, labels: Array | None = None, *, randomized: bool = False,
        u: float | Array | None = None, generator: torch.Generator | None = None) -> Array:
    """Adaptive prediction sets score (Romano, Sesia, Candès, NeurIPS 2020).

    s(x, y) = sum of p_j over labels j ranked at or above y, minus u * p_y (see the module
    docstring for the forms given by ``u``).

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        randomized: draw u ~ U(0, 1) per input with ``generator``.
        u: fixed u in [0, 1] (scalar or (N,)); 0 (inclusive form) when omitted.
        generator: torch generator for the randomised form.

    Returns:
        (N,) or (N, K) scores.
    """
    _validate(probs, labels)
    p, was_numpy = _to_torch(probs)
    scores, _ = _aps_all(p, _uniform(p.shape[0], p, randomized, u, generator))
    return _select(scores, labels, was_numpy)


def raps(probs: Array, labels: Array | None = None, *, k_reg: int = 5, lam: float = 0.01,
         randomized: bool = False, u: float | Array | None = None,
         generator: torch.Generator | None = None) -> Array:
    """Regularised APS (Angelopoulos, Bates, Malik, Jordan, ICLR 2021).

    s(x, y) = APS(x, y) + lam * max(0, rank(y) - k_reg), with rank(y) 1-based, so labels
    beyond the k_reg most likely ones pay a penalty that shrinks sets.

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        k_reg: number of labels exempt from the penalty (>= 0).
        lam: penalty per rank beyond k_reg (>= 0).
        randomized, u, generator: as in :func:`aps`.

    Returns:
        (N,) or (N, K) scores.
    """
    if isinstance(k_reg, bool) or not isinstance(k_reg, int) or k_reg < 0:
        raise ValueError(f"Expected argument `k_reg` to be an integer >= 0, but got {k_reg!r}")
    check_nonnegative(lam, "lam")
    _validate(probs, labels)
    p, was_numpy = _to_torch(probs)
    scores, ranks = _aps_all(p, _uniform(p.shape[0], p, randomized, u, generator))
    scores = scores + lam * (ranks - k_reg).clamp(min=0).to(p.dtype)
    return _select(scores, labels, was_numpy)


_SCORES: dict[str, ScoreFunction] = {"thr": thr, "lac": thr, "aps": aps, "raps": raps}


def get_score(score: str | ScoreFunction) -> ScoreFunction:
    """Resolve a score name (``"thr"``/``"lac"``, ``"aps"``, ``"raps"``) or pass a callable through."""
    if callable(score):
        return score
    if score not in _SCORES:
        raise ValueError(f"Expected argument `score` to be one of {sorted(_SCORES)} or a callable, but got {score!r}")
    return _SCORES[score]
