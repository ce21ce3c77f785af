"""Verified fraction and time per input: CROWN, alpha-CROWN, complete verification, auto_LiRPA's alpha-CROWN.

Networks: the standard digits CNN (``certkit_app.digits.digits_cnn``) on the first ``--n`` test images at
L-inf 0.02 / 0.05 / 0.1 (clipped to [0, 1]), and a CIFAR-shaped ``cnn_4layer`` (conv 16@4x4 s2 p1, conv
32@4x4 s2 p1, fc 100, fc 10) at L-inf ``--cifar-eps`` (default 2/255): with ``--cifar-random`` seeded random
weights on random inputs labelled by the network (nothing verifies), by default briefly trained (seed 0,
``--cifar-epochs`` epochs of Adam) on the digits upsampled to 3x32x32 and run on the upsampled test images.
Complete verification (``certify.verify_complete``) runs on the first ``--n-complete`` inputs with
``--timeout`` seconds each. auto_LiRPA is optional (put a clone on PYTHONPATH):

    PYTHONPATH=/tmp/ext/auto_LiRPA:/tmp/ext/stubs OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_verify.py

Times per input on one thread: "CPU ms" is the process CPU time (``time.process_time``), the figure to
compare on a shared machine; wall-clock time is printed beside it.
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


def cnn_4layer_trained(epochs: int = 3) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """``cnn_4layer`` trained briefly (seed 0, Adam 1e-3, batch 64) on the digits upsampled to 3x32x32;
    returns the model and the upsampled test images and labels."""
    from certkit_app.datasets import load_digits_split

    def up(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=(32, 32), mode="nearest").expand(-1, 3, -1, -1).contiguous()

    tr, te = load_digits_split("train"), load_digits_split("test")
    x, y = up(tr.images), tr.labels
    net = cnn_4layer(0).train()
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
    return net.eval(), up(te.images), te.labels


def _timed(fn):  # type: ignore[no-untyped-def]
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _cell(v: torch.Tensor, wall: float, cpu: float, n: int) -> str:
    return f"{float(v.float().mean()):.2%} / {1000 * cpu / n:.1f} CPU ms ({1000 * wall / n:.1f} wall)"


def lirpa_alpha_verify(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                       batch: int = 50) -> torch.Tensor:
    """auto_LiRPA's alpha-CROWN (its defaults: 20 iterations, lr 0.5, intermediate slopes optimised) on the
    margins ``f_y - f_j`` (j != y), *lower bounds only*, autograd on (under ``torch.no_grad`` auto_LiRPA
    silently skips the optimisation); like-for-like with ``certify.verify(method="alpha-crown")``."""
    from certify.auto_lirpa import _bounded_module, import_auto_lirpa

    al = import_auto_lirpa()
    k = int(model(x[:1]).shape[1])
    out = []
    for i in range(0, x.shape[0], batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        n = xb.shape[0]
        eye = torch.eye(k, dtype=xb.dtype)
        spec = eye[yb].unsqueeze(1) - eye.unsqueeze(0).expand(n, k, k)
        keep = ~torch.nn.functional.one_hot(yb, k).bool()
        c = spec[keep].reshape(n, k - 1, k)
        bm = _bounded_module(model, xb)
        ptb = al.PerturbationLpNorm(norm=float("inf"), eps=eps, x_L=(xb - eps).clamp(min=0), x_U=(xb + eps).clamp(max=1))
        with torch.enable_grad():
            lo, _ = bm.compute_bounds(x=(al.BoundedTensor(xb, ptb),), method="alpha-CROWN", C=c, bound_upper=False)
        out.append((lo.detach() > 0).all(1))
    return torch.cat(out)


def run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, n_complete: int,
        timeout: float, lirpa: bool, branching: str = "babsr", intermediate: bool = True,
        incomplete: bool = True, log: str | None = None) -> None:
    n = x.shape[0]
    kw = {"domain": (0.0, 1.0)}
    row = [name, f"{eps:g}", str(n)]
    if incomplete:
        v_crown, *t_crown = _timed(lambda: certify.verify(model, x, y, eps, **kw))
        row.append(_cell(v_crown, *t_crown, n))
        if intermediate:
            v_final, *t_final = _timed(lambda: certify.verify(model, x, y, eps, method="alpha-crown",
                                                              alpha_intermediate=False, **kw))
            row.append(_cell(v_final, *t_final, n))
        else:
            row.append("n/a")
        v_alpha, *t_alpha = _timed(lambda: certify.verify(model, x, y, eps, method="alpha-crown", **kw))
        row.append(_cell(v_alpha, *t_alpha, n))
        if lirpa:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v_l, *t_l = _timed(lambda: lirpa_alpha_verify(model, x, y, eps))
            row.append(_cell(v_l, *t_l, n))
            row.append(f"{int((v_alpha & ~v_l).sum())} / {int((v_l & ~v_alpha).sum())}, "
                       f"{t_alpha[1] / max(t_l[1], 1e-9):.2f}x")
        else:
            row += ["n/a", "n/a"]
    else:
        row += ["-", "-", "-", "-", "-"]
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
                                    branching=branching, generator=torch.Generator().manual_seed(i))
        counts[r.verdict] += 1
        branches += r.branches
        if r.verdict == "unknown":
            overshoot = max(overshoot, r.time - timeout)
        if log is not None:  # one line per input, so that a run stopped early still reports what it decided
            with open(log, "a") as f:
                f.write(f"{name}\t{eps:g}\t{i}\t{r.verdict}\t{r.time:.3f}\t{r.branches}\t"
                        f"{counts['verified']}/{counts['falsified']}/{counts['unknown']}\n")
    t_c = time.perf_counter() - t0
    row.append(f"{counts['verified'] / m:.1%} / {counts['falsified'] / m:.1%} / {counts['unknown'] / m:.1%} "
               f"({m} inputs, {branching}, {t_c / m:.2f} s and {branches / m:.0f} branches per input, "
               f"max overshoot {overshoot:.2f} s)")
    print("| " + " | ".join(row) + " |", flush=True)


CONFIGS = {"babsr": {"branching": "babsr"}, "fsb": {"branching": "fsb"},
           "babsr+intermediate": {"branching": "babsr", "alpha_intermediate": True},
           "fsb+intermediate": {"branching": "fsb", "alpha_intermediate": True}}


def compare_branching(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, timeout: float,
                      configs: list[str], indices: list[int] | None = None) -> None:
    """Search configurations (BaBSR / FSB, with or without intermediate slopes) on the inputs alpha-CROWN
    leaves unverified (those that need the search), or on the given ``indices``."""
    if indices is None:
        v = certify.verify(model, x, y, eps, method="alpha-crown", domain=(0.0, 1.0))
        indices = (~v).nonzero().squeeze(1).tolist()
    for name in configs:
        counts = {"verified": 0, "falsified": 0, "unknown": 0}
        branches, t0 = 0, time.perf_counter()
        for i in indices:
            r = certify.verify_complete(model, x[i : i + 1], int(y[i]), eps, domain=(0.0, 1.0), timeout=timeout,
                                        generator=torch.Generator().manual_seed(i), **CONFIGS[name])
            counts[r.verdict] += 1
            branches += r.branches
        n = max(len(indices), 1)
        print(f"| {eps:g} | {name} | {len(indices)} | {counts['verified']} / {counts['falsified']} / "
              f"{counts['unknown']} | {branches / n:.0f} | {(time.perf_counter() - t0) / n:.2f} s |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--n-complete", type=int, default=400)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    ap.add_argument("--cifar-n", type=int, default=16)
    ap.add_argument("--cifar-eps", type=float, nargs="+", default=[2 / 255])
    ap.add_argument("--cifar-random", action="store_true", help="cnn_4layer with random weights on random inputs")
    ap.add_argument("--cifar-epochs", type=int, default=3)
    ap.add_argument("--branching", choices=("babsr", "fsb"), default="babsr")
    ap.add_argument("--no-intermediate", action="store_true", help="skip the final-slopes-only column")
    ap.add_argument("--no-lirpa", action="store_true", help="skip auto_LiRPA even where it is importable")
    ap.add_argument("--no-digits", action="store_true", help="only the cnn_4layer row")
    ap.add_argument("--no-incomplete", action="store_true", help="only the complete-verification column")
    ap.add_argument("--log", default=None, help="append one line per complete-verification input to this file")
    ap.add_argument("--compare-branching", action="store_true",
                    help="only BaBSR vs FSB on the digits inputs alpha-CROWN leaves unverified")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["babsr", "fsb"],
                    help="the search configurations compared by --compare-branching")
    ap.add_argument("--indices", type=int, nargs="+", default=None,
                    help="test-image indices for --compare-branching (default: those alpha-CROWN leaves unverified)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lirpa = auto_lirpa_available() and not args.no_lirpa
    inter = not args.no_intermediate
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    d = load_digits_split("test")
    x, y = d.images[: args.n], d.labels[: args.n]
    if args.compare_branching:
        print("| eps | search | inputs searched | verified / falsified / unknown | branches per input | time per input |")
        print("|---|---|---|---|---|---|")
        for eps in args.eps:
            compare_branching(digits_cnn(), x, y, eps, args.timeout, args.configs, args.indices)
        return
    print("| network | eps | inputs | CROWN verified / time per input | alpha-CROWN, final slopes only | "
          "alpha-CROWN (default) | auto_LiRPA alpha-CROWN | only ours / only auto_LiRPA, CPU time ours/theirs | "
          "complete: verified / falsified / unknown |")
    print("|---|---|---|---|---|---|---|---|---|")
    model = digits_cnn()
    if not args.no_digits:
        for eps in args.eps:
            run("digits CNN", model, x, y, eps, args.n_complete, args.timeout, lirpa, args.branching, inter,
                not args.no_incomplete, args.log)
    if args.cifar_n > 0:
        if args.cifar_random:
            net = cnn_4layer()
            xc = torch.rand(args.cifar_n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                yc = net(xc).argmax(1)
            name = "cnn_4layer (random)"
        else:
            net, xc, yc = cnn_4layer_trained(args.cifar_epochs)
            xc, yc = xc[: args.cifar_n], yc[: args.cifar_n]
            name = f"cnn_4layer (digits 3x32x32, {args.cifar_epochs} epochs)"
        for eps in args.cifar_eps:
            run(name, net, xc, yc, eps, min(args.n_complete, args.cifar_n), args.timeout, lirpa, args.branching,
                inter, not args.no_incomplete, args.log)


if __name__ == "__main__":
    main()
