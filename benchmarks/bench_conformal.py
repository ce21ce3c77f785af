"""Split conformal calibrate + predict on 10^6 x 100 probabilities, against the physical floor.

Floor: one ``np.partition`` over the 10^6 calibration scores plus one pass over the (N, K)
test matrix (a comparison). Run: ``.venv/bin/python benchmarks/bench_conformal.py``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from conformal import SplitConformal, conformal_rank


def best_of(fn, reps: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(n: int = 1_000_000, k: int = 100) -> None:
    g = torch.Generator().manual_seed(0)
    cal = torch.softmax(3 * torch.randn(n, k, generator=g), -1)
    test = torch.softmax(3 * torch.randn(n, k, generator=g), -1)
    labels = torch.multinomial(cal[: n // 10], 1, generator=g).squeeze(1).repeat(10)
    cal_np, test_np, labels_np = cal.numpy(), test.numpy(), labels.numpy()
    kk = conformal_rank(n, 0.1)
    s_np = 1 - cal_np[np.arange(n), labels_np]

    def floor() -> None:
        np.partition(s_np, kk - 1)
        np.greater_equal(test_np, 0.5)

    print(f"split conformal, {n:,} x {k} float32 probabilities, calibrate on N and predict N (2 cores)")
    print(f"{'case':<34} {'seconds':>8} {'x floor':>8}")
    t_floor = best_of(floor)
    print(f"{'floor (partition + 1 pass)':<34} {t_floor:>8.3f} {1.0:>8.2f}")
    for score in ("thr", "aps", "raps"):
        for validate in (True, False):
            for kind, (c, t, y) in (("numpy", (cal_np, test_np, labels_np)), ("torch", (cal, test, labels))):
                # APS/RAPS: randomised (the default), sets from sorted values (conformal.scores.aps_set_mask)
                cp = SplitConformal(score=score, alpha=0.1, validate=validate)
                sec = best_of(lambda cp=cp, c=c, t=t, y=y: cp.calibrate(c, y).predict(t), reps=2)
                name = f"{score} {kind} validate={validate}"
                print(f"{name:<34} {sec:>8.3f} {sec / t_floor:>8.2f}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
