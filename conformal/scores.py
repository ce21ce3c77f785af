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

__all__ = ["ScoreFunction", "aps", "get_score", "raps", "thr", "thr_probability_cut"]

ScoreFunction = Callable[..., Array]


def _to_torch(probs: Array) -> tuple[torch.Tensor, bool]:
    if isinstance(probs, torch.Tensor):
        return probs, False
    return torch.from_numpy(np.asarray(probs)), True


def _back(scores: torch.Tensor, was_numpy: bool) -> Array:
    return scores.numpy() if was_numpy else scores


def _label_probs(p: torch.Tensor, labels: Array) -> torch.Tensor:
    return p.gather(1, torch.as_tensor(labels, device=p.device).long()[:, None]).squeeze(1)


def _validate(probs: Array, labels: Array | None, validate: bool = True) -> None:
    if not validate:
        return
    check_probs(probs)
    if labels is not None:
        check_array_pair(probs, labels, "probs", "labels")
        check_labels(labels, probs.shape[0], probs.shape[1])


def thr(probs: Array, labels: Array | None = None, *, validate: bool = True) -> Array:
    """THR / LAC score 1 - p_y (Sadinle, Lei, Wasserman 2019).

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        validate: check the inputs (two passes over ``probs``); skip only for trusted inputs.

    Returns:
        (N,) scores of ``labels`` or (N, K) scores of every label.
    """
    _validate(probs, labels, validate)
    p, was_numpy = _to_torch(probs)
    if labels is not None:  # gather first: N entries, not N * K
        return _back(1 - _label_probs(p, labels), was_numpy)
    return _back(1 - p, was_numpy)


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


def _aps_label(p: torch.Tensor, labels: Array, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) APS scores and 1-based ranks of the given labels, without sorting: label j ranks at or
    above y when p_j > p_y, or p_j = p_y and j <= y (the order of a stable descending sort)."""
    y = torch.as_tensor(labels, device=p.device).long()[:, None]
    py = p.gather(1, y)
    idx = torch.arange(p.shape[1], device=p.device)
    ahead = (p > py) | ((p == py) & (idx <= y))
    return (p * ahead).sum(1) - u * py.squeeze(1), ahead.sum(1)


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
        u: float | Array | None = None, generator: torch.Generator | None = None, validate: bool = True) -> Array:
    """Adaptive prediction sets score (Romano, Sesia, Candès, NeurIPS 2020).

    s(x, y) = sum of p_j over labels j ranked at or above y, minus u * p_y (see the module
    docstring for the forms given by ``u``).

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        randomized: draw u ~ U(0, 1) per input with ``generator``.
        u: fixed u in [0, 1] (scalar or (N,)); 0 (inclusive form) when omitted.
        generator: torch generator for the randomised form.
        validate: check the inputs; skip only for trusted inputs.

    Returns:
        (N,) or (N, K) scores.
    """
    _validate(probs, labels, validate)
    p, was_numpy = _to_torch(probs)
    uu = _uniform(p.shape[0], p, randomized, u, generator)
    scores, _ = _aps_label(p, labels, uu) if labels is not None else _aps_all(p, uu)
    return _back(scores, was_numpy)


def raps(probs: Array, labels: Array | None = None, *, k_reg: int = 5, lam: float = 0.01,
         randomized: bool = False, u: float | Array | None = None,
         generator: torch.Generator | None = None, validate: bool = True) -> Array:
    """Regularised APS (Angelopoulos, Bates, Malik, Jordan, ICLR 2021).

    s(x, y) = APS(x, y) + lam * max(0, rank(y) - k_reg), with rank(y) 1-based, so labels
    beyond the k_reg most likely ones pay a penalty that shrinks sets.

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        k_reg: number of labels exempt from the penalty (>= 0).
        lam: penalty per rank beyond k_reg (>= 0).
        randomized, u, generator, validate: as in :func:`aps`.

    Returns:
        (N,) or (N, K) scores.
    """
    if isinstance(k_reg, bool) or not isinstance(k_reg, int) or k_reg < 0:
        raise ValueError(f"Expected argument `k_reg` to be an integer >= 0, but got {k_reg!r}")
    check_nonnegative(lam, "lam")
    _validate(probs, labels, validate)
    p, was_numpy = _to_torch(probs)
    uu = _uniform(p.shape[0], p, randomized, u, generator)
    scores, ranks = _aps_label(p, labels, uu) if labels is not None else _aps_all(p, uu)
    return _back(scores + lam * (ranks - k_reg).clamp(min=0).to(p.dtype), was_numpy)


def thr_probability_cut(threshold: float | Array, dtype: torch.dtype | np.dtype) -> Array:
    """The smallest probability p* of ``dtype`` with fl(1 - p) <= threshold for all p >= p*.

    fl(1 - p) is non-increasing in p, so {p : fl(1 - p) <= t} = {p : p >= p*}: a THR set is then
    one comparison per entry, with exactly the membership of ``1 - p <= t`` in that precision.
    Works elementwise for a (K,) threshold vector.
    """
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype if isinstance(dtype, torch.dtype) else np.dtype(dtype)
    t = np.asarray(threshold.detach().cpu().numpy() if isinstance(threshold, torch.Tensor) else threshold,
                   dtype=np.float64)
    t_typed = t.astype(np_dtype)
    one = np_dtype.type(1)
    cut = np.clip((one - t_typed).astype(np_dtype), 0, 1).astype(np_dtype)
    ok = lambda c: (one - c) <= t  # noqa: E731
    # step down while the next smaller value still satisfies the condition, up while the cut fails it
    for _ in range(8):
        lower = np.nextafter(cut, np_dtype.type(-1))
        move_down = ok(lower) & (lower >= 0)
        move_up = ~ok(cut)
        cut = np.where(move_down, lower, np.where(move_up, np.nextafter(cut, np_dtype.type(2)), cut)).astype(np_dtype)
    cut = np.where(np.isinf(t) & (t > 0), np_dtype.type(-1), cut).astype(np_dtype)
    if isinstance(threshold, torch.Tensor) or isinstance(dtype, torch.dtype):
        out = torch.from_numpy(np.atleast_1d(cut))
        return out if cut.ndim else out[0]
    return cut


_SCORES: dict[str, ScoreFunction] = {"thr": thr, "lac": thr, "aps": aps, "raps": raps}


def get_score(score: str | ScoreFunction) -> ScoreFunction:
    """Resolve a score name (``"thr"``/``"lac"``, ``"aps"``, ``"raps"``) or pass a callable through."""
    if callable(score):
        return score
    if score not in _SCORES:
        raise ValueError(f"Expected argument `score` to be one of {sorted(_SCORES)} or a callable, but got {score!r}")
    return _SCORES[score]
