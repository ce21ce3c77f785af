"""VRCP: sets contain the vanilla sets (Proposition 1) and cover under attack over many random splits."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import pytest
import torch

from certkit.errors import NotCalibratedError
from conformal import scores
from conformal.attacks import pgd_attack
from conformal.functional import conformal_quantile
from conformal.score_bounds import certified_score_bounds
from conformal.vrcp import VRCP

ALPHA = 0.1
EPS = 0.03


@dataclass(frozen=True)
class Pool:
    """Everything a split needs, precomputed once per point of the pool."""

    y: torch.Tensor
    s_clean: torch.Tensor  # (N,) clean true-label THR scores
    s_hi: torch.Tensor  # (N,) upper bounds of the true-label score over the ball around the clean input
    s_adv: torch.Tensor  # (N, K) plain scores at the PGD point
    s_lo_adv: torch.Tensor  # (N, K) lower bounds over the ball around the PGD point


def _pool(model: torch.nn.Module, n: int | None, method: str, score: str = "thr") -> Pool:
    from certkit_app.datasets import load_digits_split

    cal, test = load_digits_split("calibration"), load_digits_split("test")
    x, y = torch.cat([cal.images, test.images]), torch.cat([cal.labels, test.labels])
    if n is not None:
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n]
        x, y = x[idx], y[idx]
    fn = getattr(scores, score)
    x_adv = pgd_attack(model, x, y, EPS, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s_clean = fn(torch.softmax(model(x).double(), -1), y)
        s_adv = fn(torch.softmax(model(x_adv).double(), -1))
    s_hi = certified_score_bounds(model, x, EPS, score=score, labels=y, method=method, domain=(0, 1)).upper  # type: ignore[arg-type]
    s_lo_adv = certified_score_bounds(model, x_adv, EPS, score=score, method=method, domain=(0, 1)).lower  # type: ignore[arg-type]
    return Pool(y, s_clean, s_hi, s_adv, s_lo_adv)


@pytest.fixture(scope="module")
def pool() -> Pool:
    from certkit_app.digits import digits_cnn

    return _pool(digits_cnn(), 240, "crown")


def _splits(pool: Pool, n_splits: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    n = len(pool.y)
    out = []
    for _ in range(n_splits):
        perm = torch.randperm(n, generator=g)
        out.append((perm[: n // 2], perm[n // 2 :]))
    return out


def _coverages(pool: Pool, n_splits: int, seed: int = 2) -> dict[str, list[float]]:
    cov: dict[str, list[float]] = {"vanilla": [], "vrcp-i": [], "vrcp-c": []}
    for ci, ti in _splits(pool, n_splits, seed):
        y = pool.y[ti]
        rows = torch.arange(len(ti))
        vi = VRCP(alpha=ALPHA, eps=EPS, mode="inference").calibrate(pool.s_clean[ci])
        vc = VRCP(alpha=ALPHA, eps=EPS, mode="calibration").calibrate(pool.s_hi[ci])
        sets = {
            "vanilla": pool.s_adv[ti] <= conformal_quantile(pool.s_clean[ci], ALPHA),
            "vrcp-i": vi.predict(pool.s_lo_adv[ti]).mask,
            "vrcp-c": vc.predict(pool.s_adv[ti]).mask,
        }
        # Proposition 1: both robust sets contain the vanilla set, on every test input.
        for name in ("vrcp-i", "vrcp-c"):
            assert bool((sets[name] | ~sets["vanilla"]).all()), name
        for name, m in sets.items():
            cov[name].append(float(m[rows, y].double().mean()))
    return cov


def test_sets_contain_vanilla_and_cover_under_attack(pool: Pool) -> None:
    n_splits = 100
    cov = _coverages(pool, n_splits)
    n_test = len(pool.y) // 2
    # Given the pool, random splits make calibration and test exchangeable, so the mean coverage over
    # splits is >= 1 - alpha up to Monte Carlo error over splits; one split's sd <= sqrt(2 a(1-a)/n_test).
    tol = 3 * math.sqrt(2 * ALPHA * (1 - ALPHA) / n_test) / math.sqrt(n_splits)
    for name in ("vrcp-i", "vrcp-c"):
        assert sum(cov[name]) / n_splits >= 1 - ALPHA - tol, name
    # The attack is strong enough for this test to fail: vanilla sets lose their coverage.
    assert sum(cov["vanilla"]) / n_splits < 1 - ALPHA - tol


def test_vrcp_c_threshold_dominates_vanilla(pool: Pool) -> None:
    q = conformal_quantile(pool.s_clean, ALPHA)
    vc = VRCP(alpha=ALPHA, eps=EPS, mode="calibration").calibrate(pool.s_hi)
    assert vc.threshold_ is not None and vc.threshold_ >= q


def test_model_layer_matches_score_layer() -> None:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    model = digits_cnn()
    d = load_digits_split("calibration")
    xc, yc, xt = d.images[:40], d.labels[:40], d.images[40:60]
    for mode in ("inference", "calibration"):
        v = VRCP(alpha=ALPHA, eps=EPS, mode=mode, method="crown", domain=(0, 1))  # type: ignore[arg-type]
        sets = v.calibrate_model(model, xc, yc).predict_model(model, xt)
        ref = VRCP(alpha=ALPHA, eps=EPS, mode=mode).calibrate(v.calibration_scores(model, xc, yc))  # type: ignore[arg-type]
        assert v.threshold_ == ref.threshold_
        assert torch.equal(sets.mask, ref.predict(v.test_scores(model, xt)).mask)
        with torch.no_grad():
            vanilla = scores.thr(torch.softmax(model(xt).double(), -1)) <= conformal_quantile(
                scores.thr(torch.softmax(model(xc).double(), -1), yc), ALPHA)
        assert bool((sets.mask | ~vanilla).all())
        assert sets.mask.shape == (20, 10)


def test_eps_zero_is_vanilla() -> None:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    model = digits_cnn()
    d = load_digits_split("calibration")
    xc, yc, xt = d.images[:40], d.labels[:40], d.images[40:60]
    with torch.no_grad():
        q = conformal_quantile(scores.thr(torch.softmax(model(xc).double(), -1), yc), ALPHA)
        vanilla = scores.thr(torch.softmax(model(xt).double(), -1)) <= q
    for mode in ("inference", "calibration"):
        v = VRCP(alpha=ALPHA, eps=0.0, mode=mode, method="ibp").calibrate_model(model, xc, yc)  # type: ignore[arg-type]
        assert v.threshold_ == pytest.approx(q, abs=1e-6)
        assert int((v.predict_model(model, xt).mask != vanilla).sum()) == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="`mode`"):
        VRCP(eps=0.1, mode="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`method`"):
        VRCP(eps=0.1, method="lp")
    with pytest.raises(ValueError, match="`norm`"):
        VRCP(eps=0.1, norm=1.0)
    with pytest.raises(ValueError, match="`eps`"):
        VRCP(eps=-0.1)
    with pytest.raises(ValueError, match="`alpha`"):
        VRCP(eps=0.1, alpha=1.5)
    with pytest.raises(ValueError, match="`score`"):
        VRCP(eps=0.1, score="saps")  # type: ignore[arg-type]
    v = VRCP(eps=0.1)
    with pytest.raises(NotCalibratedError):
        v.predict(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="`scores`"):
        v.calibrate(torch.zeros(3, 2))
    v.calibrate(torch.rand(50, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        v.predict(torch.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert VRCP(eps=0.1, alpha=0.1).calibrate(torch.rand(3)).threshold_ == math.inf


@pytest.mark.slow
def test_coverage_under_attack_full_pool_aps() -> None:
    from certkit_app.digits import digits_cnn

    pool = _pool(digits_cnn(), None, "crown", "aps")
    cov = _coverages(pool, 300, seed=3)
    n_test = len(pool.y) // 2
    tol = 3 * math.sqrt(2 * ALPHA * (1 - ALPHA) / n_test) / math.sqrt(300)
    for name in ("vrcp-i", "vrcp-c"):
        assert sum(cov[name]) / 300 >= 1 - ALPHA - tol, name


def test_predict_refuses_another_number_of_classes_and_a_non_module() -> None:
    # audit-inputs: (N, 5) scores after calibrating on K = 3 were accepted; model="m" failed deep inside
    g = torch.Generator().manual_seed(0)
    v = VRCP(eps=0.1).calibrate(torch.rand(20, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (20,), generator=g))
    with pytest.raises(ValueError, match="`scores` to have 3 columns"):
        v.predict(torch.rand(4, 5, generator=g, dtype=torch.float64))
    with pytest.raises(TypeError, match="`model`"):
        v.predict(torch.rand(4, 4, generator=g), model="m")  # type: ignore[arg-type]
