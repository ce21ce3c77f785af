"""Verified fraction and time per input: CROWN, alpha-CROWN, complete verification, auto_LiRPA's alpha-CROWN.

Networks: the standard digits CNN (``certkit_app.digits.digits_cnn``) on the first ``--n`` test images at
L-inf 0.02 / 0.05 / 0.1 (clipped to [0, 1]), and a CIFAR-shaped ``cnn_4layer`` (conv 16@4x4 s2 p1, conv
32@4x4 s2 p1, fc 100, fc 10; seeded random weights, random inputs labelled by the network) at L-inf 2/255.
Complete verification (``certify.verify_complete``) runs on the first ``--n-complete`` inputs with
``--timeout`` seconds each. auto_LiRPA is optional (put a clone on PYTHONPATH):

    PYTHONPATH=/tmp/ext/auto_LiRPA:/tmp/ext/stubs OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_verify.py

Times are wall-clock seconds per input on one thread (the machine is shared: compare within a row).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

import certify
from certify.auto_lirpa import auto_lirpa_available


def cnn_4layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 100), nn.ReLU(), nn.Linear(100, 10),
    ).eval()


def _timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def alpha_intermediate_verify(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """alpha-CROWN with the intermediate layers' slopes optimised too (early stop once verified)."""
    import math

    from certify._graph import cached_graph
    from certify.alpha_crown import alpha_crown_bounds
    from certify.api import margin_spec
    from certify.ibp import InputRegion

    k = int(model(x[:1]).shape[1])
    g = cached_graph(model, x, x.dtype)
    region = InputRegion(x, torch.full((x.shape[0],), eps), math.inf, (0.0, 1.0))
    skip = torch.nn.functional.one_hot(y, k).bool()
    lo, _ = alpha_crown_bounds(g, region, margin_spec(y, k, x.dtype), need_upper=False, skip=skip, early_stop=True,
                               intermediate=True)
    return ((lo > 0) | skip).all(1)


def run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, n_complete: int,
        timeout: float, lirpa: bool, branching: str = "babsr", intermediate: bool = True) -> None:
    n = x.shape[0]
    kw = {"domain": (0.0, 1.0)}
    row = [name, f"{eps:g}", str(n)]
    v_crown, t_crown = _timed(lambda: certify.verify(model, x, y, eps, **kw))
    v_alpha, t_alpha = _timed(lambda: certify.verify(model, x, y, eps, method="alpha-crown", **kw))
    row += [f"{float(v_crown.float().mean()):.2%} / {1000 * t_crown / n:.1f} ms",
            f"{float(v_alpha.float().mean()):.2%} / {1000 * t_alpha / n:.1f} ms"]
    if intermediate:
        with torch.no_grad():
            v_full, t_full = _timed(lambda: alpha_intermediate_verify(model, x, y, eps))
        row.append(f"{float(v_full.float().mean()):.2%} / {1000 * t_full / n:.1f} ms")
    else:
        row.append("n/a")
    if lirpa:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # not certify.verify: it runs under torch.no_grad, where auto_LiRPA finds no optimisable
            # parameters and silently falls back to CROWN; margin_bounds keeps autograd on (and auto_LiRPA
            # then optimises the upper bounds too, with no early stop)
            def lirpa_verify() -> torch.Tensor:
                mb = certify.margin_bounds(model, x, y, eps, method="auto_lirpa:alpha-CROWN", **kw)
                return ((mb.lower > 0) | torch.nn.functional.one_hot(y, mb.lower.shape[1]).bool()).all(1)

            v_l, t_l = _timed(lirpa_verify)
        row.append(f"{float(v_l.float().mean()):.2%} / {1000 * t_l / n:.1f} ms")
    else:
        row.append("n/a")
    m = min(n_complete, n)
    if m == 0:
        row.append("n/a")
        print("| " + " | ".join(row) + " |", flush=True)
        return
    counts = {"verified": 0, "falsified": 0, "unknown": 0}
    t0 = time.perf_counter()
    overshoot = 0.0
    branches = 0
    for i in range(m):
        r = certify.verify_complete(model, x[i : i + 1], int(y[i]), eps, domain=(0.0, 1.0), timeout=timeout,
                                    branching=branching)
        counts[r.verdict] += 1
        branches += r.branches
        if r.verdict == "unknown":
            overshoot = max(overshoot, r.time - timeout)
    t_c = time.perf_counter() - t0
    row.append(f"{counts['verified'] / m:.1%} / {counts['falsified'] / m:.1%} / {counts['unknown'] / m:.1%} "
               f"({m} inputs, {branching}, {t_c / m:.2f} s and {branches / m:.0f} branches per input, "
               f"max overshoot {overshoot:.2f} s)")
    print("| " + " | ".join(row) + " |", flush=True)


def compare_branching(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, timeout: float) -> None:
    """BaBSR against FSB on the inputs alpha-CROWN leaves unverified (those that need the search)."""
    v = certify.verify(model, x, y, eps, method="alpha-crown", domain=(0.0, 1.0))
    todo = (~v).nonzero().squeeze(1).tolist()
    for branching in ("babsr", "fsb"):
        counts = {"verified": 0, "falsified": 0, "unknown": 0}
        branches, t0 = 0, time.perf_counter()
        for i in todo:
            r = certify.verify_complete(model, x[i : i + 1], int(y[i]), eps, domain=(0.0, 1.0), timeout=timeout,
                                        branching=branching, generator=torch.Generator().manual_seed(i))
            counts[r.verdict] += 1
            branches += r.branches
        n = max(len(todo), 1)
        print(f"| {eps:g} | {branching} | {len(todo)} | {counts['verified']} / {counts['falsified']} / "
              f"{counts['unknown']} | {branches / n:.0f} | {(time.perf_counter() - t0) / n:.2f} s |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--n-complete", type=int, default=400)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    ap.add_argument("--cifar-n", type=int, default=16)
    ap.add_argument("--branching", choices=("babsr", "fsb"), default="babsr")
    ap.add_argument("--no-intermediate", action="store_true", help="skip the intermediate-slopes column")
    ap.add_argument("--no-lirpa", action="store_true", help="skip auto_LiRPA even where it is importable")
    ap.add_argument("--no-digits", action="store_true", help="only the cnn_4layer row")
    ap.add_argument("--compare-branching", action="store_true",
                    help="only BaBSR vs FSB on the digits inputs alpha-CROWN leaves unverified")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lirpa = auto_lirpa_available() and not args.no_lirpa
    inter = not args.no_intermediate
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    d = load_digits_split("test")
    x, y = d.images[: args.n], d.labels[: args.n]
    if args.compare_branching:
        print("| eps | branching | inputs searched | verified / falsified / unknown | branches per input | time per input |")
        print("|---|---|---|---|---|---|")
        for eps in args.eps:
            compare_branching(digits_cnn(), x, y, eps, args.timeout)
        return
    print("| network | eps | inputs | CROWN verified / time per input | alpha-CROWN | alpha-CROWN + intermediate "
          "slopes | auto_LiRPA alpha-CROWN | complete: verified / falsified / unknown |")
    print("|---|---|---|---|---|---|---|---|")
    model = digits_cnn()
    if not args.no_digits:
        for eps in args.eps:
            run("digits CNN", model, x, y, eps, args.n_complete, args.timeout, lirpa, args.branching, inter)
    if args.cifar_n > 0:
        net = cnn_4layer()
        xc = torch.rand(args.cifar_n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            yc = net(xc).argmax(1)
        run("cnn_4layer (random)", net, xc, yc, 2 / 255, min(args.n_complete, args.cifar_n), args.timeout, lirpa,
            args.branching, inter)


if __name__ == "__main__":
    main()
