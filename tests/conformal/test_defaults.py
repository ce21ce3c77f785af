"""Defaults that give useful sets on confident models: randomised APS/RAPS, TrivialSetWarning, from_logits."""

import warnings

import numpy as np
import pytest
import torch

from certkit.warnings import TrivialSetWarning
from conformal import ClassConditional, PACPredictionSet, SplitConformal, metrics


def _confident(n: int, k: int = 10, seed: int = 0, acc: float = 0.97) -> tuple[torch.Tensor, torch.Tensor]:
    """A confident model: top probability 0.9999 to 1.0 in float32 (often exactly 1.0), right with probability ``acc``."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g)
    top = torch.randint(0, k, (n,), generator=g)
    logits[torch.arange(n), top] += 10.0 + 15.0 * torch.rand(n, generator=g)
    probs = torch.softmax(logits, 1)
    wrong = torch.rand(n, generator=g) > acc
    labels = torch.where(wrong, (top + 1 + torch.randint(0, k - 1, (n,), generator=g)) % k, top)
    return probs, labels


def test_non_randomised_aps_is_trivial_and_warns() -> None:
    probs, labels = _confident(2000)
    with pytest.warns(TrivialSetWarning, match="randomized=True"):
        cp = SplitConformal(alpha=0.1, randomized=False).calibrate(probs[:1000], labels[:1000])
    assert float(metrics.average_size(cp.predict(probs[1000:]))) > 5


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_randomised_default_gives_small_sets_without_warning(score: str) -> None:
    probs, labels = _confident(4000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrivialSetWarning)
        cp = SplitConformal(score=score, alpha=0.1).calibrate(probs[:2000], labels[:2000])
    assert cp.generator_ is not None
    sets = cp.predict(probs[2000:])
    assert float(metrics.average_size(sets)) < 1.5
    assert float(metrics.coverage(sets, labels[2000:])) > 0.85


def test_seeded_default_is_reproducible_and_generator_is_used() -> None:
    probs, labels = _confident(1000, seed=1)
    a = SplitConformal().calibrate(probs[:500], labels[:500]).predict(probs[500:]).mask
    b = SplitConformal().calibrate(probs[:500], labels[:500]).predict(probs[500:]).mask
    assert torch.equal(a, b)
    cp = SplitConformal().calibrate(probs[:500], labels[:500], generator=torch.Generator().manual_seed(3))
    c = cp.predict(probs[500:], generator=torch.Generator().manual_seed(4)).mask
    d = cp.predict(probs[500:], generator=torch.Generator().manual_seed(4)).mask
    assert torch.equal(c, d)
    # the default stream continues: two predict calls draw different u's
    cp2 = SplitConformal(score="raps", score_kwargs={"k_reg": 0, "lam": 0.5}).calibrate(probs[:500], labels[:500])
    s1, s2 = cp2.scores(probs[500:], labels[500:]), cp2.scores(probs[500:], labels[500:])
    assert not torch.equal(s1, s2)


def test_randomized_argument_errors() -> None:
    with pytest.raises(ValueError, match="randomized"):
        SplitConformal(score="thr", randomized=True)
    with pytest.raises(ValueError, match="randomized"):
        SplitConformal(score="aps", randomized=True, score_kwargs={"u": 0.5})
    with pytest.raises(TypeError, match="randomized"):
        SplitConformal(randomized="yes")  # type: ignore[arg-type]
    assert not SplitConformal(score="aps", score_kwargs={"u": 1.0})._randomize
    assert not SplitConformal(score="thr")._randomize
    with pytest.raises(TypeError, match="generator"):
        SplitConformal().calibrate(*_confident(50), generator=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [ClassConditional, PACPredictionSet])
def test_other_calibrators_randomised_by_default(cls) -> None:  # type: ignore[no-untyped-def]
    probs, labels = _confident(4000, seed=2)
    cp = cls().calibrate(probs[:3000], labels[:3000])
    assert cp._randomize
    assert float(metrics.average_size(cp.predict(probs[3000:]))) < 5


def test_from_logits_and_hint() -> None:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(300, 5, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    a = SplitConformal(score="thr").calibrate(logits[:200], labels[:200], from_logits=True)
    b = SplitConformal(score="thr").calibrate(torch.softmax(logits[:200], 1), labels[:200])
    assert a.threshold_ == b.threshold_
    assert torch.equal(a.predict(logits[200:], from_logits=True).mask, b.predict(torch.softmax(logits[200:], 1)).mask)
    np_a = SplitConformal(score="thr").calibrate(logits[:200].double().numpy(), labels[:200].numpy(), from_logits=True)
    assert np_a.threshold_ == pytest.approx(float(b.threshold_), abs=1e-6)
    with pytest.raises(ValueError, match="from_logits=True"):
        SplitConformal(score="thr").calibrate(logits[:200], labels[:200])
    with pytest.raises(ValueError, match="from_logits=True"):
        a.predict(logits[200:])
    with pytest.raises(ValueError, match="logits"):
        SplitConformal(score="thr").calibrate(logits[0], labels[:1], from_logits=True)


def test_every_set_full_warns_at_predict() -> None:
    probs = torch.full((20, 4), 0.25)
    cp = SplitConformal(score="thr", alpha=0.2).calibrate(probs, torch.zeros(20, dtype=torch.long))
    with pytest.warns(TrivialSetWarning, match="every prediction set"):
        cp.predict(probs)


@pytest.mark.slow
def test_randomised_aps_coverage_over_splits() -> None:
    """Randomised APS (the default): mean coverage over 500 splits within binomial tolerance of 1 - alpha."""
    probs, labels = _confident(3000, seed=5, acc=0.9)
    g = torch.Generator().manual_seed(0)
    cov = []
    for _ in range(500):
        perm = torch.randperm(3000, generator=g)
        cal, test = perm[:1000], perm[1000:]
        cp = SplitConformal(alpha=0.1).calibrate(probs[cal], labels[cal], generator=g)
        cov.append(float(metrics.coverage(cp.predict(probs[test], generator=g), labels[test])))
    mean = float(np.mean(cov))
    # E coverage in [1 - alpha, 1 - alpha + 1/(n+1)]; the mean of 500 splits has sd <= ~0.0015
    assert 0.9 - 0.006 <= mean <= 0.9 + 1 / 1001 + 0.006


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_dual_threshold_aps_outside_mass_ranks_misses(score: str) -> None:
    """APS/RAPS sets: top_prob and set_size rank the misses backwards (AUROC < 0.2 with u = 0: the misses are the
    confident inputs whose small set left the label out); the label-free outside mass 1 - sum_{y in C} p_y
    ranks them (AUROC > 0.7, randomised or not). Measured u = 0: APS 0.078 / 0.049 / 0.963, RAPS 0.129 / 0.106 /
    0.951; randomised outside mass: APS 0.757, RAPS 0.749."""
    from conformal import DualThreshold

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6000, 10, generator=g) * (1 + 6 * torch.rand(6000, 1, generator=g))
    probs = torch.softmax(logits, 1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    a, b, c = slice(0, 2000), slice(2000, 4000), slice(4000, 6000)

    def report(stat: str, randomized: bool | None):  # type: ignore[no-untyped-def]
        dt = DualThreshold(score=score, statistic=stat, randomized=randomized)  # type: ignore[arg-type]
        return dt.calibrate(probs[a], labels[a], probs[b], labels[b]).evaluate(probs[c], labels[c])

    assert report("top_prob", False).auroc < 0.2
    assert report("set_size", False).auroc < 0.2
    assert report("outside_mass", False).auroc > 0.9
    assert report("outside_mass", None).auroc > 0.7
