"""The CIFAR-shaped architectures of the certified-training literature, with seeded random weights.

One definition of each network, imported by the tests (``tests/certify/test_cifar_models.py``) and by the
benchmarks (``benchmarks/bench_cifar.py``, ``bench_bounds.py``, ``bench_switch.py``, ``bench_scale.py``, which
put the repository root on ``sys.path``). Inputs are 3x32x32, outputs 10 logits; every builder returns a fresh
model in eval mode, with the same weights on every call (drawn from ``torch.manual_seed(0)`` inside
``torch.random.fork_rng``, so that torch's global random state is left as it was):

* :func:`cnn_4layer`: conv(3,16,4,s2,p1)-ReLU-conv(16,32,4,s2,p1)-ReLU-fc(2048,100)-ReLU-fc(100,10)
  (auto_LiRPA's ``cnn_4layer`` at width 4 and fc 100, the model of its CIFAR examples and of Zhang et al. 2020);
* :func:`cnn_7layer`: CROWN-IBP's ``cnn_7layer`` (Zhang et al. 2020; auto_LiRPA's ``examples/vision/models``):
  five 3x3 convolutions with padding 1, 3->64->64->128 (stride 2)->128->128, each followed by a ReLU, then
  fc(128*16*16 = 32768, 512)-ReLU-fc(512, 10);
* :func:`cnn_7layer_bn`: the same with BatchNorm after every convolution and after the 512-wide fc layer
  (running statistics randomised, so that BatchNorm is not the identity); the benchmarks' network;
* :func:`resnet_small`: conv(3,16)-ReLU, two residual blocks ``x + conv(relu(conv(x)))`` (16 channels, the
  second at stride 2 with a 1x1 shortcut), ReLU, fc(16*16*16, 10).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CIFAR_MODELS", "cnn_4layer", "cnn_7layer", "cnn_7layer_bn", "resnet_small"]


def cnn_4layer() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(), nn.Flatten(), nn.Linear(32 * 8 * 8, 100), nn.ReLU(), nn.Linear(100, 10)).eval()


def _side(strides: tuple[int, ...]) -> int:
    side = 32
    for s in strides:
        side = (side - 1) // s + 1
    return side


_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 128)]


def cnn_7layer() -> nn.Module:
    """CROWN-IBP's cnn_7layer (no BatchNorm)."""
    strides = (1, 1, 2, 1, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for (cin, cout), s in zip(_CHANNELS, strides, strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=s, padding=1), nn.ReLU()]
        layers += [nn.Flatten(), nn.Linear(128 * _side(strides) ** 2, 512), nn.ReLU(), nn.Linear(512, 10)]
        return nn.Sequential(*layers).eval()


def cnn_7layer_bn(strides: tuple[int, ...] = (1, 1, 2, 1, 1), fc: int = 512) -> nn.Module:
    """CROWN-IBP's cnn_7layer with BatchNorm (64-64-128-128-128 channels, given conv strides, fc width)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for (cin, cout), s in zip(_CHANNELS, strides, strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=s, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        layers += [nn.Flatten(), nn.Linear(128 * _side(strides) ** 2, fc), nn.BatchNorm1d(fc), nn.ReLU(),
                   nn.Linear(fc, 10)]
        net = nn.Sequential(*layers)
        for m in net:
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        return net.eval()


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.c2(torch.relu(self.c1(x)))


def resnet_small() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), _Block(16, 16, 1), nn.ReLU(),
                             _Block(16, 16, 2), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 16 * 16, 10)).eval()


#: name -> builder
CIFAR_MODELS = {"cnn_4layer": cnn_4layer, "cnn_7layer": cnn_7layer, "cnn_7layer_bn": cnn_7layer_bn,
                "resnet_small": resnet_small}
