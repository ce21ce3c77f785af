"""COLEP: exact circuit marginals, sound interval propagation, certified coverage under attack."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from certkit.certifier import SmoothedScores
from conformal.colep import (
    COLEP,
    Rule,
    RuleCircuits,
    Sensors,
    circuit_bounds,
    circuit_log_partition,
    circuit_marginals,
    finite_sample_coverage,
    fit_rule_weights,
    sensor_bounds,
)

K, C = 4, 2
RULES = [Rule(0, 0), Rule(1, 0, negated=True), Rule(2, 0), Rule(1, 1), Rule(3, 1, negated=True), Rule(0, 1)]


def _brute(p: torch.Tensor, q: torch.Tensor, circ: RuleCircuits, w: torch.Tensor, c: int) -> tuple[float, torch.Tensor]:
    """Partition function and class marginals of circuit c by enumerating all 2^(K+1) assignments."""
    z, marg = 0.0, torch.zeros(K, dtype=torch.float64)
    for mu in itertools.product([0, 1], repeat=K):
        for nu in (0, 1):
            o = float(q[c]) if nu else 1 - float(q[c])
            f = 0.0
            for k in range(K):
                o *= float(p[k]) if mu[k] else 1 - float(p[k])
                if circ.mask[c, k] and (not mu[k] or nu == int(circ.signs[c, k])):
                    f += float(w[c, k])
            val = o * math.exp(f)
            z += val
            marg += val * torch.tensor(mu, dtype=torch.float64)
    return z, marg / z


def test_marginals_and_partition_equal_brute_force_enumeration() -> None:
    g = torch.Generator().manual_seed(0)
    circ = RuleCircuits.from_rules(RULES, K, C)
    w = 3 * torch.rand(C, K, generator=g, dtype=torch.float64)
    p, q = torch.rand(6, K, generator=g, dtype=torch.float64), torch.rand(6, C, generator=g, dtype=torch.float64)
    mix = torch.tensor([0.3, 0.7], dtype=torch.float64)
    pi, log_z = circuit_marginals(p, q, circ, w, mix), circuit_log_partition(p, q, circ, w)
    for n in range(6):
        expected = torch.zeros(K, dtype=torch.float64)
        for c in range(C):
            z, m = _brute(p[n], q[n], circ, w, c)
            assert math.isclose(float(log_z[n, c]), math.log(z), rel_tol=1e-10)
            expected += mix[c] * m
        torch.testing.assert_close(pi[n], expected)


def test_zero_weights_leave_the_main_classifier_unchanged() -> None:
    circ = RuleCircuits.from_rules(RULES, K, C)
    p, q = torch.rand(3, K, dtype=torch.float64), torch.rand(3, C, dtype=torch.float64)
    torch.testing.assert_close(circuit_marginals(p, q, circ, torch.zeros(C, K, dtype=torch.float64)), p)


def test_interval_propagation_is_sound_and_attained() -> None:
    g = torch.Generator().manual_seed(1)
    circ = RuleCircuits.from_rules(RULES, K, C)
    w = 4 * torch.rand(C, K, generator=g, dtype=torch.float64)
    p, q = torch.rand(5, K, generator=g, dtype=torch.float64), torch.rand(5, C, generator=g, dtype=torch.float64)
    pl, pu = p * 0.6, p * 0.6 + 0.4
    ql, qu = q * 0.5, q * 0.5 + 0.5
    for mix in (torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.4, 0.6], dtype=torch.float64)):
        lo, hi = circuit_bounds(pl, pu, ql, qu, circ, w, mix)
        for _ in range(200):  # sampled sensor values inside the box
            pp = pl + torch.rand(pl.shape, generator=g, dtype=torch.float64) * (pu - pl)
            qq = ql + torch.rand(ql.shape, generator=g, dtype=torch.float64) * (qu - ql)
            pi = circuit_marginals(pp, qq, circ, w, mix)
            assert bool((pi <= hi + 1e-12).all()) and bool((pi >= lo - 1e-12).all())
    # a single circuit: the bounds are attained at a vertex of the box (exact)
    lo, hi = circuit_bounds(pl, pu, ql, qu, circ, w, torch.tensor([1.0, 0.0], dtype=torch.float64))
    best_lo, best_hi = torch.full_like(lo, 2.0), torch.full_like(hi, -1.0)
    for v in itertools.product([False, True], repeat=K + C):
        vt = torch.tensor(v)
        pi = circuit_marginals(torch.where(vt[:K], pu, pl), torch.where(vt[K:], qu, ql), circ, w,
                               torch.tensor([1.0, 0.0], dtype=torch.float64))
        best_lo, best_hi = torch.minimum(best_lo, pi), torch.maximum(best_hi, pi)
    torch.testing.assert_close(lo, best_lo)
    torch.testing.assert_close(hi, best_hi)


def test_sensor_bounds_contain_the_lipschitz_region() -> None:
    mean = torch.tensor([[0.2, 0.9, 0.5]], dtype=torch.float64)
    s = SmoothedScores(mean, torch.zeros_like(mean), 10_000, 0.25)
    lo0, hi0 = sensor_bounds(s, eps=0.0, beta=0.01)
    lo, hi = sensor_bounds(s, eps=0.1, beta=0.01)
    assert bool((lo <= lo0).all() and (lo0 <= mean).all() and (mean <= hi0).all() and (hi0 <= hi).all())
    # Phi^-1 of the bound moves by exactly eps / sigma beyond the Monte Carlo box
    torch.testing.assert_close(torch.special.ndtri(hi) - torch.special.ndtri(hi0), torch.full_like(hi, 0.4))


def test_rule_weight_learning_is_deterministic_and_helps() -> None:
    g = torch.Generator().manual_seed(2)
    circ = RuleCircuits.from_rules([Rule(0, 0), Rule(1, 0, negated=True), Rule(2, 0)], 3, 1)
    y = torch.randint(0, 3, (300,), generator=g)
    p = torch.softmax(torch.randn(300, 3, generator=g, dtype=torch.float64) + 1.0 * torch.nn.functional.one_hot(y, 3), 1)
    q = ((y != 1).double() * 0.9 + 0.05)[:, None]  # an accurate attribute sensor
    probs = torch.cat([p, q], 1)
    w1, m1 = fit_rule_weights(probs, y, circ, epochs=100)
    w2, _ = fit_rule_weights(probs, y, circ, epochs=100)
    torch.testing.assert_close(w1, w2)
    nll = lambda pi: float(torch.nn.functional.binary_cross_entropy(pi, torch.nn.functional.one_hot(y, 3).double()))  # noqa: E731
    assert nll(circuit_marginals(p, q, circ, w1, m1)) < nll(p)


def test_finite_sample_bound() -> None:
    assert finite_sample_coverage(1000, 0.1, 0.05) < 0.9
    assert finite_sample_coverage(1000, 0.1, 0.05) > 0.88
    assert finite_sample_coverage(100_000, 0.1, 0.05) > finite_sample_coverage(1000, 0.1, 0.05)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="beta"):
        COLEP(rules=RULES, num_classes=K, num_attributes=C, alpha=0.1, beta=0.06)
    with pytest.raises(ValueError, match="rule indices"):
        RuleCircuits.from_rules([Rule(5, 0)], K, C)
    with pytest.raises(ValueError, match="contradictory"):
        RuleCircuits.from_rules([Rule(0, 0), Rule(0, 0, negated=True)], K, C)
    with pytest.raises(ValueError, match="norm"):
        from certkit.threat import LpBall

        COLEP(rules=RULES, num_classes=K, num_attributes=C, threat=LpBall(math.inf, 0.1))
    circ = RuleCircuits.from_rules(RULES, K, C)
    with pytest.raises(ValueError, match=">= 0"):
        p = torch.rand(1, K, dtype=torch.float64)
        q = torch.rand(1, C, dtype=torch.float64)
        circuit_bounds(p, p, q, q, circ, -torch.ones(C, K, dtype=torch.float64))
    with pytest.raises(TypeError, match="Sensors"):
        COLEP(rules=RULES, num_classes=K, num_attributes=C).score_model(torch.nn.Linear(2, 2), torch.zeros(1, 2))  # type: ignore[arg-type]


def test_sensors_forward_and_protocol_on_a_toy_problem() -> None:
    torch.manual_seed(0)
    main = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, K)).eval()
    sensors = Sensors(main, [torch.nn.Linear(4, 1).eval(), torch.nn.Linear(4, 2).eval()]).eval()
    x = torch.rand(40, 4)
    out = sensors(x)
    assert out.shape == (40, K + C) and bool((out >= 0).all() and (out <= 1).all())
    col = COLEP(rules=RULES, num_classes=K, num_attributes=C, sigma=0.5, n_mc=32, eps=0.1)
    y = torch.randint(0, K, (40,), generator=torch.Generator().manual_seed(0))
    col.calibrate(x[:20], y[:20], model=sensors)
    # worst-box scores at level alpha - 2 beta >= plain scores at alpha
    assert col.threshold_ is not None and col.threshold_ >= col.standard_threshold_
    sets = col.predict(x[20:], model=sensors)
    assert sets.mask.shape == (20, K)
    # the robust set contains the standard set (upper bound >= estimate, robust threshold >= standard)
    scores = col.score_model(sensors, x[20:])
    assert bool((col.predict_standard(scores).mask <= col.predict(scores).mask).all())


@pytest.fixture(scope="module")
def digits_rows_corrupted():  # type: ignore[no-untyped-def]
    from certkit_app.demos.colep import evaluate_colep

    return evaluate_colep(eps=(0.125,), n_mc=128, n_pool=120, n_fit=150, n_splits=5, attack_steps=3, attack_noise=4,
                          corrupt=0)


def test_corrupted_sensor_keeps_the_certified_bound(digits_rows_corrupted) -> None:  # type: ignore[no-untyped-def]
    # the "even" sensor answers the opposite: the guarantee does not depend on the sensors' quality
    colep = next(r for r in digits_rows_corrupted if r.method == "COLEP")
    n_test = 60
    assert colep.coverage >= 0.9 - 3 * math.sqrt(0.09 / (5 * n_test))
    assert colep.certified_violations == 0


@pytest.mark.slow
def test_certified_coverage_holds_under_attack_over_50_splits() -> None:
    from certkit_app.demos.colep import evaluate_colep

    rows = evaluate_colep(eps=(0.125, 0.25), n_mc=256, n_pool=400, n_splits=50, attack_steps=10, attack_noise=8)
    n_test = 200
    tol = 3 * math.sqrt(0.1 * 0.9 / n_test) / math.sqrt(50)  # 3 standard errors of the mean over splits
    for r in rows:
        assert r.coverage >= 0.9 - tol, r
        # the standard set's certificates survive the attack (each fails w.p. <= 2 beta)
        assert r.certified_violations <= 1, r


def test_finite_sample_bound_holds_with_probability_one_minus_delta() -> None:
    # the coverage of the k-th smallest of n uniform calibration scores is exactly U_(k) ~ Beta(k, n + 1 - k)
    from conformal.functional import conformal_rank

    n, alpha, delta, trials = 60, 0.1, 0.1, 4000
    k = conformal_rank(n, alpha)
    u = torch.rand(trials, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    coverage = u.sort(dim=1).values[:, k - 1]
    below = float((coverage < finite_sample_coverage(n, alpha, delta)).double().mean())
    assert below <= delta + 3 * math.sqrt(delta * (1 - delta) / trials)
    assert below >= delta - 3 * math.sqrt(delta * (1 - delta) / trials)  # and it is not vacuous


class _Halfspace(torch.nn.Module):
    """A binary sensor that fires iff w.x > 0 (two huge logits): its smoothed probability is Phi(w.x / sigma)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w / w.norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(z), 1e4 * z], dim=1)


def test_sensor_bounds_contain_the_exact_smoothed_probability_in_the_ball() -> None:
    from smoothing.scores import smoothed_scores

    sigma, eps, beta, n_mc = 0.5, 0.3, 0.05, 200
    w = torch.tensor([1.0, -2.0, 0.5])
    sensor = _Halfspace(w).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(300, 3, generator=g) * 0.5
    s = smoothed_scores(sensor, x, lambda p: p[:, 1:], sigma=sigma, n_mc=n_mc, generator=g)
    lo, hi = sensor_bounds(s, eps=eps, beta=beta)
    margin = (x @ (w / w.norm())).double()
    # the extreme points of the ball move w.x by -+ eps: exact smoothed probabilities there
    p_min = torch.special.ndtr((margin - eps) / sigma)
    p_max = torch.special.ndtr((margin + eps) / sigma)
    fails = ((lo[:, 0] > p_min + 1e-12) | (hi[:, 0] < p_max - 1e-12)).double().mean()
    assert float(fails) <= beta + 3 * math.sqrt(beta * (1 - beta) / 300)
    # and the bounds are not vacuous: the box around an undecided input is much narrower than [0, 1]
    assert float((hi - lo).median()) < 0.8


def test_constructor_refuses_a_mixture_off_the_simplex_and_nan_weights() -> None:
    # audit-inputs: a string, negative or wrong-length mixture and NaN rule weights were accepted silently
    from conformal.colep import COLEP

    for bad, err in (("u", TypeError), (torch.tensor([2.0, -1.0]), ValueError), (torch.ones(3) / 3, ValueError)):
        with pytest.raises(err, match="`mixture`"):
            COLEP(rules=RULES, num_classes=K, num_attributes=C, sigma=0.25, mixture=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`weights`"):
        COLEP(rules=RULES, num_classes=K, num_attributes=C, sigma=0.25, weights=torch.full((C, K), math.nan))
    COLEP(rules=RULES, num_classes=K, num_attributes=C, sigma=0.25, mixture=torch.tensor([0.25, 0.75]))
