"""Cost of ``sound=True`` on the layers beyond ReLU: width and time against the default (float32) bounds.

Networks (random weights, uniform random inputs, L-inf, eps below):

* ``maxpool_cnn``: CIFAR-shaped 3x32x32, conv(3,16,3,p1)-ReLU-MaxPool(2)-conv(16,32,3,p1)-ReLU-MaxPool(2)-
  flatten-linear(2048,10), eps 1/255;
* ``gelu_mlp``: 64-128-GELU-128-SiLU-10, eps 0.01;
* ``transformer``: nn.TransformerEncoderLayer(32 dims, 4 heads, 64 hidden, GELU, causal mask) on 8 tokens,
  then mean pooling and a linear head, eps 0.01.

Width: mean over inputs and outputs of ``upper - lower``. Time: median of 3 calls.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sound_layers.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

import certify


class Causal(nn.Module):
    def __init__(self, t: int = 8, e: int = 32) -> None:
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(e, 4, dim_feedforward=64, batch_first=True, activation="gelu")
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(t))
        self.head = nn.Linear(e, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.enc(x, src_mask=self.mask, is_causal=True).mean(1))


def nets() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], float, int]]:
    return {
        "maxpool_cnn": (lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                              nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                              nn.Flatten(), nn.Linear(2048, 10)), (3, 32, 32), 1 / 255, 4),
        "gelu_mlp": (lambda: nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.SiLU(),
                                           nn.Linear(128, 10)), (64,), 0.01, 16),
        "transformer": (lambda: Causal(), (8, 32), 0.01, 4),
    }


def timed(fn: Callable[[], certify.Bounds]) -> tuple[float, certify.Bounds]:
    times, out = [], None
    for _ in range(3):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    assert out is not None
    return statistics.median(times), out


def main() -> None:
    print("| network | method | width default | width sound | time default | time sound |")
    print("|---|---|---|---|---|---|")
    for name, (make, shape, eps, n) in nets().items():
        torch.manual_seed(0)
        model = make().eval()
        x = torch.rand((n, *shape), generator=torch.Generator().manual_seed(1))
        for method in ("ibp", "crown"):
            td, d = timed(lambda: certify.bounds(model, x, eps, method=method))  # noqa: B023
            ts, s = timed(lambda: certify.bounds(model, x, eps, method=method, sound=True))  # noqa: B023
            wd, ws = float((d.upper - d.lower).mean()), float((s.upper - s.lower).mean())
            print(f"| {name} ({n} inputs) | {method} | {wd:.6g} | {ws:.6g} | {td:.3g} s | {ts:.3g} s |")


if __name__ == "__main__":
    with torch.no_grad():
        main()
