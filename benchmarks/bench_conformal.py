"""Split conformal calibrate + predict on 10^6 x 100 probabilities, against the physical floor and the peers.

Floor: one ``np.partition`` over the 10^6 calibration scores plus one pass over the (N, K) test matrix
(a comparison). certkit, TorchCP and MAPIE are timed in the same run on the same data (THR/LAC, APS, RAPS,
SAPS where they have them); the peers run when importable (``PYTHONPATH=/tmp/peers``; TorchCP is imported
without its top-level package, whose graph/LLM modules need torch_geometric and transformers, and needs a stub
``torchsort`` on the path, which only its training losses use).

Run: ``PYTHONPATH=.:/tmp/peers:/tmp/peers_stubs .venv/bin/python benchmarks/bench_conformal.py [--n 1000000]
[--skip mapie-raps]`` (MAPIE's RAPS needs several GB at 10^6 rows); crepes (THR only, on ``--crepes-n`` rows: its
p-values are quadratic in N) needs pandas on the path; with numba installed (``certkit[fast]``) certkit's APS/RAPS/
SAPS run the compiled kernels (their compile time is paid in a warm-up call before the timings and printed);
``--peer-expected`` prints the fixed expected numbers of tests/conformal/test_peer_agreement.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from conformal import SplitConformal, conformal_rank


def best_of(fn: Callable[[], Any], reps: int = 3) -> float:
    """The smallest CPU time (user + system, all threads) of ``reps`` calls: on a shared machine the wall time
    measures the other processes too; the wall time of the same call is kept in ``WALL``."""
    times, walls = [], []
    for _ in range(reps):
        w0, t0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.process_time() - t0)
        walls.append(time.perf_counter() - w0)
    WALL[0] = walls[times.index(min(times))]
    return min(times)


WALL = [0.0]


def compiled_kernels(k: int) -> str:
    """Which certkit path the timings measure, and the one-off cost of the compiled one: numba's import and the
    compilation of the float32 kernels, paid here on a small input so that no timed call includes it."""
    import conformal.scores as sc

    w0, t0 = time.perf_counter(), time.process_time()
    if sc._compiled(1 << 62) is None:
        return "certkit path: numpy (numba not installed, or CERTKIT_NO_NUMBA set)"
    import numba

    import certkit._validation as va

    saved, saved_va = sc.USE_COMPILED, va._USE_COMPILED
    sc.USE_COMPILED = va._USE_COMPILED = True
    try:
        p = torch.softmax(torch.randn(64, k, generator=torch.Generator().manual_seed(1)), -1).numpy()
        va.check_probs(p)  # the compiled verdict of the input validation (certkit._kernels)
        y, u = np.zeros(64, dtype=np.int64), np.full(64, 0.5)
        sc.aps(p, y, u=0.5)
        sc.saps(p, y, u=0.5)
        sc.aps_set_mask(p, 0.9, u=u)
        sc.rank_set_mask(p, 0.9, score=sc.saps, u=u)
    finally:
        sc.USE_COMPILED, va._USE_COMPILED = saved, saved_va
    return (f"certkit path: compiled kernels (numba {numba.__version__}); numba's import and the float32 kernels' "
            "(scores, sets and the check of the probabilities) "
            f"compilation took {time.process_time() - t0:.2f} s CPU ({time.perf_counter() - w0:.2f} s wall), once "
            "per process, before the timings")


def torchcp() -> Any:
    """``torchcp.classification`` without ``torchcp/__init__`` (which imports its graph and LLM modules), or None."""
    spec = importlib.util.find_spec("torchcp")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "torchcp" not in sys.modules:
        pkg = types.ModuleType("torchcp")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchcp"] = pkg
    try:
        import torchcp.classification.predictor as predictor
        import torchcp.classification.score as score
    except ImportError as e:
        print(f"TorchCP not importable: {e}")
        return None
    return types.SimpleNamespace(score=score, predictor=predictor)


def mapie() -> Any:
    try:
        from mapie.classification import SplitConformalClassifier
    except ImportError:
        return None
    return SplitConformalClassifier


def identity_classifier(k: int) -> Any:
    """A fitted sklearn classifier whose ``predict_proba(X)`` is X: MAPIE then works on given probabilities."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Identity(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        def __init__(self, k: int = 2) -> None:
            self.k = k

        def fit(self, X: Any, y: Any) -> Any:
            self.classes_ = np.arange(self.k)
            return self

        def predict_proba(self, X: Any) -> np.ndarray:
            return np.asarray(X)

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(X).argmax(1)

    return Identity(k).fit(None, None)


def main(n: int = 1_000_000, k: int = 100, skip: tuple[str, ...] = (), model_labels: bool = False,
         crepes_n: int = 5_000) -> None:
    g = torch.Generator().manual_seed(0)
    cal = torch.softmax(3 * torch.randn(n, k, generator=g), -1)
    test = torch.softmax(3 * torch.randn(n, k, generator=g), -1)
    if model_labels:  # labels drawn from each row's probabilities (a calibrated model): sets of ~10 labels
        labels = torch.cat([torch.multinomial(c, 1, generator=g).squeeze(1) for c in cal.split(100_000)])
    else:  # the first tenth's labels repeated: 90% of labels unrelated to their rows, t ~ 1 - 2e-5, ~90 labels a set
        labels = torch.multinomial(cal[: n // 10], 1, generator=g).squeeze(1).repeat(10)
    cal_np, test_np, labels_np = cal.numpy(), test.numpy(), labels.numpy()
    kk = conformal_rank(n, 0.1)
    kwargs_of = {"raps": {"k_reg": 5, "lam": 0.01}, "saps": {"lam": 0.2}}.get
    s_np = 1 - cal_np[np.arange(n), labels_np]

    def floor() -> None:
        np.partition(s_np, kk - 1)
        np.greater_equal(test_np, 0.5)

    print(f"split conformal, {n:,} x {k} float32 probabilities, calibrate on N and predict N "
          f"(torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print("seconds: CPU time (process_time, best of the repetitions); wall: the wall time of that repetition")
    print(f"{'case':<40} {'seconds':>8} {'wall':>8} {'x floor':>8} {'x certkit':>9}")
    print(compiled_kernels(k))
    t_floor = best_of(floor, reps=5)
    print(f"{'floor (partition + 1 pass)':<40} {t_floor:>8.3f} {WALL[0]:>8.3f} {1.0:>8.2f}")
    for score in ("aps", "raps"):
        cp = SplitConformal(score=score, alpha=0.1, score_kwargs=kwargs_of(score)).calibrate(cal_np, labels_np)
        sizes = cp.predict(test_np).sizes
        print(f"  {score} threshold {cp.threshold_:.6g}, set sizes 1% / median / 99%: "
              f"{np.percentile(sizes, [1, 50, 99]).tolist()}")
    ours: dict[str, float] = {}
    kwargs = {"raps": {"k_reg": 5, "lam": 0.01}, "saps": {"lam": 0.2}}
    for score in ("thr", "aps", "raps", "saps"):
        for validate in (True, False):
            for kind, (c, t, y) in (("numpy", (cal_np, test_np, labels_np)), ("torch", (cal, test, labels))):
                # APS/RAPS/SAPS: randomised (the default); APS/RAPS sets from sorted values (scores.aps_set_mask)
                cp = SplitConformal(score=score, alpha=0.1, validate=validate, score_kwargs=kwargs.get(score))
                sec = best_of(lambda cp=cp, c=c, t=t, y=y: cp.calibrate(c, y).predict(t), reps=2)
                ours.setdefault(score, sec)
                ours[score] = min(ours[score], sec)
                name = f"certkit {score} {kind} validate={validate}"
                print(f"{name:<40} {sec:>8.3f} {WALL[0]:>8.3f} {sec / t_floor:>8.2f}")
    tcp = torchcp()
    if tcp is not None:
        import torchcp as tcp_pkg

        version = open(tcp_pkg.__path__[0] + "/VERSION").read().strip()
        scores = {"thr": tcp.score.LAC(score_type="identity"), "aps": tcp.score.APS(score_type="identity"),
                  "raps": tcp.score.RAPS(score_type="identity", penalty=0.01, kreg=5),
                  "saps": tcp.score.SAPS(score_type="identity", weight=0.2)}
        for score, fn in scores.items():
            def run(fn: Any = fn) -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pr = tcp.predictor.SplitPredictor(fn, alpha=0.1, device="cpu")
                    pr.calculate_threshold(cal, labels, alpha=0.1)
                    pr.predict_with_logits(test)
            sec = best_of(run, reps=1)
            print(f"{f'TorchCP {version} {score} torch':<40} {sec:>8.3f} {WALL[0]:>8.3f} {sec / t_floor:>8.2f} "
                  f"{sec / ours[score]:>9.2f}")
    mp = mapie()
    if mp is not None:
        import mapie as mapie_pkg

        est = identity_classifier(k)
        for score, name in (("thr", "lac"), ("aps", "aps"), ("raps", "raps")):
            if f"mapie-{name}" in skip:
                print(f"MAPIE {mapie_pkg.__version__} {name}: skipped (--skip)")
                continue

            def run_m(name: str = name) -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m = mp(est, confidence_level=0.9, conformity_score=name, prefit=True, random_state=0)
                    m.conformalize(cal_np, labels_np)
                    m.predict_set(test_np)
            try:
                sec = best_of(run_m, reps=1)
            except Exception as e:
                print(f"MAPIE {mapie_pkg.__version__} {name}: failed ({type(e).__name__}: {str(e)[:80]})")
                continue
            print(f"{f'MAPIE {mapie_pkg.__version__} {name} numpy':<40} {sec:>8.3f} {WALL[0]:>8.3f} "
                  f"{sec / t_floor:>8.2f} {sec / ours[score]:>9.2f}")
    crepes_thr(cal_np, labels_np, test_np, crepes_n)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def crepes_thr(cal: np.ndarray, labels: np.ndarray, test: np.ndarray, n_c: int) -> None:
    """crepes' standard conformal classifier with its hinge score (1 - p_y: THR/LAC) on the first ``n_c`` rows,
    certkit's THR beside it on the same rows. crepes computes each of the N x K test p-values by a Python loop
    summing over the N calibration scores (quadratic in N), so 10^6 rows are out of reach; non-smoothed p-values
    (smoothing=True draws a theta per entry from numpy's global RNG)."""
    try:
        from crepes import ConformalClassifier
        from crepes.extras import hinge
    except ImportError as e:
        hint = "; it needs pandas: pip install --target DIR pandas and DIR on PYTHONPATH" if "pandas" in str(e) else ""
        print(f"crepes not importable ({e}){hint}")
        return
    import crepes as crepes_pkg

    n_c = min(n_c, cal.shape[0])
    c, y, t = cal[:n_c], labels[:n_c], test[:n_c]
    classes = np.arange(cal.shape[1])
    sets: list[np.ndarray] = []

    def run_c() -> None:
        cc = ConformalClassifier().fit(hinge(c, classes, y))
        sets[:] = [cc.predict_set(hinge(t), confidence=0.9, smoothing=False)]

    sec_c = best_of(run_c, reps=1)
    wall_c = WALL[0]
    cp = SplitConformal(score="thr", alpha=0.1)
    sec = best_of(lambda: cp.calibrate(c, y).predict(t), reps=3)
    ours = cp.calibrate(c, y).predict(t).mask
    agree = float(np.mean(np.asarray(sets[0], dtype=bool) == ours))
    print(f"{f'crepes {crepes_pkg.__version__} hinge (THR) n={n_c:,}':<40} {sec_c:>8.3f} {wall_c:>8.3f} "
          f"{'':>8} {sec_c / sec:>9.1f}   (certkit thr at n={n_c:,}: {sec:.4f} s; sets agree on {agree:.4%} "
          "of entries; crepes' p-values loop over N x K entries, each summing N scores: quadratic in N)")


def peer_expected() -> None:
    """Print the peers' thresholds and sets on the fixed data of tests/conformal/test_peer_agreement.py."""
    sys.path.insert(0, ".")
    from tests.conformal.test_peer_agreement import _bits, _data

    tcp, mp = torchcp(), mapie()
    p_cal, y_cal, p_test = _data()
    out: dict[str, Any] = {}
    warnings.simplefilter("ignore")
    if tcp is not None:
        for name, sf in (("lac", tcp.score.LAC(score_type="identity")),
                         ("aps", tcp.score.APS(score_type="identity", randomized=False)),
                         ("raps", tcp.score.RAPS(score_type="identity", randomized=False, penalty=0.05, kreg=2)),
                         ("topk", tcp.score.TOPK(score_type="identity", randomized=False)),
                         ("saps", tcp.score.SAPS(score_type="identity", randomized=False, weight=0.2)),
                         ("margin", tcp.score.Margin(score_type="identity"))):
            pr = tcp.predictor.SplitPredictor(sf, alpha=0.1, device="cpu")
            pr.calculate_threshold(p_cal.clone(), y_cal.clone(), alpha=0.1)  # clone: TorchCP's Margin writes into it
            out["torchcp_" + name] = (float(pr.q_hat), _bits(pr.predict_with_logits(p_test.clone())))
    if mp is not None:
        est = identity_classifier(6)
        for score, params in (("lac", None), ("aps", {"include_last_label": False}), ("top_k", None)):
            m = mp(est, confidence_level=0.9, conformity_score=score, prefit=True, random_state=0)
            m.conformalize(p_cal.numpy(), y_cal.numpy())
            _, sets = m.predict_set(p_test.numpy(), conformity_score_params=params)
            q = m._mapie_classifier.conformity_score_function_.quantiles_
            out["mapie_" + score] = (float(np.ravel(q)[0]), _bits(torch.from_numpy(sets[:, :, 0])))
    for key, value in out.items():
        print(f"{key!r}: {value!r},")


if __name__ == "__main__":
    torch.set_num_threads(2)
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--peer-expected", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], help="peer cases to leave out, e.g. mapie-raps (its memory)")
    ap.add_argument("--model-labels", action="store_true",
                    help="draw every calibration label from its row's probabilities (sets of ~10 labels) instead of "
                         "repeating the first tenth's labels (~90 labels a set)")
    ap.add_argument("--crepes-n", type=int, default=5_000,
                    help="rows for crepes (its p-values are quadratic in N: 10^6 rows are out of reach)")
    args = ap.parse_args()
    if args.peer_expected:
        peer_expected()
    else:
        main(n=args.n, skip=tuple(args.skip), model_labels=args.model_labels, crepes_n=args.crepes_n)
