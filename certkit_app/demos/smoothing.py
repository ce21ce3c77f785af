"""``make demo`` section: certified accuracy of the smoothed digits CNN (σ = 0.25)."""

from __future__ import annotations

import time

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_base_model
from smoothing.cohen import Smooth, clopper_pearson_lower, smoothed_radius
from smoothing.dataset import certified_accuracy, certify_dataset

__all__ = ["demo_smoothing"]

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def demo_smoothing(num_images: int = 100, n: int = 10_000, alpha: float = 0.001) -> None:
    """Print certified accuracy at radii 0, 0.25, 0.5, 0.75, 1.0 for ``num_images`` test images (about a minute)."""
    sigma = 0.25
    print(f"Randomized smoothing (Cohen et al. 2019): digits CNN noise-trained at sigma={sigma}")
    smooth = Smooth(digits_base_model(sigma), num_classes=10, sigma=sigma, input_shape=(1, 8, 8))
    test = load_digits_split("test")
    step = max(1, len(test) // num_images)
    images, labels = test.images[::step][:num_images], test.labels[::step][:num_images]
    start = time.perf_counter()
    records = certify_dataset(smooth, images, labels, n0=100, n=n, alpha=alpha, batch_size=2000)
    seconds = time.perf_counter() - start
    accuracy = certified_accuracy(records, RADII)
    max_radius = smoothed_radius(clopper_pearson_lower(n, n, alpha), sigma)
    print(f"  {len(records)} test images, n0=100, n={n:,}, alpha={alpha}, {seconds:.1f} s")
    print("  radius              " + "".join(f"{r:>7.2f}" for r in RADII))
    print("  certified accuracy  " + "".join(f"{a:>7.3f}" for a in accuracy))
    abstained = sum(r.prediction is None for r in records) / len(records)
    print(f"  abstained: {abstained:.1%}; largest radius certifiable with n={n:,}: {max_radius:.3f}")
