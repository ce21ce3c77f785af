"""``make demo`` section: CROWN, alpha-CROWN and complete verification of the digits CNN."""

from __future__ import annotations

import time

import torch

import certify
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn

__all__ = ["demo_complete_verification"]


def demo_complete_verification(eps_values: tuple[float, ...] = (0.05, 0.1), n_test: int = 50,
                               timeout: float = 1.0) -> None:
    """Verified / falsified / unknown counts of the standard digits CNN on the first ``n_test`` test images.

    CROWN and alpha-CROWN give proofs only; complete verification (PGD attack, alpha-CROWN, beta-CROWN
    branch-and-bound; ``timeout`` seconds per input) also finds counterexamples, checked by a forward pass.
    Inputs alpha-CROWN already verifies are not searched again.
    """
    start = time.perf_counter()
    data = load_digits_split("test")
    x, y = data.images[:n_test], data.labels[:n_test]
    model = digits_cnn()
    print(f"Standard digits CNN, first {len(y)} test images, L-inf balls in [0, 1]; "
          f"complete verification with a {timeout:g} s timeout per input")
    print(f"{'eps':<6}{'CROWN':>8}{'alpha-CROWN':>13}{'complete: verified':>20}{'falsified':>11}{'unknown':>9}")
    for eps in eps_values:
        v_crown = certify.verify(model, x, y, eps, domain=(0.0, 1.0))
        v_alpha = certify.verify(model, x, y, eps, domain=(0.0, 1.0), method="alpha-crown")
        counts = {"verified": int(v_alpha.sum()), "falsified": 0, "unknown": 0}
        for i in (~v_alpha).nonzero().squeeze(1).tolist():
            r = certify.verify_complete(model, x[i : i + 1], int(y[i]), eps, domain=(0.0, 1.0), timeout=timeout,
                                        generator=torch.Generator().manual_seed(i))
            counts[r.verdict] += 1
        print(f"{eps:<6g}{int(v_crown.sum()):>8}{int(v_alpha.sum()):>13}{counts['verified']:>20}"
              f"{counts['falsified']:>11}{counts['unknown']:>9}")
    print(f"(every input is decided unless it timed out; {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    demo_complete_verification()
