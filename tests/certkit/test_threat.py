"""The one norm parser and the LpBall threat model: every spelling, bad values with clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import certify
from certify import attacks
from certkit.threat import NORMS, LpBall, parse_norm
from conformal import VRCP
from conformal.certified_sets import check_threat_model

SPELLINGS = {
    math.inf: [math.inf, float("inf"), np.inf, np.float64(np.inf), "inf", "INF", "linf", "Linf", "l-inf", "L-inf",
               "l_inf", "infinity", " inf "],
    2.0: [2, 2.0, np.int64(2), np.float32(2.0), "2", "l2", "L2", "l-2", "2.0"],
    1.0: [1, 1.0, np.int64(1), "1", "l1", "L1", "l-1"],
}


@pytest.mark.parametrize(("expected", "spelling"), [(p, s) for p, ss in SPELLINGS.items() for s in ss])
def test_every_spelling_parses(expected: float, spelling: object) -> None:
    assert parse_norm(spelling) == expected
    assert LpBall(spelling, 0.1).norm == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [3, 0, -2, 0.5, math.nan, "l3", "linfinity2", "", "max", "euclid"])
def test_unknown_norms_are_value_errors_naming_the_argument(bad: object) -> None:
    with pytest.raises(ValueError, match=r"`norm`.*'l2'"):
        parse_norm(bad)
    with pytest.raises(ValueError, match="`norm`"):
        LpBall(bad, 0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, True, [2], torch.tensor(2.0), {"p": 2}])
def test_non_numbers_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="`norm`"):
        parse_norm(bad)


def test_unsupported_norm_says_which_are_supported_and_why() -> None:
    with pytest.raises(ValueError, match=r"`p` to be 2 or float\('inf'\) \(only these\), but got 'l1'"):
        parse_norm("l1", name="p", supported=(2.0, math.inf), why="only these")
    assert NORMS == (1.0, 2.0, math.inf)


def test_every_public_entry_point_uses_the_one_parser() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x, y = torch.rand(2, 4), torch.tensor([0, 1])
    for spelling in ("L-inf", "l_inf", "L2", np.float64(2.0)):
        certify.bounds(model, x, 0.1, norm=spelling)
        attacks.pgd_attack(model, x, y, 0.1, norm=spelling, steps=1)
        VRCP(eps=0.1, norm=spelling)
        check_threat_model("crown", "vrcp-i", spelling)
    for entry in (lambda: certify.bounds(model, x, 0.1, norm="l1"),
                  lambda: attacks.pgd_attack(model, x, y, 0.1, norm=1, steps=1),
                  lambda: VRCP(eps=0.1, norm="L1"),
                  lambda: check_threat_model("crown", "vrcp-i", "l1")):
        with pytest.raises(ValueError, match=r"`norm` to be 2 or float\('inf'\)"):
            entry()


def test_lp_ball_validates_and_is_frozen() -> None:
    ball = LpBall("linf", 0.03, domain=[0, 1])  # type: ignore[arg-type]
    assert (ball.norm, ball.eps, ball.domain) == (math.inf, 0.03, (0.0, 1.0))
    assert ball == LpBall(math.inf, 0.03, (0.0, 1.0)) and hash(ball) == hash(LpBall(math.inf, 0.03, (0, 1)))
    with pytest.raises(AttributeError):
        ball.eps = 0.1  # type: ignore[misc]
    assert ball.with_eps(0.5) == LpBall(math.inf, 0.5, (0, 1))
    assert "L-inf" in ball.describe() and "[0, 1]" in ball.describe()
    assert LpBall(2, 0) == LpBall("l2", 0.0)
    for bad_eps in (-0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="`eps`"):
            LpBall(2, bad_eps)
    for bad_eps in (None, "0.1", True):
        with pytest.raises(TypeError, match="`eps`"):
            LpBall(2, bad_eps)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`domain`.*low < high"):
        LpBall(2, 0.1, (1, 0))
    with pytest.raises(ValueError, match=r"`domain`.*NaN"):
        LpBall(2, 0.1, (math.nan, 1))
    for bad_domain in ((0, 1, 2), 1.0, ("a", 1), (False, 1)):
        with pytest.raises(TypeError, match="`domain`"):
            LpBall(2, 0.1, bad_domain)  # type: ignore[arg-type]


def test_contains() -> None:
    x = torch.zeros(3, 2)
    xp = torch.tensor([[0.1, 0.1], [0.2, 0.0], [0.1, -0.1]])
    assert LpBall("inf", 0.1).contains(xp, x).tolist() == [True, False, True]
    assert LpBall(2, 0.15).contains(xp, x).tolist() == [True, False, True]
    assert LpBall(1, 0.15).contains(xp, x).tolist() == [False, False, False]
    assert LpBall("inf", 0.1, (0, 1)).contains(xp, x).tolist() == [True, False, False]


def test_functions_take_a_threat_model_or_the_plain_arguments() -> None:
    from conformal.attacks import pgd_attack as pgd_log_p
    from conformal.score_bounds import certified_score_bounds

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 4, generator=g), torch.tensor([0, 1, 2, 0, 1])
    ball = LpBall("l2", 0.2, (0, 1))
    a, _ = attacks.pgd_attack(model, x, y, threat=ball, steps=5)
    b, _ = attacks.pgd_attack(model, x, y, 0.2, norm=2, domain=(0, 1), steps=5)
    assert torch.equal(a, b) and bool(ball.contains(a, x).all())
    assert torch.equal(attacks.pgd_margins(model, x, y, threat=ball, steps=3),
                       attacks.pgd_margins(model, x, y, 0.2, norm="L2", domain=(0, 1), steps=3))
    assert torch.equal(pgd_log_p(model, x, y, threat=ball, steps=3), pgd_log_p(model, x, y, 0.2, norm=2, steps=3))
    s1 = certified_score_bounds(model, x, threat=ball, score="aps")
    s2 = certified_score_bounds(model, x, 0.2, norm=2, domain=(0, 1), score="aps")
    s3 = certified_score_bounds(model, x, threat=ball, score="aps", certifier=certify.BoundCertifier())
    assert torch.equal(s1.lower, s2.lower) and torch.equal(s1.upper, s3.upper)
    with pytest.raises(ValueError, match="`threat` or `eps`"):
        attacks.pgd_attack(model, x, y, 0.2, threat=ball)
    with pytest.raises(ValueError, match="`threat` or `norm`"):
        certified_score_bounds(model, x, norm=2, threat=ball)
    with pytest.raises(ValueError, match=r"`eps`.*or `threat`"):
        attacks.pgd_attack(model, x, y)
    with pytest.raises(TypeError, match="`threat`"):
        attacks.pgd_attack(model, x, y, threat=(2, 0.1))  # type: ignore[arg-type]
