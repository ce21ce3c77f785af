"""Agreement with the peers on shared fixed data: thresholds and sets equal to TorchCP's and MAPIE's where they
implement the same score.

The expected numbers were produced by TorchCP 1.2.1 and MAPIE 1.6.0 (installed with
``pip install --target /tmp/peers --no-deps torchcp==1.2.1`` beside MAPIE 1.6.0; TorchCP imported without its
top-level package, whose graph/LLM modules need torch_geometric and transformers, and with a stub for torchsort,
which only its training losses use) by ``benchmarks/bench_conformal.py --peer-expected``; the peers are not installed
in CI, so the numbers are kept here. Sets are encoded as bit masks (bit y set when label y is in the set).

What differs, on purpose (see docs/conformal/split.md):
- TorchCP's RAPS and SAPS build the penalty/weight in float32 (``penalty * torch.arange(...)`` in the default
  dtype), so their thresholds differ from certkit's float64 ones by ~1e-9 (the sets agree here).
- TorchCP's SAPS scores a calibration label at rank 1 as u * p_max (0 with ``randomized=False``) but the same label
  at prediction as (1 - u) * p_max: certkit uses one score for both (the paper's, with u' = 1 - u).
- MAPIE's ``top_k`` score is the 0-based rank (threshold one less than certkit's and TorchCP's; same sets); its
  APS calibration scores are always randomised with ``RandomState(random_state).uniform(n)``, and its sets with
  ``include_last_label=False`` are certkit's u = 0 sets at that threshold, except that MAPIE never returns an empty
  set (it keeps the top label where certkit's set is empty).
- MAPIE's ``raps`` chooses k_reg and lambda itself: it holds out 10% of the calibration rows
  (``StratifiedShuffleSplit(test_size=0.1, random_state=random_state)``; rows 10, 12, ..., 193 here), sets k* to
  the conformal quantile of the true labels' 0-based positions there plus one (k* = 4) and picks lambda* from
  {0.001, 0.01, 0.1, 0.2, 0.5} by the smallest mean set size (lambda* = 0.5), then calibrates the randomised RAPS
  score on the other 180 rows with ``RandomState(random_state).uniform(180)``. Its lambda search regularises with
  k = lambda (MAPIE 1.6.0 ``RAPSConformityScore._add_regularization`` outside the prediction phase sets
  ``k_star = cast(int, lambda_)``), so the lambda it picks is not the paper's; certkit takes ``k_reg`` and ``lam``
  from the caller and has no search. The ``mapie_raps`` numbers (``conformity_score="raps"``,
  ``include_last_label=False``, ``random_state=0``, k* and lambda* read from the fitted score) come from the same
  MAPIE call as ``--peer-expected`` makes for ``aps``, run by hand (the benchmark prints lac/aps/top_k only).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conformal import SplitConformal, conformal_quantile, prediction_mask, scores

EXPECTED = {
    "torchcp_lac": (0.9230519378805595, [
        60, 12, 48, 3, 49, 19, 36, 52, 19, 32, 2, 33, 21, 11, 36, 3, 28, 32, 7, 46,
        52, 12, 6, 52, 33, 39, 29, 51, 48, 22, 29, 55, 1, 21, 22, 3, 33, 20, 3, 61,
        17, 7, 29, 46, 21, 42, 59, 33, 32, 12, 8, 43, 16, 52, 22, 53, 28, 2, 26, 8,
    ]),
    "torchcp_aps": (0.965663822632643, [
        60, 12, 52, 51, 49, 19, 46, 52, 19, 0, 2, 32, 21, 11, 36, 3, 30, 41, 7, 44,
        54, 15, 22, 60, 49, 39, 29, 49, 50, 20, 29, 55, 9, 21, 22, 35, 37, 30, 35, 45,
        19, 39, 29, 14, 29, 10, 58, 33, 32, 12, 0, 43, 26, 52, 22, 53, 30, 2, 10, 42,
    ]),
    "torchcp_raps": (1.010262950638539, [
        56, 12, 52, 35, 49, 19, 38, 52, 19, 40, 18, 33, 21, 11, 36, 3, 28, 41, 7, 44,
        52, 14, 22, 52, 49, 35, 29, 49, 50, 20, 21, 39, 9, 21, 22, 35, 37, 22, 35, 45,
        19, 7, 28, 14, 21, 10, 58, 33, 33, 12, 40, 35, 26, 52, 22, 52, 28, 34, 10, 42,
    ]),
    "torchcp_topk": (3.0, [
        56, 44, 52, 35, 49, 19, 38, 52, 19, 41, 22, 49, 21, 11, 38, 35, 28, 41, 7, 44,
        52, 14, 22, 52, 49, 35, 25, 49, 50, 22, 21, 38, 11, 21, 22, 35, 37, 22, 35, 41,
        19, 7, 28, 14, 21, 42, 50, 49, 35, 14, 44, 35, 26, 52, 22, 52, 28, 35, 26, 42,
    ]),
    "torchcp_saps": (1.101381766561762, [
        60, 12, 48, 35, 49, 19, 38, 52, 23, 32, 2, 49, 53, 11, 38, 35, 30, 33, 7, 46,
        52, 12, 6, 60, 49, 39, 29, 49, 48, 22, 21, 39, 1, 21, 22, 35, 33, 22, 3, 45,
        17, 7, 29, 46, 29, 58, 58, 33, 32, 12, 8, 35, 24, 60, 18, 53, 28, 2, 58, 40,
    ]),
    "torchcp_margin": (0.4700690266653499, [
        63, 8, 16, 3, 48, 19, 36, 52, 63, 32, 2, 33, 63, 9, 36, 3, 31, 32, 6, 46,
        62, 4, 2, 63, 33, 63, 63, 49, 32, 4, 20, 63, 1, 21, 18, 3, 32, 20, 2, 63,
        16, 7, 63, 63, 63, 63, 63, 1, 32, 8, 8, 47, 16, 63, 2, 63, 12, 2, 63, 8,
    ]),
    "mapie_lac": (0.9230519378805595, [
        60, 12, 48, 3, 49, 19, 36, 52, 19, 32, 2, 33, 21, 11, 36, 3, 28, 32, 7, 46,
        52, 12, 6, 52, 33, 39, 29, 51, 48, 22, 29, 55, 1, 21, 22, 3, 33, 20, 3, 61,
        17, 7, 29, 46, 21, 42, 59, 33, 32, 12, 8, 43, 16, 52, 22, 53, 28, 2, 26, 8,
    ]),
    "mapie_aps": (0.9151128154405113, [
        60, 8, 52, 3, 49, 18, 38, 48, 3, 32, 2, 32, 20, 9, 4, 3, 28, 33, 6, 44,
        52, 14, 6, 52, 33, 35, 29, 49, 48, 20, 21, 39, 1, 20, 18, 2, 33, 22, 3, 45,
        16, 7, 28, 14, 21, 10, 58, 1, 32, 8, 8, 35, 24, 36, 18, 52, 28, 2, 10, 40,
    ]),
    "mapie_raps": (0.9370810074815327, [
        60, 8, 52, 35, 49, 18, 38, 48, 19, 32, 2, 32, 20, 9, 4, 3, 30, 41, 7, 44,
        52, 14, 22, 52, 33, 39, 29, 49, 48, 20, 29, 39, 1, 20, 18, 3, 37, 22, 35, 45,
        17, 7, 29, 14, 21, 10, 58, 1, 32, 12, 8, 43, 24, 52, 18, 52, 30, 2, 10, 40,
    ]),
    "mapie_top_k": (2.0, [
        56, 44, 52, 35, 49, 19, 38, 52, 19, 41, 22, 49, 21, 11, 38, 35, 28, 41, 7, 44,
        52, 14, 22, 52, 49, 35, 25, 49, 50, 22, 21, 38, 11, 21, 22, 35, 37, 22, 35, 41,
        19, 7, 28, 14, 21, 42, 50, 49, 35, 14, 44, 35, 26, 52, 22, 52, 28, 35, 26, 42,
    ]),
}


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(16)
    p = torch.softmax(2 * torch.randn(260, 6, generator=g, dtype=torch.float64), 1)
    y = torch.multinomial(p, 1, generator=g).squeeze(1)
    return p[:200], y[:200], p[200:]


def _bits(mask: torch.Tensor) -> list[int]:
    m = np.asarray(mask).astype(np.int64)
    return (m * (1 << np.arange(m.shape[1]))).sum(1).tolist()  # type: ignore[no-any-return]


@pytest.mark.parametrize(("peer", "score", "kwargs", "atol"), [
    ("torchcp_lac", "thr", {}, 0.0),
    ("torchcp_aps", "aps", {}, 0.0),
    ("torchcp_raps", "raps", {"k_reg": 2, "lam": 0.05}, 1e-8),  # TorchCP: float32 penalty
    ("torchcp_topk", "topk", {}, 0.0),
    ("torchcp_saps", "saps", {"lam": 0.2}, 1e-7),  # TorchCP: float32 weight
    ("torchcp_margin", "margin", {}, 0.0),
    ("mapie_lac", "thr", {}, 0.0),
])
def test_thresholds_and_sets_equal_the_peers(peer: str, score: str, kwargs: dict, atol: float) -> None:
    p_cal, y_cal, p_test = _data()
    cp = SplitConformal(score=score, alpha=0.1, randomized=False, score_kwargs=kwargs).calibrate(p_cal, y_cal)
    threshold, sets = EXPECTED[peer]
    assert abs(float(cp.threshold_) - threshold) <= atol
    assert _bits(cp.predict(p_test).mask) == sets


def test_mapie_top_k_is_the_zero_based_rank() -> None:
    p_cal, y_cal, p_test = _data()
    cp = SplitConformal(score="topk", alpha=0.1, randomized=False).calibrate(p_cal, y_cal)
    threshold, sets = EXPECTED["mapie_top_k"]
    assert float(cp.threshold_) == threshold + 1
    assert _bits(cp.predict(p_test).mask) == sets


def test_mapie_aps_with_its_u() -> None:
    p_cal, y_cal, p_test = _data()
    u = torch.from_numpy(np.random.RandomState(0).uniform(size=200))  # MAPIE's u for random_state=0
    t = conformal_quantile(scores.aps(p_cal, y_cal, u=u), 0.1)
    threshold, sets = EXPECTED["mapie_aps"]
    assert t == threshold
    ours = _bits(prediction_mask(scores.aps(p_test), t))
    top = (1 << p_test.argmax(1)).tolist()
    # MAPIE never returns an empty set: where even the top label's mass exceeds t it keeps the top label
    differ = [i for i in range(len(ours)) if ours[i] != sets[i]]
    assert differ == [i for i in range(len(ours)) if ours[i] == 0]
    assert all(sets[i] == top[i] for i in differ) and differ == [9, 48, 50, 57]


def test_mapie_raps_with_its_split_u_k_and_lambda() -> None:
    """certkit's RAPS with MAPIE's k* = 4, lambda* = 0.5, calibration rows and u gives MAPIE's threshold exactly and
    its sets, except that MAPIE never returns an empty set (as for APS)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    p_cal, y_cal, p_test = _data()
    cal, held = next(StratifiedShuffleSplit(n_splits=1, test_size=0.1, random_state=0).split(p_cal.numpy(), y_cal.numpy()))
    assert sorted(held.tolist()) == [10, 12, 14, 32, 34, 50, 57, 73, 77, 79, 85, 89, 106, 113, 130, 147, 160, 182, 188,
                                     193]  # MAPIE's X_raps rows
    u = torch.from_numpy(np.random.RandomState(0).uniform(size=cal.shape[0]))
    idx = torch.from_numpy(cal)
    t = conformal_quantile(scores.raps(p_cal[idx], y_cal[idx], u=u, k_reg=4, lam=0.5), 0.1)
    threshold, sets = EXPECTED["mapie_raps"]
    assert t == threshold
    ours = _bits(prediction_mask(scores.raps(p_test, k_reg=4, lam=0.5), t))
    top = (1 << p_test.argmax(1)).tolist()
    differ = [i for i in range(len(ours)) if ours[i] != sets[i]]
    assert differ == [i for i in range(len(ours)) if ours[i] == 0] == [9, 48, 50, 57]
    assert all(sets[i] == top[i] for i in differ)
