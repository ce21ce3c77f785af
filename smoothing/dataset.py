"""Certify a whole dataset, summarise it as certified accuracy, plot the curve.

Certified accuracy at radius r (Cohen et al. 2019, Section 4) is the fraction of inputs whose
certificate names the true label with radius >= r. It is "approximate": each certificate may be
wrong with probability alpha, so the reported fraction overstates the true one by at most alpha in
expectation. ``certified_accuracy_lower`` removes the "approximate": it subtracts a binomial bound
on the number of wrong certificates, so it holds with probability 1 - delta. The average certified
radius (ACR, Zhai et al. 2020 "MACER"; Jeong & Shin 2020) is the mean of radius * correct.

Work is split into tasks of ``inputs_per_task`` consecutive inputs; task j draws its noise from a
generator seeded by (s, j), s one number drawn from the caller's ``generator``, so a run is
reproducible and identical whether the tasks run in this process or on any ``concurrent.futures.Executor``-like object with ``submit`` (a thread or
process pool, a ``dask.distributed.Client``, Ray's executor).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from scipy.stats import binom
from tqdm import tqdm

from certkit._validation import (
    as_real_array,
    check_array,
    check_generator,
    check_instance,
    check_labels,
    check_positive_int,
    check_probability,
    generator_or_seed,
)
from certkit.threat import norm_name
from smoothing.cohen import Certificate, Smooth
from smoothing.sequential import certify_sequential_batch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "CertifiedRecord",
    "Submitter",
    "average_certified_radius",
    "certified_accuracy",
    "certified_accuracy_lower",
    "certify_dataset",
    "plot_certified_accuracy",
]

Procedure = Literal["cohen", "sequential"]
_OPTIONS = {
    "cohen": {"n0", "n", "alpha", "batch_size"},
    "sequential": {"radius", "alpha", "n0", "n_max", "batch_size", "first_round", "growth", "label_given", "test", "futility",
                   "budget_futility"},
}


@dataclass(frozen=True)
class CertifiedRecord:
    """One row of a certified dataset.

    Attributes:
        index: position of the input in ``inputs``.
        label: the true label.
        prediction: the certified class, or ``None`` on abstention.
        radius: certified radius in ``norm`` (0.0 on abstention).
        correct: ``prediction == label``.
        samples: noisy forward passes spent on this input (selection draws included).
        seconds: wall time of the task divided by the inputs it held.
        norm: the norm of the certified ball (2.0 for Gaussian noise, 1.0 for uniform/Laplace).
    """

    index: int
    label: int
    prediction: int | None
    radius: float
    correct: bool
    samples: int
    seconds: float
    norm: float = 2.0


class Submitter(Protocol):
    """Anything with ``submit(fn, *args) -> future`` whose future has ``result()``."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...


def _task_seed(seed: int, task: int) -> int:
    return int(np.random.SeedSequence([seed, task]).generate_state(1, np.uint64)[0] >> 1)


def _certify_task(
    smooth: Smooth, procedure: Procedure, xs: torch.Tensor, seed: int, options: dict[str, Any],
    ys: torch.Tensor | None = None,
) -> tuple[list[Certificate], float]:
    start = time.perf_counter()
    generator = torch.Generator(device=smooth.device()).manual_seed(seed)
    if procedure == "cohen":
        certs = smooth.certify_batch(
            xs, options.get("n0", 100), options.get("n", 100_000), options.get("alpha", 0.001),
            options.get("batch_size", 1000), generator,
        )
    else:
        options = dict(options)
        labels = ys if options.pop("label_given", False) else None
        certs = certify_sequential_batch(smooth, xs, generator=generator, labels=labels, **options)
    return certs, time.perf_counter() - start


def certify_dataset(
    smooth: Smooth,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    procedure: Procedure = "cohen",
    generator: torch.Generator | None = None,
    seed: int | None = None,
    inputs_per_task: int = 1,
    executor: Submitter | None = None,
    progress: bool = True,
    **options: Any,
) -> list[CertifiedRecord]:
    """Certify every input of ``inputs`` (N, *input_shape) against ``labels`` (N,).

    Args:
        smooth: the smoothed classifier.
        procedure: ``"cohen"`` (``Smooth.certify_batch``; options ``n0``, ``n``, ``alpha``,
            ``batch_size`` with Cohen's defaults 100, 100,000, 0.001, 1000) or ``"sequential"``
            (``certify_sequential_batch``; its keyword options, e.g. ``radius``, ``n_max``, and
            ``label_given=True``: certify the true label at ``radius`` without selection draws, the
            question certified accuracy asks).
        generator: draws the one number that seeds the per-task generators (advancing it by one
            draw); generators in the same state give the same records with or without an executor,
            for any executor. ``None``: a generator seeded with 0 (reproducible by default).
        seed: deprecated (DeprecationWarning; removed in the next release): the per-task seed root
            itself, giving the records earlier releases gave for that seed. Pass ``generator``.
        inputs_per_task: inputs packed into the forward passes of one task.
        executor: runs the tasks (``submit`` + ``result()``); ``None`` runs them here, one by one.
        progress: show a tqdm bar over inputs.

    Returns:
        N records in input order. Each certificate fails (names a class other than g(x_i), or a
        radius on which g is not constant) with probability at most alpha, independently per input.
    """
    if not isinstance(smooth, Smooth):
        raise TypeError(f"Expected argument `smooth` to be a smoothing.Smooth, but got {type(smooth).__name__}")
    if procedure not in ("cohen", "sequential"):
        raise ValueError(f"Expected argument `procedure` to be 'cohen' or 'sequential', but got {procedure!r}")
    if not isinstance(inputs, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(
            "Expected arguments `inputs` and `labels` to be torch tensors, "
            f"but got {type(inputs).__name__} and {type(labels).__name__}"
        )
    check_array(inputs, "inputs")
    check_labels(labels, inputs.shape[0], smooth.num_classes)
    unknown = sorted(set(options) - _OPTIONS[procedure])
    if unknown:
        raise TypeError(
            f"Expected options of procedure {procedure!r} among {sorted(_OPTIONS[procedure])}, but got {unknown}"
        )
    inputs_per_task = check_positive_int(inputs_per_task, "inputs_per_task")
    generator = check_generator(generator)
    if seed is not None:  # deprecated: the seed is the root itself, as in earlier releases
        root = generator_or_seed(generator, seed, where="smoothing.certify_dataset").initial_seed()
    elif generator is None:
        root = 0  # what the old default seed=0 gave
    else:
        root = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"Expected argument `executor` to have a `submit` method, but got {type(executor).__name__}")
    starts = range(0, inputs.shape[0], inputs_per_task)
    tasks = [
        (smooth, procedure, inputs[i : i + inputs_per_task], _task_seed(root, j), options, labels[i : i + inputs_per_task])
        for j, i in enumerate(starts)
    ]

    records: list[CertifiedRecord] = []
    with tqdm(total=inputs.shape[0], desc=f"certify ({procedure})", disable=not progress, leave=False) as bar:
        futures = [executor.submit(_certify_task, *task) for task in tasks] if executor is not None else None
        for j, (i, task) in enumerate(zip(starts, tasks)):
            certs, seconds = futures[j].result() if futures is not None else _certify_task(*task)
            for offset, cert in enumerate(certs):
                label = int(labels[i + offset])
                records.append(
                    CertifiedRecord(
                        index=i + offset, label=label, prediction=cert.label, radius=cert.radius,
                        correct=cert.label == label, samples=cert.samples, seconds=seconds / len(certs),
                        norm=cert.norm,
                    )
                )
            bar.update(len(certs))
    return records


def _check_records(results: Any) -> None:
    if isinstance(results, str | bytes) or not isinstance(results, Sequence):
        raise TypeError(f"Expected argument `results` to be a sequence of CertifiedRecord, but got {type(results).__name__}")
    for r in results:
        check_instance(r, CertifiedRecord, "results", "a sequence of CertifiedRecord (smoothing.certify_dataset)")
    if len(results) == 0:
        raise ValueError("Expected argument `results` to hold at least one record, but it is empty")


def _certified_counts(results: Sequence[CertifiedRecord], radii: Sequence[float] | np.ndarray) -> np.ndarray:
    _check_records(results)
    radii = as_real_array(radii, "radii", allow_inf=True)
    if radii.ndim != 1:
        raise ValueError(f"Expected argument `radii` to have shape (R,), but got shape {radii.shape}")
    if radii.size and float(radii.min()) < 0:
        raise ValueError(f"Expected argument `radii` to hold radii >= 0, but got {float(radii.min())}")
    correct = np.array([r.correct for r in results], dtype=bool)
    radius = np.array([r.radius for r in results], dtype=np.float64)
    return np.asarray((correct[:, None] & (radius[:, None] >= radii[None, :])).sum(0))


def certified_accuracy(results: Sequence[CertifiedRecord], radii: Sequence[float] | np.ndarray) -> np.ndarray:
    """Approximate certified accuracy: fraction of records with ``correct`` and ``radius >= r``, per r.

    Shapes: ``radii`` (R,) -> (R,) float64.
    """
    return _certified_counts(results, radii) / len(results)


def certified_accuracy_lower(
    results: Sequence[CertifiedRecord], radii: Sequence[float] | np.ndarray, alpha: float, delta: float = 0.001
) -> np.ndarray:
    """High-probability certified accuracy (Cohen et al. 2019, Section 4 and Appendix: the correction
    for the per-input failure probability ``alpha`` of CERTIFY).

    Each of the N certificates is wrong (names a class other than g(x_i), or a radius on which g is not
    constant) with probability <= alpha, independently across inputs, so the number F of wrong
    certificates is stochastically dominated by Bin(N, alpha). With f = the smallest integer such that
    P[Bin(N, alpha) > f] <= delta, with probability >= 1 - delta over the certification draws

        true certified accuracy at r >= (#{correct and radius >= r} - f) / N   for every r at once,

    because every record counted by the approximate accuracy but not truly certified is a wrong
    certificate. ``alpha`` must be the alpha the records were certified with. Shapes: (R,) -> (R,).
    """
    alpha, delta = check_probability(alpha, "alpha"), check_probability(delta, "delta")
    counts = _certified_counts(results, radii)
    n = len(results)
    failures = float(binom.ppf(1.0 - delta, n, alpha))  # smallest f with P[Bin(n, alpha) <= f] >= 1 - delta
    return np.asarray(np.maximum(counts - failures, 0.0) / n)


def average_certified_radius(results: Sequence[CertifiedRecord]) -> float:
    """Average certified radius (ACR): mean over inputs of ``radius`` if ``correct`` else 0.

    Used by MACER (Zhai et al. 2020) and consistency training (Jeong & Shin 2020). Like
    ``certified_accuracy`` it is approximate (each radius may be wrong with probability alpha) and it
    depends on the sampling budget: at n = 10^5, alpha = 0.001 no radius exceeds 3.81 σ (Gaussian).
    Radii are in the records' norm; mixing norms is refused.
    """
    _common_norm(results)
    return float(np.mean([r.radius if r.correct else 0.0 for r in results]))


def _common_norm(results: Sequence[CertifiedRecord]) -> float:
    _check_records(results)
    norms = {r.norm for r in results}
    if len(norms) != 1:
        raise ValueError(f"Expected records certified in one norm, but got norms {sorted(norms)}")
    return norms.pop()


def plot_certified_accuracy(
    results: Sequence[CertifiedRecord] | Mapping[str, Sequence[CertifiedRecord]],
    radii: Sequence[float] | np.ndarray | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Plot certified accuracy against radius, one line per entry of ``results`` (label -> records).

    The x axis names the norm the records certify (e.g. "L2 radius", "L1 radius"); curves of
    different norms are refused (their radii are not comparable). Imports matplotlib only when called.
    Returns the axes.
    """
    import matplotlib.pyplot as plt

    curves = dict(results) if isinstance(results, Mapping) else {"": results}
    for recs in curves.values():
        _check_records(recs)
    norm = _common_norm([r for recs in curves.values() for r in recs])
    if radii is None:
        top = max((r.radius for recs in curves.values() for r in recs), default=1.0)
        radii = np.linspace(0.0, 1.05 * top if top > 0 else 1.0, 200)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for name, recs in curves.items():
        ax.plot(radii, certified_accuracy(recs, radii), label=name or None)
    ax.set_xlabel(f"{norm_name(norm)} radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    if any(curves):
        ax.legend()
    return ax
