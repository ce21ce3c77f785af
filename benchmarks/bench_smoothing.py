"""Randomized smoothing benchmark: certify speed against the forward-pass floor, sequential sample savings.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_smoothing.py [--reps 5] [--images 100] [--device cuda]

Runs on CUDA when it is available (``--device`` overrides): the models are moved there and every
sampler and generator takes its device from the model. GPU timing has not been measured yet (no device
was lent to the sessions so far); on a GPU, section 1 is the issue's "certify against the forward-pass
floor there".

1. Time of ``Smooth.certify`` (n0 = 100, n = 10^5) on the digits CNN against (a) the floor: 10^5
   plain forward passes of the same model at the same batch size on a preallocated batch, and (b) the
   reference loop of Cohen et al.'s ``core.py`` (fresh ``x.repeat`` and noise per batch, host transfer
   and a Python counting loop per batch). The three are timed in rotating order, ``--reps`` times, so
   machine drift cancels; the medians of the per-rep ratios are reported.
2. Certified accuracy at r in {0.25, 0.5} (σ = 0.25, α = 0.001) of Cohen's fixed n = 10^5 against
   the sequential procedure aimed at r (budget 10^5), with the average number of samples per image.
3. ``--fixed-n``: sequential against the smallest fixed n that reaches the same certified accuracy on
   the same images. Every test image gets 100 selection draws and ``--recorded`` estimation draws,
   recorded once; Cohen at any n <= recorded is the prefix of that stream (subsampling), and the
   sequential procedure is replayed on the same stream, so both see identical draws. Both with the
   selection step (Cohen's CERTIFY) and with the label given (the robust-at-radius question certified
   accuracy asks: no selection draws on either side). ``--draws F.npz`` saves the recorded draws (or
   replays them when the file exists); the ``budget futility`` rows use ``budget_futility=True``.
4. ``--denoised``: certified accuracy and ACR of denoised, consistency-trained and rRCM-style models.
5. ``--seeds N``: the training-seed stability of Gaussian augmentation vs consistency vs rRCM-style.
   ``--with-denoised`` adds the frozen standard CNN behind the U-Net denoiser recipe (minutes per seed);
   ``--sigmas 0.5`` limits the noise levels.
6. ``--denoiser-seed K --sigma S``: one denoised row, the U-Net denoiser recipe trained with seed K.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import binom, norm

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_base_model
from smoothing import Smooth, certified_accuracy, certify_dataset
from smoothing.sequential import (
    cannot_pass_by_budget,
    confidence_sequence,
    one_sided_log_wealth,
    round_schedule,
)

SIGMA, ALPHA, N0, N, BATCH = 0.25, 0.001, 100, 100_000, 1000
#: Where the models run: ``--device`` (default: CUDA when available, else the CPU). Everything else takes
#: its device from the model (``Smooth`` samples on the model's device; generators are made there).
DEVICE = torch.device("cpu")


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # time the work, not its launch


@torch.inference_mode()
def floor(model: torch.nn.Module, x: torch.Tensor, num: int, batch_size: int) -> None:
    batch = x.repeat(batch_size, 1, 1, 1)
    for _ in range(num // batch_size):
        model(batch)


@torch.inference_mode()
def reference(model: torch.nn.Module, x: torch.Tensor, num: int, batch_size: int, num_classes: int) -> np.ndarray:
    """Cohen et al.'s ``_sample_noise``: per batch, a fresh copy and noise, host sync, Python counting."""
    counts = np.zeros(num_classes, dtype=int)
    remaining = num
    while remaining > 0:
        this_batch = min(batch_size, remaining)
        remaining -= this_batch
        batch = x.repeat((this_batch, 1, 1, 1))
        noise = torch.randn_like(batch) * SIGMA
        predictions = model(batch + noise).argmax(1)
        for idx in predictions.cpu().numpy():  # _count_arr
            counts[idx] += 1
    return counts


def bench_speed(reps: int) -> None:
    model = digits_base_model(SIGMA).to(DEVICE)
    device = _model_device(model)
    smooth = Smooth(model, 10, SIGMA, input_shape=(1, 8, 8))
    x = load_digits_split("test").images[0].to(device)
    runs = {
        "floor": lambda: floor(model, x, N0 + N, BATCH),
        "certkit": lambda: smooth.certify(x, N0, N, ALPHA, BATCH, torch.Generator(device=device).manual_seed(0)),
        "reference": lambda: (reference(model, x, N0, BATCH, 10), reference(model, x, N, BATCH, 10)),
    }
    names = list(runs)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}  # process time: robust to other jobs on a shared machine
    for rep in range(reps):
        order = names[rep % 3 :] + names[: rep % 3]  # rotate so drift hits every method alike
        for name in order:
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            _sync(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"## certify speed (n0={N0}, n={N:,}, batch {BATCH}, {reps} rotating reps, {where})")
    print("| run | median wall s | median CPU s |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {statistics.median(wall[name]):.3f} | {statistics.median(cpu[name]):.3f} |")
    for label, t in (("wall", wall), ("CPU", cpu)):
        ours_vs_floor = statistics.median(c / f for c, f in zip(t["certkit"], t["floor"]))
        ref_vs_ours = statistics.median(r / c for r, c in zip(t["reference"], t["certkit"]))
        print(f"{label} time, median of per-rep ratios: certkit / floor = {ours_vs_floor:.3f}x; "
              f"reference / certkit = {ref_vs_ours:.3f}x")


def bench_samples(images: int) -> None:
    smooth = Smooth(digits_base_model(SIGMA).to(DEVICE), 10, SIGMA, input_shape=(1, 8, 8))
    test = load_digits_split("test")
    step = max(1, len(test) // images)
    xs, ys = test.images[::step][:images], test.labels[::step][:images]
    radii = (0.25, 0.5)
    start = time.perf_counter()
    cohen = certify_dataset(smooth, xs, ys, n0=N0, n=N, alpha=ALPHA, batch_size=BATCH, progress=False)
    cohen_s = time.perf_counter() - start
    cohen_acc = certified_accuracy(cohen, radii)
    cohen_samples = np.mean([r.samples for r in cohen])
    print(f"\n## sequential vs Cohen ({len(ys)} test images, every {step}th; sigma={SIGMA}, alpha={ALPHA})")
    print("| radius | Cohen n=1e5 cert. acc. | sequential cert. acc. | Cohen samples/image | sequential samples/image "
          "| sample ratio | Cohen s | sequential s |")
    print("|---|---|---|---|---|---|---|---|")
    for r, acc in zip(radii, cohen_acc):
        start = time.perf_counter()
        seq = certify_dataset(
            smooth, xs, ys, procedure="sequential", radius=r, alpha=ALPHA, n0=N0, n_max=N, batch_size=4096,
            inputs_per_task=25, progress=False,
        )
        seq_s = time.perf_counter() - start
        seq_acc = float(certified_accuracy(seq, [r])[0])
        seq_samples = np.mean([x.samples for x in seq])
        print(f"| {r} | {acc:.3f} | {seq_acc:.3f} | {cohen_samples:,.0f} | {seq_samples:,.0f} | "
              f"{cohen_samples / seq_samples:.1f}x | {cohen_s:.0f} | {seq_s:.0f} |")


@torch.inference_mode()
def record_draws(model: torch.nn.Module, xs: torch.Tensor, num: int, generator: torch.Generator) -> np.ndarray:
    """Labels f(x + δ) of ``num`` fresh draws per input: (B, num) int8."""
    out = np.empty((xs.shape[0], num), dtype=np.int8)
    device = _model_device(model)
    buf = torch.empty((num, *xs.shape[1:]), device=device)
    for i, x in enumerate(xs.to(device)):
        out[i] = model(buf.normal_(0.0, SIGMA, generator=generator).add_(x)).argmax(1).cpu().numpy()
    return out


def replay_sequential(
    hits: np.ndarray, target: float, first_round: int, growth: float, test: str, futility: float,
    budget: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``certify_sequential``'s stopping rule on recorded cumulative hits (B, T): (certified, samples)."""
    n_max = hits.shape[1]
    certified, samples = np.zeros(len(hits), dtype=bool), np.full(len(hits), n_max)
    active = np.arange(len(hits))
    for t in round_schedule(first_round, growth, n_max):
        lower, _ = confidence_sequence(hits[active, t - 1], t, ALPHA)
        upper = confidence_sequence(hits[active, t - 1], t, futility)[1]
        if test == "one-sided":
            lower = np.where(one_sided_log_wealth(hits[active, t - 1], t, target) >= np.log(1 / ALPHA), target, 0.0)
        done = (lower >= target) | (upper < target) | (t >= n_max)
        if budget:
            done |= cannot_pass_by_budget(hits[active, t - 1], t, upper, n_max, target, ALPHA, test)  # type: ignore[arg-type]
        certified[active[done]] = lower[done] >= target
        samples[active[done]] = t
        active = active[~done]
        if len(active) == 0:
            break
    return certified, samples


def bench_fixed_n(recorded: int, draws: str | None = None, n0_min: tuple[int, ...] = (4, 8, 16)) -> None:
    model = digits_base_model(SIGMA).to(DEVICE)
    test = load_digits_split("test")
    xs, ys = test.images, test.labels.numpy()
    gen = torch.Generator(device=_model_device(model)).manual_seed(0)  # on the CPU: the draws of earlier runs
    start = time.perf_counter()
    if draws is not None and os.path.exists(draws):  # the same draws, recorded by an earlier run
        saved = np.load(draws)
        selection, stream = saved["selection"], saved["stream"][:, :recorded]
    else:
        selection = record_draws(model, xs, N0, gen)
        stream = record_draws(model, xs, recorded, gen)
        if draws is not None:
            np.savez(draws, selection=selection, stream=stream)
    record_s = time.perf_counter() - start
    c_hat = np.array([np.bincount(row, minlength=10).argmax() for row in selection])
    hits_true = np.cumsum(stream == ys[:, None], axis=1)
    hits_sel = np.cumsum(stream == c_hat[:, None], axis=1)
    n_grid = np.arange(1, recorded + 1)
    all_images = np.ones(len(ys), dtype=bool)
    # (question, cumulative hits of the tested class, selection draws per image, tested class is the true one)
    questions: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = [
        ("label given", hits_true, np.zeros(len(ys)), all_images),
        ("Cohen (selection)", hits_sel, np.full(len(ys), N0), c_hat == ys),
    ]
    for m in n0_min:  # adaptive selection: the first m selection draws, all n0 unless they are unanimous
        unanimous = (selection[:, :m] == selection[:, :1]).all(1)
        c_ad = np.where(unanimous, selection[:, 0], c_hat)
        questions.append((f"adaptive selection (n0_min {m})", np.cumsum(stream == c_ad[:, None], axis=1),
                          np.where(unanimous, m, N0), c_ad == ys))
    print(f"\n## sequential vs the smallest fixed n at equal certified accuracy ({len(ys)} test images, "
          f"sigma={SIGMA}, alpha={ALPHA}; {N0} + {recorded:,} recorded draws per image, {record_s:.0f} s)")
    print("Fixed n: Cohen's CERTIFY (n0 = 100 selection draws, none when the label is given) at every n <= "
          "recorded; for adaptive selection also the fixed n with the same adaptive selection.")
    print("| radius | question | test, schedule | sequential cert. acc. | sequential samples/image | smallest fixed n "
          "(samples/image) reaching it | fixed-n / sequential | 100,100 / sequential |")
    print("|---|---|---|---|---|---|---|---|")
    schedules = (
        ("CS, 64 x1.25 (session-2 defaults)", (64, 1.25, "confidence-sequence", ALPHA, False)),
        ("CS, 16 x1.05", (16, 1.05, "confidence-sequence", ALPHA, False)),
        ("one-sided, 16 x1.05", (16, 1.05, "one-sided", ALPHA, False)),
        ("one-sided, 16 x1.05, futility 0.5", (16, 1.05, "one-sided", 0.5, False)),
        ("one-sided, 16 x1.05, budget futility", (16, 1.05, "one-sided", ALPHA, True)),
        ("one-sided, 16 x1.05, budget futility 0.2", (16, 1.05, "one-sided", 0.2, True)),
    )

    def smallest_fixed(hits: np.ndarray, ok: np.ndarray, extra: float, acc: float, k_min: np.ndarray) -> float | None:
        fixed_acc = ((hits >= k_min[None, :]) & ok[:, None]).mean(0)  # accuracy at every n <= recorded
        reach = np.flatnonzero(fixed_acc >= acc)
        return float(n_grid[reach[0]] + extra) if len(reach) else None

    for r in (0.25, 0.5):
        target = float(norm.cdf(r / SIGMA))
        k_min = binom.isf(ALPHA, n_grid, target) + 1  # CP lower bound >= target iff hits >= k_min(n)
        for question, hits, extra, ok in questions:
            adaptive = question.startswith("adaptive")
            for schedule, (first, growth, kind, futility, budget) in schedules[3:] if adaptive else schedules:
                cert, samples = replay_sequential(hits, target, first, growth, kind, futility, budget)
                acc = float((cert & ok).mean())
                seq_samples = float((samples + extra).mean())
                # Cohen's fixed n: with the label given, none; otherwise its n0 = 100 selection draws
                cohen = (smallest_fixed(hits_true, all_images, 0.0, acc, k_min) if question == "label given"
                         else smallest_fixed(hits_sel, c_hat == ys, float(N0), acc, k_min))
                cells = [f"> {recorded:,} (not reached)", "n/a"] if cohen is None else \
                    [f"{cohen:,.0f}", f"**{cohen / seq_samples:.1f}x**"]
                if adaptive:
                    same = smallest_fixed(hits, ok, float(extra.mean()), acc, k_min)
                    if same is not None:
                        cells = [cells[0] + f"; same selection: {same:,.0f}", cells[1] + f"; {same / seq_samples:.1f}x"]
                print(f"| {r} | {question} | {schedule} | {acc:.3f} | {seq_samples:,.0f} | {cells[0]} | {cells[1]} | "
                      f"{(N0 + N) / seq_samples:.0f}x |")


def bench_denoised(images: int, n: int, only_consistency: bool = False, only: str | None = None) -> None:
    """Denoised smoothing of the standard-trained CNN against the noise-trained base model."""
    from certkit_app.digits import digits_cnn, digits_consistency_model, digits_denoised_cnn, digits_rcm_model
    from smoothing import average_certified_radius

    test = load_digits_split("test")
    step = max(1, len(test) // images)
    xs, ys = test.images[::step][:images], test.labels[::step][:images]
    radii = (0.0, 0.25, 0.5, 0.75, 1.0)
    print(f"\n## denoised smoothing ({len(ys)} test images, every {step}th; n0={N0}, n={n:,}, alpha={ALPHA})")
    print("| sigma | base classifier | " + " | ".join(f"r={r}" for r in radii) + " | ACR | s |")
    print("|---|---|" + "---|" * len(radii) + "---|---|")
    for sigma in (0.25, 0.5):
        models: dict[str, Callable[[float], torch.nn.Module]] = {  # built lazily: only the rows asked for train
            "standard CNN alone": lambda s: digits_cnn(),
            "standard CNN + MSE denoiser": lambda s: digits_denoised_cnn(s, "mse"),
            "standard CNN + stability denoiser": lambda s: digits_denoised_cnn(s, "stability"),
            "noise-trained CNN (Gaussian augmentation)": digits_base_model,
            "consistency-trained CNN (Jeong & Shin)": digits_consistency_model,
            "rRCM-style CNN (contrastive denoising pretraining + consistency)": digits_rcm_model,
        }
        if only_consistency:
            models = {k: v for k, v in models.items() if k.startswith(("noise", "consistency"))}
        if only is not None:
            models = {k: v for k, v in models.items() if any(word in k for word in only.split(","))}
        for name, build in models.items():
            model = build(sigma).to(DEVICE)
            start = time.perf_counter()
            rec = certify_dataset(Smooth(model, 10, sigma), xs, ys, n0=N0, n=n, alpha=ALPHA, batch_size=n + N0,
                                  inputs_per_task=10, progress=False)
            acc = certified_accuracy(rec, radii)
            print(f"| {sigma} | {name} | " + " | ".join(f"{a:.2f}" for a in acc)
                  + f" | {average_certified_radius(rec):.3f} | {time.perf_counter() - start:.0f} |", flush=True)


def bench_seeds(images: int, n: int, seeds: int, sigmas: tuple[float, ...] = (0.25, 0.5),
                denoised: bool = False) -> None:
    """Gaussian augmentation vs consistency training vs the rRCM-style model over ``seeds`` training seeds.

    Each seed changes the initialisation, the permutations and the training noise (nothing is cached:
    every model is trained here; seed 0 reproduces the cached recipes); certification uses the same draws
    for every model (generator seeded 0). ``denoised``: also the frozen standard CNN behind the
    ``digits_denoised_cnn`` denoiser recipe trained with each seed (the slow part: minutes per seed).
    """
    from certkit_app.digits import _train_digits_denoiser, digits_cnn, make_digits_cnn
    from smoothing import (
        DenoisedClassifier,
        average_certified_radius,
        make_unet_denoiser,
        pretrain_contrastive_denoising,
        train_consistency,
        train_noise_augmented,
    )

    train, test = load_digits_split("train"), load_digits_split("test")
    step = max(1, len(test) // images)
    xs, ys = test.images[::step][:images], test.labels[::step][:images]
    radii = (0.25, 0.5, 0.75, 1.0)

    def fresh(seed: int) -> torch.nn.Sequential:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make_digits_cnn()

    def gen(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    encoders = {}
    for seed in range(seeds):
        net = fresh(seed)
        pretrain_contrastive_denoising(net[:-1], train.images, epochs=60, generator=gen(seed))
        encoders[seed] = net[:-1].state_dict()
    rows: dict[tuple[float, str], list[np.ndarray]] = {}
    for sigma in sigmas:
        for seed in range(seeds):
            def gaussian(m: torch.nn.Sequential, s: int = seed, sg: float = sigma) -> object:
                return train_noise_augmented(m, train.images, train.labels, sg, generator=gen(s))

            def consistency(m: torch.nn.Sequential, s: int = seed, sg: float = sigma) -> object:
                return train_consistency(m, train.images, train.labels, sg, lam=5.0, generator=gen(s))

            def rrcm(m: torch.nn.Sequential, s: int = seed, sg: float = sigma) -> object:
                m[:-1].load_state_dict(encoders[s])
                return train_consistency(m, train.images, train.labels, sg, lam=5.0, lr=1e-3, generator=gen(s))

            recipes: dict[str, Callable[[torch.nn.Sequential], object] | None] = {
                "Gaussian augmentation": gaussian,
                "consistency (λ = 5)": consistency,
                "rRCM-style (contrastive pretraining + consistency)": rrcm,
            }
            if denoised:
                recipes["denoised (frozen standard CNN + U-Net denoiser)"] = None
            for name, recipe in recipes.items():
                start = time.perf_counter()
                model: torch.nn.Module
                if recipe is None:  # as --denoiser-seed: the initialisation is the cached one, the seed moves the rest
                    denoiser = make_unet_denoiser()
                    _train_digits_denoiser(denoiser, sigma, "stability", digits_cnn(), seed=seed)
                    model = DenoisedClassifier(denoiser, digits_cnn())
                else:
                    cnn = fresh(seed)
                    recipe(cnn)
                    model = cnn
                model.eval().to(DEVICE)
                trained = time.perf_counter() - start
                rec = certify_dataset(Smooth(model, 10, sigma), xs, ys, n0=N0, n=n, alpha=ALPHA, batch_size=n + N0,
                                      inputs_per_task=10, progress=False)
                row = np.append(certified_accuracy(rec, radii), average_certified_radius(rec))
                rows.setdefault((sigma, name), []).append(row)
                print(f"sigma {sigma} seed {seed} {name}: {np.round(row, 3).tolist()} (trained in {trained:.0f} s)",
                      flush=True)
    print(f"\n## training-seed stability ({len(ys)} test images, every {step}th; n0={N0}, n={n:,}, alpha={ALPHA}; "
          f"{seeds} seeds: mean ± half-range)")
    print("| sigma | training | " + " | ".join(f"r={r}" for r in radii) + " | ACR |")
    print("|---|---|" + "---|" * (len(radii) + 1))
    for (sigma, name), values in rows.items():
        v = np.array(values)
        cells = [f"{m:.3f} ± {(hi - lo) / 2:.3f}" for m, lo, hi in zip(v.mean(0), v.min(0), v.max(0))]
        print(f"| {sigma} | {name} | " + " | ".join(cells) + " |")


def bench_denoiser_seed(images: int, n: int, sigma: float, seed: int, copies: int = 2,
                        epochs: int | None = None) -> None:
    """One row: the standard CNN behind the stability denoiser (``digits_denoised_cnn`` recipe) trained with
    ``seed`` (0: the cached model; others: permutations and noise from ``seed``; the U-Net's initial weights
    are the cached recipe's for every seed, since ``make_unet_denoiser()`` seeds them with 0)."""
    from certkit_app.digits import _denoiser_recipe, _train_digits_denoiser, digits_cnn, digits_denoised_cnn
    from smoothing import DenoisedClassifier, average_certified_radius, make_unet_denoiser

    test = load_digits_split("test")
    step = max(1, len(test) // images)
    xs, ys = test.images[::step][:images], test.labels[::step][:images]
    start = time.perf_counter()
    epochs = _denoiser_recipe(sigma)[1] if epochs is None else epochs
    if seed == 0 and copies == 2 and epochs == _denoiser_recipe(sigma)[1]:
        model: torch.nn.Module = digits_denoised_cnn(sigma)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            denoiser = make_unet_denoiser()
        _train_digits_denoiser(denoiser, sigma, "stability", digits_cnn(), seed=seed, copies=copies, epochs=epochs)
        model = DenoisedClassifier(denoiser.eval(), digits_cnn()).eval()
    model = model.to(DEVICE)
    trained = time.perf_counter() - start
    radii = (0.0, 0.25, 0.5, 0.75, 1.0)
    rec = certify_dataset(Smooth(model, 10, sigma), xs, ys, n0=N0, n=n, alpha=ALPHA, batch_size=n + N0,
                          inputs_per_task=10, progress=False)
    acc = certified_accuracy(rec, radii)
    print(f"| {sigma} | standard CNN + U-Net stability/consistency denoiser ({copies} copies, {epochs} epochs), "
          f"seed {seed} | "
          + " | ".join(f"{a:.2f}" for a in acc) + f" | {average_certified_radius(rec):.3f} | train {trained:.0f} s |",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--skip-samples", action="store_true")
    parser.add_argument("--fixed-n", action="store_true", help="only the sequential vs smallest fixed n comparison")
    parser.add_argument("--recorded", type=int, default=10_000)
    parser.add_argument("--draws", help="--fixed-n: .npz file of recorded draws (loaded if present, else written)")
    parser.add_argument("--denoised", action="store_true", help="only the denoised-smoothing table")
    parser.add_argument("--n", type=int, default=2_000, help="estimation draws for --denoised")
    parser.add_argument("--only-consistency", action="store_true", help="--denoised: only the two noise-trained rows")
    parser.add_argument("--seeds", type=int, default=0, help="only the training-seed stability table, over this many seeds")
    parser.add_argument("--with-denoised", action="store_true", help="--seeds: also the denoised row (minutes per seed)")
    parser.add_argument("--sigmas", default="0.25,0.5", help="--seeds: comma-separated noise levels")
    parser.add_argument("--only", help="--denoised: only rows whose name contains one of these comma-separated words")
    parser.add_argument("--denoiser-seed", type=int, help="only one denoised row: the recipe trained with this seed")
    parser.add_argument("--sigma", type=float, default=0.5, help="--denoiser-seed: the noise level")
    parser.add_argument("--copies", type=int, default=2, help="--denoiser-seed: noise copies per image (2: the cached recipe)")
    parser.add_argument("--epochs", type=int,
                        help="--denoiser-seed: stability epochs (default: the cached recipe's, 240 at sigma 0.5, else 60)")
    parser.add_argument("--device", help="where the models run (default: cuda when available, else cpu)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.denoiser_seed is not None:
        bench_denoiser_seed(args.images, args.n, args.sigma, args.denoiser_seed, args.copies, args.epochs)
        return
    if args.seeds:
        bench_seeds(args.images, args.n, args.seeds, tuple(float(v) for v in args.sigmas.split(",")), args.with_denoised)
        return
    if args.denoised:
        bench_denoised(args.images, args.n, args.only_consistency, args.only)
        return
    if args.fixed_n:
        bench_fixed_n(args.recorded, args.draws)
        return
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    bench_speed(args.reps)
    if not args.skip_samples:
        bench_samples(args.images)


if __name__ == "__main__":
    main()
