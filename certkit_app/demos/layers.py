"""``make demo`` section: certifying the layers of real models -- a max-pooling CNN and a small
transformer classifier (self-attention, softmax, LayerNorm, GELU) on the digits, briefly trained."""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from certify.api import verified_accuracy
from certkit_app.datasets import load_digits_split

__all__ = ["demo_layers", "digits_pool_cnn", "digits_transformer"]


class DigitsTransformer(nn.Module):
    """The 8x8 image as 8 tokens (its rows): a linear embedding plus learned positions, one post-norm
    encoder block (2 heads, GELU MLP) and a linear classifier on the mean token."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.zeros(1, 8, dim))
        self.block = nn.TransformerEncoderLayer(dim, 2, dim_feedforward=2 * dim, dropout=0.0, activation="gelu",
                                                batch_first=True)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x.reshape(x.shape[0], 8, 8)) + self.pos
        return self.head(self.block(h).mean(dim=1))


def _train(model: nn.Module, epochs: int, seed: int) -> nn.Module:
    data = load_digits_split("train")
    x, y = data.images, data.labels
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def digits_pool_cnn(epochs: int = 15) -> nn.Module:
    """conv(1,16,3,p1)-ReLU-MaxPool(2)-conv(16,32,3,p1)-ReLU-MaxPool(2)-fc(128,10), trained on the digits."""
    with torch.random.fork_rng():  # initialisation without touching the caller's global RNG
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(32 * 2 * 2, 10))
    return _train(model, epochs, 0)


def digits_transformer(epochs: int = 15) -> nn.Module:
    """:class:`DigitsTransformer`, trained on the digits."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DigitsTransformer()
    return _train(model, epochs, 1)


def demo_layers(n_test: int = 40, eps_values: tuple[float, ...] = (0.005, 0.01, 0.02)) -> None:
    """Verified accuracy (IBP, CROWN-IBP, CROWN) of a max-pooling CNN and a one-block transformer on the
    first ``n_test`` digits test images, L-inf eps in the pixel domain [0, 1]."""
    data = load_digits_split("test")
    x, y = data.images[:n_test], data.labels[:n_test]
    for name, make in (("max-pooling CNN", digits_pool_cnn), ("transformer (attention, LayerNorm, GELU)",
                                                              digits_transformer)):
        t0 = time.perf_counter()
        model = make()
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        print(f"{name}: trained in {time.perf_counter() - t0:.1f} s, clean accuracy {clean:.1%} on {len(y)} images")
        print(f"  {'method':<10}" + "".join(f"{f'eps={e:g}':>11}" for e in eps_values) + "    time")
        for method in ("ibp", "crown-ibp", "crown"):
            t1 = time.perf_counter()
            accs = [verified_accuracy(model, x, y, e, method=method, domain=(0.0, 1.0), progress=False)
                    for e in eps_values]
            print(f"  {method:<10}" + "".join(f"{a:>11.1%}" for a in accs) + f"  {time.perf_counter() - t1:5.1f} s")
    print("(every verified input is certified: no perturbation in the ball changes the predicted class)")


if __name__ == "__main__":
    demo_layers()
