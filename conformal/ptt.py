"""Post-Training Transformation (PTT) of conformity scores (Yan, Zhang, Kang, ICLR 2024).

PTT maps each noisy base score s through

    rank:     Q_rank(s) = #{h in holdout : h <= s} / |holdout|
    sigmoid:  Q_sig(r)  = 1 / (1 + exp(-T (r - b)))

before the Monte Carlo average of RSCP+. Scores of conforming labels collapse towards 0 and the
others towards 1, which shrinks the variance that the RSCP+ margins pay for. The transform is
fitted on a holdout of base scores that must be disjoint from the calibration set: it is then a
fixed function of the score, and RSCP+'s guarantee is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from certkit._params import Params
from certkit._validation import check_array, check_eval_mode, check_positive, check_probability
from certkit.errors import NotCalibratedError
from conformal.scores import ScoreFunction, get_score

__all__ = ["PTT", "holdout_scores", "ptt_rank", "ptt_sigmoid", "ptt_transform"]


def ptt_rank(scores: torch.Tensor, holdout_sorted: torch.Tensor) -> torch.Tensor:
    """Rank transform #{h <= s} / n of every entry of ``scores`` against sorted holdout scores ``(n,)``.

    Vectorised with ``torch.searchsorted(..., right=True)`` (the reference loops with ``bisect``).
    """
    h = holdout_sorted.to(device=scores.device, dtype=scores.dtype)
    idx = torch.searchsorted(h, scores.contiguous(), right=True)
    return idx.to(scores.dtype) / h.shape[0]


def ptt_sigmoid(ranks: torch.Tensor, *, b: float, temperature: float) -> torch.Tensor:
    """Sigmoid 1 / (1 + exp(-T (r - b))), elementwise."""
    return torch.sigmoid(temperature * (ranks - b))


def ptt_transform(scores: torch.Tensor, holdout_sorted: torch.Tensor, *, b: float, temperature: float) -> torch.Tensor:
    """PTT = sigmoid(rank(s)) with bias ``b`` and temperature ``T``; output in (0, 1), same shape as ``scores``."""
    return ptt_sigmoid(ptt_rank(scores, holdout_sorted), b=b, temperature=temperature)


def holdout_scores(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    score: str | ScoreFunction = "thr",
    sigma: float,
    generator: torch.Generator | None = None,
    **score_kwargs: object,
) -> torch.Tensor:
    """True-label base scores ``(N,)`` of holdout inputs under one noise draw each (as in the reference).

    Args:
        model: base classifier in eval mode.
        x: ``(N, *shape)`` holdout inputs (disjoint from the calibration set).
        labels: ``(N,)`` their labels.
        score: ``"thr"``, ``"aps"`` or a callable ``(probs, labels) -> scores``.
        sigma: noise level > 0 (the smoothing sigma).
        generator: source of the noise; fresh nondeterministic one if None.
        **score_kwargs: passed to the score, e.g. ``u=`` an ``(N,)`` tensor of one u ~ U(0, 1) per holdout input
            for randomised APS/RAPS (without it APS is the u = 0 form).
    """
    sigma = check_positive(sigma, "sigma")
    check_eval_mode(model)
    if generator is None:
        generator = torch.Generator(device=x.device)
        generator.seed()
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * sigma
    with torch.no_grad():
        probs = torch.softmax(model(x + noise), dim=-1)
    fn = get_score(score)
    return torch.as_tensor(fn(probs, labels.long(), **score_kwargs))


class PTT(Params):
    """Post-Training Transformation: rank against a holdout, then a steep sigmoid.

    A fixed (data-independent once fitted) monotone map of scores into (0, 1); passed as the
    ``transform`` of :func:`smoothing.smoothed_scores` it is applied to every noisy score before
    averaging. RSCP/RSCP+ guarantees hold for any such fixed map, provided the holdout is disjoint
    from the calibration data (checked by :meth:`fit` when indices are given).

    Args:
        alpha: miscoverage level in (0, 1); the sigmoid bias defaults to b = 1 - alpha.
        temperature: sigmoid temperature T > 0 (400 in the paper).
        b: sigmoid bias in (0, 1); overrides ``1 - alpha``.

    References:
        Yan, Zhang, Kang, "Provably Robust Conformal Prediction with Improved Efficiency", ICLR 2024.
    """

    holdout_: torch.Tensor | None

    def __init__(self, *, alpha: float = 0.1, temperature: float = 400.0, b: float | None = None) -> None:
        self.alpha = check_probability(alpha, "alpha")
        self.temperature = check_positive(temperature, "temperature")
        self.b = 1 - self.alpha if b is None else check_probability(b, "b")
        self.holdout_ = None

    def _param_defaults(self) -> dict[str, object]:
        return {**self._signature_defaults(), "b": 1 - self.alpha}  # b=None means 1 - alpha

    def fit(
        self,
        holdout_scores: torch.Tensor,
        *,
        holdout_indices: torch.Tensor | None = None,
        calibration_indices: torch.Tensor | None = None,
    ) -> PTT:
        """Store the sorted holdout base scores ``(n,)``. Returns self.

        Args:
            holdout_scores: ``(n,)`` base scores of the holdout (true labels, one noise draw each).
            holdout_indices: dataset indices of the holdout points, to check disjointness.
            calibration_indices: dataset indices of the calibration points; raises ValueError
                if any appears in ``holdout_indices``.
        """
        if not isinstance(holdout_scores, torch.Tensor) or holdout_scores.ndim != 1 or holdout_scores.numel() == 0:
            raise ValueError(
                "Expected argument `holdout_scores` to be a non-empty (n,) tensor, but got "
                f"{type(holdout_scores).__name__} {tuple(getattr(holdout_scores, 'shape', ()))}"
            )
        check_array(holdout_scores, "holdout_scores", kind="real")  # NaN/inf, bool and complex refused
        if (holdout_indices is None) != (calibration_indices is None):
            raise ValueError(
                "Expected arguments `holdout_indices` and `calibration_indices` to be given together, "
                "but got only one of them"
            )
        if holdout_indices is not None and calibration_indices is not None:
            h = torch.as_tensor(holdout_indices).flatten().cpu()
            c = torch.as_tensor(calibration_indices).flatten().cpu()
            overlap = h[torch.isin(h, c)]
            if overlap.numel():
                raise ValueError(
                    "Expected argument `holdout_indices` to be disjoint from `calibration_indices` (a holdout "
                    f"reused for calibration voids the guarantee), but {overlap.numel()} indices overlap, "
                    f"e.g. {overlap[:5].tolist()}"
                )
        self.holdout_ = torch.sort(holdout_scores.detach()).values
        return self

    def calibrate(
        self,
        holdout_scores: torch.Tensor,
        *,
        holdout_indices: torch.Tensor | None = None,
        calibration_indices: torch.Tensor | None = None,
    ) -> PTT:
        """Same as :meth:`fit` (the calibration protocol's verb). Returns self."""
        return self.fit(holdout_scores, holdout_indices=holdout_indices, calibration_indices=calibration_indices)

    def _holdout(self) -> torch.Tensor:
        if self.holdout_ is None:
            raise NotCalibratedError("This PTT instance is not fitted yet: call `fit(holdout_scores)` before using it")
        return self.holdout_

    def rank(self, scores: torch.Tensor) -> torch.Tensor:
        """The rank step alone, #{h <= s} / n."""
        return ptt_rank(scores, self._holdout())

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        """PTT of every entry of ``scores`` (any shape, e.g. ``(M, K)``)."""
        return ptt_transform(scores, self._holdout(), b=self.b, temperature=self.temperature)

    def as_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """This fitted PTT as a plain callable (for ``smoothed_scores(transform=...)``)."""
        self._holdout()
        return self.__call__
