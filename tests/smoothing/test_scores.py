import math

import numpy as np
import pytest
import torch
from torch import nn

from smoothing.scores import SmoothedScores, smoothed_scores


class Logit1D(nn.Module):
    """logits [x, 0] of a (M, 1) input: p_0 = sigmoid(x), so THR scores are sigmoid(-x) and sigmoid(x)."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0
        self.max_batch = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += x.shape[0]
        self.max_batch = max(self.max_batch, x.shape[0])
        return torch.cat([x[:, :1], torch.zeros_like(x[:, :1])], dim=1)


def thr_all(p: torch.Tensor) -> torch.Tensor:
    return 1 - p


def gauss_moments(f, mu: float, sigma: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """E f(mu + sigma Z) and Var f(mu + sigma Z) by 80-point Gauss-Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / math.sqrt(2 * math.pi)
    v = f(mu + sigma * z)
    m = float((w * v).sum())
    return m, float((w * (v - m) ** 2).sum())


def sigmoid(t: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-t))


X0 = torch.tensor([[-1.0], [0.0], [2.0]])


@pytest.mark.parametrize("batch_size", [4096 * 4, 1000])  # one-pass grouped path, and the chunked path (n_mc > batch)
@pytest.mark.parametrize("transform", [None, "square"])
def test_mean_and_variance_match_the_gaussian_expectation(batch_size: int, transform: str | None) -> None:
    """S_hat and V estimate E S(x + delta, y) and Var S(x + delta, y) of every label (checked by quadrature)."""
    sigma, n_mc = 0.5, 4096
    tf = (lambda s: s * s) if transform else None
    out = smoothed_scores(Logit1D().eval(), X0, thr_all, sigma=sigma, n_mc=n_mc,
                          generator=torch.Generator().manual_seed(0), transform=tf, batch_size=batch_size)
    assert out.mean.shape == (3, 2) and out.variance.shape == (3, 2) and out.n_mc == n_mc
    assert out.mean.dtype == torch.float64
    post = (lambda v: v * v) if transform else (lambda v: v)
    for i, mu in enumerate(X0[:, 0].tolist()):
        for y, sign in ((0, -1.0), (1, 1.0)):
            m, v = gauss_moments(lambda t, s=sign: post(sigmoid(s * t)), mu, sigma)
            se = math.sqrt(v / n_mc)
            assert abs(float(out.mean[i, y]) - m) <= 5 * se, (i, y)
            assert float(out.variance[i, y]) == pytest.approx(v, rel=0.15), (i, y)


def test_forward_passes_are_exactly_n_times_n_mc_and_batches_bounded() -> None:
    """Every label's score comes from the same passes: N * n_mc samples in all, batches <= batch_size."""
    for n_mc, batch_size in [(256, 1000), (300, 128), (7, 7)]:
        model = Logit1D().eval()
        x = torch.randn(11, 1, generator=torch.Generator().manual_seed(1))
        smoothed_scores(model, x, thr_all, sigma=0.25, n_mc=n_mc, generator=torch.Generator().manual_seed(0),
                        batch_size=batch_size)
        assert model.samples == 11 * n_mc
        assert model.max_batch <= batch_size


def test_seeded_generator_is_reproducible_and_global_rng_untouched() -> None:
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()
    state = torch.random.get_rng_state()
    a = smoothed_scores(model, x, thr_all, sigma=0.25, n_mc=32, generator=torch.Generator().manual_seed(3))
    b = smoothed_scores(model, x, thr_all, sigma=0.25, n_mc=32, generator=torch.Generator().manual_seed(3))
    c = smoothed_scores(model, x, thr_all, sigma=0.25, n_mc=32, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    assert not torch.equal(a.mean, c.mean)
    # each input's samples are independent of the batching: single inputs give the same law (not the same draws)
    assert a.mean.shape == (5, 4)


def test_variance_is_the_unbiased_sample_variance() -> None:
    """With a model that ignores its input except through the noise, V equals torch.var of the same samples."""
    recorded: list[torch.Tensor] = []

    class Record(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            recorded.append(x.clone())
            return torch.cat([x[:, :1], -x[:, :1], torch.zeros_like(x[:, :1])], dim=1)

    x = torch.tensor([[0.3], [-0.2]])
    out = smoothed_scores(Record().eval(), x, thr_all, sigma=1.0, n_mc=50, generator=torch.Generator().manual_seed(0))
    samples = torch.cat(recorded).view(2, 50, 1)
    probs = torch.softmax(torch.cat([samples, -samples, torch.zeros_like(samples)], dim=2), dim=2)
    s = (1 - probs).double()
    torch.testing.assert_close(out.mean, s.mean(1))
    torch.testing.assert_close(out.variance, s.var(1, correction=1))


def test_indexing_keeps_n_mc() -> None:
    s = SmoothedScores(torch.rand(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64), 16)
    sub = s[torch.tensor([0, 2])]
    assert sub.mean.shape == (2, 3) and sub.n_mc == 16 and len(sub) == 2
    assert s[1].mean.shape == (1, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"sigma": 0.0}, "sigma"), ({"sigma": -1.0}, "sigma"), ({"n_mc": 1}, "n_mc"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"sigma": 0.25, "n_mc": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        smoothed_scores(Logit1D().eval(), X0, thr_all, **args)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="`x`"):
        smoothed_scores(Logit1D().eval(), torch.zeros(0, 1), thr_all, sigma=0.25, n_mc=8)
    with pytest.raises(ValueError, match="`x`"):
        smoothed_scores(Logit1D().eval(), torch.zeros(3), thr_all, sigma=0.25, n_mc=8)
    with pytest.raises(TypeError, match="`x`"):
        smoothed_scores(Logit1D().eval(), torch.zeros(3, 1, dtype=torch.long), thr_all, sigma=0.25, n_mc=8)
    with pytest.raises(ValueError, match="eval mode"):
        smoothed_scores(Logit1D().train(), X0, thr_all, sigma=0.25, n_mc=8)


def test_sample_budget_and_nan_scores_are_refused() -> None:
    # audit-inputs: n_mc=10**12 looped for days (no closed-form budget); a NaN score gave NaN means silently
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x = torch.rand(3, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with pytest.raises(ValueError, match="needs 3,000,000,000,000, which exceeds the budget"):
        smoothed_scores(model, x, lambda p: 1 - p, sigma=0.25, n_mc=10**12, generator=g)
    with pytest.raises(ValueError, match=r"`score_fn`.*NaN"):
        smoothed_scores(model, x, lambda p: p * math.nan, sigma=0.25, n_mc=4, generator=g)
    out = smoothed_scores(model, x, lambda p: 1 - p, sigma=0.25, n_mc=4, generator=g, budget=None)
    assert out.mean.shape == (3, 3)
