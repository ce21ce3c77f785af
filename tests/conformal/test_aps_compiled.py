"""The compiled APS/RAPS kernels (conformal._kernels, numba: the extra ``certkit[fast]``) against the numpy paths
and the full sort: the same sets bit for bit, the same label ranks, label scores up to float64 summation order."""

import numpy as np
import pytest
import torch

import conformal.scores as sc
from conformal import SplitConformal
from conformal.functional import prediction_mask
from conformal.scores import aps, aps_set_mask, raps

pytest.importorskip("numba", reason="numba is not installed (pip install 'certkit[fast]'): the compiled kernels "
                                    "are optional; the numpy paths are tested in test_aps_fast.py")
from conformal import _kernels


def _both(monkeypatch: pytest.MonkeyPatch, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """(compiled, numpy) results of ``fn(*args, **kwargs)``."""
    monkeypatch.setattr(sc, "USE_COMPILED", True)
    fast = fn(*args, **kwargs)
    monkeypatch.setattr(sc, "USE_COMPILED", False)
    slow = fn(*args, **kwargs)
    monkeypatch.setattr(sc, "USE_COMPILED", True)
    return fast, slow


def _cases(dtype: torch.dtype, k: int, g: torch.Generator, n: int = 300) -> dict[str, torch.Tensor]:
    flat = torch.softmax(0.05 * torch.randn(n, k, generator=g, dtype=dtype), -1)
    confident = torch.softmax(40 * torch.randn(n, k, generator=g, dtype=dtype), -1)  # many tiny, some zero
    medium = torch.softmax(3 * torch.randn(n, k, generator=g, dtype=dtype), -1)
    tied = torch.round(medium * 6) + 1e-3
    tied = tied / tied.sum(1, keepdim=True)
    zeros = torch.round(medium * 4)  # ties and exact zeros
    zeros[:, 0] += 1
    zeros = zeros / zeros.sum(1, keepdim=True)
    uniform = torch.full((n, k), 1.0 / k, dtype=dtype)
    onehot = torch.zeros(n, k, dtype=dtype)
    onehot[:, 0] = 1
    return {"flat": flat, "confident": confident, "medium": medium, "tied": tied, "zeros": zeros,
            "uniform": uniform, "onehot": onehot}


def _thresholds(ref_scores: torch.Tensor, g: torch.Generator) -> list[float]:
    """Plain thresholds, a confident model's (near 1), and scores the full sort computes with their float
    neighbours (the cut falls exactly on a score: the bounded checks from the bottom cannot decide those in float64
    and hand them to the exact walk from the top)."""
    ts = [0.0, 0.3, 0.5, 0.9, 0.99, 0.99998, 1.0, 1.5, 2.0]
    flat = ref_scores.flatten()
    top = ref_scores.max(1).values  # scores of the last ranks: decided from the bottom
    picks = flat[torch.randint(0, flat.numel(), (4,), generator=g)].tolist()
    picks += top[torch.randint(0, top.numel(), (3,), generator=g)].tolist()
    for s in picks:
        ts += [s, float(np.nextafter(s, np.inf)), float(np.nextafter(s, -np.inf)),
               float(np.nextafter(np.float32(s), np.float32(np.inf)))]
    return ts


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 3, 7, 37, 100])
def test_compiled_sets_equal_numpy_path_and_full_sort(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                      k: int) -> None:
    """APS and RAPS sets, randomised and not (u = 0), on flat, confident, medium, tied, zero-holding, uniform and
    one-hot rows, at plain and adversarial thresholds: the compiled path, the numpy path and the full sort agree
    bit for bit."""
    g = torch.Generator().manual_seed(100 + k)
    for name, p in _cases(dtype, k, g).items():
        for randomised in (True, False):
            u = torch.rand(p.shape[0], generator=g, dtype=torch.float64) if randomised else None
            for lam, k_reg in ((0.0, 0), (0.01, 5), (0.3, 1)):
                ref_scores = raps(p, u=u, lam=lam, k_reg=k_reg) if lam else aps(p, u=u)
                for t in _thresholds(ref_scores, g):
                    fast, slow = _both(monkeypatch, aps_set_mask, p, t, u=u, lam=lam, k_reg=k_reg)
                    ref = prediction_mask(ref_scores, t)
                    assert torch.equal(fast, ref), (name, randomised, lam, t)
                    assert torch.equal(fast, slow), (name, randomised, lam, t)


def test_compiled_sets_on_numpy_input_and_large_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy in, numpy out; several blocks of sorted rows (a small block size), sets of ~90 of 100 labels (the
    benchmark's regime, decided from the bottom) and of ~10 (decided from the top)."""
    monkeypatch.setattr(sc, "_SORT_ROWS", 256)
    g = torch.Generator().manual_seed(7)
    p = torch.softmax(3 * torch.randn(3000, 100, generator=g), -1)
    u = torch.rand(3000, generator=g, dtype=torch.float64)
    for t in (0.9999786, 0.9, 0.5):
        fast, slow = _both(monkeypatch, aps_set_mask, p.numpy(), t, u=u.numpy())
        assert isinstance(fast, np.ndarray)
        assert np.array_equal(fast, slow)
        assert np.array_equal(fast, prediction_mask(aps(p, u=u), t).numpy())
        fast, slow = _both(monkeypatch, aps_set_mask, p.numpy(), 1.84, u=u.numpy(), lam=0.01, k_reg=5)
        assert np.array_equal(fast, slow)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the numpy path's NaN rows
def test_compiled_sets_hand_rows_outside_zero_inf_to_the_full_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows with NaN, +inf, a negative value or -0.0 are flagged by the kernel and recomputed by the full argsort,
    as on the numpy path: the same masks."""
    g = torch.Generator().manual_seed(8)
    p = torch.softmax(2 * torch.randn(40, 9, generator=g), -1)
    p[3, 2], p[7, 0], p[11, 5], p[13, 1], p[17, 8] = float("nan"), float("inf"), -0.25, -0.0, 0.0
    p[11, 6] = -0.75  # two negatives: the integers of their bits order them backwards
    u = torch.rand(40, generator=g, dtype=torch.float64)
    spy = []
    kernel = _kernels.aps_sorted_mask

    def spying(*args):  # type: ignore[no-untyped-def]
        kernel(*args)
        spy.append(args[-1].copy())

    monkeypatch.setattr(_kernels, "aps_sorted_mask", spying)
    for t in (0.5, 0.95):
        fast, slow = _both(monkeypatch, aps_set_mask, p, t, u=u)
        assert torch.equal(fast, slow)
    assert spy and np.flatnonzero(spy[0]).tolist() == [3, 7, 11, 13]  # 0.0 is a value in [0, inf)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 3, 7, 100])
def test_compiled_saps_and_topk_sets(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, k: int) -> None:
    """SAPS/TopK sets (rank_set_mask: the row maxima by the compiled pass, the sizes, the prefix by the compiled
    kernel with ties at the cut by index) equal the numpy path's and the full ranking's bit for bit, at plain
    thresholds and at scores with their float neighbours; rows with NaN or a negative value take the full ranking."""
    from conformal.scores import rank_set_mask, saps, topk

    g = torch.Generator().manual_seed(50 + k)
    for name, p in _cases(dtype, k, g).items():
        u = torch.rand(p.shape[0], generator=g, dtype=torch.float64)
        for score, kw in ((saps, {"lam": 0.2}), (saps, {"lam": 0.013}), (topk, {})):
            ref_scores = score(p, u=u, **kw)
            picks = ref_scores.flatten()[torch.randint(0, ref_scores.numel(), (4,), generator=g)].tolist()
            ts = [0.0, 0.3, 1.0, 2.5, float(k)] + [x for s in picks for x in
                                                 (s, float(np.nextafter(s, np.inf)), float(np.nextafter(s, -np.inf)))]
            for t in ts:
                fast, slow = _both(monkeypatch, rank_set_mask, p, t, score=score, u=u, **kw)
                assert torch.equal(fast, prediction_mask(ref_scores, t)), (name, score.__name__, kw, t)
                assert torch.equal(fast, slow), (name, score.__name__, kw, t)
    p = torch.softmax(torch.randn(20, k, generator=g, dtype=dtype), -1)
    p[2, 0], p[5, k - 1], p[7, 0] = float("nan"), -0.5, -0.0
    p[9, 0], p[9, k - 1] = -0.1, -0.5  # two negatives: the integers of their bits order them backwards
    u = torch.rand(20, generator=g, dtype=torch.float64)
    fast, slow = _both(monkeypatch, rank_set_mask, p, 0.7, score=saps, u=u)
    assert torch.equal(fast, slow)
    fast, slow = _both(monkeypatch, rank_set_mask, p, float(k - 1), score=topk)  # the set leaves out the smallest
    assert torch.equal(fast, slow) and not bool(fast[9, k - 1])
    fast, slow = _both(monkeypatch, sc._ranks_label, p, torch.zeros(20, dtype=torch.long))
    assert torch.equal(fast[0], slow[0])  # the ranks
    torch.testing.assert_close(fast[1], slow[1], equal_nan=True, atol=0, rtol=0)  # the row maxima, NaN included


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 3, 7, 100])
def test_compiled_label_scores_and_ranks(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, k: int) -> None:
    """Calibration: the compiled label ranks equal the numpy path's and the stable full sort's exactly (ties with
    y included), the label scores equal them up to float64 summation order; SAPS/TopK (ranks only) exactly."""
    from conformal.scores import saps, topk

    g = torch.Generator().manual_seed(30 + k)
    for name, p in _cases(dtype, k, g).items():
        n = p.shape[0]
        u = torch.rand(n, generator=g, dtype=dtype)
        y = torch.randint(0, k, (n,), generator=g)
        rows = torch.arange(n)
        full_s, full_r = sc._aps_all(p, u)
        (_, r_fast), (_, r_slow) = _both(monkeypatch, sc._aps_label, p, y, u)
        assert torch.equal(r_fast, full_r[rows, y]) and torch.equal(r_fast, r_slow), name
        atol = 1e-6 if dtype == torch.float32 else 1e-12
        fast, slow = _both(monkeypatch, aps, p, y, u=u)
        torch.testing.assert_close(fast, slow, atol=atol, rtol=0)
        torch.testing.assert_close(fast, full_s[rows, y], atol=atol, rtol=0)
        fast, slow = _both(monkeypatch, raps, p, y, u=u, lam=0.1, k_reg=1)
        torch.testing.assert_close(fast, slow, atol=atol, rtol=0)
        for score in (saps, topk):
            fast, slow = _both(monkeypatch, score, p, y, u=u)
            assert torch.equal(fast, slow), (name, score.__name__)


def test_compiled_label_scores_keep_the_bad_label_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels out of range with validate=False never reach the kernel (which does not check bounds): they take the
    numpy path, which raises IndexError past K (and reads -1 as numpy indexing does), as without numba."""
    monkeypatch.setattr(sc, "USE_COMPILED", True)
    p = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), -1)
    with pytest.raises(IndexError):
        aps(p, torch.tensor([0, 1, 3, 0]), validate=False)
    fast, slow = _both(monkeypatch, aps, p, torch.tensor([0, -1, 2, 0]), validate=False)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_split_conformal_same_threshold_and_sets_either_path(monkeypatch: pytest.MonkeyPatch, score: str) -> None:
    """End to end: SplitConformal (randomised by default) gives the same threshold and sets on both paths."""
    g = torch.Generator().manual_seed(9)
    cal = torch.softmax(3 * torch.randn(4000, 50, generator=g), -1).numpy()
    test = torch.softmax(3 * torch.randn(2000, 50, generator=g), -1).numpy()
    y = torch.randint(0, 50, (4000,), generator=g).numpy()

    def run() -> tuple[float, np.ndarray]:
        cp = SplitConformal(score=score, alpha=0.1).calibrate(cal, y)
        return float(cp.threshold_), cp.predict(test).mask

    (t_fast, m_fast), (t_slow, m_slow) = _both(monkeypatch, run)
    assert t_fast == t_slow
    assert np.array_equal(m_fast, m_slow)


def test_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """USE_COMPILED None follows CERTKIT_NO_NUMBA from the size floor on; False never compiles; True always, and
    without numba is an ImportError."""
    big, small = sc._COMPILED_MIN_ENTRIES, sc._COMPILED_MIN_ENTRIES - 1
    monkeypatch.setattr(sc, "USE_COMPILED", None)
    monkeypatch.delenv("CERTKIT_NO_NUMBA", raising=False)
    assert sc._compiled(big) is _kernels and sc._compiled(small) is None
    monkeypatch.setenv("CERTKIT_NO_NUMBA", "0")
    assert sc._compiled(big) is _kernels
    monkeypatch.setenv("CERTKIT_NO_NUMBA", "1")
    assert sc._compiled(big) is None
    monkeypatch.setattr(sc, "USE_COMPILED", True)
    assert sc._compiled(small) is _kernels and sc._compiled(0) is _kernels
    monkeypatch.setattr(sc, "USE_COMPILED", False)
    monkeypatch.delenv("CERTKIT_NO_NUMBA")
    assert sc._compiled(big) is None
    monkeypatch.setattr(sc, "_KERNELS", [None])  # as when numba does not import
    monkeypatch.setattr(sc, "USE_COMPILED", None)
    assert sc._compiled(big) is None
    monkeypatch.setattr(sc, "USE_COMPILED", True)
    with pytest.raises(ImportError, match="certkit\\[fast\\]"):
        sc._compiled(big)

