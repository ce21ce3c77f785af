"""Split conformal regression calibrate + predict on 10^6 points, against the physical floor.

Floor: one ``np.partition`` over the 10^6 calibration residuals plus one pass over the 10^6 test
predictions (``mu - q``). certkit's call computes the residuals, validates its inputs (finite),
takes the exact-rank order statistic and writes both interval ends. Peers (MAPIE, TorchCP) are
timed side by side when importable (install them outside the project venv, e.g.
``pip install --target /tmp/peers mapie torchcp`` and run with ``PYTHONPATH=/tmp/peers``).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_regression.py``
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from conformal import conformal_rank
from conformal.regression import SplitConformalRegressor


def best_of(fn: Callable[[], object], reps: int = 11) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    mu_cal, mu_test = rng.normal(size=n), rng.normal(size=n)
    y_cal = mu_cal + rng.normal(size=n)
    k = conformal_rank(n, 0.1)
    res = np.abs(y_cal - mu_cal)

    def floor() -> None:
        np.partition(res, k - 1)
        np.subtract(mu_test, 1.0)

    t_floor = best_of(floor)
    print(f"split conformal regression, {n:,} float64 calibration + {n:,} test points, alpha = 0.1")
    print(f"{'case':<40} {'seconds':>8} {'x floor':>8}")
    print(f"{'floor (partition + 1 pass)':<40} {t_floor:>8.3f} {1.0:>8.2f}")
    rows: list[tuple[str, float]] = []
    reg = SplitConformalRegressor(alpha=0.1)
    rows.append(("certkit numpy", best_of(lambda: reg.calibrate(mu_cal, y_cal).predict(mu_test))))
    tc, ty, tt = map(torch.from_numpy, (mu_cal, y_cal, mu_test))
    rows.append(("certkit torch", best_of(lambda: reg.calibrate(tc, ty).predict(tt))))
    try:  # MAPIE's split conformal regressor around a fixed estimator whose predictions are mu (identity)
        from mapie.regression import SplitConformalRegressor as MapieSplit
        from sklearn.linear_model import LinearRegression

        identity = LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([0.0, 1.0]))
        xc, xt = mu_cal[:, None], mu_test[:, None]

        def mapie_run() -> None:
            MapieSplit(identity, confidence_level=0.9, prefit=True).conformalize(xc, y_cal).predict_interval(xt)

        rows.append(("MAPIE SplitConformalRegressor", best_of(mapie_run)))
    except Exception as e:
        print(f"(MAPIE not timed: {type(e).__name__}: {e})")
    try:
        from torchcp.regression.score import ABS

        abs_score = ABS()

        def torchcp_run() -> None:
            s = abs_score(tc[:, None], ty)
            q = torch.quantile(s.reshape(-1)[: 2**24 - 1], 0.9)  # torch.quantile is limited to 2^24 entries
            abs_score.generate_intervals(tt[:, None], q.reshape(1))

        rows.append(("TorchCP ABS + torch.quantile", best_of(torchcp_run)))
    except Exception as e:
        print(f"(TorchCP not timed: {type(e).__name__}: {e})")
    for name, sec in rows:
        print(f"{name:<40} {sec:>8.3f} {sec / t_floor:>8.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
