"""Robust coverage of smoothed conformal sets under a PGD attack on digits (demo and evaluation).

``evaluate_rscp`` runs the protocol of Gendler et al. / Yan et al. on the digits calibration and
test splits: a fixed PTT holdout taken from the calibration split, the rest pooled; every pooled
point is attacked once (PGD on the smoothed true-label score in the L2 eps-ball); clean and
attacked smoothed scores are computed once per (model, transform); then ``n_splits`` random
half/half calibration/test splits of the pool calibrate on clean scores and are evaluated on the
attacked test scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from certkit_app._seeding import base_seed
from certkit_app.datasets import load_digits_split
from conformal.attacks import smoothed_score_pgd
from conformal.ptt import PTT, holdout_scores
from conformal.rscp import RSCP, RSCPPlus, smoothed_score_fn
from smoothing.scores import SmoothedScores, smoothed_scores

__all__ = ["RSCPRow", "demo_rscp", "evaluate_rscp", "format_rows"]


@dataclass(frozen=True)
class RSCPRow:
    """One line of the table: mean (and std over splits) coverage under attack and set size."""

    method: str
    coverage: float
    coverage_std: float
    clean_coverage: float
    size: float
    size_std: float


@dataclass(frozen=True)
class _Scored:
    clean: SmoothedScores
    attacked: SmoothedScores


def _score_pool(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, *, fn: Callable[[torch.Tensor], torch.Tensor],
                sigma: float, n_mc: int, transform: Callable[[torch.Tensor], torch.Tensor] | None, seed: int) -> _Scored:
    g = torch.Generator().manual_seed(seed)
    clean = smoothed_scores(model, x, fn, sigma=sigma, n_mc=n_mc, generator=g, transform=transform)
    attacked = smoothed_scores(model, x_adv, fn, sigma=sigma, n_mc=n_mc, generator=g, transform=transform)
    return _Scored(clean, attacked)


def _split_rows(method: str, predictor: RSCP, scored: _Scored, y: torch.Tensor, n_splits: int,
                seed: int) -> RSCPRow:
    g = torch.Generator().manual_seed(seed)
    n = y.shape[0]
    cov, clean_cov, size = [], [], []
    for _ in range(n_splits):
        perm = torch.randperm(n, generator=g)
        cal, test = perm[: n // 2], perm[n // 2 :]
        predictor.calibrate(scored.clean[cal], y[cal])
        adv_sets = predictor.predict(scored.attacked[test])
        cov.append(torch.as_tensor(adv_sets.contains(y[test])).double().mean())
        size.append(torch.as_tensor(adv_sets.sizes).double().mean())
        clean_cov.append(torch.as_tensor(predictor.predict(scored.clean[test]).contains(y[test])).double().mean())
    c, s = torch.stack(cov), torch.stack(size)
    return RSCPRow(method, float(c.mean()), float(c.std()), float(torch.stack(clean_cov).mean()),
                   float(s.mean()), float(s.std()))


def evaluate_rscp(
    model: nn.Module,
    *,
    sigma: float = 0.25,
    eps: float = 0.125,
    alpha: float = 0.1,
    beta: float = 0.001,
    n_mc: int = 256,
    n_pool: int | None = None,
    n_holdout: int = 197,
    n_splits: int = 50,
    attack_steps: int = 20,
    attack_noise: int = 16,
    rct_model: nn.Module | None = None,
    score: str = "thr",
    score_kwargs: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[RSCPRow]:
    """Coverage under attack and set size of vanilla smoothed CP, RSCP, RSCP+, RSCP+ PTT (and RSCP+ RCT).

    Args:
        model: noise-trained base classifier (eval mode).
        n_pool: number of pooled points used (all 600 = 200 calibration + 400 test if None).
        n_holdout: points of the calibration split reserved for the PTT holdout (disjoint from the pool).
        rct_model: an RCT-trained model to add the "RSCP+ RCT" row.
        score: the base score (see ``conformal.rscp.smoothed_score_fn``); PTT uses the same one.
        score_kwargs: its extra arguments.
        generator: the pool, attack, noise and splits are seeded from one draw of it (None: 0, the
            documented numbers).
        seed: deprecated; pass a generator.
        log: progress callback (e.g. ``print``).
    """
    seed = base_seed(generator, seed, where="certkit_app.demos.rscp.evaluate_rscp")
    say = log or (lambda _: None)
    cal, test = load_digits_split("calibration"), load_digits_split("test")
    x_hold, y_hold = cal.images[:n_holdout], cal.labels[:n_holdout]
    x = torch.cat([cal.images[n_holdout:], test.images])
    y = torch.cat([cal.labels[n_holdout:], test.labels])
    if n_pool is not None:
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n_pool]
        x, y = x[pick], y[pick]
    kw = dict(score_kwargs or {})
    fn = smoothed_score_fn(score, **kw)

    def attack(m: nn.Module) -> torch.Tensor:
        t0 = time.perf_counter()
        adv = smoothed_score_pgd(m, x, y, fn, sigma=sigma, eps=eps, steps=attack_steps, n_noise=attack_noise,
                                 generator=torch.Generator().manual_seed(seed + 1))
        say(f"  PGD ({attack_steps} steps x {attack_noise} noise) on {x.shape[0]} points: "
            f"{time.perf_counter() - t0:.1f}s")
        return adv

    x_adv = attack(model)
    t0 = time.perf_counter()
    plain = _score_pool(model, x, x_adv, fn=fn, sigma=sigma, n_mc=n_mc, transform=None, seed=seed + 2)
    ptt = PTT(alpha=alpha).fit(
        holdout_scores(model, x_hold, y_hold, score=score, sigma=sigma,
                       generator=torch.Generator().manual_seed(seed + 3), **kw))
    with_ptt = _score_pool(model, x, x_adv, fn=fn, sigma=sigma, n_mc=n_mc, transform=ptt, seed=seed + 2)
    say(f"  smoothed scores (n_mc={n_mc}, clean + attacked, plain + PTT): {time.perf_counter() - t0:.1f}s")

    rows = [
        _split_rows("vanilla smoothed CP", RSCP(alpha=alpha, sigma=sigma, eps=0.0, n_mc=n_mc), plain, y,
                    n_splits, seed),
        _split_rows("RSCP", RSCP(alpha=alpha, sigma=sigma, eps=eps, n_mc=n_mc), plain, y, n_splits, seed),
        _split_rows("RSCP+", RSCPPlus(alpha=alpha, sigma=sigma, eps=eps, n_mc=n_mc, beta=beta), plain, y,
                    n_splits, seed),
        _split_rows("RSCP+ PTT", RSCPPlus(alpha=alpha, sigma=sigma, eps=eps, n_mc=n_mc, beta=beta), with_ptt, y,
                    n_splits, seed),
    ]
    if rct_model is not None:
        rct_scored = _score_pool(rct_model, x, attack(rct_model), fn=fn, sigma=sigma, n_mc=n_mc, transform=None,
                                 seed=seed + 2)
        rows.append(_split_rows("RSCP+ RCT", RSCPPlus(alpha=alpha, sigma=sigma, eps=eps, n_mc=n_mc, beta=beta),
                                rct_scored, y, n_splits, seed))
    return rows


def format_rows(rows: list[RSCPRow], alpha: float) -> str:
    """Markdown table of ``rows``."""
    lines = [f"| method | coverage under attack (target >= {1 - alpha:.2f}) | clean coverage | set size |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {r.coverage:.3f} ± {r.coverage_std:.3f} | {r.clean_coverage:.3f} | "
                     f"{r.size:.2f} ± {r.size_std:.2f} |")
    return "\n".join(lines)


def demo_rscp() -> None:
    """Print coverage under attack and set size on digits (sigma 0.25, eps 0.125, alpha 0.1); <= 60 s on 2 cores."""
    from certkit_app.digits import digits_base_model

    t0 = time.perf_counter()
    print("RSCP / RSCP+ on digits: sigma=0.25, eps=0.125, alpha=0.1, beta=0.001, THR score, n_mc=256,")
    print("300 pooled points, 20 random half/half splits, PGD (10 steps x 8 noise) on the smoothed score")
    model = digits_base_model(0.25)
    rows = evaluate_rscp(model, n_mc=256, n_pool=300, n_splits=20, attack_steps=10, attack_noise=8, log=print)
    print(format_rows(rows, 0.1))
    print(f"({time.perf_counter() - t0:.1f}s)")
