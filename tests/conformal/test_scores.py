import numpy as np
import pytest
import torch

from conformal import scores

P = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])


def test_thr_values() -> None:
    np.testing.assert_allclose(scores.thr(P)[0], [0.5, 0.7, 0.85, 0.95])
    np.testing.assert_allclose(scores.thr(P, np.array([0, 3, 1])), [0.5, 0.6, 0.75])


def test_aps_inclusive_and_exclusive() -> None:
    np.testing.assert_allclose(scores.aps(P)[1], [1.0, 0.9, 0.7, 0.4])
    np.testing.assert_allclose(scores.aps(P, u=1.0)[1], [0.9, 0.7, 0.4, 0.0], atol=1e-12)
    # ties are ranked by label index
    np.testing.assert_allclose(scores.aps(P)[2], [0.25, 0.5, 0.75, 1.0])


def test_raps_penalty() -> None:
    s = scores.raps(P, k_reg=1, lam=0.1)
    np.testing.assert_allclose(s[1], [1.0 + 0.3, 0.9 + 0.2, 0.7 + 0.1, 0.4])
    np.testing.assert_allclose(scores.raps(P, k_reg=10, lam=0.1), scores.aps(P))


def test_randomized_aps_reproducible_and_bounded() -> None:
    p = torch.softmax(torch.randn(50, 7, generator=torch.Generator().manual_seed(0)), -1)
    a = scores.aps(p, randomized=True, generator=torch.Generator().manual_seed(3))
    b = scores.aps(p, randomized=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    incl, excl = scores.aps(p), scores.aps(p, u=1.0)
    assert bool(((a <= incl + 1e-7) & (a >= excl - 1e-7)).all())


def test_type_and_device_preserved() -> None:
    t = torch.tensor(P, dtype=torch.float32)
    for fn in (scores.thr, scores.aps, scores.raps):
        out_t, out_n = fn(t), fn(P)
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
        assert isinstance(out_n, np.ndarray)
        np.testing.assert_allclose(out_t.numpy(), out_n, atol=1e-6)


def test_label_scores_match_matrix() -> None:
    p = torch.softmax(torch.randn(40, 5, generator=torch.Generator().manual_seed(1)), -1)
    y = torch.randint(0, 5, (40,), generator=torch.Generator().manual_seed(2))
    for fn in (scores.thr, scores.aps, scores.raps):
        assert torch.allclose(fn(p, y), fn(p)[torch.arange(40), y])


@pytest.mark.parametrize("fn", [scores.thr, scores.aps, scores.raps])
def test_bad_input(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="finite"):
        fn(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="sum to 1"):
        fn(np.array([[0.3, 0.3]]))
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        fn(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="class indices in"):
        fn(P, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        fn(P, np.array([0, 1]))
    with pytest.raises(TypeError, match="both numpy arrays or both torch tensors"):
        fn(P, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn(np.array([[1.5, -0.5]]))


def test_get_score() -> None:
    assert scores.get_score("lac") is scores.thr
    with pytest.raises(ValueError, match="`score`"):
        scores.get_score("nope")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_element_wise_forms_equal_the_torch_expressions(dtype: torch.dtype) -> None:
    """The element-wise work of CPU scores runs through numpy (one thread); it must round as the torch expressions
    do (numpy's Python scalars are weak, NEP 50): the RAPS penalty, the SAPS score and the cast of u, bit for bit."""
    import conformal.scores as sc
    from conformal.scores import raps, saps

    g = torch.Generator().manual_seed(11)
    p = torch.softmax(4 * torch.randn(2000, 30, generator=g, dtype=dtype), -1)
    y = torch.randint(0, 30, (2000,), generator=g)
    u64 = torch.rand(2000, generator=g, dtype=torch.float64)
    u = u64.to(dtype)
    ranks_all = sc._ranks_all(p)[0]
    for lam in (0.2, 0.013, 0.1, 1 / 3, 0.7):
        for k_reg in (0, 2, 5):
            s_aps, r = sc._aps_all(p, u)
            ref = s_aps + lam * (r - k_reg).clamp(min=0).to(dtype)
            assert torch.equal(raps(p, u=u64, lam=lam, k_reg=k_reg), ref), (lam, k_reg)
            lab, lr = sc._aps_label(p, y, u)
            assert torch.equal(raps(p, y, u=u64, lam=lam, k_reg=k_reg), lab + lam * (lr - k_reg).clamp(min=0).to(dtype))
        top = p.max(1).values[:, None]
        rr = ranks_all.to(dtype)
        ref = torch.where(ranks_all == 1, (1 - u[:, None]) * top, top + (rr - 1 - u[:, None]) * lam)
        assert torch.equal(saps(p, u=u64, lam=lam), ref), lam
