"""Dual-threshold abstention on digits under Gaussian corruption of rising severity (issue 16).

Used by ``benchmarks/eval_dual_threshold_corruption.py`` and ``tests/conformal/test_dual_threshold_corruption.py``.

Kumar et al. (2025) claim that the abstention threshold absorbs distribution shift: as inputs get more
corrupted, the system abstains more and keeps coverage among the inputs it accepts. Protocol: the
standard digits CNN; the 397 clean calibration digits are split at random into a conformal calibration
half and an abstention-fit half (both clean: the guarantees are stated for clean data); the 400 test
digits get Gaussian pixel noise N(0, s^2) of severity s (clipped to [0, 1]), one fresh draw per split.
Reported per severity, averaged over the splits: model accuracy, coverage over all inputs (the clean
guarantee is 1 - alpha; under corruption it no longer holds), abstention rate, coverage among accepted
inputs, mean set size among accepted, AUROC of the statistic for misses.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn
from conformal import DualThreshold

__all__ = ["CONFIGS", "SEVERITIES", "corrupted_probs", "evaluate_corruption", "format_rows"]

SEVERITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
CONFIGS = (
    ("thr", "entropy", "youden", None),
    ("thr", "entropy", "ltt", 0.05),
    ("thr", "top_prob", "ltt", 0.05),
    ("aps", "outside_mass", "youden", None),
    ("aps", "outside_mass", "ltt", 0.05),
)


def corrupted_probs(model: torch.nn.Module, images: torch.Tensor, severity: float,
                    generator: torch.Generator) -> np.ndarray:
    """Softmax probabilities (float64) of images with N(0, severity^2) pixel noise, clipped to [0, 1]."""
    x = images if severity == 0 else (images + severity * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    with torch.no_grad():
        return torch.softmax(model(x).double(), 1).numpy()


def evaluate_corruption(splits: int = 20, alpha: float = 0.1, delta: float = 0.1,
             severities: tuple[float, ...] = SEVERITIES, configs: tuple = CONFIGS) -> list[dict]:
    """Rows of mean metrics per (config, severity) over ``splits`` random cal/fit splits and noise draws."""
    model = digits_cnn().eval()
    cal, test = load_digits_split("calibration"), load_digits_split("test")
    p_cal = corrupted_probs(model, cal.images, 0.0, torch.Generator())
    y_cal, y_test = cal.labels.numpy(), test.labels.numpy()
    acc: dict[tuple, list] = {}
    for s in range(splits):
        rng = np.random.default_rng(s)
        perm = rng.permutation(len(y_cal))
        a, b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        g = torch.Generator().manual_seed(1000 + s)
        tests = {sev: corrupted_probs(model, test.images, sev, g) for sev in severities}
        for score, stat, rule, target in configs:
            dt = DualThreshold(score=score, alpha=alpha, statistic=stat, rule=rule, target=target, delta=delta)
            dt.calibrate(p_cal[a], y_cal[a], p_cal[b], y_cal[b], generator=torch.Generator().manual_seed(s))
            for sev, p in tests.items():
                rep = dt.evaluate(p, y_test, generator=torch.Generator().manual_seed(10_000 + s))
                acc.setdefault((score, stat, rule, target, sev), []).append(
                    (float((p.argmax(1) == y_test).mean()), rep.coverage, rep.abstention_rate,
                     rep.coverage_accepted, rep.average_size_accepted, rep.auroc))
    rows = []
    for (score, stat, rule, target, sev), vals in acc.items():
        v = np.array(vals, dtype=float)
        m = np.nanmean(v, 0)
        rows.append({"score": score, "statistic": stat, "rule": rule if target is None else f"ltt {target}",
                     "severity": sev, "accuracy": m[0], "coverage": m[1], "abstention": m[2],
                     "coverage_accepted": m[3], "size_accepted": m[4], "auroc": m[5],
                     "all_abstained": int(np.isnan(v[:, 3]).sum()), "splits": len(vals)})
    return rows


def format_rows(rows: list[dict]) -> str:
    out = ["| score | statistic | rule | severity | accuracy | coverage (all) | abstention | coverage on accepted "
           "| size on accepted | AUROC |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ca = "—" if math.isnan(r["coverage_accepted"]) else f"{r['coverage_accepted']:.3f}"
        if r["all_abstained"]:
            ca += f" ({r['all_abstained']}/{r['splits']} splits abstain on all)"
        out.append(f"| {r['score']} | {r['statistic']} | {r['rule']} | {r['severity']:.1f} | {r['accuracy']:.3f} | "
                   f"{r['coverage']:.3f} | {r['abstention']:.3f} | {ca} | {r['size_accepted']:.2f} | {r['auroc']:.3f} |")
    return "\n".join(out)
