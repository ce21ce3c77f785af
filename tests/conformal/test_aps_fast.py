"""APS/RAPS sets from sorted values (no argsort), the numpy paths: identical membership to the full-sort scores."""

import numpy as np
import pytest
import torch

from conformal import SplitConformal
from conformal.functional import prediction_mask
from conformal.scores import aps, aps_set_mask, raps


@pytest.fixture(autouse=True)
def _numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """This file tests the numpy paths (whose internals it patches); test_aps_compiled.py compares the compiled
    kernels (numba) with them."""
    import conformal.scores as sc

    monkeypatch.setattr(sc, "USE_COMPILED", False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("coarse", [False, True])
def test_sorted_values_mask_equals_full_sort(dtype: torch.dtype, coarse: bool) -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(3000, 20, generator=g, dtype=dtype), -1)
    if coarse:  # many ties, some at the cut
        p = torch.round(p * 8) + 1e-3
        p = p / p.sum(1, keepdim=True)
    u = torch.rand(3000, generator=g, dtype=torch.float64)
    for t in (0.0, 0.3, 0.9, 0.99, 1.0, 1.5):
        for lam, k_reg in ((0.0, 0), (0.1, 2)):
            ref = prediction_mask(raps(p, u=u, lam=lam, k_reg=k_reg) if lam else aps(p, u=u), t)
            assert torch.equal(aps_set_mask(p, t, u=u, lam=lam, k_reg=k_reg), ref)
        assert np.array_equal(aps_set_mask(p.numpy(), t), prediction_mask(aps(p), t).numpy())


def test_split_conformal_uses_it_with_the_same_u() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(2 * torch.randn(600, 8, generator=g), -1)
    y = torch.randint(0, 8, (600,), generator=g)
    for score in ("aps", "raps"):
        cp = SplitConformal(score=score).calibrate(p[:300], y[:300])
        fast = cp.predict(p[300:], generator=torch.Generator().manual_seed(2)).mask
        u = torch.rand(300, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        s = aps(p[300:], u=u) if score == "aps" else raps(p[300:], u=u)
        assert torch.equal(fast, prediction_mask(s, cp.threshold_))


@pytest.mark.parametrize("coarse", [False, True])
def test_blocks_of_rows_equal_full_sort(monkeypatch: pytest.MonkeyPatch, coarse: bool) -> None:
    """Rows processed in blocks (ties at the cut and rounding fall back to the full argsort per block): still
    identical membership, and the blocked calibration label scores equal the (N, K) scores at the labels."""
    import conformal.scores as sc

    monkeypatch.setattr(sc, "_CHUNK_ROWS", 400)
    g = torch.Generator().manual_seed(5)
    p = torch.softmax(3 * torch.randn(4000, 30, generator=g, dtype=torch.float32), -1)
    p[2000:2400] = torch.softmax(0.1 * torch.randn(400, 30, generator=g), -1)  # a block of near-uniform rows
    if coarse:
        p = torch.round(p * 8) + 1e-3
        p = p / p.sum(1, keepdim=True)
    u = torch.rand(4000, generator=g, dtype=torch.float64)
    for t in (0.3, 0.8, 0.95, 1.2):
        for lam, k_reg in ((0.0, 0), (0.02, 3)):
            ref = prediction_mask(raps(p, u=u, lam=lam, k_reg=k_reg) if lam else aps(p, u=u), t)
            assert torch.equal(aps_set_mask(p, t, u=u, lam=lam, k_reg=k_reg), ref)
    y = torch.randint(0, 30, (4000,), generator=g)
    torch.testing.assert_close(aps(p, y, u=u.float()), aps(p, u=u.float())[torch.arange(4000), y], atol=1e-6, rtol=0)


def _reference(p: torch.Tensor, t: float, u: torch.Tensor, lam: float, k_reg: int) -> torch.Tensor:
    return prediction_mask(raps(p, u=u, lam=lam, k_reg=k_reg) if lam else aps(p, u=u), t)


def _cases(dtype: torch.dtype, k: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    n = 300
    flat = torch.softmax(0.05 * torch.randn(n, k, generator=g, dtype=dtype), -1)
    confident = torch.softmax(40 * torch.randn(n, k, generator=g, dtype=dtype), -1)  # many tiny, some zero
    medium = torch.softmax(3 * torch.randn(n, k, generator=g, dtype=dtype), -1)
    tied = torch.round(medium * 6) + 1e-3
    tied = tied / tied.sum(1, keepdim=True)
    uniform = torch.full((n, k), 1.0 / k, dtype=dtype)
    onehot = torch.zeros(n, k, dtype=dtype)
    onehot[:, 0] = 1
    return {"flat": flat, "confident": confident, "medium": medium, "tied": tied, "uniform": uniform,
            "onehot": onehot}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 3, 7, 10, 37, 100])
def test_equal_to_full_sort_on_adversarial_thresholds(dtype: torch.dtype, k: int) -> None:
    """Thresholds equal to scores the full sort computes (the cut falls exactly on a score), the scores' float
    neighbours, and the threshold of a very confident model: membership identical, float32 and float64."""
    g = torch.Generator().manual_seed(k)
    for name, p in _cases(dtype, k, g).items():
        u = torch.rand(p.shape[0], generator=g, dtype=torch.float64)
        for lam, k_reg in ((0.0, 0), (0.01, 5), (0.3, 1)):
            ref_scores = raps(p, u=u, lam=lam, k_reg=k_reg) if lam else aps(p, u=u)
            picks = ref_scores.flatten()[torch.randint(0, ref_scores.numel(), (4,), generator=g)]
            ts = [0.0, 0.5, 0.9, 0.99998, 1.0, 2.0]
            for s in picks.tolist():
                ts += [s, float(np.nextafter(s, np.inf)), float(np.nextafter(s, -np.inf)),
                       float(np.nextafter(np.float32(s), np.float32(np.inf)))]
            for t in ts:
                got = aps_set_mask(p, t, u=u, lam=lam, k_reg=k_reg)
                assert torch.equal(got, _reference(p, t, u, lam, k_reg)), (name, lam, t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fast_path_decides_confident_and_flat_rows(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """Without ties at the cut, almost no row falls back to the full argsort, for a confident model (threshold
    near 1: nearly every label needed) and for flat probabilities (threshold in the middle)."""
    import conformal.scores as sc

    redone = []
    full_sort = sc._aps_all

    def counting(p: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        redone.append(p.shape[0])
        return full_sort(p, u)

    monkeypatch.setattr(sc, "_aps_all", counting)
    g = torch.Generator().manual_seed(3)
    for temp, t in ((3.0, 0.99998), (40.0, 0.9), (40.0, 0.99998), (0.05, 0.5), (0.05, 0.95)):
        p = torch.softmax(temp * torch.randn(5000, 100, generator=g, dtype=dtype), -1)
        u = torch.rand(5000, generator=g, dtype=torch.float64)
        for lam in (0.0, 0.01):
            ref = _reference(p, t, u, lam, 5)
            redone.clear()
            assert torch.equal(aps_set_mask(p, t, u=u, lam=lam, k_reg=5), ref)
            assert sum(redone) <= 5, (temp, t, lam, redone)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 7, 100])
def test_saps_and_topk_sets_equal_full_ranking(dtype: torch.dtype, k: int) -> None:
    """SAPS/TopK sets from the closed-form set size and sorted values equal the full-ranking scores' sets, also at
    thresholds equal to computed scores and their float neighbours, on flat, confident, tied and uniform rows."""
    from conformal.scores import rank_set_mask, saps, topk

    g = torch.Generator().manual_seed(10 + k)
    for name, p in _cases(dtype, k, g).items():
        u = torch.rand(p.shape[0], generator=g, dtype=torch.float64)
        for score, kw in ((saps, {"lam": 0.2}), (saps, {"lam": 0.013}), (topk, {})):
            ref_scores = score(p, u=u, **kw)
            picks = ref_scores.flatten()[torch.randint(0, ref_scores.numel(), (4,), generator=g)].tolist()
            ts = [0.0, 0.3, 1.0, 2.5, float(k)] + [x for s in picks for x in
                                                 (s, float(np.nextafter(s, np.inf)), float(np.nextafter(s, -np.inf)))]
            for t in ts:
                got = rank_set_mask(p, t, score=score, u=u, **kw)
                assert torch.equal(got, prediction_mask(ref_scores, t)), (name, score.__name__, kw, t)
        assert np.array_equal(rank_set_mask(p.numpy(), 0.7, score=saps), prediction_mask(saps(p), 0.7).numpy())


def test_split_conformal_saps_and_topk_use_it_with_the_same_u() -> None:
    from conformal.scores import saps, topk

    g = torch.Generator().manual_seed(4)
    p = torch.softmax(2 * torch.randn(600, 8, generator=g), -1)
    y = torch.randint(0, 8, (600,), generator=g)
    for name, fn in (("saps", saps), ("topk", topk)):
        cp = SplitConformal(score=name).calibrate(p[:300], y[:300])
        fast = cp.predict(p[300:], generator=torch.Generator().manual_seed(2)).mask
        u = torch.rand(300, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        assert torch.equal(fast, prediction_mask(fn(p[300:], u=u), cp.threshold_))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 7, 100])
def test_label_scores_and_ranks_equal_the_full_sort_with_ties(monkeypatch: pytest.MonkeyPatch,
                                                              dtype: torch.dtype, k: int) -> None:
    """The calibration path (label scores without sorting, blocks of rows, ties with y taken off after y) gives
    the ranks of the stable descending sort exactly and the scores of the full sort up to float64 summation
    order, on flat, confident (zeros), tied, uniform and one-hot rows, with the label tied with others."""
    import conformal.scores as sc
    from conformal.scores import saps, topk

    monkeypatch.setattr(sc, "_LABEL_ROWS", 64)  # several blocks, some with ties and some without
    g = torch.Generator().manual_seed(20 + k)
    for name, p in _cases(dtype, k, g).items():
        n = p.shape[0]
        u = torch.rand(n, generator=g, dtype=dtype)
        y = torch.randint(0, k, (n,), generator=g)
        rows = torch.arange(n)
        full_s, full_r = sc._aps_all(p, u)
        _, ranks = sc._aps_label(p, y, u)
        assert torch.equal(ranks, full_r[rows, y]), name
        _, only_ranks = sc._aps_label(p, y, u, scores=False)
        assert torch.equal(only_ranks, full_r[rows, y]), name
        atol = 1e-6 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(aps(p, y, u=u), full_s[rows, y], atol=atol, rtol=0)
        torch.testing.assert_close(raps(p, y, u=u, lam=0.1, k_reg=1), raps(p, u=u, lam=0.1, k_reg=1)[rows, y],
                                   atol=atol, rtol=0)
        for score in (saps, topk):
            assert torch.equal(score(p, y, u=u), score(p, u=u)[rows, y]), (name, score.__name__)
