"""Dataset certification: records, certified accuracy, executors give the serial result, the plot."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from scipy.stats import beta, binom, norm
from torch import nn

from smoothing import (
    CertifiedRecord,
    Smooth,
    UniformNoise,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_lower,
    certify_dataset,
    plot_certified_accuracy,
)

SIGMA = 0.25


def linear_model(dim: int = 4) -> nn.Module:
    """f(x) = argmax[x_0, 0]: the exact radius of g at x is |x_0|."""
    model = nn.Linear(dim, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 0] = 1.0
    return model.eval()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(6, 4)
    x[:, 0] = torch.tensor([0.5, -0.3, 0.0, 0.2, -0.6, 0.4])
    labels = torch.tensor([0, 1, 0, 1, 1, 0])  # the fourth is misclassified, the third a tie
    return x, labels


def test_records_and_certified_accuracy() -> None:
    x, labels = data()
    smooth = Smooth(linear_model(), 2, SIGMA)
    records = certify_dataset(smooth, x, labels, n0=50, n=5_000, alpha=1e-3, batch_size=2048, progress=False)
    assert [r.index for r in records] == list(range(6))
    assert [r.prediction for r in records] == [0, 1, None, 0, 1, 0]
    assert [r.correct for r in records] == [True, True, False, False, True, True]
    exact = x[:, 0].abs().tolist()
    assert all(r.radius <= e for r, e in zip(records, exact))
    assert all(r.samples == 5_050 and r.seconds >= 0 for r in records)
    acc = certified_accuracy(records, [0.0, 0.25, 0.45, 0.7])
    manual = [np.mean([r.correct and r.radius >= t for r in records]) for t in [0.0, 0.25, 0.45, 0.7]]
    assert acc.tolist() == manual
    assert acc[0] == 4 / 6 and acc[-1] == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].radius = 2.0  # type: ignore[misc]


def test_certified_accuracy_on_handmade_records() -> None:
    rec = [
        CertifiedRecord(0, 1, 1, 0.5, True, 10, 0.0),
        CertifiedRecord(1, 1, 2, 0.9, False, 10, 0.0),
        CertifiedRecord(2, 0, None, 0.0, False, 10, 0.0),
        CertifiedRecord(3, 0, 0, 0.2, True, 10, 0.0),
    ]
    assert certified_accuracy(rec, [0.0, 0.2, 0.3, 0.5, 0.6]).tolist() == [0.5, 0.5, 0.25, 0.25, 0.0]
    with pytest.raises(ValueError, match="`results`"):
        certified_accuracy([], [0.0])


def test_thread_pool_and_packing_match_serial_run() -> None:
    x, labels = data()
    smooth = Smooth(linear_model(), 2, SIGMA)
    kwargs = {"n0": 20, "n": 2_000, "alpha": 1e-3, "batch_size": 1000, "progress": False}
    serial = certify_dataset(smooth, x, labels, inputs_per_task=2, generator=_gen(5), **kwargs)  # type: ignore[arg-type]
    with ThreadPoolExecutor(2) as pool:
        pooled = certify_dataset(smooth, x, labels, inputs_per_task=2, executor=pool, generator=_gen(5), **kwargs)  # type: ignore[arg-type]
    assert _strip(serial) == _strip(pooled)
    other_seed = certify_dataset(smooth, x, labels, inputs_per_task=2, generator=_gen(6), **kwargs)  # type: ignore[arg-type]
    assert _strip(other_seed) != _strip(serial)


def test_seed_is_deprecated_but_gives_the_old_records() -> None:
    x, labels = data()
    smooth = Smooth(linear_model(), 2, SIGMA)
    kwargs = {"n0": 20, "n": 500, "alpha": 1e-3, "batch_size": 1000, "progress": False}
    default = certify_dataset(smooth, x, labels, **kwargs)  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match="`seed`"):
        old = certify_dataset(smooth, x, labels, seed=0, **kwargs)  # type: ignore[arg-type]
    assert _strip(default) == _strip(old)  # None is a generator seeded 0: the old default seed=0
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="both"):
        certify_dataset(smooth, x, labels, seed=0, generator=_gen(0), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`generator`"):
        certify_dataset(smooth, x, labels, generator=0, **kwargs)  # type: ignore[arg-type]


def test_dask_local_cluster_matches_serial_run() -> None:
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    x, labels = data()
    smooth = Smooth(linear_model(), 2, SIGMA)
    kwargs = {"procedure": "sequential", "radius": 0.25, "n_max": 5_000, "batch_size": 1000, "progress": False}
    serial = certify_dataset(smooth, x, labels, generator=_gen(1), **kwargs)  # type: ignore[arg-type]
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        remote = certify_dataset(smooth, x, labels, executor=client, generator=_gen(1), **kwargs)  # type: ignore[arg-type]
    assert _strip(serial) == _strip(remote)
    assert all(r.samples < 5_100 for r in serial if r.correct)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _strip(records: list[CertifiedRecord]) -> list[CertifiedRecord]:
    return [dataclasses.replace(r, seconds=0.0) for r in records]


def test_bad_arguments() -> None:
    x, labels = data()
    smooth = Smooth(linear_model(), 2, SIGMA)
    with pytest.raises(ValueError, match="`procedure`"):
        certify_dataset(smooth, x, labels, procedure="monte-carlo", progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="radius"):
        certify_dataset(smooth, x, labels, radius=0.5, progress=False)  # a sequential option given to Cohen
    with pytest.raises(ValueError, match="`labels`"):
        certify_dataset(smooth, x, labels[:3], progress=False)
    with pytest.raises(ValueError, match="`inputs_per_task`"):
        certify_dataset(smooth, x, labels, inputs_per_task=0, progress=False)
    with pytest.raises(TypeError, match="`executor`"):
        certify_dataset(smooth, x, labels, executor=object(), progress=False)  # type: ignore[arg-type]


def test_plot_returns_axes_and_matplotlib_is_imported_lazily() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    rec = [CertifiedRecord(0, 1, 1, 0.5, True, 10, 0.0), CertifiedRecord(1, 0, 0, 0.2, True, 10, 0.0)]
    ax = plot_certified_accuracy({"σ=0.25": rec, "σ=0.5": rec[:1]})
    assert len(ax.get_lines()) == 2 and ax.get_xlabel() == "L2 radius"
    code = "import sys, smoothing; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- metrics: ACR, high-probability certified accuracy, norm-labelled plots ---------------------------


def test_average_certified_radius_on_handmade_records() -> None:
    rec = [
        CertifiedRecord(0, 1, 1, 0.5, True, 10, 0.0),
        CertifiedRecord(1, 1, 2, 0.9, False, 10, 0.0),  # wrong class: contributes 0
        CertifiedRecord(2, 0, None, 0.0, False, 10, 0.0),
        CertifiedRecord(3, 0, 0, 0.2, True, 10, 0.0),
    ]
    assert average_certified_radius(rec) == pytest.approx(0.7 / 4)
    # ACR is the area under the certified-accuracy curve.
    grid = np.linspace(0, 1, 100_001)
    assert np.trapezoid(certified_accuracy(rec, grid), grid) == pytest.approx(0.7 / 4, abs=1e-4)
    with pytest.raises(ValueError, match="one norm"):
        average_certified_radius([rec[0], dataclasses.replace(rec[3], norm=1.0)])


def test_certified_accuracy_lower_holds_with_probability_1_minus_delta() -> None:
    # N inputs of the threshold model, all with p_A = 0.9 (exact radius t = σ Φ⁻¹(0.9)), certified with
    # Clopper-Pearson at alpha = 0.05 and n = 200, repeated 2,000 times from binomial draws. A wrong
    # certificate (radius > t) makes the approximate accuracy at r in (t, radius] overstate the truth
    # (which is 0 there); the high-probability version may overstate it in at most delta of the runs.
    n_inputs, n, alpha, delta, reps = 200, 200, 0.05, 0.05, 2000
    t = SIGMA * float(norm.ppf(0.9))
    rng = np.random.default_rng(0)
    hits = rng.binomial(n, 0.9, (reps, n_inputs))
    p_lower = beta.ppf(alpha, hits, n - hits + 1)
    radius = np.where(p_lower >= 0.5, SIGMA * norm.ppf(np.clip(p_lower, 0.5, 1.0)), 0.0)
    overstated_approx = overstated_lower = 0
    for row in radius:
        rec = [CertifiedRecord(i, 0, 0, float(r), True, n, 0.0) for i, r in enumerate(row)]
        r_probe = [float(np.nextafter(t, np.inf))]  # just past the exact radius: true accuracy 0
        overstated_approx += certified_accuracy(rec, r_probe)[0] > 0
        overstated_lower += certified_accuracy_lower(rec, r_probe, alpha, delta)[0] > 0
        assert certified_accuracy_lower(rec, [0.0], alpha, delta)[0] <= 1.0
    assert overstated_lower <= reps * delta + 3 * np.sqrt(reps * delta * (1 - delta))
    assert overstated_approx > 0.9 * reps  # the correction is needed: the approximate accuracy overstates


def test_certified_accuracy_lower_values_and_arguments() -> None:
    rec = [CertifiedRecord(i, 0, 0, 1.0, True, 10, 0.0) for i in range(1000)]
    f = binom.ppf(0.999, 1000, 0.001)  # 5 wrong certificates at most, w.p. >= 0.999
    assert certified_accuracy_lower(rec, [0.5], 0.001, 0.001)[0] == pytest.approx((1000 - f) / 1000)
    assert f == 5 and binom.sf(5, 1000, 0.001) <= 0.001 < binom.sf(4, 1000, 0.001)
    with pytest.raises(ValueError, match="`delta`"):
        certified_accuracy_lower(rec, [0.5], 0.001, 0.0)


def test_plot_labels_the_norm() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    rec = [CertifiedRecord(0, 1, 1, 0.5, True, 10, 0.0, norm=1.0)]
    assert plot_certified_accuracy(rec).get_xlabel() == "L1 radius"
    with pytest.raises(ValueError, match="one norm"):
        plot_certified_accuracy({"a": rec, "b": [dataclasses.replace(rec[0], norm=2.0)]})


def test_records_carry_the_norm_of_the_noise() -> None:
    x, labels = data()
    smooth = Smooth(linear_model(), 2, UniformNoise(0.5))
    records = certify_dataset(smooth, x, labels, n0=20, n=500, alpha=1e-3, batch_size=2048, progress=False)
    assert all(r.norm == 1.0 for r in records)
