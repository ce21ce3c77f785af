"""Evaluation of certified prediction sets on the digits models (the tables of the README section "Certified prediction sets").

Table 1 (like VRCP's Table 1): coverage under a PGD attack inside the ball and average set size of
vanilla split CP, RSCP+ (PTT), VRCP-I and VRCP-C (CROWN), with the standard and the certified-trained
digits CNN, over random half/half calibration/test splits of the 797 calibration + test digits.
Table 2: dual-threshold abstention (coverage on accepted inputs, abstention rate, AUROC) on clean
digits and on a mixture of clean and noisy digits, over random three-way splits.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/eval_certified_sets.py [--splits 50] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn
from conformal.attacks import pgd_attack
from conformal.dual_threshold import DualThreshold
from conformal.functional import conformal_quantile
from conformal.score_bounds import certified_score_bounds
from conformal.scores import thr


def _pool(n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    cal, test = load_digits_split("calibration"), load_digits_split("test")
    x, y = torch.cat([cal.images, test.images]), torch.cat([cal.labels, test.labels])
    if n is not None:
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
        x, y = x[idx], y[idx]
    return x, y


def _mean_std(v: list[float]) -> str:
    a = np.asarray(v)
    return f"{a.mean():.3f} ± {a.std():.3f}"


def bound_rows(model: nn.Module, model_name: str, x: torch.Tensor, y: torch.Tensor, *, norm: float, eps: float,
               alpha: float, n_splits: int, seed: int, say: Callable[[str], None]) -> list[str]:
    """Rows of vanilla, VRCP-I and VRCP-C (CROWN) for one model and threat model."""
    t0 = time.perf_counter()
    x_adv = pgd_attack(model, x, y, eps, norm=norm, steps=50, restarts=2,
                       generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        s_clean = thr(torch.softmax(model(x).double(), -1), y)
        s_adv = thr(torch.softmax(model(x_adv).double(), -1))
    s_hi = certified_score_bounds(model, x, eps, labels=y, norm=norm, method="crown", domain=(0, 1)).upper
    s_lo = certified_score_bounds(model, x_adv, eps, norm=norm, method="crown", domain=(0, 1)).lower
    say(f"  {model_name}, {'L-inf' if norm == math.inf else 'L2'} eps={eps}: PGD + CROWN bounds on "
        f"{len(y)} points in {time.perf_counter() - t0:.1f}s")
    g = torch.Generator().manual_seed(seed + 1)
    stats: dict[str, dict[str, list[float]]] = {k: {"cov": [], "size": []}
                                                for k in ("Vanilla split CP", "VRCP-I", "VRCP-C")}
    n = len(y)
    for _ in range(n_splits):
        perm = torch.randperm(n, generator=g)
        ci, ti = perm[: n // 2], perm[n // 2 :]
        rows = torch.arange(len(ti))
        q, q_c = conformal_quantile(s_clean[ci], alpha), conformal_quantile(s_hi[ci], alpha)
        masks = {"Vanilla split CP": s_adv[ti] <= q, "VRCP-I": s_lo[ti] <= q, "VRCP-C": s_adv[ti] <= q_c}
        for k, m_adv in masks.items():
            stats[k]["cov"].append(float(m_adv[rows, y[ti]].double().mean()))
            stats[k]["size"].append(float(m_adv.sum(1).double().mean()))
    return [f"| {k} | {model_name} | {_mean_std(v['cov'])} | {np.mean(v['size']):.2f} ± {np.std(v['size']):.2f} |"
            for k, v in stats.items()]


def rscp_row(alpha: float, eps: float, n_splits: int, n_mc: int, seed: int, say: Callable[[str], None]) -> list[str]:
    """RSCP+ (PTT) on the noise-trained CNN (sigma 0.25), by ``certkit_app.demos.rscp.evaluate_rscp``."""
    from certkit_app.demos.rscp import evaluate_rscp
    from certkit_app.digits import digits_base_model

    rows = evaluate_rscp(digits_base_model(0.25), sigma=0.25, eps=eps, alpha=alpha, n_mc=n_mc, n_splits=n_splits,
                         generator=None if seed == 0 else torch.Generator().manual_seed(seed), log=say)
    out = []
    for r in rows:
        if r.method in ("RSCP+", "RSCP+ PTT"):
            out.append(f"| {r.method} (n_mc={n_mc}) | noise-trained CNN, sigma=0.25 | {r.coverage:.3f} ± "
                       f"{r.coverage_std:.3f} | {r.size:.2f} ± {r.size_std:.2f} |")
    return out


def dual_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, alpha: float, target: float, n_splits: int,
              seed: int, say: Callable[[str], None]) -> list[str]:
    """Dual-threshold table: clean digits, and a 50/50 mixture of clean and noisy (sigma 0.4) digits."""
    import certify

    g = torch.Generator().manual_seed(seed)
    noisy = (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    half = torch.rand(len(y), generator=g) < 0.5
    mixed = torch.where(half[:, None, None, None], noisy, x)
    out = []
    for scenario, xs in (("clean", x), ("50% noisy (sigma 0.4)", mixed)):
        t0 = time.perf_counter()
        with torch.no_grad():
            probs = torch.softmax(model(xs).double(), -1)
        # Label-free certificate: the CROWN lower bound of the smallest margin of the predicted label at
        # eps 0.01 (one bound computation; a bisected certified radius costs ~10 of them).
        m_lo = certify.margin_bounds(model, xs, probs.argmax(1), 0.01, method="crown", domain=(0, 1)).lower
        radius = m_lo.detach().double().scatter(1, probs.argmax(1)[:, None], math.inf).min(1).values
        say(f"  dual threshold, {scenario}: CROWN certified margins in {time.perf_counter() - t0:.1f}s")
        p, yy, r = probs.numpy(), y.numpy(), radius.numpy()
        n = len(yy)
        for statistic in ("entropy", "top_prob", "set_size", "certified_radius"):
            for rule, tgt in (("youden", None), ("ltt", target)):
                rng = np.random.default_rng(seed)  # the same splits for every row
                reps: list = []
                for _ in range(n_splits):
                    perm = rng.permutation(n)
                    a, b, c = perm[: n // 3], perm[n // 3 : 2 * n // 3], perm[2 * n // 3 :]
                    kw = {} if statistic != "certified_radius" else {"radius": r[a], "fit_radius": r[b]}
                    dt = DualThreshold(score="thr", alpha=alpha, statistic=statistic, rule=rule,  # type: ignore[arg-type]
                                       target=tgt, delta=0.1).calibrate(p[a], yy[a], p[b], yy[b], **kw)
                    reps.append(dt.evaluate(p[c], yy[c], **({"radius": r[c]} if kw else {})))
                cov = [q.coverage_accepted for q in reps if not math.isnan(q.coverage_accepted)]
                auc = [q.auroc for q in reps if not math.isnan(q.auroc)]
                rule_name = "Youden J" if rule == "youden" else f"LTT (target {target}, delta 0.1)"
                stat_name = "certified margin (CROWN, eps 0.01)" if statistic == "certified_radius" else statistic
                cov_s = f"{np.mean(cov):.3f}" if cov else "— (all abstained)"
                auc_s = f"{np.mean(auc):.3f}" if auc else "—"
                out.append(f"| {scenario} | {stat_name} | {rule_name} | {np.mean([q.coverage for q in reps]):.3f} | "
                           f"{cov_s} | {np.mean([q.abstention_rate for q in reps]):.3f} | {auc_s} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=int, default=50)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--n-mc", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="300 points, 10 splits, n_mc 64, no certified CNN")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_pool, n_splits, n_mc = (300, 10, 64) if args.quick else (None, args.splits, args.n_mc)
    alpha = args.alpha

    def say(msg: str) -> None:
        print(msg, flush=True)

    x, y = _pool(n_pool, args.seed)
    models: list[tuple[str, nn.Module]] = [("standard CNN", digits_cnn())]
    if not args.quick:
        from certkit_app.digits import digits_cnn_certified

        models.append(("CROWN-IBP-trained CNN", digits_cnn_certified()))
    header = ["| method | model | coverage under attack | average set size |", "|---|---|---|---|"]
    for norm, eps_list in ((2.0, (0.125,)), (math.inf, (0.03, 0.1))):
        for eps in eps_list:
            lines = list(header)
            for name, model in models:
                lines += bound_rows(model, name, x, y, norm=norm, eps=eps, alpha=alpha, n_splits=n_splits,
                                    seed=args.seed, say=say)
            if norm == 2.0:
                lines += rscp_row(alpha, eps, n_splits, n_mc, args.seed, say)
            say(f"\n### {'L2' if norm == 2.0 else 'L-inf'} eps = {eps}, alpha = {alpha}, {n_splits} splits\n")
            say("\n".join(lines) + "\n")
    lines = ["| inputs | statistic | rule | coverage (all) | coverage on accepted | abstention rate | AUROC |",
             "|---|---|---|---|---|---|---|"]
    lines += dual_rows(models[0][1], x, y, alpha=alpha, target=0.05, n_splits=n_splits, seed=args.seed, say=say)
    say(f"\n### Dual-threshold abstention, standard CNN, THR sets at alpha = {alpha}, {n_splits} splits\n")
    say("\n".join(lines))


if __name__ == "__main__":
    main()
