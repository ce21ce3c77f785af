"""Dataset certification: records, certified accuracy, executors give the serial result, the plot."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from smoothing import CertifiedRecord, Smooth, certified_accuracy, certify_dataset, plot_certified_accuracy

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
    kwargs = {"n0": 20, "n": 2_000, "alpha": 1e-3, "batch_size": 1000, "seed": 5, "progress": False}
    serial = certify_dataset(smooth, x, labels, inputs_per_task=2, **kwargs)  # type: ignore[arg-type]
    with ThreadPoolExecutor(2) as pool:
        pooled = certify_dataset(smooth, x, labels, inputs_per_task=2, executor=pool, **kwargs)  # type: ignore[arg-type]
    strip = lambda rs: [dataclasses.replace(r, seconds=0.0) for r in rs]  # noqa: E731
    assert strip(serial) == strip(pooled)
    other_seed = certify_dataset(smooth, x, labels, inputs_per_task=2, **{**kwargs, "seed": 6})  # type: ignore[arg-type]
    assert strip(other_seed) != strip(serial)


def test_dask_local_cluster_matches_serial_run() -> None:
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    x, labels = data()
    smooth = Smooth(linear_model(), 2, SIGMA)
    kwargs = {"procedure": "sequential", "radius": 0.25, "n_max": 5_000, "batch_size": 1000, "seed": 1, "progress": False}
    serial = certify_dataset(smooth, x, labels, **kwargs)  # type: ignore[arg-type]
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        remote = certify_dataset(smooth, x, labels, executor=client, **kwargs)  # type: ignore[arg-type]
    strip = lambda rs: [dataclasses.replace(r, seconds=0.0) for r in rs]  # noqa: E731
    assert strip(serial) == strip(remote)
    assert all(r.samples < 5_100 for r in serial if r.correct)


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
