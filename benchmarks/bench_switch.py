"""Before/after of one certify speed switch in one process: ``certify.bounds`` on a CIFAR-shaped network of
``bench_cifar.py``, calls alternating between the switch's given value (before) and its default (after), CPU time
per call, median of the per-pair ratios (robust to load drifting on a shared machine: both sides of a pair see the
same load); with ``--forward``, each call's time also over a forward pass timed right before it (IBP / forward).
Checks that both settings give the same bounds (bit for bit, or the largest relative difference)::

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_switch.py --net cnn_4layer --method ibp --knob certify.ibp.USE_COMPILED=False --pairs 400 --forward
    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_switch.py --net resnet_small --method crown-ibp --knob certify.crown.FUSED_IBP_RELU=False --pairs 16
    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_switch.py --net resnet_small --normalise --method crown-ibp --knob certify.crown.INPUT_AFFINE_FOLD=False --pairs 16

``--knob bounds.NAME=VALUE`` compares a keyword of ``certify.bounds`` instead (before: given; after: its default)::

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_switch.py --net cnn_4layer --method crown --knob bounds.intersect_ibp=False --pairs 20
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cifar

import certify


def _cpu(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="cnn_4layer", choices=("cnn_4layer", "cnn_7layer_bn", "resnet_small"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--method", default="ibp", choices=("ibp", "crown-ibp", "crown"))
    ap.add_argument("--knob", required=True, metavar="MODULE.NAME=VALUE",
                    help="the switch and its 'before' value (a Python literal); 'after' is its default")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--forward", action="store_true", help="also report each side's time over a forward pass")
    ap.add_argument("--normalise", action="store_true",
                    help="prepend the usual CIFAR input normalisation (x - mean) / std with (1, 3, 1, 1) buffers")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    target, _, value = args.knob.partition("=")
    mod_name, _, attr = target.rpartition(".")
    if mod_name == "bounds":  # a keyword of certify.bounds: a namespace holding its default stands in for a module
        import inspect
        import types

        default = inspect.signature(importlib.import_module("certify").bounds).parameters[attr].default
        mod, keyword = types.SimpleNamespace(**{attr: default}), True
    else:
        mod, keyword = importlib.import_module(mod_name), False
    if not (keyword or mod_name.startswith("certify")) or not hasattr(mod, attr):
        raise SystemExit(f"--knob {args.knob!r}: expected MODULE.NAME=VALUE with an existing attribute of a certify module")
    before, after = ast.literal_eval(value), getattr(mod, attr)
    import certify.ibp

    certify.ibp.IBP_KERNEL_AFTER = 0  # compiled IBP steps from the warm-up call on (see bench_bounds.py)
    net = getattr(bench_cifar, args.net)()
    if args.normalise:
        net = torch.nn.Sequential(bench_cifar.CifarNormalise(), net).eval()
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def side(v: object) -> Callable[[], certify.Bounds]:
        def run() -> certify.Bounds:
            setattr(mod, attr, v)
            kw = {attr: v} if keyword else {}
            return certify.bounds(net, x, 2 / 255, method=args.method, domain=(0.0, 1.0), **kw)
        return run

    runs = {"before": side(before), "after": side(after)}
    with torch.no_grad():
        b0, b1 = runs["before"](), runs["after"]()
        for _ in range(2):
            for f in runs.values():
                f()
            net(x)
        t: dict[str, list[float]] = {"before": [], "after": [], "forward": []}
        r: dict[str, list[float]] = {"before": [], "after": []}
        for k in range(args.pairs):
            for name in (("before", "after") if k % 2 == 0 else ("after", "before")):
                fwd = _cpu(lambda: net(x)) if args.forward else 1.0
                c = _cpu(runs[name])
                t[name].append(c)
                r[name].append(c / max(fwd, 1e-9))
                t["forward"].append(fwd)
    setattr(mod, attr, after)
    m = statistics.median
    same = torch.equal(b0.lower, b1.lower) and torch.equal(b0.upper, b1.upper)
    scale = float(torch.maximum(b0.lower.abs(), b0.upper.abs()).max())
    diff = float(torch.maximum((b0.lower - b1.lower).abs(), (b0.upper - b1.upper).abs()).max()) / max(scale, 1e-30)
    load = os.getloadavg()
    print(f"{args.net} b{args.batch} {args.method}, {args.knob} (before) vs {after!r} (after), {args.pairs} pairs, "
          f"load {load[0]:.1f}: CPU ms before {m(t['before']) * 1e3:.3f}, after {m(t['after']) * 1e3:.3f}, "
          f"speed-up (median of per-pair ratios) {m([a / b for a, b in zip(t['before'], t['after'])]):.3f}; "
          f"bounds {'bit-identical' if same else f'max rel. diff {diff:.1e}'}")
    if args.forward:
        print(f"  / forward (median of per-call ratios; forward {m(t['forward']) * 1e3:.3f} ms): before "
              f"{m(r['before']):.3f}, after {m(r['after']):.3f}")


if __name__ == "__main__":
    main()
