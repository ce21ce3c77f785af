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

The other randomisable scores follow the same convention (``u = 0`` is the inclusive,
non-randomised form, and the score drops by ``u`` times the label's own increment): ``saps``
(Huang et al. 2024) and ``topk``. ``margin`` and ``cross_entropy`` are deterministic.

Every score here is a function ``(probs, labels=None, **kwargs) -> scores`` (the one score
protocol of the calibrators: ``SplitConformal``, ``ClassConditional``, ``PACPredictionSet``,
``ClusteredConformal``, ``WeightedConformal`` and the scikit-learn wrapper all take a name of
:func:`get_score` or any such callable).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from certkit._validation import (
    Array,
    check_array_pair,
    check_bool,
    check_generator,
    check_labels,
    check_nonnegative,
    check_positive,
    check_probs,
    load_compiled,
)

__all__ = [
    "RANDOMIZABLE_SCORES",
    "USE_COMPILED",
    "ScoreFunction",
    "aps",
    "aps_set_mask",
    "cross_entropy",
    "get_score",
    "margin",
    "rank_set_mask",
    "raps",
    "saps",
    "thr",
    "thr_probability_cut",
    "topk",
]

ScoreFunction = Callable[..., Array]
_CHUNK_ROWS = 4096  # rows per block of the CPU fast paths (numpy's per-call cost: fewer, larger blocks)
_LABEL_ROWS = 2048  # rows per block of the label scores (several passes over a block that stays in cache)
_SORT_ROWS = 2048  # rows per block sorted for the compiled set kernel (numpy and numba per-call costs amortised)

USE_COMPILED: bool | None = None
"""Whether the APS/RAPS fast paths run the compiled kernels of ``conformal._kernels`` (numba, the optional extra
``certkit[fast]``): None (default) uses them for inputs of at least ``_COMPILED_MIN_ENTRIES`` probabilities when
numba imports and the environment variable ``CERTKIT_NO_NUMBA`` is unset (or ``0``); False never; True always
(ImportError without numba). Both paths give the same sets and ranks (tested bit for bit) and the same label scores
up to float64 summation order; the compiled one is several times faster on large inputs, and its first call in a
process compiles the kernels (about 2.5 s of CPU with numba's import: the reason for the size floor)."""
_COMPILED_MIN_ENTRIES = 1 << 20  # N * K from which the default (None) runs the compiled kernels
_KERNELS: list[Any] = []  # the imported kernel module (or None when numba is missing), once


def _compiled(entries: int) -> Any:
    """The module of compiled kernels for an input of ``entries`` = N * K probabilities, or None when they are
    switched off, the input is below the size floor of the default, or numba is not installed."""
    return load_compiled("conformal._kernels", entries, switch=USE_COMPILED,
                         switch_name="conformal.scores.USE_COMPILED", cache=_KERNELS,
                         min_entries=_COMPILED_MIN_ENTRIES)


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
        if p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.ndim == 2 and p.shape[0]:
            # numpy (one thread): torch's parallel gather and subtraction on CPU spin-wait with several threads
            pn = p.detach().numpy()
            y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
            n, k = pn.shape
            if pn.flags.c_contiguous and k and y.ndim == 1 and y.shape[0] == n and 0 <= y.min() and y.max() < k:
                py = pn.reshape(-1).take(np.arange(0, n * k, k) + y.astype(np.int64))
                return _back(torch.from_numpy(pn.dtype.type(1) - py), was_numpy)
        return _back(1 - _label_probs(p, labels), was_numpy)
    return _back(1 - p, was_numpy)


_NP_OR_TORCH_FLOATS = (np.float32, np.float64, torch.float32, torch.float64)


def _cpu_float(p: torch.Tensor) -> bool:
    """A CPU float32/float64 tensor, whose element-wise work runs through numpy (one thread, no spin-waiting)."""
    return p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and not p.requires_grad


def _uniform(n: int, like: torch.Tensor, randomized: bool, u: float | Array | None,
             generator: torch.Generator | None) -> torch.Tensor:
    generator = check_generator(generator)
    if check_bool(randomized, "randomized"):
        if u is not None:
            raise ValueError("Expected at most one of `randomized=True` and `u`, but got both")
        if generator is None:  # a fresh generator seeded from the OS: torch's global RNG is never used
            generator = torch.Generator(device=like.device)
            generator.seed()
        dev = generator.device
        return torch.rand(n, generator=generator, device=dev, dtype=like.dtype).to(like.device)
    if u is None:
        return torch.zeros(n, dtype=like.dtype, device=like.device)
    if _cpu_float(like) and isinstance(u, np.ndarray | torch.Tensor) and u.dtype in _NP_OR_TORCH_FLOATS:
        # numpy (one thread): torch's parallel cast and range check of 10^6 entries spin-wait with several threads
        u_np = (u.detach().cpu().numpy() if isinstance(u, torch.Tensor) else u).astype(like.numpy().dtype)
        if bool(((u_np < 0) | (u_np > 1)).any()):
            raise ValueError(f"Expected argument `u` to lie in [0, 1], but got {u!r}")
        t_np = torch.from_numpy(u_np)
        return t_np.expand(n) if t_np.ndim == 0 else t_np
    t = torch.as_tensor(u, dtype=like.dtype, device=like.device)
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError(f"Expected argument `u` to lie in [0, 1], but got {u!r}")
    return t.expand(n) if t.ndim == 0 else t


def _aps_label_numpy(p: np.ndarray, y: np.ndarray, u: np.ndarray, *, scores: bool = True,
                     ranks: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_aps_label` on CPU float32/float64, in blocks of rows that stay in cache, without sorting.

    Per block: one comparison ``p >= p_y`` (ties on both sides of y included); for the scores the masked
    values summed in float64 (as the float64 running sums of :func:`_aps_all`), for the ranks the mask counted;
    and one equality comparison ``p == p_y``: in the rows where another label ties with y (rare) the tied labels
    after y rank below it and are taken off, so scores and ranks follow the stable descending order exactly.
    ``scores``/``ranks`` False: that output is left empty (its passes skipped). With numba (:data:`USE_COMPILED`)
    one compiled pass per row does the comparison, the float64 masked sum and the count at once
    (``conformal._kernels.label_mass``): the same ranks, and scores equal up to float64 summation order."""
    n, k = p.shape
    out_s, out_r = np.empty(n, dtype=p.dtype), np.empty(n, dtype=np.int64)
    if n == 0 or k == 0:
        return out_s, out_r
    kernels = _compiled(n * k)
    if kernels is not None and 0 <= y.min() and y.max() < k:  # (invalid labels: the numpy path raises)
        mass_c, p_y_c = np.empty(n), np.empty(n, dtype=p.dtype)
        kernels.label_mass(p, y, mass_c, out_r, p_y_c)
        if scores:
            np.subtract(mass_c.astype(p.dtype), u * p_y_c, out=out_s)
        return out_s, out_r
    rows = min(n, _LABEL_ROWS)
    ahead, kept, tie = np.empty((rows, k), dtype=bool), np.empty((rows, k), dtype=p.dtype), np.empty((rows, k), dtype=bool)
    ones = np.ones(k, dtype=np.float32)
    idx = np.arange(k)
    # one gather for all rows (a flat take: half the cost of fancy indexing)
    flat = p.flags.c_contiguous and 0 <= y.min() and y.max() < k  # (else fancy indexing, which raises as before)
    p_y = p.reshape(-1).take(np.arange(0, n * k, k) + y) if flat else p[np.arange(n), y]
    for a in range(0, n, rows):
        pc, yc, py = p[a : a + rows], y[a : a + rows, None], p_y[a : a + rows, None]
        b = pc.shape[0]
        np.greater_equal(pc, py, out=ahead[:b])
        mass = count = None
        if scores:
            np.multiply(pc, ahead[:b], out=kept[:b])
            mass = np.einsum("ij->i", kept[:b], dtype=np.float64)  # numpy, not torch: torch's reductions spin under load
        if ranks:  # a bool-float32 matrix-vector product: exact counts (<= K < 2^24), the cheapest count
            count = (ahead[:b] @ ones).astype(np.int64) if k < 2**24 else ahead[:b].sum(1)
        np.equal(pc, py, out=tie[:b])
        if np.count_nonzero(tie[:b]) > b:  # some row has a label tied with y besides y
            tied = np.flatnonzero(tie[:b].view(np.uint8).sum(1, dtype=np.int64) > 1)
            after = (tie[tied] & (idx > yc[tied])).sum(1)
            if mass is not None:
                mass[tied] -= after * py[tied, 0].astype(np.float64)
            if count is not None:
                count[tied] -= after
        if mass is not None:
            out_s[a : a + b] = mass.astype(p.dtype) - u[a : a + b] * py[:, 0]
        if count is not None:
            out_r[a : a + b] = count
    return out_s, out_r


def _aps_label(p: torch.Tensor, labels: Array, u: torch.Tensor, *, scores: bool = True,
               ranks: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) APS scores and 1-based ranks of the given labels, without sorting: label j ranks at or
    above y when p_j > p_y, or p_j = p_y and j <= y (the order of a stable descending sort)."""
    if p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.ndim == 2 and p.shape[0]:
        y_np = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
        s_np, r_np = _aps_label_numpy(p.detach().numpy(), y_np.astype(np.int64), u.detach().cpu().numpy(),
                                      scores=scores, ranks=ranks)
        return torch.from_numpy(s_np), torch.from_numpy(r_np)
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
    scores, _ = _aps_label(p, labels, uu, ranks=False) if labels is not None else _aps_all(p, uu)
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
        randomized: draw u ~ U(0, 1) per input with ``generator`` (as in :func:`aps`).
        u: fixed u in [0, 1] (scalar or (N,)); 0 (inclusive form) when omitted.
        generator: torch generator for the randomised form.
        validate: check the inputs; skip only for trusted inputs.

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
    if _cpu_float(p) and not scores.requires_grad:  # numpy: the same float32/64 operations (NEP 50 weak scalar)
        pen = lam * np.maximum(ranks.numpy() - k_reg, 0).astype(scores.numpy().dtype)
        return _back(torch.from_numpy(scores.numpy() + pen), was_numpy)
    return _back(scores + lam * (ranks - k_reg).clamp(min=0).to(p.dtype), was_numpy)


def _ranks_all(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) 1-based ranks of every label (descending probability, ties by label index) and the (N,) top probability."""
    order = torch.sort(p, dim=1, descending=True, stable=True).indices
    ranks_sorted = torch.arange(1, p.shape[1] + 1, device=p.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, ranks_sorted)
    return ranks, p.gather(1, order[:, :1]).squeeze(1)


def _ranks_label(p: torch.Tensor, labels: Array) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) 1-based ranks of the given labels (same order as :func:`_ranks_all`, without sorting) and (N,) top p."""
    if p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.ndim == 2 and p.shape[0]:
        kernels = _compiled(p.shape[0] * p.shape[1])
        y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
        if kernels is not None and p.shape[1] and 0 <= y.min() and y.max() < p.shape[1]:
            pn = p.detach().numpy()
            rank = np.empty(p.shape[0], dtype=np.int64)
            return torch.from_numpy(rank), torch.from_numpy(_row_max(kernels, pn, y, rank))
    _, ranks = _aps_label(p, labels, torch.zeros(p.shape[0], dtype=p.dtype, device=p.device), scores=False)
    if p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.shape[0] and p.shape[1]:
        return ranks, torch.from_numpy(p.detach().numpy().max(1))  # numpy: torch's parallel max spins under load
    return ranks, p.max(1).values


def _row_max(kernels: Any, p: np.ndarray, y: np.ndarray | None = None, rank: np.ndarray | None = None) -> np.ndarray:
    """(N,) row maxima of CPU float32/float64 ``p`` by a compiled pass over the values' bits (with ``y``, the labels'
    ranks into ``rank`` in the same pass, ``conformal._kernels.label_rank``); rows with a sign bit set (negative
    values, -0.0) by numpy's max, so the result is ``p.max(1)`` exactly (NaN included)."""
    int_type = np.int32 if p.dtype == np.float32 else np.int64
    keys = p.view(int_type)
    hi: np.ndarray = np.empty(p.shape[0], dtype=int_type)
    lo: np.ndarray = np.empty(p.shape[0], dtype=int_type)
    if y is not None:
        kernels.label_rank(p, keys, y, rank, hi, lo)
    else:
        kernels.row_key_range(keys, hi, lo)
    top = hi.view(p.dtype)
    if (lo < 0).any():
        idx = np.flatnonzero(lo < 0)
        top[idx] = p[idx].max(1)
    return top  # type: ignore[no-any-return]


def saps(probs: Array, labels: Array | None = None, *, lam: float = 0.2, randomized: bool = False,
         u: float | Array | None = None, generator: torch.Generator | None = None, validate: bool = True) -> Array:
    """Sorted adaptive prediction sets score (Huang, Xi, Zhang, Wang, Li, Zhou, ICML 2024, "Conformal
    prediction for deep classifier via label ranking").

    SAPS keeps only the top probability and replaces the rest by a constant ``lam`` per rank:
    with r = rank(y) (1-based, ties by label index) and p_max the top probability,

        s(x, y) = p_max + (r - 1) lam - u w_r,     w_1 = p_max, w_r = lam (r >= 2),

    i.e. ``(1 - u) p_max`` for the top label and ``p_max + (r - 1 - u) lam`` below it. The paper
    writes ``u' p_max`` and ``p_max + (r - 2 + u') lam`` with u' = 1 - u (the same distribution
    for u ~ U(0, 1)); here ``u = 0`` is the inclusive, non-randomised form, as for :func:`aps`.

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        lam: the weight of a rank below the top (> 0; TorchCP's default 0.2).
        randomized: draw u ~ U(0, 1) per input with ``generator`` (as in :func:`aps`).
        u: fixed u in [0, 1] (scalar or (N,)); 0 (inclusive form) when omitted.
        generator: torch generator for the randomised form.
        validate: check the inputs; skip only for trusted inputs.

    Returns:
        (N,) or (N, K) scores.
    """
    check_positive(lam, "lam")
    _validate(probs, labels, validate)
    p, was_numpy = _to_torch(probs)
    uu = _uniform(p.shape[0], p, randomized, u, generator)
    ranks, top = _ranks_label(p, labels) if labels is not None else _ranks_all(p)
    if ranks.ndim == 2:
        uu, top = uu[:, None], top[:, None]
    if _cpu_float(p):  # numpy: the same expression, rounded alike (tests compare with the torch form)
        return _back(torch.from_numpy(np.asarray(_rank_scores(ranks.numpy(), uu.numpy(), top.numpy(), saps, lam))),
                     was_numpy)
    r = ranks.to(p.dtype)
    return _back(torch.where(ranks == 1, (1 - uu) * top, top + (r - 1 - uu) * lam), was_numpy)


def topk(probs: Array, labels: Array | None = None, *, randomized: bool = False, u: float | Array | None = None,
         generator: torch.Generator | None = None, validate: bool = True) -> Array:
    """Top-k score: the 1-based rank of y (descending probability, ties by label index), minus u.

    The set {y : rank(y) - u <= t} is the top-k labels for a k fixed by calibration (randomised:
    k or k + 1), as in MAPIE's ``top_k`` (non-randomised) and TorchCP's ``TOPK``.

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        randomized: draw u ~ U(0, 1) per input with ``generator`` (as in :func:`aps`).
        u: fixed u in [0, 1] (scalar or (N,)); 0 (inclusive form) when omitted.
        generator: torch generator for the randomised form.
        validate: check the inputs; skip only for trusted inputs.

    Returns:
        (N,) or (N, K) scores in [0, K].
    """
    _validate(probs, labels, validate)
    p, was_numpy = _to_torch(probs)
    uu = _uniform(p.shape[0], p, randomized, u, generator)
    ranks, _ = _ranks_label(p, labels) if labels is not None else _ranks_all(p)
    return _back(ranks.to(p.dtype) - (uu if ranks.ndim == 1 else uu[:, None]), was_numpy)


def margin(probs: Array, labels: Array | None = None, *, validate: bool = True) -> Array:
    """Margin score max_{j != y} p_j - p_y (Johansson et al. 2017; TorchCP's ``Margin``), in [-1, 1].

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        validate: check the inputs; skip only for trusted inputs.

    Returns:
        (N,) or (N, K) scores.
    """
    _validate(probs, labels, validate)
    p, was_numpy = _to_torch(probs)
    top2 = torch.topk(p, 2, dim=1)  # the first maximum by index is not guaranteed; equal values make it moot
    first, second = top2.values[:, 0], top2.values[:, 1]
    if labels is not None:
        py = _label_probs(p, labels)
        # p_y == top: the best other label is the runner-up (equal to the top when the top is tied)
        return _back(torch.where(py >= first, second, first) - py, was_numpy)
    other = torch.where(p >= first[:, None], second[:, None], first[:, None])
    return _back(other - p, was_numpy)


def cross_entropy(probs: Array, labels: Array | None = None, *, validate: bool = True) -> Array:
    """Cross-entropy (negative log-likelihood) score -log p_y, +inf where p_y = 0.

    The score of Park et al.'s PAC prediction sets (ICLR 2020) and TorchCP's THR with
    ``score_type="log_softmax"``; registered as ``"cross_entropy"``, ``"entropy"`` and ``"nll"``.
    A strictly decreasing function of p_y, so its sets are those of :func:`thr` (up to rounding).

    Args:
        probs: (N, K) class probabilities.
        labels: optional (N,) labels.
        validate: check the inputs; skip only for trusted inputs.

    Returns:
        (N,) or (N, K) scores in [0, +inf].
    """
    _validate(probs, labels, validate)
    p, was_numpy = _to_torch(probs)
    q = _label_probs(p, labels) if labels is not None else p
    return _back(-torch.log(q.clamp(min=0)), was_numpy)


def _numpy_dtype(dtype: torch.dtype | np.dtype) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float16, torch.float32, torch.float64):
            raise TypeError(f"Expected argument `dtype` to be float16, float32 or float64, but got {dtype}")
        return torch.empty(0, dtype=dtype).numpy().dtype
    np_dtype = np.dtype(dtype)
    if np_dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"Expected argument `dtype` to be float16, float32 or float64, but got {np_dtype}")
    return np_dtype


def _order_keys(x: np.ndarray) -> np.ndarray:
    """int64 keys that order the non-NaN floats of ``x`` as the reals they are (-0 and +0 share key 0)."""
    bits = x.view(f"u{x.itemsize}").astype(np.uint64)
    sign = np.uint64(1) << np.uint64(8 * x.itemsize - 1)
    magnitude = (bits & (sign - np.uint64(1))).astype(np.int64)
    return np.where((bits & sign) != 0, -magnitude, magnitude)


def _from_keys(keys: np.ndarray, np_dtype: np.dtype) -> np.ndarray:
    sign = np.uint64(1) << np.uint64(8 * np_dtype.itemsize - 1)
    bits = np.where(keys < 0, (-keys).astype(np.uint64) | sign, keys.astype(np.uint64))
    return bits.astype(f"u{np_dtype.itemsize}").view(np_dtype)


def thr_probability_cut(threshold: float | Array, dtype: torch.dtype | np.dtype) -> Array:
    """The smallest value p* of ``dtype`` with fl(1 - p) <= threshold, so {p : fl(1 - p) <= t} = {p : p >= p*}.

    fl(1 - p) (the subtraction rounded to ``dtype``, as :func:`thr` computes it) is non-increasing
    in p, so the THR set {y : 1 - p_y <= t} is one comparison ``p_y >= p*`` per entry, with exactly
    the membership of the direct evaluation (t compared as the real number it is) for every value
    of ``dtype``, including p outside [0, 1]. p* is found by bisection over the floats of ``dtype``
    in their order (at most 64 steps, elementwise for a (K,) threshold vector): stepping from
    fl(1 - t) by a few ulps is not enough, because for small p up to ~2^(mantissa bits) consecutive
    values of p share one rounded 1 - p (float64, t = 0.999: p = 0.0009999999999999955 has
    fl(1 - p) = 0.999 and lies hundreds of ulps below fl(1 - t)). A NaN threshold gives a NaN cut
    (nothing included); t = +inf gives -inf (every non-NaN p).
    """
    np_dtype = _numpy_dtype(dtype)
    t = np.asarray(threshold.detach().cpu().numpy() if isinstance(threshold, torch.Tensor) else threshold,
                   dtype=np.float64)
    one = np_dtype.type(1)
    inf = np.array([np.inf], dtype=np_dtype)
    # invariant: ok(lo) is False (or lo is the virtual key below -inf), ok(hi) is True; +inf always passes
    lo = np.full(t.shape, _order_keys(-inf)[0] - 1, dtype=np.int64)
    hi = np.full(t.shape, _order_keys(inf)[0], dtype=np.int64)
    while True:
        open_ = lo + 1 < hi  # (hi - lo would overflow int64 for float64 keys)
        if not open_.any():
            break
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        with np.errstate(invalid="ignore", over="ignore"):
            ok = (one - _from_keys(mid, np_dtype)) <= t
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid, lo)
    cut = np.where(np.isnan(t), np_dtype.type(np.nan), _from_keys(hi, np_dtype)).astype(np_dtype)
    if isinstance(threshold, torch.Tensor) or isinstance(dtype, torch.dtype):
        out = torch.from_numpy(np.atleast_1d(cut).copy())
        return out if cut.ndim else out[0]
    return cut


_SCORES: dict[str, ScoreFunction] = {
    "thr": thr, "lac": thr, "aps": aps, "raps": raps, "saps": saps, "topk": topk, "top_k": topk, "margin": margin,
    "cross_entropy": cross_entropy, "entropy": cross_entropy, "nll": cross_entropy,
}
_BUILTIN_SCORES = frozenset(_SCORES.values())
RANDOMIZABLE_SCORES = frozenset({aps, raps, saps, topk})
"""The scores with a randomised form (argument ``u``/``randomized``): the calibrators draw u for them by default."""


def get_score(score: str | ScoreFunction) -> ScoreFunction:
    """Resolve a score name or pass a callable ``(probs, labels=None, **kw) -> scores`` through.

    Names: ``"thr"``/``"lac"``, ``"aps"``, ``"raps"``, ``"saps"``, ``"topk"``/``"top_k"``, ``"margin"``,
    ``"cross_entropy"``/``"entropy"``/``"nll"``.
    """
    if callable(score):
        return score
    if score not in _SCORES:
        raise ValueError(f"Expected argument `score` to be one of {sorted(_SCORES)} or a callable, but got {score!r}")
    return _SCORES[score]


def _rank_penalty(k: int, k_reg: int, lam: float, dtype: torch.dtype) -> torch.Tensor:
    """(K,) RAPS penalties of ranks 1..K, rounded exactly as :func:`raps` computes them (torch's scalar product)."""
    return lam * (torch.arange(1, k + 1) - k_reg).clamp(min=0).to(dtype)


def _set_sizes(buf: np.ndarray, k: int, kp: int, t: np.ndarray, u: np.ndarray, pen: np.ndarray | None,
               width: int) -> tuple[np.ndarray, np.ndarray]:
    """Set sizes m (B,) of a block of rows, and the rows to redo, from their sorted values.

    ``buf`` is (B, L), L a multiple of ``width`` >= P + 2, P = ``kp`` a multiple of ``width``: rank r (1 = largest)
    of a row sits in column P + 1 - r; column 0, the columns of ranks beyond K and columns P + 1 .. L - 1
    (rank 0 and beyond) hold 0, so that the blocks of ``width`` columns starting at column 1 tile the flat buffer.

    The score of rank r is s_r = fl(fl(S_r) - fl(u p_(r))) [+ pen_r], with S_r the float64 running sum of
    the r largest values (torch's cumsum); s_r is non-decreasing in r also after rounding (each step is a
    monotone rounded operation of non-decreasing arguments), so the set is the top m, m = #{r : s_r <= t}.
    S_r is computed here in another order, with a bound d on its error:

    - block sums of ``width`` ranks by one BLAS matrix-vector product in the values' dtype (error at most
      gamma_w times the block's mass), their running sum from the top: the block where the u-free bound
      S_r + pen_r crosses t (only the crossing rank's membership depends on u);
    - the mass above that block first from the top blocks' sum (error gamma_w S); the rows this leaves undecided
      again from the float64 row total minus the bottom blocks' sum (error gamma_w (S_K - S): tiny where t is
      close to 1, where sets hold nearly every label and the top side leaves many rows undecided), so the row
      total is summed only for those rows;
    - the running sum inside the window (the block and the ranks on either side) in float64.

    Every rounded operation being monotone, the reference score lies between the scores of S - d and S + d.
    m is accepted when rank m is in for S + d and rank m + 1 is out for S - d; otherwise (a score within d of t)
    the row is redone. The work after the block sums runs on (window, B) arrays (rows along the contiguous axis).
    """
    b, width_l = buf.shape[0], buf.shape[1] // width
    nb = kp // width
    dtype = buf.dtype.type
    flat = buf.reshape(-1)
    blocks = flat[1 : 1 + (b * width_l - 1) * width].reshape(-1, width) @ np.ones(width, dtype=buf.dtype)
    sums = np.zeros((nb, b))  # sums[g]: ranks (nb-1-g) w + 1 .. (nb-g) w of every row
    sums.T[:] = np.concatenate([blocks, blocks[:1]]).reshape(b, width_l)[:, :nb]
    # cum_t[j]: (B,) mass of the top j * width ranks, j = 0 .. nb
    tri = (np.arange(nb)[None, :] >= nb - np.arange(nb + 1)[:, None]).astype(np.float64)
    cum_t = tri @ sums
    pen_r = np.zeros(kp + 2, dtype=buf.dtype)  # penalty by rank 0 .. P + 1 (ranks beyond K never count)
    if pen is not None:
        pen_r[1 : k + 1] = pen
        pen_r[k + 1 :] = pen[-1] if k else 0
    ends = cum_t[1:nb]  # the u-free bound at the last rank of blocks 0 .. nb - 2
    if pen is not None:
        ends = ends + pen_r[width : kp : width, None]
    j = (ends <= t).sum(0)  # the block of ranks j w + 1 .. (j + 1) w holds the crossing (approx.)
    cols = np.arange(b)
    top = cum_t.reshape(-1).take(j * b + cols)  # the mass of the top j w ranks, low-precision blocks
    low = 2.0**-24 if buf.dtype == np.float32 else 2.0**-53
    g_low, g64 = (width + 1) * low, (2.0 * k + 8.0) * 2.0**-53
    total_hi = cum_t[nb] * (1 + 2 * g_low)  # >= S_K
    # the window: ranks j w .. (j + 1) w + 1 (the block, the rank before it and the rank after it), as (w + 2, B)
    at = np.arange(width + 2)
    win = flat.take((cols * buf.shape[1] + kp + 1 - j * width)[None, :] - at[:, None])
    # first from the top blocks' sum (error g_low * top); the rows it leaves undecided (t within that error of a
    # score: many when t is near 1) again from the float64 row total minus the bottom blocks' sum
    m, redo = _window_sizes(win, top, g_low * top + 2 * g64 * total_hi, u, j, k, t, pen_r if pen is not None else None,
                            width, dtype)
    if redo.any():
        idx = np.flatnonzero(redo)
        total = np.einsum("ij->i", buf[idx, 1 : kp + 1], dtype=np.float64)  # S_K in float64
        bottom = cum_t[nb, idx] - top[idx]  # the bottom blocks' low-precision sums (in float64)
        start = total - bottom
        d = g_low * (1 + 2 * g_low) * np.abs(bottom) + 3 * g64 * total
        m2, redo2 = _window_sizes(win[:, idx], start, d, u[idx], j[idx], k, t,
                                  pen_r if pen is not None else None, width, dtype)
        m[idx] = np.where(redo2, m[idx], m2)
        redo[idx] = redo2
    return m, redo


def _window_sizes(win: np.ndarray, start: np.ndarray, d: np.ndarray, u: np.ndarray, j: np.ndarray, k: int,
                  t: np.ndarray, pen_r: np.ndarray | None, width: int,
                  dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """m and the rows to redo from the (w + 2, B) window values (ranks j w .. (j + 1) w + 1), the mass ``start`` of
    the top j w ranks and its error bound ``d`` (see :func:`_set_sizes`)."""
    b = win.shape[1]
    cols = np.arange(b)
    s_win = np.empty((width + 2, b))
    s_win[0] = start
    for i in range(1, width + 2):
        np.add(s_win[i - 1], win[i], out=s_win[i])
    up = (u * win).astype(dtype, copy=False)
    mid = s_win.astype(dtype) - up
    if pen_r is not None:
        mid += pen_r[j * width + np.arange(width + 2)[:, None]]
    m = np.minimum(j * width + (mid[1 : width + 1] <= t).sum(0), k)
    # decide ranks m and m + 1 exactly
    pos = (m - j * width) * b + cols  # flat index of rank m in the (w + 2, B) window arrays
    s_in = (s_win.reshape(-1).take(pos) + d).astype(dtype) - up.reshape(-1).take(pos)
    s_out = (s_win.reshape(-1).take(pos + b) - d).astype(dtype) - up.reshape(-1).take(pos + b)
    if pen_r is not None:
        s_in += pen_r[m]
        s_out += pen_r[m + 1]
    redo = ~(((m == 0) | (s_in <= t)) & ((m == k) | (s_out > t)))
    return m, redo


def aps_set_mask(probs: Array, threshold: float, *, u: Array | None = None, k_reg: int = 0,
                 lam: float = 0.0) -> Array:
    """The APS/RAPS prediction set {y : s(x, y) <= threshold} without argsorting every row.

    The score of the label at rank r (descending probability, ties by index) is
    C_r - u p_(r) + lam max(0, r - k_reg), with C_r the cumulative mass of the top r labels: it is
    non-decreasing in r (also after rounding), so each set is the top m labels, m = #{r : score_r <= threshold}.
    Rows are processed in blocks: numpy's vectorised sort of the values (no argsort), sums of blocks of
    ~sqrt(K) ranks, the running sum only inside the block where the scores cross the threshold, an
    error bound that decides the two ranks at the cut exactly, then one comparison ``p >= p_(m)`` per
    entry (:func:`_set_sizes`). Rows whose cut meets a tie, whose scores lie within the error bound of
    the threshold, or that hold values outside [0, inf) are recomputed by the full argsort. Identical
    membership to ``prediction_mask(aps(probs, u=u), threshold)`` (``raps`` with ``lam > 0``), tested
    bit for bit on random, tied and adversarial (threshold equal to a score) inputs.

    With numba installed (the extra ``certkit[fast]``; switched by :data:`USE_COMPILED` and the environment
    variable ``CERTKIT_NO_NUMBA``) the blocks go through one compiled pass instead
    (``conformal._kernels.aps_sorted_mask``): numpy's sort of the values' bits as integers, then per row a walk
    from both ends of the sorted values (exact running sums from the top, bounded sums from the bottom) and the
    comparison ``p >= p_(m)``: the same sets, several times faster.

    Args:
        probs: (N, K) float32/float64 probabilities (numpy, or a CPU tensor).
        threshold: scalar threshold.
        u: optional (N,) u in [0, 1] (0 when omitted).
        k_reg: the RAPS ``k_reg`` (labels exempt from the penalty).
        lam: the RAPS penalty per rank (``lam = 0``: APS).

    Returns:
        (N, K) bool mask of the same array type.
    """
    from conformal.functional import _directed_cast

    is_torch = isinstance(probs, torch.Tensor)
    p = probs.detach().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    n, k = p.shape
    t = _directed_cast(threshold, p.dtype, down=True)
    uu = np.zeros(n, dtype=p.dtype)
    if u is not None:
        uu = (u.detach().cpu().numpy() if isinstance(u, torch.Tensor) else np.asarray(u)).astype(p.dtype).reshape(-1)
    pen_t = _rank_penalty(k, k_reg, lam, torch.from_numpy(p[:0]).dtype) if lam else None
    pen = None if pen_t is None else pen_t.numpy()
    width = max(1, math.isqrt(k))
    kp = -(-k // width) * width
    mask = np.empty((n, k), dtype=bool)
    if k == 0 or n == 0:
        return torch.from_numpy(mask) if is_torch else mask
    kernels = _compiled(n * k)
    # the kernel's bounds assume u in [0, 1] and penalties >= 0 non-decreasing in the rank (lam >= 0)
    if kernels is not None and bool(((uu >= 0) & (uu <= 1)).all()) and (pen is None or lam >= 0):
        _aps_set_mask_compiled(kernels, p, t, uu, pen, mask)
        return torch.from_numpy(mask) if is_torch else mask
    buf = np.zeros((min(n, _CHUNK_ROWS), -(-(kp + 2) // width) * width), dtype=p.dtype)
    lo_col = kp + 1 - k  # the column of rank K (the smallest value)
    for a in range(0, n, _CHUNK_ROWS):
        b = min(n, a + _CHUNK_ROWS)
        pc, uc, bb = p[a:b], uu[a:b], buf[: b - a]
        vals = bb[:, lo_col : kp + 1]
        vals[...] = pc
        vals.sort(axis=1)  # numpy's vectorised sort of the values (no argsort), ascending
        rows = np.arange(b - a)
        m, redo = _set_sizes(bb, k, kp, t, uc, pen, width)
        cut = np.where(m > 0, bb[rows, kp + 1 - m], np.inf).astype(p.dtype)  # p_(m), the m-th largest
        below = bb[rows, kp - m]  # p_(m + 1) (a zero column when m = K)
        redo |= (m > 0) & (m < k) & (cut == below)  # a tie straddles the cut: ranks by index decide
        redo |= ~np.isfinite(bb[:, kp]) | (bb[:, lo_col] < 0)  # values outside [0, inf) (NaN sorts last)
        np.greater_equal(pc, cut[:, None], out=mask[a:b])
        if redo.any():  # the full argsort decides
            idx = np.flatnonzero(redo)
            sub = torch.from_numpy(np.ascontiguousarray(pc[idx]))
            full, ranks = _aps_all(sub, torch.from_numpy(uc[idx]))
            if pen_t is not None:
                full = full + pen_t[ranks - 1]
            mask[a + idx] = np.asarray(full) <= t
    return torch.from_numpy(mask) if is_torch else mask


def _aps_set_mask_compiled(kernels: Any, p: np.ndarray, t: np.ndarray, u: np.ndarray, pen: np.ndarray | None,
                           mask: np.ndarray) -> None:
    """:func:`aps_set_mask` by the compiled kernel (``conformal._kernels.aps_sorted_mask``) on blocks of rows sorted
    by numpy; rows with values outside [0, inf) by the full argsort, as on the numpy path."""
    n, k = p.shape
    pen_r = np.zeros(k + 1, dtype=p.dtype)
    if pen is not None:
        pen_r[1:] = pen
    t1 = np.asarray(t, dtype=p.dtype).reshape(1)
    eps = 2.0**-24 if p.dtype == np.float32 else 2.0**-53
    rows = min(n, _SORT_ROWS)
    int_type = np.int32 if p.dtype == np.float32 else np.int64
    keys = np.empty((rows, k), dtype=int_type)  # the values' bits: integers in the values' order on [0, inf)
    redo = np.empty(rows, dtype=bool)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        pc, kc = p[a:b], keys[: b - a]
        kc[...] = pc.view(int_type)
        kc.sort(axis=1)  # numpy's vectorised integer sort (faster than the float sort, which also handles NaN)
        kernels.aps_sorted_mask(pc, kc.view(p.dtype), kc, u[a:b], t1, pen_r, eps, mask[a:b], redo[: b - a])
        if redo[: b - a].any():
            idx = np.flatnonzero(redo[: b - a])
            sub = torch.from_numpy(np.ascontiguousarray(pc[idx]))
            full, ranks = _aps_all(sub, torch.from_numpy(u[a + idx]))
            if pen is not None:
                full = full + torch.from_numpy(pen)[ranks - 1]
            mask[a + idx] = np.asarray(full) <= t


def _rank_scores(ranks: np.ndarray, u: np.ndarray, top: np.ndarray, score: ScoreFunction, lam: float) -> np.ndarray:
    """SAPS/TopK scores of the given (B, W) 1-based ranks, by the expressions of :func:`saps`/:func:`topk` in numpy
    (each operation rounded to the values' dtype as torch's is: numpy's Python scalars are weak, NEP 50; numpy, one
    thread: torch's element-wise ops on small blocks cost several times more CPU when its threads spin-wait)."""
    r = ranks.astype(u.dtype)
    if score is saps:
        return np.where(ranks == 1, (u.dtype.type(1) - u) * top, top + (r - 1 - u) * lam)  # type: ignore[no-any-return]
    return r - u  # type: ignore[no-any-return]


def _rank_set_sizes(top: np.ndarray, u: np.ndarray, t: np.ndarray, score: ScoreFunction, lam: float,
                    k: int) -> np.ndarray:
    """(B,) SAPS/TopK set sizes of rows with top probability ``top`` and ``u`` (both in the values' dtype): the
    closed-form estimate, checked by the scores of ranks m and m + 1 (the expressions of :func:`saps`/:func:`topk`),
    recounted over every rank where it is off."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        est = (float(t) - top.astype(np.float64)) / lam + 1 + u if score is saps else float(t) + u.astype(np.float64)
        est = np.where(np.isfinite(est), est, 0.0)
    m = np.clip(np.floor(est), 0, k).astype(np.int64)
    ut, topt = u[:, None], top[:, None]
    both = np.stack([np.maximum(m, 1), np.minimum(m + 1, k)], axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        s = _rank_scores(both, ut, topt, score, lam) <= t
    ok = ((m == 0) | s[:, 0]) & ((m == k) | ~s[:, 1])
    if not ok.all():  # recount over every rank (monotone scores: a count is the set size)
        idx = np.flatnonzero(~ok)
        ranks = np.broadcast_to(np.arange(1, k + 1), (len(idx), k))
        with np.errstate(invalid="ignore", over="ignore"):
            m[idx] = (_rank_scores(ranks, ut[idx], topt[idx], score, lam) <= t).sum(1)
    return m


def _rank_set_mask_compiled(kernels: Any, p: np.ndarray, t: np.ndarray, u: np.ndarray, score: ScoreFunction,
                            lam: float, mask: np.ndarray) -> None:
    """:func:`rank_set_mask` by the compiled kernels: the row maxima by one pass over the values' bits, the set
    sizes of every row at once (:func:`_rank_set_sizes`), then per block numpy's integer sort of the values' bits and
    ``conformal._kernels.prefix_mask`` (ties at the cut by index); rows with values outside [0, inf) by the full
    ranking, as on the numpy path."""
    n, k = p.shape
    m = _rank_set_sizes(_row_max(kernels, p), u, t, score, lam, k)
    rows = min(n, _SORT_ROWS)
    int_type = np.int32 if p.dtype == np.float32 else np.int64
    keys = np.empty((rows, k), dtype=int_type)
    redo = np.empty(rows, dtype=bool)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        pc, kc = p[a:b], keys[: b - a]
        kc[...] = pc.view(int_type)
        kc.sort(axis=1)
        kernels.prefix_mask(pc, kc.view(p.dtype), kc, m[a:b], mask[a:b], redo[: b - a])
        if redo[: b - a].any():
            idx = np.flatnonzero(redo[: b - a])
            sub = torch.from_numpy(np.ascontiguousarray(pc[idx]))
            kw = {"lam": lam} if score is saps else {}
            full = score(sub, u=torch.from_numpy(u[a + idx]), validate=False, **kw)
            mask[a + idx] = np.asarray(full) <= t


def rank_set_mask(probs: Array, threshold: float, *, score: ScoreFunction, u: Array | None = None,
                  lam: float = 0.2) -> Array:
    """The SAPS or TopK prediction set {y : s(x, y) <= threshold} without ranking every label.

    Both scores depend on a label only through its rank r (and the row's top probability and u), and are
    non-decreasing in r also after rounding, so each set is the top m labels, m = #{r : s_r <= threshold}.
    m is estimated in closed form, then the scores of ranks m and m + 1 are computed by the same float
    expressions as :func:`saps`/:func:`topk` (rows where the estimate is off are recounted over every rank);
    the set is then ``p >= p_(m)`` from numpy's sort of the values. Rows with a tie at the cut or values
    outside [0, inf) are recomputed by the full argsort. Identical membership to
    ``prediction_mask(saps(probs, u=u, lam=lam), threshold)`` (``topk``), tested bit for bit.

    Args:
        probs: (N, K) float32/float64 probabilities (numpy, or a CPU tensor).
        threshold: scalar threshold.
        score: :func:`saps` or :func:`topk`.
        u: optional (N,) u in [0, 1] (0 when omitted).
        lam: the SAPS rank weight.

    Returns:
        (N, K) bool mask of the same array type.
    """
    from conformal.functional import _directed_cast

    if score not in (saps, topk):
        raise ValueError(f"Expected argument `score` to be conformal.scores.saps or topk, but got {score!r}")
    is_torch = isinstance(probs, torch.Tensor)
    p = probs.detach().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    n, k = p.shape
    t = _directed_cast(threshold, p.dtype, down=True)
    uu = np.zeros(n, dtype=p.dtype)
    if u is not None:
        uu = (u.detach().cpu().numpy() if isinstance(u, torch.Tensor) else np.asarray(u)).astype(p.dtype).reshape(-1)
    mask = np.empty((n, k), dtype=bool)
    if k == 0 or n == 0:
        return torch.from_numpy(mask) if is_torch else mask
    kernels = _compiled(n * k)
    if kernels is not None:
        _rank_set_mask_compiled(kernels, p, t, uu, score, lam, mask)
        return torch.from_numpy(mask) if is_torch else mask
    for a in range(0, n, _CHUNK_ROWS):
        b = min(n, a + _CHUNK_ROWS)
        pc, uc = p[a:b], uu[a:b]
        asc = np.sort(pc, axis=1)
        m = _rank_set_sizes(asc[:, -1].copy(), uc, t, score, lam, k)
        rows = np.arange(b - a)
        cut = np.where(m > 0, asc[rows, k - np.maximum(m, 1)], np.inf).astype(p.dtype)  # p_(m)
        below = asc[rows, np.maximum(k - 1 - m, 0)]  # p_(m + 1) when m < K
        redo = (m > 0) & (m < k) & (cut == below)  # a tie straddles the cut: ranks by index decide
        redo |= ~np.isfinite(asc[:, -1]) | (asc[:, 0] < 0)  # values outside [0, inf) (NaN sorts last)
        np.greater_equal(pc, cut[:, None], out=mask[a:b])
        if redo.any():
            idx = np.flatnonzero(redo)
            sub = torch.from_numpy(np.ascontiguousarray(pc[idx]))
            kw = {"lam": lam} if score is saps else {}
            full = score(sub, u=torch.from_numpy(uc[idx]), validate=False, **kw)
            mask[a + idx] = np.asarray(full) <= t
    return torch.from_numpy(mask) if is_torch else mask

