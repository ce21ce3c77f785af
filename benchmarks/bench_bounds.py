"""Bound propagation speed: certify's IBP / CROWN-IBP / CROWN against a forward pass and auto_LiRPA.

Networks: the digits MLP 64-256-256-10 and the digits CNN (``certkit_app.digits``), batch 256 of test
images, L-inf eps 0.1 clipped to [0, 1]. Each repetition times every run once in a rotating order
and ratios are taken within a repetition (drift and other jobs on a shared machine cancel); the
median over repetitions is reported. auto_LiRPA is optional: put a clone on PYTHONPATH, e.g.

    PYTHONPATH=/tmp/ext/auto_LiRPA OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_bounds.py

Agreement with auto_LiRPA is reported as the max relative difference of the bounds computed in
float64 by both (float32 differences only measure rounding).

CIFAR section (``--section cifar``; issue 14): the CIFAR-shaped ``cnn_4layer``, ``cnn_7layer_bn`` and
``resnet_small`` of ``benchmarks/bench_cifar.py`` (random weights, 3x32x32 inputs in [0, 1], L-inf eps
2/255 clipped to [0, 1], float32) at ``--batches`` (default 32 64). Every (network, batch, run) is a fresh
subprocess, so peak memory is the growth of the process's peak resident set size (``getrusage``
``ru_maxrss``, which sees torch's native allocations; tracemalloc does not) over its RSS before the first
timed call. Runs: the forward pass (the floor), IBP, CROWN-IBP and CROWN of certify and of auto_LiRPA
(columns marked "not installed" when it is absent). Time: wall and CPU time of one warm-up call (graph
conversion, caches) then the median of ``--reps`` calls; ``--warmup 0`` times the first call instead
(heavy rows). The IBP / forward ratio is also taken in back-to-back (IBP, forward) pairs inside the IBP
subprocess (median of per-pair CPU-time ratios: robust to other jobs on a shared machine). Bounds of
both libraries are compared (float32): ``max |a - b| / max |bound|`` over all entries. ``--paired N`` adds, per
(network, batch, method), a subprocess that calls certify and auto_LiRPA alternately (after a warm-up call of each)
and reports the median of the N per-pair CPU-time ratios: on a shared machine the load drifts between the separate
subprocesses above, not between the two calls of a pair. A row that
runs past ``--timeout`` (wall) or ``--cpu-timeout`` (CPU seconds), or whose peak RSS passes ``--rss-limit`` MB, reports
the CPU seconds and peak RSS (``VmHWM``) it had reached::

    PYTHONPATH=.:/tmp/ext/auto_LiRPA:/tmp/ext/stubs OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_bounds.py --section cifar --timeout 600

Where auto_LiRPA's one call on the batch does not fit in memory (full CROWN on ``cnn_7layer_bn`` / ``resnet_small``
at batch 32-64), ``--peer-sub-batch N`` runs it on the same inputs in consecutive sub-batches of N (bounds
concatenated, CPU time summed, peak over all of them) and adds a row with certify in the same sub-batches; the
``--warmup-batch K`` warm-up call on K inputs keeps the conversion out of the timed call without a whole extra call;
``--peer-crown-batch-size N`` sets auto_LiRPA's own memory option ``crown_batch_size`` (intermediate bounds N neurons
at a time; needed for ``cnn_7layer_bn``, where its CROWN passed 8 GB at batch 1); ``--float64`` compares the bounds in
float64::

    PYTHONPATH=.:/tmp/ext/auto_LiRPA:/tmp/ext/stubs OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_bounds.py --section cifar --nets resnet_small --batches 32 --methods crown --reps 1 --warmup 1 --warmup-batch 1 --peer-sub-batch 4 --rss-limit 8000
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import certify
import certify.ibp
from certify.auto_lirpa import auto_lirpa_available
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn, digits_mlp

# the warm-up call compiles plain IBP's numba steps too (by default a model's third IBP call does, which would fall
# inside the timed calls), as it does CROWN's: every row times the steady state
certify.ibp.IBP_KERNEL_AFTER = 0


def _set_knobs(knobs: list[str]) -> None:
    """``MODULE.NAME=VALUE`` (VALUE a Python literal): ``setattr(MODULE, NAME, VALUE)`` for an existing attribute."""
    for k in knobs:
        target, _, value = k.partition("=")
        mod_name, _, attr = target.rpartition(".")
        mod = importlib.import_module(mod_name)
        if not mod_name.startswith("certify") or not hasattr(mod, attr):
            raise SystemExit(f"--knob {k!r}: expected MODULE.NAME=VALUE with an existing attribute of a certify module")
        setattr(mod, attr, ast.literal_eval(value))


def _timer(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds); CPU time is robust to other jobs on a shared machine."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _plain_ibp(model: torch.nn.Sequential, x: torch.Tensor, eps: float) -> Callable[[], object]:
    """The floor: centre/radius IBP written by hand for this Sequential (Flatten/Linear/Conv2d/ReLU), with
    |W|/2 precomputed and no checks, no graph, no caching logic."""
    import torch.nn.functional as F
    from torch import nn

    layers = []
    for m in model:
        if isinstance(m, nn.Linear | nn.Conv2d):
            layers.append((m, m.weight * 0.5, m.weight.abs() * 0.5))
        else:
            layers.append((m, None, None))

    def run() -> object:
        hi, lo = (x + eps).clamp_(max=1.0), (x - eps).clamp_(min=0.0)
        s, d = hi + lo, hi - lo
        c = r = s
        for m, wh, wa in layers:
            if isinstance(m, nn.Linear):
                c, r = F.linear(s, wh, m.bias), F.linear(d, wa)
            elif isinstance(m, nn.Conv2d):
                kw = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups}
                c, r = F.conv2d(s, wh, m.bias, **kw), F.conv2d(d, wa, None, **kw)
            elif isinstance(m, nn.ReLU):
                hi, lo = (c + r).relu_(), (c - r).relu_()
                s, d = hi + lo, hi - lo
            else:  # Flatten
                s, d = m(s), m(d)
        return c - r, c + r

    return run


def _digits(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    have_al = auto_lirpa_available()
    x = load_digits_split("test").images[: args.batch]
    eps, dom = args.eps, (0.0, 1.0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {len(x)}, eps {eps}, "
          f"auto_LiRPA {'available' if have_al else 'NOT available'}")
    for name, make in (("MLP 64-256-256-10", digits_mlp), ("CNN (digits_cnn)", digits_cnn)):
        model = make()
        for p in model.parameters():
            p.requires_grad_(False)
        runs: dict[str, Callable[[], object]] = {"forward": lambda m=model: m(x)}
        for meth in ("ibp", "crown-ibp", "crown"):
            runs[f"certify {meth}"] = lambda m=model, k=meth: certify.bounds(m, x, eps, method=k, domain=dom)
            if have_al:
                theirs = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN"}[meth]
                runs[f"auto_LiRPA {meth}"] = lambda m=model, k=theirs: certify.bounds(
                    m, x, eps, method=f"auto_lirpa:{k}", domain=dom)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        with torch.no_grad():
            for f in runs.values():  # warm-up (and auto_LiRPA's graph build)
                f()
            keys = list(runs)
            for r in range(args.reps):
                order = keys[r % len(keys):] + keys[: r % len(keys)]
                for k in order:
                    if "crown" in k and "crown-ibp" not in k and r >= args.skip_crown_reps:
                        continue
                    times[k].append(_timer(runs[k]))
        wall = {k: statistics.median(t[0] for t in v) * 1e3 for k, v in times.items() if v}
        cpu = {k: statistics.median(t[1] for t in v) * 1e3 for k, v in times.items() if v}
        print(f"\n## {name}")
        print("| run | median wall ms | median CPU ms |")
        print("|---|---|---|")
        for k in wall:
            print(f"| {k} | {wall[k]:.2f} | {cpu[k]:.2f} |")
        print("| ratio | wall | CPU |")
        print("|---|---|---|")
        print(f"| certify IBP / forward (rotation above) | {wall['certify ibp'] / wall['forward']:.2f} | "
              f"{cpu['certify ibp'] / cpu['forward']:.2f} |")
        # IBP against the forward pass in steady state: back-to-back pairs, so both see the same
        # cache and allocator state (the rotation above puts each right after a different heavy run)
        plain = _plain_ibp(model, x, eps)
        with torch.no_grad():
            lo_p, hi_p = plain()  # type: ignore[misc]
            ours = certify.bounds(model, x, eps, method="ibp", domain=dom)
            assert torch.allclose(lo_p, ours.lower, atol=1e-4) and torch.allclose(hi_p, ours.upper, atol=1e-4)
            for what, fn in (("certify IBP", runs["certify ibp"]), ("hand-written IBP (floor)", plain)):
                pairs = []
                for _ in range(args.pairs):
                    t_ibp = _timer(fn)[0]
                    t_fwd = _timer(runs["forward"])[0]
                    pairs.append((t_ibp, t_fwd))
                med_ratio = statistics.median(a / b for a, b in pairs)
                ibp_ms = statistics.median(a for a, _ in pairs) * 1e3
                fwd_ms = statistics.median(b for _, b in pairs) * 1e3
                print(f"| {what} / forward ({args.pairs} back-to-back pairs: median ratio; medians "
                      f"{ibp_ms:.2f} / {fwd_ms:.2f} ms) | {med_ratio:.2f} | |")
        if have_al:
            for meth in ("ibp", "crown-ibp", "crown"):
                a, b = f"auto_LiRPA {meth}", f"certify {meth}"
                print(f"| speed-up over auto_LiRPA, {meth} | {wall[a] / wall[b]:.2f}x | {cpu[a] / cpu[b]:.2f}x |")
            m64, x64 = make().double(), x.double()
            for meth, theirs in (("ibp", "IBP"), ("crown-ibp", "CROWN-IBP"), ("crown", "CROWN")):
                ours = certify.bounds(m64, x64, eps, method=meth, domain=dom)
                ref = certify.bounds(m64, x64, eps, method=f"auto_lirpa:{theirs}", domain=dom)
                rel = max(float(((a - b).abs() / b.abs().clamp(min=1e-6)).max().detach())
                          for a, b in ((ours.lower, ref.lower), (ours.upper, ref.upper)))
                print(f"| max relative difference of bounds vs auto_LiRPA (float64), {meth} | {rel:.1e} |")


# ----------------------------------------------------------------------------------------------
# CIFAR-shaped networks, one subprocess per (network, batch, run)
# ----------------------------------------------------------------------------------------------

CIFAR_NETS = ("cnn_4layer", "cnn_7layer_bn", "resnet_small")
METHODS = ("ibp", "crown-ibp", "crown")
_LIRPA = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN"}
_OUT = Path(os.environ.get("TMPDIR", "/tmp"))


def _cifar_net(name: str) -> torch.nn.Module:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_cifar  # the builders live there (one definition of each network)

    net: torch.nn.Module = getattr(bench_cifar, name)()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a running process (``VmHWM`` in /proc), MB; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat); 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Cat:
    """Bounds of a batch computed in sub-batches, concatenated (what ``certify.bounds`` returns, reduced)."""

    def __init__(self, parts: list) -> None:
        self.lower = torch.cat([b.lower for b in parts])
        self.upper = torch.cat([b.upper for b in parts])


def _child(net_name: str, run: str, batch: int, reps: int, warmup: int, pairs: int, sub: int = 0,
           warmup_batch: int = 0, float64: bool = False, peer_crown_batch: int = 0) -> None:
    """One row: ``run`` is ``forward`` or ``LIB:METHOD``; prints a JSON line (times in seconds, MB). ``sub`` > 0:
    the batch's bounds come from consecutive calls on sub-batches of ``sub`` inputs (the same inputs, bounds
    concatenated; the time is the sum). ``warmup_batch`` > 0: warm-up calls on the first ``warmup_batch`` inputs.
    ``peer_crown_batch`` > 0: auto_LiRPA's ``crown_batch_size`` option (its intermediate bounds this many neurons at a
    time)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.simplefilter("ignore")
    if peer_crown_batch:
        from certify import auto_lirpa

        # auto_LiRPA reads the second option whenever the first is finite but has no default for it
        auto_lirpa.BOUND_OPTS.update(crown_batch_size=peer_crown_batch, batched_crown_max_vram_ratio=0.9)
        # and its AutoBatchSize.update skips CUDA's memory query only when the device equals the string 'cpu'; a
        # torch.device('cpu') (what the adapter passes) does not, so it asks CUDA and fails on CPU-only torch: keep its
        # batch size fixed on CPU, as it intends
        from auto_LiRPA import utils as al_utils

        update = al_utils.AutoBatchSize.update
        al_utils.AutoBatchSize.update = lambda self: (  # type: ignore[method-assign]
            None if str(self.device) == "cpu" else update(self))
    net = _cifar_net(net_name)
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    if float64:
        net, x = net.double(), x.double()
    warm: Callable[[], object] | None = None
    if run == "forward":
        fn: Callable[[], object] = lambda: net(x)  # noqa: E731
    else:
        lib, meth = run.split(":")
        m = meth if lib == "certify" else f"auto_lirpa:{_LIRPA[meth]}"
        call = lambda xs: certify.bounds(net, xs, 2 / 255, method=m, domain=(0.0, 1.0))  # noqa: E731
        if sub:
            fn = lambda: _Cat([call(xs) for xs in x.split(sub)])  # noqa: E731
        else:
            fn = lambda: call(x)  # noqa: E731
        if warmup_batch:
            warm = lambda: call(x[:warmup_batch])  # noqa: E731
    res: dict[str, float] = {}
    if run.startswith("paired:"):  # certify and auto_LiRPA alternating in one process (same load, same allocator)
        meth = run.split(":")[1]
        fns = [lambda k=k: certify.bounds(net, x, 2 / 255, method=k, domain=(0.0, 1.0))
               for k in (meth, f"auto_lirpa:{_LIRPA[meth]}")]
        ratios, cpus = [], ([], [])  # type: ignore[var-annotated]
        with torch.no_grad():
            for f in fns:
                for _ in range(max(warmup, 1)):
                    f()
            for k in range(reps):
                order = (0, 1) if k % 2 == 0 else (1, 0)
                t = {i: _timer(fns[i])[1] for i in order}
                ratios.append(t[1] / max(t[0], 1e-9))
                cpus[0].append(t[0])
                cpus[1].append(t[1])
        res = {"ratio": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios),
               "certify_cpu": statistics.median(cpus[0]), "auto_cpu": statistics.median(cpus[1])}
        print(json.dumps(res))
        return
    with torch.no_grad():
        net(x[:1])
        base = _rss_mb()
        times = []
        kept: list[object] = []

        def timed() -> None:  # keeps the last call's bounds (no extra call for them: heavy rows take minutes)
            kept[:] = [fn()]

        if warm is not None:  # warm-up on the first inputs only (graph conversion, caches, compiled kernels)
            for _ in range(warmup):
                warm()
        elif warmup:
            fn()
        for _ in range(reps):
            times.append(_timer(timed))
        while sum(t[0] for t in times) < 1.0 and len(times) < 1000:  # fast calls: at least 1 s of samples
            times.append(_timer(timed))
        res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        res["wall"] = statistics.median(t[0] for t in times)
        res["cpu"] = statistics.median(t[1] for t in times)
        if run != "forward":
            b = kept[-1]
            torch.save({"lower": b.lower, "upper": b.upper},  # type: ignore[attr-defined]
                       _OUT / f"bench_bounds_{os.getpid()}.pt")
            res["file"] = str(_OUT / f"bench_bounds_{os.getpid()}.pt")  # type: ignore[assignment]
        if run == "certify:ibp" and pairs:  # steady state IBP / forward, interleaved back to back in one process
            fwd = lambda: net(x)  # noqa: E731
            fwd()
            ratios = []
            t0 = time.process_time()  # --cifar-pairs pairs, but at least 20 and at most ~5 CPU s of them
            while len(ratios) < pairs and (len(ratios) < 20 or time.process_time() - t0 < 5.0):
                ratios.append(_timer(fn)[1] / max(_timer(fwd)[1], 1e-9))
            res["ibp_over_forward"] = statistics.median(ratios)
            res["ibp_pairs"] = len(ratios)
    print(json.dumps(res))


def _rel_diff(p: dict[str, torch.Tensor], q: dict[str, torch.Tensor]) -> float:
    """max |a - b| over both bounds and every entry, relative to the largest |bound| (entry-wise relative
    differences of float32 bounds near 0 measure only rounding)."""
    diff = max(float((p[k].double() - q[k].double()).abs().max()) for k in ("lower", "upper"))
    scale = max(float(t[k].double().abs().max()) for t in (p, q) for k in ("lower", "upper"))
    return diff / max(scale, 1e-30)


def _cifar(args: argparse.Namespace) -> None:
    warnings.simplefilter("ignore")
    from certify.auto_lirpa import auto_lirpa_available

    have_al = auto_lirpa_available()
    libs = ["certify", "auto_LiRPA"] if have_al else ["certify"]
    load = os.getloadavg()
    print(f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, {os.cpu_count()} cores, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, reps {args.reps}, warm-up {args.warmup}")
    if not have_al:
        print("auto_LiRPA NOT available (put a clone on PYTHONPATH: PYTHONPATH=.:/tmp/ext/auto_LiRPA:/tmp/ext/stubs); "
              "its columns are skipped")
    print("\nwall s (CPU s) per call; peak = growth of the subprocess's peak RSS (ru_maxrss) in MB; speed-up = "
          "auto_LiRPA / certify (wall / CPU); rel. diff = max |a - b| / max |bound| over all entries "
          f"({'float64' if args.float64 else 'float32'})\n")
    paired = " paired CPU speed-up, median of --paired pairs (range; median CPU s certify / auto_LiRPA) |"
    print("| network | batch | run | certify s (CPU s) | certify peak MB | auto_LiRPA s (CPU s) | auto_LiRPA peak MB | "
          "speed-up wall / CPU | max rel. diff | / forward (CPU) |" + (paired if args.paired and have_al else ""))
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if args.paired and have_al else ""))

    def one(net_name: str, run: str, batch: int, reps: int | None = None, sub: int = 0) -> dict:
        cmd = [sys.executable, __file__, "--reps", str(reps or args.reps), "--warmup", str(args.warmup), "--pairs",
               str(args.cifar_pairs), "--peer-sub-batch", str(sub), "--warmup-batch", str(args.warmup_batch),
               "--peer-crown-batch-size", str(args.peer_crown_batch_size),
               *(["--float64"] if args.float64 else []), *(f"--knob={k}" for k in args.knob),
               "--child", net_name, run, str(batch)]
        # the child's output goes to temporary files, not pipes: the loop below polls without reading, and a child
        # that wrote more than a pipe's 64 KiB (auto_LiRPA's warnings over 32 sub-batches) blocked for ever
        fout, ferr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, text=True, env=os.environ.copy())
        t0, hwm, cpu = time.perf_counter(), 0.0, 0.0
        while proc.poll() is None:  # CPU time and peak RSS so far, for a row stopped at the timeout
            hwm, cpu = max(hwm, _vm_hwm_mb(proc.pid)), max(cpu, _cpu_s(proc.pid))
            if ((args.timeout is not None and time.perf_counter() - t0 > args.timeout)
                    or (args.cpu_timeout is not None and cpu > args.cpu_timeout)
                    or (args.rss_limit is not None and hwm > args.rss_limit)):
                proc.kill()
                proc.wait()
                return {"error": f"stopped at {time.perf_counter() - t0:.0f} s wall / {cpu:.0f} CPU s "
                                 f"({hwm:.0f} MB peak RSS so far)"}
            time.sleep(0.5)
        proc.wait()
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
        fout.close()
        ferr.close()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if lines:
            return json.loads(lines[-1])
        if proc.returncode < 0:  # e.g. -9: killed by the kernel's out-of-memory killer
            return {"error": f"killed by signal {-proc.returncode} ({hwm:.0f} MB peak RSS, {cpu:.0f} CPU s)"}
        errs = [ln for ln in err.splitlines() if "Error" in ln or "error" in ln] or err.strip().splitlines() or ["?"]
        return {"error": f"failed: {errs[-1].strip()[:100]}"}

    cell = lambda r: f"{r['wall']:.3g} ({r['cpu']:.3g})" if "wall" in r else r.get("error", "-")  # noqa: E731
    peak = lambda r: f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-"  # noqa: E731
    for net_name in args.nets:
        for batch in args.batches:
            fwd = one(net_name, "forward", batch)
            print(f"| {net_name} | {batch} | forward | {cell(fwd)} | {peak(fwd)} | | | | | 1 |"
                  + (" |" if args.paired and have_al else ""), flush=True)
            for meth in args.methods:
                sub = args.peer_sub_batch if 0 < args.peer_sub_batch < batch else 0
                res = {lib: one(net_name, f"{lib}:{meth}", batch, sub=sub if lib == "auto_LiRPA" else 0)
                       for lib in libs}
                if sub:  # certify in the same sub-batches as auto_LiRPA: the like-for-like comparison
                    res["certify_sub"] = one(net_name, f"certify:{meth}", batch, sub=sub)
                c, a = res["certify"], res.get("auto_LiRPA", {"error": "not installed"})
                speed = diff = ratio = "-"
                if "wall" in c and "wall" in a:
                    speed = f"{a['wall'] / c['wall']:.2f}x / {a['cpu'] / c['cpu']:.2f}x"
                    diff = f"{_rel_diff(torch.load(c['file']), torch.load(a['file'])):.1e}"
                if "cpu" in c and "cpu" in fwd:
                    ratio = f"{c['cpu'] / fwd['cpu']:.2f}"
                    if "ibp_over_forward" in c:
                        ratio += f" (median of {c.get('ibp_pairs', '?')} interleaved pairs: {c['ibp_over_forward']:.2f})"
                label = f"{meth} (auto_LiRPA in {-(-batch // sub)} x {sub})" if sub else meth
                sub_row = ""
                if sub:
                    cs = res["certify_sub"]
                    s_speed = s_diff = "-"
                    if "wall" in cs and "wall" in a:
                        s_speed = f"{a['wall'] / cs['wall']:.2f}x / {a['cpu'] / cs['cpu']:.2f}x"
                        s_diff = f"{_rel_diff(torch.load(cs['file']), torch.load(a['file'])):.1e}"
                    sub_row = (f"| {net_name} | {batch} | {meth} (both in {-(-batch // sub)} x {sub}) | {cell(cs)} | "
                               f"{peak(cs)} | {cell(a)} | {peak(a)} | {s_speed} | {s_diff} | |"
                               + (" |" if args.paired and have_al else ""))
                for r in res.values():
                    if "file" in r:
                        Path(r["file"]).unlink(missing_ok=True)
                paired = ""
                if args.paired and have_al:
                    pr = one(net_name, f"paired:{meth}", batch, reps=args.paired)
                    paired = (f" | {pr['ratio']:.2f}x ({pr['lo']:.2f}-{pr['hi']:.2f}; {pr['certify_cpu']:.3g} / "
                              f"{pr['auto_cpu']:.3g} CPU s)" if "ratio" in pr else f" | {pr.get('error', '-')}")
                print(f"| {net_name} | {batch} | {label} | {cell(c)} | {peak(c)} | {cell(a)} | {peak(a)} | {speed} | "
                      f"{diff} | {ratio}{paired} |", flush=True)
                if sub_row:
                    print(sub_row, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", choices=("digits", "cifar", "all"), default="all")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256, help="digits section")
    ap.add_argument("--eps", type=float, default=0.1, help="digits section")
    ap.add_argument("--threads", type=int, default=1, help="digits section")
    ap.add_argument("--pairs", type=int, default=300, help="back-to-back (IBP, forward) pairs")
    ap.add_argument("--skip-crown-reps", type=int, default=3, help="digits: repetitions for the slow CROWN runs")
    ap.add_argument("--nets", nargs="+", default=list(CIFAR_NETS), choices=CIFAR_NETS, help="cifar section")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64], help="cifar section")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="cifar section")
    ap.add_argument("--warmup", type=int, default=1, help="cifar: 0 times the first call (no warm-up call)")
    ap.add_argument("--timeout", type=float, default=None, help="cifar: seconds of wall time per subprocess")
    ap.add_argument("--cpu-timeout", type=float, default=None,
                    help="cifar: CPU seconds per subprocess (fairer than wall time on a loaded machine)")
    ap.add_argument("--cifar-pairs", type=int, default=300,
                    help="cifar: interleaved (IBP, forward) pairs in one process, median of their CPU-time ratios "
                         "(at least 20, at most ~5 CPU s of pairs)")
    ap.add_argument("--paired", type=int, default=0,
                    help="cifar: also time certify and auto_LiRPA alternating in one subprocess, this many pairs "
                         "(median of per-pair CPU-time ratios: robust to load that drifts between subprocesses)")
    ap.add_argument("--peer-sub-batch", type=int, default=0, metavar="N",
                    help="cifar: auto_LiRPA computes each batch in consecutive calls on sub-batches of N inputs (the "
                         "same inputs, bounds concatenated, CPU time summed, peak RSS over all of them), for "
                         "batches its one call does not fit in memory; adds a row with certify in the same "
                         "sub-batches (the row above it: certify's one call on the whole batch)")
    ap.add_argument("--warmup-batch", type=int, default=0, metavar="K",
                    help="cifar: warm-up calls on the first K inputs only (graph conversion, caches, compiled kernels; "
                         "default 0: the whole batch), for rows whose every call takes minutes")
    ap.add_argument("--rss-limit", type=float, default=None, metavar="MB",
                    help="cifar: stop a subprocess whose peak resident set size exceeds MB (polled every 0.5 s)")
    ap.add_argument("--peer-crown-batch-size", type=int, default=0, metavar="N",
                    help="cifar: auto_LiRPA's own memory option crown_batch_size=N (its intermediate bounds N neurons "
                         "at a time), for networks where even one input does not fit (cnn_7layer_bn CROWN passed 8 GB "
                         "at batch 1); default 0: not set")
    ap.add_argument("--float64", action="store_true",
                    help="cifar: network and inputs in float64 (the bound comparison with auto_LiRPA to 1e-5)")
    ap.add_argument("--knob", action="append", default=[], metavar="MODULE.NAME=VALUE",
                    help="set a module-level switch of certify before timing, in every subprocess (repeatable; VALUE "
                         "a Python literal), e.g. certify.crown.FUSED_IBP_RELU=False for the before/after of a speed "
                         "change in the same command")
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    _set_knobs(args.knob)
    if args.child:
        _child(args.child[0], args.child[1], int(args.child[2]), max(1, args.reps), args.warmup, args.pairs,
               sub=args.peer_sub_batch, warmup_batch=args.warmup_batch, float64=args.float64,
               peer_crown_batch=args.peer_crown_batch_size)
        return
    if args.section in ("digits", "all"):
        _digits(args)
    if args.section in ("cifar", "all"):
        print("\n## CIFAR-shaped networks (3x32x32, L-inf 2/255)")
        _cifar(args)


if __name__ == "__main__":
    main()
