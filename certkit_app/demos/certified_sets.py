"""The certified-set table of ``make demo``.

``demo_certified_sets()`` compares vanilla split CP with VRCP-I and VRCP-C (CROWN) on the
digits CNN under an L-inf PGD attack of radius ``eps``: coverage under attack and average size.
"""

from __future__ import annotations

import time

import torch

from certkit_app._seeding import base_seed
from conformal.attacks import pgd_attack

__all__ = ["demo_certified_sets"]


def demo_certified_sets(*, eps: float = 0.03, alpha: float = 0.1, n_splits: int = 5,
                        generator: torch.Generator | None = None, seed: int | None = None) -> None:
    """Print vanilla split CP vs VRCP-I / VRCP-C (CROWN) on the digits CNN under an L-inf PGD attack.

    The attack's restarts and the splits are seeded from one draw of ``generator`` (None: 0, the
    documented table); ``seed`` is deprecated."""
    seed = base_seed(generator, seed, where="certkit_app.demos.certified_sets.demo_certified_sets")
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn
    from conformal.score_bounds import certified_score_bounds
    from conformal.scores import thr

    t0 = time.perf_counter()
    print(f"Certified prediction sets: digits CNN, L-inf eps={eps}, alpha={alpha}, THR score, "
          f"PGD-20 attack, {n_splits} random calibration/test splits")
    model = digits_cnn()
    cal, test = load_digits_split("calibration"), load_digits_split("test")
    x, y = torch.cat([cal.images, test.images]), torch.cat([cal.labels, test.labels])
    g = torch.Generator().manual_seed(seed)
    x_adv = pgd_attack(model, x, y, eps, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        s_clean = thr(torch.softmax(model(x).double(), -1), y)
        s_adv_all = thr(torch.softmax(model(x_adv).double(), -1))
    print("  bounding scores with CROWN ...", flush=True)
    s_hi = certified_score_bounds(model, x, eps, score="thr", labels=y, method="crown", domain=(0, 1)).upper
    s_lo_adv = certified_score_bounds(model, x_adv, eps, score="thr", method="crown", domain=(0, 1)).lower
    from conformal.functional import conformal_quantile

    rows: dict[str, list[tuple[float, float]]] = {"Vanilla split CP": [], "VRCP-I (CROWN)": [], "VRCP-C (CROWN)": []}
    n = len(y)
    for _ in range(n_splits):
        perm = torch.randperm(n, generator=g)
        ci, ti = perm[: n // 2], perm[n // 2 :]
        q = conformal_quantile(s_clean[ci], alpha)
        q_c = conformal_quantile(s_hi[ci], alpha)
        for name, mask in (("Vanilla split CP", s_adv_all[ti] <= q), ("VRCP-I (CROWN)", s_lo_adv[ti] <= q),
                           ("VRCP-C (CROWN)", s_adv_all[ti] <= q_c)):
            cov = float(mask[torch.arange(len(ti)), y[ti]].double().mean())
            rows[name].append((cov, float(mask.sum(1).double().mean())))
    print(f"  {'method':<18} {'coverage under attack':>22} {'avg size':>9}")
    for name, vals in rows.items():
        cov = sum(v[0] for v in vals) / len(vals)
        size = sum(v[1] for v in vals) / len(vals)
        print(f"  {name:<18} {cov:>22.3f} {size:>9.2f}")
    print(f"  target coverage >= {1 - alpha:.2f} under every perturbation of L-inf norm <= {eps}; "
          f"({time.perf_counter() - t0:.1f} s)")
