"""``make demo`` section: standard vs CROWN-IBP-trained digits CNN, verified accuracy and tightness."""

from __future__ import annotations

import time

import torch

from certify.api import verified_accuracy
from certify.tightness import tightness
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn, digits_cnn_certified

__all__ = ["demo_certified_training"]


def demo_certified_training(n_test: int | None = None, eps_values: tuple[float, ...] = (0.05, 0.1)) -> None:
    """Print clean / IBP- / CROWN-verified accuracy and IBP tightness of the standard and certified CNNs.

    Uses the digits test split (or its first ``n_test`` images), L-inf balls clipped to [0, 1]. The
    certified model is trained (about 2 minutes, tqdm bar) on first use and cached.
    """
    start = time.perf_counter()
    data = load_digits_split("test")
    x, y = data.images[:n_test], data.labels[:n_test]
    models = {"standard": digits_cnn(), "CROWN-IBP trained": digits_cnn_certified()}
    print(f"Certified training: digits CNN, {len(y)} test images, verified accuracy at L-inf eps (domain [0, 1])")
    header = f"{'model':<18} {'clean':>6}"
    for eps in eps_values:
        header += f" {'IBP@' + str(eps):>9} {'CROWN@' + str(eps):>10} {'both@' + str(eps):>9}"
    header += f" {'tightness':>10}"
    print(header)
    for name, model in models.items():
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        row = f"{name:<18} {clean:>6.1%}"
        for eps in eps_values:
            for method, width, both in (("ibp", 9, False), ("crown", 10, False), ("crown", 9, True)):
                acc = verified_accuracy(model, x, y, eps, method=method, domain=(0.0, 1.0), progress=False,
                                        compare_crown_with_ibp=both)
                row += f" {acc:>{width}.1%}"
        row += f" {tightness(model, x, max(eps_values), labels=y):>10.4f}"
        print(row, flush=True)
    print(f"(both: CROWN with every bound intersected with IBP, compare_crown_with_ibp=True; tightness: Mao et "
          f"al. 2024, local linearisation, margin spec, eps {max(eps_values)}; {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    demo_certified_training()
