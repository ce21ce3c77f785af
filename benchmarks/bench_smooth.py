"""Tightness of the sigmoid/tanh relaxation: CROWN's tangent lines against the former parallel chord lines and
auto_LiRPA (issue 14: "tightest known linear bounds").

Networks: the digits MLP 64-256-256-10 and the digits CNN (``certkit_app.digits``' architectures) with every
ReLU replaced by sigmoid or tanh, trained ``--epochs`` epochs (default 40) on the digits train split (``train_classifier``,
seed 0; up to a minute of CPU each). ``--n`` test images, L-inf eps in ``--eps`` clipped to [0, 1]. For each
network, eps and method (CROWN, CROWN-IBP) the mean width of the output bounds and the number of images whose
margin bounds verify the true label, for:

* ``certify``: the imported certify (the tangent-line relaxation, ``certify.crown.smooth_relaxation``);
* ``chord``: the same engine with the former parallel chord lines (``certify.crown._parallel_relaxation``;
  skipped when the imported certify does not have it);
* ``auto_LiRPA``: auto_LiRPA's CROWN (tangent points read from its 0.01 grid table), when importable.

Also the CPU time of one certify call against the chord variant (median of ``--reps``). float32::

    PYTHONPATH=.:/tmp/ext/auto_LiRPA:/tmp/ext/stubs OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_smooth.py

Running it with ``PYTHONPATH=/work/main:...`` instead measures another checkout's certify (e.g. the code before
the change, whose chord lines bounded only the intermediate neurons whose interval crosses 0).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

import certify
import certify.crown as crown
from certify.auto_lirpa import auto_lirpa_available
from certkit_app.datasets import load_digits_split
from certkit_app.digits import make_digits_cnn, make_digits_mlp, train_classifier


def _net(arch: str, act: str, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    base = make_digits_mlp() if arch == "mlp" else make_digits_cnn()
    f = nn.Sigmoid if act == "sigmoid" else nn.Tanh
    model = nn.Sequential(*[f() if isinstance(m, nn.ReLU) else m for m in base])
    train_classifier(model, epochs=epochs, generator=torch.Generator().manual_seed(0))
    return model.eval()


def _chord(op: str, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: E741
    k, b_l, b_u = crown._parallel_relaxation(op, l, u)  # type: ignore[attr-defined]
    return k, b_l, k, b_u


def _call(model: nn.Module, x: torch.Tensor, eps: float, method: str) -> None:
    certify.bounds(model, x, eps, method=method, domain=(0, 1))


def _widths(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, method: str) -> tuple[float, int]:
    """Mean width of the output bounds and the number of inputs whose margin bounds verify the label."""
    b = certify.bounds(model, x, eps, method=method, domain=(0, 1))
    mb = certify.margin_bounds(model, x, y, eps, method=method, domain=(0, 1))
    lo = mb.lower.scatter(1, y[:, None], torch.inf)  # the true class's own margin is 0
    return float((b.upper - b.lower).mean()), int((lo > 0).all(1).sum())


def _cpu(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        c = time.process_time()
        fn()
        times.append(time.process_time() - c)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    d = load_digits_split("test")
    x, y = d.images[: args.n], d.labels[: args.n]
    has_chord = hasattr(crown, "_parallel_relaxation")
    has_lirpa = auto_lirpa_available()
    print(f"{'net':<12} {'eps':>5} {'method':<9} {'width certify':>13} {'chord':>13} {'auto_LiRPA':>13} "
          f"{'verified c/ch/aL':>17} {'CPU ms c/ch':>12}")
    for act in ("sigmoid", "tanh"):
        for arch in ("mlp", "cnn"):
            model = _net(arch, act, args.epochs)
            acc = float((model(x).argmax(1) == y).float().mean())
            for eps in args.eps:
                for method, theirs in (("crown", "CROWN"), ("crown-ibp", "CROWN-IBP")):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        w_c, v_c = _widths(model, x, y, eps, method)
                        t_c = _cpu(partial(_call, model, x, eps, method), args.reps)
                        w_ch = v_ch = t_ch = None
                        if has_chord:
                            saved = crown.smooth_relaxation
                            crown.smooth_relaxation = _chord  # type: ignore[assignment]
                            try:
                                w_ch, v_ch = _widths(model, x, y, eps, method)
                                t_ch = _cpu(partial(_call, model, x, eps, method), args.reps)
                            finally:
                                crown.smooth_relaxation = saved  # type: ignore[assignment]
                        w_a = v_a = None
                        if has_lirpa:
                            w_a, v_a = _widths(model, x, y, eps, f"auto_lirpa:{theirs}")

                    def fmt(w: float | None) -> str:
                        return "-" if w is None else f"{w:.5f}"

                    ver = f"{v_c}/{'-' if v_ch is None else v_ch}/{'-' if v_a is None else v_a}"
                    tms = f"{1e3 * t_c:.0f}/{'-' if t_ch is None else f'{1e3 * t_ch:.0f}'}"
                    print(f"{act + '-' + arch:<12} {eps:>5} {method:<9} {fmt(w_c):>13} {fmt(w_ch):>13} {fmt(w_a):>13} "
                          f"{ver:>17} {tms:>12}", flush=True)
            print(f"  ({act}-{arch}: clean accuracy {acc:.3f} on {args.n} test images)")


if __name__ == "__main__":
    main()
