import warnings

import pytest
import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import rct_digits_model
from conformal import conformal_quantile
from conformal.rct import (
    RCTConfig,
    rct_loss,
    soft_quantile,
    soft_rank,
    soft_set_size,
    train_rct,
)
from conformal.rscp import RSCPPlus, smoothed_score_fn
from smoothing.scores import smoothed_scores


def test_soft_rank_tends_to_ordinal_ranks() -> None:
    x = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(soft_rank(x, 1e-4), torch.tensor([2.0, 1.0, 4.0, 3.0], dtype=torch.float64))
    # ties share the average rank
    torch.testing.assert_close(soft_rank(torch.tensor([1.0, 1.0]), 1e-3), torch.tensor([1.5, 1.5]))


@pytest.mark.parametrize("n", [19, 99, 250])
def test_soft_quantile_tends_to_the_conformal_order_statistic(n: int) -> None:
    s = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    hard = conformal_quantile(s, 0.1)
    soft = soft_quantile(s, 0.9, temperature=1e-5, bandwidth=0.05)
    assert float(soft) == pytest.approx(hard, abs=1e-9)
    # smooth and differentiable at the training temperature
    s.requires_grad_(True)
    (g,) = torch.autograd.grad(soft_quantile(s, 0.9, temperature=0.1), s)
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0


def test_soft_set_size_tends_to_set_size() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.9], [0.6, 0.7, 0.8]], dtype=torch.float64)
    torch.testing.assert_close(soft_set_size(scores, 0.55, 1e-6), torch.tensor([2.0, 0.0], dtype=torch.float64))


def test_loss_is_finite_and_penalises_large_sets() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (40,), generator=g)
    sharp = torch.nn.functional.one_hot(labels, 10).double()[:, None, :].expand(40, 4, 10) * 12
    flat = torch.randn(40, 4, 10, generator=g, dtype=torch.float64) * 0.1
    kw = {"alpha": 0.1, "sigma": 0.25, "eps": 0.125, "temperature": 0.1, "size_weight": 1.0}
    assert float(rct_loss(sharp, labels, **kw)) < float(rct_loss(flat, labels, **kw))


def test_train_rct_changes_only_the_head_and_copies() -> None:
    from certkit_app.digits import digits_base_model

    base = digits_base_model(0.25)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    d = load_digits_split("train")
    m = train_rct(base, d.images[:200], d.labels[:200], RCTConfig(epochs=3, batch_size=100, n_bank=8))
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k])  # input model untouched
    new = m.state_dict()
    last = [k for k in new if k.startswith(str(len(m) - 1) + ".")]
    assert last and all(not torch.equal(new[k], before[k]) for k in last)
    assert all(torch.equal(new[k], before[k]) for k in new if k not in last)
    assert not m.training


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="alpha"):
        RCTConfig(alpha=0.0)
    with pytest.raises(ValueError, match="n_bank"):
        RCTConfig(n_noise=8, n_bank=4)
    with pytest.raises(ValueError, match="eps"):
        RCTConfig(eps=-1.0)
    with pytest.raises(TypeError, match="Sequential"):
        train_rct(torch.nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))  # type: ignore[arg-type]


def test_rct_shrinks_rscp_plus_sets_on_digits() -> None:
    """RSCP+ (sigma 0.25, eps 0.125, n_mc 128) with the RCT head gives smaller sets than the base model, same coverage."""
    from certkit_app.digits import digits_base_model

    cal, test = load_digits_split("calibration"), load_digits_split("test")
    fn = smoothed_score_fn("thr")
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in (("base", digits_base_model(0.25)), ("rct", rct_digits_model(0.25, 0.125, 0.1))):
            g = torch.Generator().manual_seed(0)
            sc = smoothed_scores(model, cal.images, fn, sigma=0.25, n_mc=128, generator=g)
            st = smoothed_scores(model, test.images, fn, sigma=0.25, n_mc=128, generator=g)
            sets = RSCPPlus(alpha=0.1, sigma=0.25, eps=0.125, n_mc=128).calibrate(sc, cal.labels).predict(st)
            res[name] = (float(sets.sizes.double().mean()), float(sets.contains(test.labels).double().mean()))
    assert res["rct"][0] < res["base"][0] - 0.05, res
    assert res["rct"][1] >= 0.9, res
