import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import norm

from certkit.errors import NotCalibratedError
from conformal import conformal_quantile
from conformal.rscp import (
    RSCP,
    RSCPPlus,
    bernstein_margin,
    hoeffding_margin,
    robust_mask,
    rscp_plus_mask,
    smoothed_score_fn,
)
from smoothing.scores import SmoothedScores

P = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
ALPHA, SIGMA, EPS, N_MC, BETA = 0.1, 0.25, 0.125, 256, 1e-3


# ----------------------------------------------------------------------------------------- exact values


def test_thr_scores_of_every_label() -> None:
    torch.testing.assert_close(smoothed_score_fn("thr")(P)[0], torch.tensor([0.5, 0.7, 0.85, 0.95], dtype=torch.float64))


def test_aps_forms() -> None:
    """The reference's APS without u is the exclusive sum: certkit's aps with u = 1. Default u = 0 is inclusive."""
    exclusive = smoothed_score_fn("aps", u=1.0)(P)
    torch.testing.assert_close(exclusive[1], torch.tensor([0.9, 0.7, 0.4, 0.0], dtype=torch.float64))
    inclusive = smoothed_score_fn("aps")(P)
    torch.testing.assert_close(inclusive[1], torch.tensor([1.0, 0.9, 0.7, 0.4], dtype=torch.float64))
    with pytest.raises(ValueError, match="randomized"):
        smoothed_score_fn("aps", randomized=True)


def test_margins_exact_values() -> None:
    assert hoeffding_margin(256, 1e-3) == pytest.approx(0.11615381840155745, rel=1e-14)
    b = bernstein_margin(torch.zeros(2, 3, dtype=torch.float64), 256, 1e-3)
    torch.testing.assert_close(b, torch.full((2, 3), 0.0695507414598622, dtype=torch.float64), rtol=1e-14, atol=0)
    v = torch.tensor([0.04], dtype=torch.float64)
    expected = math.sqrt(2 * 0.04 * math.log(2000) / 256) + 7 * math.log(2000) / (3 * 255)
    assert float(bernstein_margin(v, 256, 1e-3)) == pytest.approx(expected, rel=1e-14)


def test_rscp_cut_is_phi_of_shifted_threshold() -> None:
    """tau = 0.6, eps/sigma = 0.5: RSCP keeps S_hat <= Phi(Phi^-1(0.6) + 0.5) = 0.774 (the brief's number)."""
    cut = norm.cdf(norm.ppf(0.6) + EPS / SIGMA)
    assert cut == pytest.approx(0.774, abs=5e-4)
    mean = torch.tensor([[cut - 1e-9, cut + 1e-9, 0.0, 1.0]], dtype=torch.float64)
    assert robust_mask(mean, 0.6, sigma=SIGMA, eps=EPS).tolist() == [[True, False, True, False]]
    # eps = 0 is split conformal on the smoothed score
    assert robust_mask(torch.tensor([[0.6, 0.6 + 1e-12]], dtype=torch.float64), 0.6, sigma=SIGMA, eps=0.0).tolist() == [
        [True, False]
    ]
    # threshold >= 1 (or +inf: too few calibration points) admits every label
    assert robust_mask(torch.ones(1, 3), math.inf, sigma=SIGMA, eps=EPS).all()


def test_rscp_plus_cut_with_both_margins() -> None:
    """RSCP+ keeps S_hat - b_B <= Phi(Phi^-1(tau + b_H) + eps/sigma) (0.858 for tau = 0.6)."""
    b_h = hoeffding_margin(N_MC, BETA)
    cut = norm.cdf(norm.ppf(0.6 + b_h) + EPS / SIGMA)
    assert cut == pytest.approx(0.858, abs=5e-4)
    var = torch.tensor([[0.0, 0.0, 0.01, 0.01]], dtype=torch.float64)
    b_b = bernstein_margin(var, N_MC, BETA)
    mean = torch.tensor([[cut - 1e-9, cut + 1e-9, cut - 1e-9, cut + 1e-9]], dtype=torch.float64) + b_b
    mask = rscp_plus_mask(mean, var, 0.6, sigma=SIGMA, eps=EPS, n_mc=N_MC, beta=BETA)
    assert mask.tolist() == [[True, False, True, False]]
    # S_hat - b_B clipped at 0, tau + b_H clipped at 1
    assert rscp_plus_mask(torch.zeros(1, 2), torch.zeros(1, 2), 0.0, sigma=SIGMA, eps=EPS, n_mc=N_MC, beta=BETA).all()
    assert rscp_plus_mask(torch.ones(1, 2), torch.zeros(1, 2), 0.95, sigma=SIGMA, eps=EPS, n_mc=N_MC, beta=BETA).all()


# ----------------------------------------------------------------------------------------- calibrators


def random_scores(n: int, k: int, seed: int, n_mc: int = N_MC) -> SmoothedScores:
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(n, k, generator=g, dtype=torch.float64)
    return SmoothedScores(mean, mean * (1 - mean) * torch.rand(n, k, generator=g, dtype=torch.float64), n_mc)


def test_threshold_is_the_exact_order_statistic() -> None:
    """tau is the ceil((n+1)(1-alpha))-th smallest true-label S_hat; RSCP+ uses alpha - 2 beta."""
    cal = random_scores(999, 5, 0)
    labels = torch.arange(999) % 5
    true = cal.mean[torch.arange(999), labels]
    srt = torch.sort(true).values
    r = RSCP(alpha=0.1, eps=EPS).calibrate(cal, labels)
    assert r.threshold_ == float(srt[900 - 1]) == conformal_quantile(true, 0.1)
    rp = RSCPPlus(alpha=0.1, beta=0.001, eps=EPS).calibrate(cal, labels)
    assert rp.threshold_ == float(srt[902 - 1])  # ceil(1000 * 0.902) = 902
    # true-label scores may be passed directly
    assert RSCP(alpha=0.1).calibrate(true).threshold_ == r.threshold_


def test_sets_nest_vanilla_rscp_rscp_plus() -> None:
    """Robustness only adds labels: vanilla (eps=0) within RSCP within RSCP+ (same data)."""
    cal, test = random_scores(300, 10, 1), random_scores(200, 10, 2)
    labels = torch.arange(300) % 10
    masks = [m.calibrate(cal, labels).predict(test).mask for m in
             (RSCP(eps=0.0), RSCP(eps=EPS), RSCPPlus(eps=EPS, beta=BETA))]
    assert bool((masks[0] <= masks[1]).all()) and bool((masks[1] <= masks[2]).all())
    assert masks[0].sum() < masks[1].sum() < masks[2].sum()


def test_predict_result_and_calibration_state() -> None:
    cal, test = random_scores(100, 4, 3), random_scores(7, 4, 4)
    r = RSCPPlus(eps=EPS)
    with pytest.raises(NotCalibratedError):
        r.predict(test)
    assert r.calibrate(cal, torch.zeros(100, dtype=torch.long)) is r
    sets = r.predict(test)
    assert sets.mask.shape == (7, 4) and sets.mask.dtype == torch.bool and sets.threshold == r.threshold_
    assert r.n_calibration_ == 100


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (RSCP, {"eps": -0.1}, "eps"),
        (RSCP, {"sigma": 0.0}, "sigma"),
        (RSCP, {"sigma": -0.25}, "sigma"),
        (RSCP, {"alpha": 1.0}, "alpha"),
        (RSCP, {"n_mc": 1}, "n_mc"),
        (RSCPPlus, {"beta": 0.05}, "beta"),  # = alpha / 2
        (RSCPPlus, {"beta": 0.0}, "beta"),
        (RSCPPlus, {"beta": 0.2}, "beta"),
        (RSCP, {"score": "nope"}, "score"),
    ],
)
def test_bad_hyperparameters(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_calibration_inputs() -> None:
    cal = random_scores(50, 4, 0, n_mc=64)
    r = RSCPPlus()
    with pytest.raises(ValueError, match="n_mc=256"):
        r.calibrate(cal, torch.zeros(50, dtype=torch.long))
    good = random_scores(50, 4, 0)
    with pytest.raises(ValueError, match="`labels`"):
        r.calibrate(good)
    with pytest.raises(ValueError, match="`labels`"):
        r.calibrate(good, torch.zeros(49, dtype=torch.long))
    with pytest.raises(ValueError, match="`scores`"):
        r.calibrate(torch.zeros(0))
    r.calibrate(good, torch.zeros(50, dtype=torch.long))
    with pytest.raises(ValueError, match="n_mc"):
        r.predict(cal)
    with pytest.raises(TypeError, match="SmoothedScores"):
        r.predict(good.mean)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_mc"):
        hoeffding_margin(1, 0.1)
    with pytest.raises(ValueError, match="beta"):
        bernstein_margin(torch.zeros(1), 16, 1.5)


# ----------------------------------------------------------------------------------------- guarantees


def worst_case_coverage(method: str, n_mc: int, trials: int = 400, n: int = 200, seed: int = 0) -> np.ndarray:
    """Coverage under the worst perturbation the Lipschitz bound allows, with Monte Carlo estimates.

    True-label smoothed scores S_bar ~ Beta(2, 5); each observed S_hat is a mean of n_mc Bernoulli(S_bar)
    samples (a valid {0, 1}-valued base score). At test time the adversary moves Phi^-1(S_bar) up by the
    full eps/sigma, the most any ||delta|| <= eps can. Returns per-trial coverage over n test points.
    """
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    covs = []
    for _ in range(trials):
        s_bar = torch.from_numpy(rng.beta(2.0, 5.0, 2 * n))
        cal_bar, test_bar = s_bar[:n], s_bar[n:]
        attacked = torch.special.ndtr(torch.special.ndtri(test_bar) + EPS / SIGMA)

        def mc(p: torch.Tensor) -> SmoothedScores:
            k = torch.binomial(torch.full_like(p, float(n_mc)), p, generator=g)
            mean = k / n_mc
            return SmoothedScores(mean[:, None], (mean * (1 - mean) * n_mc / (n_mc - 1))[:, None], n_mc)

        predictor = {"vanilla": RSCP(eps=0.0, n_mc=n_mc), "rscp": RSCP(eps=EPS, n_mc=n_mc),
                     "rscp+": RSCPPlus(eps=EPS, n_mc=n_mc, beta=BETA)}[method]
        predictor.calibrate(mc(cal_bar).mean[:, 0])
        covs.append(float(predictor.predict(mc(attacked)).mask[:, 0].double().mean()))
    return np.array(covs)


def test_rscp_plus_covers_under_worst_case_lipschitz_attack() -> None:
    """P[y in C+(x + delta)] >= 1 - alpha when the adversary uses the whole eps/sigma budget (Monte Carlo scores)."""
    for n_mc in (16, 256):
        cov = worst_case_coverage("rscp+", n_mc)
        se = cov.std(ddof=1) / math.sqrt(len(cov))
        assert cov.mean() >= 1 - ALPHA - 4 * se, n_mc
    # the same adversary breaks vanilla smoothed CP (so this test can fail) ...
    cov = worst_case_coverage("vanilla", 256)
    assert cov.mean() < 1 - ALPHA - 0.1
    # ... and RSCP, which treats a 16-sample mean as exact, falls short too (0.880): the margins are needed
    cov = worst_case_coverage("rscp", 16)
    assert cov.mean() < 1 - ALPHA - 4 * cov.std(ddof=1) / math.sqrt(len(cov))


TOL_POOL = 200


def _tol(n_test: int) -> float:
    """Binomial tolerance of a mean coverage over n_test attacked points: 3 standard errors at 1 - alpha."""
    return 3 * math.sqrt(ALPHA * (1 - ALPHA) / n_test)


def test_digits_robust_coverage_under_pgd_and_vanilla_breaks() -> None:
    """PGD on the smoothed score at eps = 0.25: RSCP+ (with and without PTT) keeps 1 - alpha, vanilla does not."""
    from certkit_app.demos.rscp import evaluate_rscp
    from certkit_app.digits import digits_base_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = {r.method: r for r in evaluate_rscp(digits_base_model(0.25), eps=0.25, n_mc=N_MC, n_pool=TOL_POOL,
                                                    n_splits=20, attack_steps=10, attack_noise=8)}
    tol = _tol(TOL_POOL // 2)
    assert rows["RSCP+"].coverage >= 1 - ALPHA - tol
    assert rows["RSCP+ PTT"].coverage >= 1 - ALPHA - tol
    assert rows["vanilla smoothed CP"].coverage < 1 - ALPHA - tol
    assert rows["vanilla smoothed CP"].clean_coverage >= 1 - ALPHA - tol  # it is the attack that breaks it
    assert rows["RSCP+ PTT"].size < rows["RSCP+"].size


@pytest.mark.slow
def test_digits_paper_setting_full_pool() -> None:
    """sigma 0.25, eps 0.125, n_mc 256, 600 pooled points, 50 splits, 20-step PGD: RSCP+, PTT, RCT all cover."""
    from certkit_app.demos.rscp import evaluate_rscp
    from certkit_app.digits import digits_base_model, rct_digits_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = {r.method: r for r in evaluate_rscp(digits_base_model(0.25), eps=EPS, n_mc=N_MC, n_splits=50,
                                                    rct_model=rct_digits_model(0.25, EPS, ALPHA))}
    tol = _tol(300)
    for m in ("RSCP+", "RSCP+ PTT", "RSCP+ RCT"):
        assert rows[m].coverage >= 1 - ALPHA - tol, m
    assert rows["vanilla smoothed CP"].coverage < rows["RSCP+"].coverage
    assert rows["RSCP+ RCT"].size < rows["RSCP+"].size


# ----------------------------------------------------------------------------------------- attack


def test_pgd_stays_in_the_ball_and_raises_the_smoothed_score() -> None:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_base_model
    from conformal.attacks import smoothed_score_pgd
    from smoothing.scores import smoothed_scores

    model = digits_base_model(0.25)
    d = load_digits_split("test")
    x, y = d.images[:40], d.labels[:40]
    fn = smoothed_score_fn("thr")
    state = torch.random.get_rng_state()
    adv = smoothed_score_pgd(model, x, y, fn, sigma=SIGMA, eps=0.25, steps=8, n_noise=8,
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    norms = (adv - x).flatten(1).norm(dim=1)
    assert bool((norms <= 0.25 + 1e-5).all()) and float(norms.mean()) > 0.2
    rows = torch.arange(40)
    clean = smoothed_scores(model, x, fn, sigma=SIGMA, n_mc=128, generator=torch.Generator().manual_seed(1))
    attacked = smoothed_scores(model, adv, fn, sigma=SIGMA, n_mc=128, generator=torch.Generator().manual_seed(1))
    gain = attacked.mean[rows, y] - clean.mean[rows, y]
    assert float(gain.mean()) > 0.02 and float((gain > 0).double().mean()) > 0.8
    # Lipschitz bound of the smoothed score: Phi^-1 moves by at most eps/sigma (+ Monte Carlo error)
    moved = torch.special.ndtri(attacked.mean[rows, y].clamp(1e-3, 1 - 1e-3)) - torch.special.ndtri(
        clean.mean[rows, y].clamp(1e-3, 1 - 1e-3))
    assert float(moved.mean()) <= 0.25 / SIGMA
    # clip keeps the pixel range; eps = 0 is the identity
    clipped = smoothed_score_pgd(model, x, y, fn, sigma=SIGMA, eps=0.5, steps=3, n_noise=4, clip=(0.0, 1.0),
                                 generator=torch.Generator().manual_seed(0))
    assert float(clipped.min()) >= 0 and float(clipped.max()) <= 1
    assert torch.equal(smoothed_score_pgd(model, x, y, fn, sigma=SIGMA, eps=0.0), x)


def test_pgd_bad_arguments() -> None:
    from conformal.attacks import smoothed_score_pgd

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    fn = smoothed_score_fn("thr")
    with pytest.raises(ValueError, match="eps"):
        smoothed_score_pgd(model, x, y, fn, sigma=SIGMA, eps=-0.1)
    with pytest.raises(ValueError, match="sigma"):
        smoothed_score_pgd(model, x, y, fn, sigma=0.0, eps=0.1)
    with pytest.raises(ValueError, match="labels"):
        smoothed_score_pgd(model, x, y[:1], fn, sigma=SIGMA, eps=0.1)
    with pytest.raises(ValueError, match="steps"):
        smoothed_score_pgd(model, x, y, fn, sigma=SIGMA, eps=0.1, steps=0)


def test_predict_refuses_another_number_of_classes() -> None:
    # audit-inputs: smoothed scores of a 5-class model were accepted after calibrating on 3 classes
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(20, 3, generator=g, dtype=torch.float64)
    cal = SmoothedScores(mean, torch.zeros_like(mean), 8, 0.25)
    r = RSCP(alpha=0.2, sigma=0.25, eps=0.1, n_mc=8).calibrate(cal, torch.randint(0, 3, (20,), generator=g))
    test = torch.rand(4, 5, generator=g, dtype=torch.float64)
    with pytest.raises(ValueError, match="`scores` to have 3 columns"):
        r.predict(SmoothedScores(test, torch.zeros_like(test), 8, 0.25))
