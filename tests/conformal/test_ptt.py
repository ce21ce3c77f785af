import bisect

import numpy as np
import pytest
import torch

from certkit.errors import NotCalibratedError
from conformal.ptt import PTT, holdout_scores, ptt_rank, ptt_sigmoid, ptt_transform
from conformal.rscp import smoothed_score_fn
from smoothing.scores import smoothed_scores

P = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)


def test_rank_of_thr_row_exact() -> None:
    """Holdout {.1, ..., 1.0}: THR scores [.5, .7, .85, .95] of row 1 rank [.5, .6, .8, .9].

    The holdout is ``np.linspace(.1, 1, 10)``, whose seventh entry is 0.7000000000000001 > 1 - 0.3 = 0.7,
    so the score 0.7 ranks 6/10. With the exact decimals k/10 it ties the holdout's 0.7 and, ranks
    counting h <= s as in the reference's ``bisect``, ranks 7/10.
    """
    thr = smoothed_score_fn("thr")(P)[0]
    holdout = torch.from_numpy(np.linspace(0.1, 1.0, 10))
    ptt = PTT(alpha=0.1, temperature=400.0).fit(holdout)
    torch.testing.assert_close(ptt.rank(thr), torch.tensor([0.5, 0.6, 0.8, 0.9], dtype=torch.float64))
    exact = torch.arange(1, 11, dtype=torch.float64) / 10
    torch.testing.assert_close(ptt_rank(thr, exact), torch.tensor([0.5, 0.7, 0.8, 0.9], dtype=torch.float64))
    # the sigmoid at b = 0.9, T = 400
    out = ptt(thr)
    expected = 1 / (1 + torch.exp(-400 * (torch.tensor([0.5, 0.6, 0.8, 0.9], dtype=torch.float64) - 0.9)))
    torch.testing.assert_close(out, expected)
    assert float(out[3]) == 0.5 and ptt.b == pytest.approx(0.9)


def test_matches_bisect_reference_loop() -> None:
    g = torch.Generator().manual_seed(0)
    holdout = torch.rand(500, generator=g, dtype=torch.float64)
    holdout[:50] = holdout[50:100]  # ties in the holdout
    scores = torch.cat([torch.rand(40, 10, generator=g, dtype=torch.float64), holdout[:10].view(1, 10)])
    ref_sorted = sorted(holdout.tolist())
    ref = torch.tensor([[bisect.bisect(ref_sorted, v) / 500 for v in row] for row in scores.tolist()],
                       dtype=torch.float64)
    torch.testing.assert_close(ptt_rank(scores, torch.sort(holdout).values), ref, rtol=0, atol=0)
    torch.testing.assert_close(ptt_transform(scores, torch.sort(holdout).values, b=0.9, temperature=400.0),
                               ptt_sigmoid(ref, b=0.9, temperature=400.0))


def test_transform_is_monotone_and_in_unit_interval() -> None:
    ptt = PTT(alpha=0.2).fit(torch.rand(100, generator=torch.Generator().manual_seed(1)))
    s = torch.linspace(-0.5, 1.5, 401)
    out = ptt(s)
    assert bool((out[1:] >= out[:-1]).all()) and bool((out >= 0).all()) and bool((out <= 1).all())
    assert ptt.b == pytest.approx(0.8)


def test_as_smoothing_transform_applies_before_averaging() -> None:
    """S_hat with PTT is the mean of PTT(noisy score), not PTT of the mean."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    ptt = PTT().fit(torch.rand(50, generator=torch.Generator().manual_seed(2)))
    fn = smoothed_score_fn("thr")
    with_ptt = smoothed_scores(model, x, fn, sigma=0.5, n_mc=64, generator=torch.Generator().manual_seed(3),
                               transform=ptt.as_transform())
    plain = smoothed_scores(model, x, fn, sigma=0.5, n_mc=64, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(with_ptt.mean, ptt(plain.mean))
    # a manual average over the same noise reproduces it: PTT(1 - p) sample by sample
    recorded: list[torch.Tensor] = []
    smoothed_scores(model, x, lambda p: recorded.append(p) or fn(p), sigma=0.5, n_mc=64,
                    generator=torch.Generator().manual_seed(3))
    manual = ptt(fn(recorded[0]).double()).view(6, 64, 3).mean(1)
    torch.testing.assert_close(with_ptt.mean, manual)


def test_holdout_scores_are_true_label_scores_of_one_noise_draw() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    s = holdout_scores(model, x, y, score="thr", sigma=0.25, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * 0.25
    with torch.no_grad():
        expected = 1 - torch.softmax(model(x + noise), 1)[torch.arange(5), y]
    torch.testing.assert_close(s, expected)


def test_holdout_overlapping_calibration_is_refused() -> None:
    h = torch.rand(10)
    with pytest.raises(ValueError, match="disjoint"):
        PTT().fit(h, holdout_indices=torch.arange(10), calibration_indices=torch.arange(5, 50))
    with pytest.raises(ValueError, match="together"):
        PTT().fit(h, holdout_indices=torch.arange(10))
    PTT().fit(h, holdout_indices=torch.arange(10), calibration_indices=torch.arange(10, 50))


def test_bad_arguments_and_unfitted_use() -> None:
    with pytest.raises(NotCalibratedError, match="fit"):
        PTT()(torch.rand(3))
    with pytest.raises(ValueError, match="temperature"):
        PTT(temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        PTT(alpha=1.5)
    with pytest.raises(ValueError, match="`b`"):
        PTT(b=1.0)
    with pytest.raises(ValueError, match="holdout_scores"):
        PTT().fit(torch.zeros(0))
    with pytest.raises(ValueError, match="holdout_scores"):
        PTT().fit(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="NaN"):
        PTT().fit(torch.tensor([0.1, float("nan")]))
