"""CIFAR-scale bound propagation: time and peak memory of certify against auto_LiRPA in the same run.

Networks (random weights, 3x32x32 inputs in [0, 1], L-inf eps 2/255 clipped to [0, 1]; the builders are
those of ``tests/certify/cifar_models.py``, shared with the tests):

* ``cnn_4layer``: conv(3,16,4,s2,p1)-ReLU-conv(16,32,4,s2,p1)-ReLU-fc(2048,100)-ReLU-fc(100,10);
* ``cnn_7layer_bn``: CROWN-IBP's cnn_7layer with BatchNorm after every conv (64-64-128-128-128 channels,
  one stride-2 conv) and fc 512, BatchNorm running statistics randomised;
* ``resnet_small``: conv(3,16)-ReLU, two residual blocks ``x + conv(relu(conv(x)))`` (16 channels, the
  second at stride 2 with a 1x1 shortcut), ReLU, fc(16*16*16, 10).

Each (network, method, library, batch) runs in a fresh subprocess: peak memory is the growth of the
process's peak resident set size (``ru_maxrss``) over its size before the first bound computation; time
is the median wall and CPU time of ``--reps`` calls after one warm-up call. Bounds of both libraries are
compared (max relative difference). auto_LiRPA is optional: put a clone on PYTHONPATH::

    PYTHONPATH=/tmp/ext/auto_LiRPA:/tmp/ext/stubs OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cifar.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
from torch import nn

# the networks are defined once, in tests/certify/cifar_models.py (the tests build them too)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.certify.cifar_models import cnn_4layer, cnn_7layer, cnn_7layer_bn, resnet_small

__all__ = ["CifarNormalise", "cnn_4layer", "cnn_7layer", "cnn_7layer_bn", "resnet_small"]  # re-exported for the other benchmarks

CONFIGS = [(net, m) for net in ("cnn_4layer", "cnn_7layer_bn", "resnet_small") for m in ("ibp", "crown-ibp", "crown")]


class CifarNormalise(nn.Module):
    """The usual CIFAR-10 input normalisation ``(x - mean) / std`` with (1, 3, 1, 1) buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # type: ignore[operator]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(net_name: str, method: str, lib: str, batch: int, reps: int, warmup: int, out: str) -> None:
    import certify

    warnings.simplefilter("ignore")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    net = {"cnn_4layer": cnn_4layer, "cnn_7layer_bn": cnn_7layer_bn, "resnet_small": resnet_small}[net_name]()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    theirs = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN"}[method]
    m = method if lib == "certify" else f"auto_lirpa:{theirs}"
    with torch.no_grad():
        net(x)
        base = _rss_mb()
        walls, cpus = [], []
        t, c = time.perf_counter(), time.process_time()
        b = certify.bounds(net, x, 2 / 255, method=m, domain=(0.0, 1.0))
        if not warmup:  # the first call is timed too (heavy configurations under load)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        for _ in range(reps if warmup else reps - 1):
            t, c = time.perf_counter(), time.process_time()
            certify.bounds(net, x, 2 / 255, method=m, domain=(0.0, 1.0))
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    torch.save({"lower": b.lower, "upper": b.upper}, out)
    print(json.dumps({"wall": statistics.median(walls), "cpu": statistics.median(cpus), "peak_mb": peak}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="0: time the first call too (no warm-up call)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per library and configuration")
    ap.add_argument("--only", nargs="*", default=None, help="network names to run")
    ap.add_argument("--methods", nargs="*", default=None, help="methods to run")
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        net_name, method, lib, batch = args.child
        _child(net_name, method, lib, int(batch), max(1, args.reps), args.warmup, args.out)
        return
    from certify.auto_lirpa import auto_lirpa_available

    libs = ["certify", "auto_LiRPA"] if auto_lirpa_available() else ["certify"]
    tmp = tempfile.mkdtemp(prefix="bench_cifar_")  # one directory per run: concurrent runs never share files

    def bounds_file(net_name: str, method: str, lib: str, batch: int) -> str:
        return os.path.join(tmp, f"{net_name}_{method}_{lib}_{batch}.pt")

    print(f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, reps {args.reps}, "
          f"auto_LiRPA {'available' if len(libs) == 2 else 'NOT available'}")
    print("| network | method | batch | certify s (CPU s) | auto_LiRPA s (CPU s) | speed-up (wall / CPU) | "
          "certify peak MB | auto_LiRPA peak MB | max rel. diff of bounds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for net_name, method in CONFIGS:
        if (args.only and net_name not in args.only) or (args.methods and method not in args.methods):
            continue
        for batch in args.batches:
            res = {}
            for lib in libs:
                try:
                    out = subprocess.run([sys.executable, __file__, "--reps", str(args.reps), "--warmup",
                                          str(args.warmup), "--child", net_name, method, lib, str(batch),
                                          "--out", bounds_file(net_name, method, lib, batch)],
                                         capture_output=True, text=True, env=os.environ.copy(), timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    res[lib] = {"error": "timeout"}
                    continue
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                res[lib] = json.loads(lines[-1]) if lines else {"error": out.stderr.strip().splitlines()[-1:]}
            c, a = res["certify"], res.get("auto_LiRPA")
            cell = lambda r: (f"{r['wall']:.2f} ({r['cpu']:.2f})" if r and "wall" in r  # noqa: E731
                              else (("timeout" if r.get("error") == "timeout" else "failed") if r else "-"))
            diff, speed = "-", "-"
            if a and "wall" in a and "wall" in c:
                speed = f"{a['wall'] / c['wall']:.2f}x / {a['cpu'] / c['cpu']:.2f}x"
                p, q = (torch.load(bounds_file(net_name, method, lib, batch)) for lib in ("certify", "auto_LiRPA"))
                scale = float(q["upper"].abs().max()) + 1
                diff = f"{max(float((p['lower'] - q['lower']).abs().max()), float((p['upper'] - q['upper']).abs().max())) / scale:.1e}"
            print(f"| {net_name} | {method} | {batch} | {cell(c)} | {cell(a)} | {speed} | "
                  f"{c.get('peak_mb', float('nan')):.0f} | {a.get('peak_mb', float('nan')) if a else float('nan'):.0f} | "
                  f"{diff} |", flush=True)


if __name__ == "__main__":
    main()
