"""``make demo`` section for the bound-propagation engine: verified accuracy of the digits CNN."""

from __future__ import annotations

import time

import torch

from certify.api import verified_accuracy
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn

__all__ = ["demo_bounds"]


def demo_bounds(eps_values: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1), n_test: int | None = None) -> None:
    """Print the verified accuracy of the standard digits CNN under IBP and CROWN.

    Test split (400 images, or the first ``n_test``), L-inf balls of radius eps intersected with the
    pixel domain [0, 1]. An input counts as verified when every margin lower bound is > 0.
    """
    start = time.perf_counter()
    data = load_digits_split("test")
    x, y = data.images[:n_test], data.labels[:n_test]
    model = digits_cnn()
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    print(f"Bound propagation: standard digits CNN, {len(y)} test images, clean accuracy {clean:.1%}")
    print("verified accuracy at L-inf eps (domain [0, 1]):")
    print(f"{'method':<10}" + "".join(f"{f'eps={e:g}':>11}" for e in eps_values))
    for method in ("ibp", "crown"):
        accs = [verified_accuracy(model, x, y, e, method=method, domain=(0.0, 1.0), progress=False) for e in eps_values]
        print(f"{method:<10}" + "".join(f"{a:>11.1%}" for a in accs))
    print(f"(IBP is loose on a network not trained for it; CROWN is tighter. {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    demo_bounds()
