"""Scale: CROWN on a 1.5M-parameter CIFAR CNN at batch 64 within a 24 GiB machine (issue 14).

The network (``cnn_7layer_1m5``): CROWN-IBP's cnn_7layer with BatchNorm after every conv, channels
64-64-128-128-128 with the second and last convs at stride 2 (so the flatten is 128x8x8) and fc 128 --
1.46M parameters, seeded random weights and randomised BatchNorm statistics; 3x32x32 inputs in [0, 1],
L-inf eps 2/255 clipped to [0, 1], float32, one thread.

Each (method, batch) runs in a fresh subprocess. Peak memory is reported two ways: the process's peak
resident set size (``ru_maxrss``, whole process, including Python and torch) and its growth over the RSS
before the first bound computation. Time is wall and CPU time of one call (graph conversion included).
Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_scale.py --methods crown --batches 8 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_bounds import _cpu_s, _vm_hwm_mb
from bench_cifar import cnn_7layer_bn


def cnn_7layer_1m5() -> nn.Module:
    """cnn_7layer (BatchNorm) with two stride-2 convs and fc 128: 1.46M parameters."""
    return cnn_7layer_bn(strides=(1, 1, 2, 1, 2), fc=128)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(method: str, batch: int) -> None:
    import certify

    warnings.simplefilter("ignore")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    net = cnn_7layer_1m5()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net(x)
        base = _rss_mb()
        t, c = time.perf_counter(), time.process_time()
        b = certify.bounds(net, x, 2 / 255, method=method, domain=(0.0, 1.0))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    width = float((b.upper - b.lower).mean())
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": peak, "growth_mb": peak - base, "width": width}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["ibp", "crown-ibp", "crown"])
    ap.add_argument("--batches", type=int, nargs="+", default=[64])
    ap.add_argument("--timeout", type=float, default=None, help="seconds of wall time per row")
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    n_par = sum(p.numel() for p in cnn_7layer_1m5().parameters())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"cnn_7layer_1m5: {n_par / 1e6:.2f}M parameters; torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, machine memory {mem:.1f} GiB, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| method | batch | wall s | CPU s | peak RSS MB (process) | RSS growth MB | mean width |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        for batch in args.batches:
            proc = subprocess.Popen([sys.executable, __file__, "--child", method, str(batch)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=os.environ.copy())
            t0, hwm, cpu, timed_out = time.perf_counter(), 0.0, 0.0, False
            while proc.poll() is None:  # the kernel's peak RSS (VmHWM), also for a run that is stopped
                hwm, cpu = max(hwm, _vm_hwm_mb(proc.pid)), max(cpu, _cpu_s(proc.pid))
                if args.timeout is not None and time.perf_counter() - t0 > args.timeout:
                    proc.kill()
                    timed_out = True
                    break
                time.sleep(1.0)
            out, err = proc.communicate()
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                # SIGKILL without our timeout is someone else's kill, usually the kernel's OOM killer when the
                # machine's memory is taken by other processes: say so instead of calling it a timeout.
                why = (f"timeout ({args.timeout:.0f} s)" if timed_out
                       else f"killed by signal {-proc.returncode} after {time.perf_counter() - t0:.0f} s "
                            "(see dmesg: OOM killer?)" if proc.returncode is not None and proc.returncode < 0
                       else f"failed: {err.strip()[-80:]}")
                print(f"| {method} | {batch} | {why}; {cpu:.0f} CPU s so far | | | {hwm:.0f} so far | | |", flush=True)
                continue
            r = json.loads(lines[-1])
            print(f"| {method} | {batch} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['peak_mb']:.0f} | "
                  f"{r['growth_mb']:.0f} | {r['width']:.3g} |", flush=True)


if __name__ == "__main__":
    main()
