"""COLEP against RSCP+ on digits: certified coverage, coverage under a smoothed-score PGD attack, set size.

``evaluate_colep`` follows the protocol of ``certkit_app.demos.rscp``: the rule weights are learned on
the train split; the calibration and test splits are pooled; every pooled point is attacked once per
method (PGD on that method's smoothed true-label score in the L2 eps-ball: COLEP's corrected score
through sensors and circuits, RSCP+'s THR score of the main classifier); clean and attacked smoothed
scores are computed once; then ``n_splits`` random half/half calibration/test splits calibrate on clean
scores and are evaluated on the attacked test scores. Both methods use the same noise-trained main
classifier, sigma, n_mc and beta.

"Certified coverage" is the fraction of test points whose label is certified to stay in the method's
*standard* (clean-calibrated, non-robust) set under every perturbation of the ball, Monte Carlo error
included (COLEP's Theorem 3 quantity; for RSCP+ the same certificate from the 1/sigma-Lipschitz
smoothed score).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_colep_rules, digits_colep_sensors
from conformal.attacks import smoothed_score_pgd
from conformal.colep import COLEP, colep_score_pgd, smoothed_sensor_scores
from conformal.functional import conformal_quantile
from conformal.rscp import RSCPPlus, bernstein_margin, hoeffding_margin, smoothed_score_fn
from smoothing.certifier import SmoothingCertifier
from smoothing.scores import SmoothedScores

__all__ = ["COLEPRow", "demo_colep", "evaluate_colep", "format_colep_rows"]


@dataclass(frozen=True)
class COLEPRow:
    """One line of the table (means and standard deviations over the random splits)."""

    method: str
    eps: float
    certified: float
    coverage: float
    coverage_std: float
    clean_coverage: float
    size: float
    size_std: float
    certified_violations: int


def _rscp_certified(s_true: SmoothedScores, tau_std: float, *, sigma: float, eps: float, beta: float) -> torch.Tensor:
    # upper bound of the smoothed THR score anywhere in the ball (Bernstein at x, Lipschitz, Hoeffding at x')
    up = (s_true.mean + bernstein_margin(s_true.variance, s_true.n_mc, beta)).clamp(0, 1)
    up = torch.special.ndtr(torch.special.ndtri(up) + eps / sigma) + hoeffding_margin(s_true.n_mc, beta)
    return up[:, 0] <= tau_std


def evaluate_colep(
    *,
    sigma: float = 0.25,
    eps: tuple[float, ...] = (0.125, 0.25),
    alpha: float = 0.1,
    beta: float = 0.001,
    n_mc: int = 512,
    n_pool: int | None = None,
    n_fit: int = 300,
    n_splits: int = 50,
    attack_steps: int = 20,
    attack_noise: int = 16,
    seed: int = 0,
    corrupt: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[COLEPRow]:
    """Rows for COLEP and RSCP+ at each radius of ``eps`` (see the module docstring).

    Args:
        n_fit: train-split points the rule weights are learned on.
        corrupt: index of an attribute sensor to replace by its negation (a corrupted sensor), or None.
    """
    say = log or (lambda _: None)
    sensors = digits_colep_sensors(sigma)
    if corrupt is not None:
        sensors = _corrupted(sensors, corrupt)
    cal, test = load_digits_split("calibration"), load_digits_split("test")
    x, y = torch.cat([cal.images, test.images]), torch.cat([cal.labels, test.labels])
    if n_pool is not None:
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n_pool]
        x, y = x[pick], y[pick]
    cert = SmoothingCertifier(sigma=sigma, n_mc=n_mc, generator=torch.Generator().manual_seed(seed + 2))
    rows: list[COLEPRow] = []
    fitted: COLEP | None = None
    thr = smoothed_score_fn("thr")
    c_clean = r_clean = None
    for e in eps:
        colep = COLEP(rules=digits_colep_rules(), num_classes=10, num_attributes=4, alpha=alpha, beta=beta, eps=e,
                      certifier=cert)
        if fitted is None:
            t0 = time.perf_counter()
            train = load_digits_split("train")
            fit_cert = SmoothingCertifier(sigma=sigma, n_mc=16, generator=torch.Generator().manual_seed(seed + 5))
            colep.fit_rules(smoothed_sensor_scores(sensors, train.images[:n_fit], fit_cert, colep.threat),
                            train.labels[:n_fit], epochs=150)
            say(f"  rule weights learned on {n_fit} train points: {time.perf_counter() - t0:.1f}s")
            fitted = colep
            c_clean = colep.score_model(sensors, x)
            r_clean = cert.certify(sensors.main, x, colep.threat, score_fn=thr)
        else:
            colep.weights_, colep.mixture_ = fitted.weights_, fitted.mixture_
        assert isinstance(r_clean, SmoothedScores) and c_clean is not None
        t0 = time.perf_counter()
        x_adv_colep = colep_score_pgd(sensors, colep, x, y, sigma=sigma, eps=e, steps=attack_steps,
                                      n_noise=attack_noise, generator=torch.Generator().manual_seed(seed + 1))
        x_adv_rscp = smoothed_score_pgd(sensors.main, x, y, thr, sigma=sigma, eps=e, steps=attack_steps,
                                        n_noise=attack_noise, generator=torch.Generator().manual_seed(seed + 1))
        c_adv = colep.score_model(sensors, x_adv_colep)
        r_adv = cert.certify(sensors.main, x_adv_rscp, colep.threat, score_fn=thr)
        assert isinstance(r_adv, SmoothedScores)
        say(f"  eps={e:g}: PGD ({attack_steps} steps x {attack_noise} noise) on {x.shape[0]} points and smoothed "
            f"scores (n_mc={n_mc}), both methods: {time.perf_counter() - t0:.1f}s")
        rows += _split_rows(colep, c_clean, c_adv, r_clean, r_adv, y, e, n_splits=n_splits, seed=seed)
    return rows


def _split_rows(colep: COLEP, c_clean: SmoothedScores, c_adv: SmoothedScores, r_clean: SmoothedScores,
                r_adv: SmoothedScores, y: torch.Tensor, eps: float, *, n_splits: int, seed: int) -> list[COLEPRow]:
    g = torch.Generator().manual_seed(seed)
    n, alpha, beta = y.shape[0], colep.alpha, colep.beta
    sigma, n_mc = r_clean.sigma, r_clean.n_mc
    assert sigma is not None
    acc: dict[str, dict[str, list[float]]] = {m: {"cov": [], "clean": [], "size": [], "cert": [], "viol": []}
                                              for m in ("COLEP", "RSCP+")}
    rscp = RSCPPlus(alpha=alpha, beta=beta, eps=eps, certifier=colep.certifier)
    for _ in range(n_splits):
        perm = torch.randperm(n, generator=g)
        ci, ti = perm[: n // 2], perm[n // 2 :]
        colep.calibrate(c_clean[ci], y[ci])
        certified = colep.certified_mask(c_clean[ti], y[ti])
        std_adv = torch.as_tensor(colep.predict_standard(c_adv[ti]).contains(y[ti]))
        _record(acc["COLEP"], colep.predict(c_adv[ti]), colep.predict(c_clean[ti]), y[ti], certified, std_adv)

        rscp.calibrate(r_clean[ci], y[ci])
        yt = y[ti][:, None]
        tau_std = conformal_quantile(r_clean[ci].mean.gather(1, y[ci][:, None])[:, 0], alpha)
        true_clean = SmoothedScores(r_clean[ti].mean.gather(1, yt), r_clean[ti].variance.gather(1, yt), n_mc, sigma)
        r_cert = _rscp_certified(true_clean, tau_std, sigma=sigma, eps=eps, beta=beta)
        r_std_adv = r_adv[ti].mean.gather(1, yt)[:, 0] <= tau_std
        _record(acc["RSCP+"], rscp.predict(r_adv[ti]), rscp.predict(r_clean[ti]), y[ti], r_cert, r_std_adv)

    rows = []
    for m, a in acc.items():
        c, s = torch.tensor(a["cov"]), torch.tensor(a["size"])
        rows.append(COLEPRow(m, eps, float(torch.tensor(a["cert"]).mean()), float(c.mean()), float(c.std()),
                             float(torch.tensor(a["clean"]).mean()), float(s.mean()), float(s.std()),
                             int(sum(a["viol"]))))
    return rows


def _record(a: dict[str, list[float]], sets_adv, sets_clean, y: torch.Tensor, certified: torch.Tensor,  # type: ignore[no-untyped-def]
            std_adv: torch.Tensor) -> None:
    a["cov"].append(float(torch.as_tensor(sets_adv.contains(y)).double().mean()))
    a["clean"].append(float(torch.as_tensor(sets_clean.contains(y)).double().mean()))
    a["size"].append(float(torch.as_tensor(sets_adv.sizes).double().mean()))
    a["cert"].append(float(certified.double().mean()))
    # a certified point whose label leaves the standard set under the attack would contradict the certificate
    a["viol"].append(float((certified.cpu() & ~std_adv.cpu()).sum()))


class _Negated(torch.nn.Module):
    def __init__(self, sensor: torch.nn.Module) -> None:
        super().__init__()
        self.sensor = sensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sensor(x).flip(-1)


def _corrupted(sensors, index: int):  # type: ignore[no-untyped-def]
    from conformal.colep import Sensors

    attrs = [a.sensor for a in sensors.attributes]
    attrs[index] = _Negated(attrs[index])
    return Sensors(sensors.main, attrs).eval()


def format_colep_rows(rows: list[COLEPRow], alpha: float) -> str:
    """Markdown table of ``rows``."""
    lines = [f"| method | L2 eps | certified coverage (standard set) | coverage under attack (target >= {1 - alpha:.2f}) "
             "| clean coverage | set size |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {r.eps:g} | {r.certified:.3f} | {r.coverage:.3f} ± {r.coverage_std:.3f} | "
                     f"{r.clean_coverage:.3f} | {r.size:.2f} ± {r.size_std:.2f} |")
    return "\n".join(lines)


def demo_colep() -> None:
    """COLEP vs RSCP+ on digits at L2 0.125 and 0.25 (sigma 0.25, alpha 0.1); about a minute on 2 cores."""
    t0 = time.perf_counter()
    print("COLEP (main CNN + 4 attribute sensors: even, >= 5, closed loop, straight stroke; 40 rules) vs RSCP+")
    print("on the same noise-trained CNN: sigma=0.25, alpha=0.1, beta=0.001, n_mc=256, 160 pooled points,")
    print("10 random half/half splits, PGD (5 steps x 8 noise) on each method's smoothed score")
    rows = evaluate_colep(eps=(0.125, 0.25), n_mc=256, n_pool=160, n_splits=10, attack_steps=5, attack_noise=8,
                          log=print)
    print(format_colep_rows(rows, 0.1))
    print(f"({time.perf_counter() - t0:.1f}s)")
    assert not math.isnan(rows[0].coverage)
