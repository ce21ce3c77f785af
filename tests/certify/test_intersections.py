"""CROWN's intermediate bounds of the inputs of smooth functions are intersected with IBP's (docs/certify/layers.md,
"Where IBP is tighter than CROWN"): sigmoid and tanh as GELU, SiLU, ... (issue 14, session 10: before, sigmoid and
tanh inputs kept CROWN's bounds alone, also under ``compare_crown_with_ibp``)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from certify._graph import cached_graph
from certify.crown import crown_bounds
from certify.ibp import InputRegion, Interval, interval_forward


class _Recorder:
    """A ``crown_bounds`` hook that keeps every pre-activation interval it is shown (and changes nothing)."""

    def __init__(self) -> None:
        self.seen: dict[int, Interval] = {}

    def preactivation(self, i: int, iv: Interval) -> Interval:
        self.seen[i] = iv
        return iv

    def final(self, *args: Any) -> None:
        pass


def _deep(act: type[nn.Module], scale: float) -> nn.Module:
    torch.manual_seed(3)
    layers: list[nn.Module] = [nn.Linear(5, 16)]
    for _ in range(4):
        layers += [act(), nn.Linear(16, 16)]
    model = nn.Sequential(*layers, act(), nn.Linear(16, 3)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


@pytest.mark.parametrize("compare_ibp", [False, True])
@pytest.mark.parametrize(("act", "scale", "eps"), [(nn.Sigmoid, 5.0, 1.0), (nn.Tanh, 3.0, 0.5), (nn.SiLU, 3.0, 0.5),
                                                   (nn.GELU, 3.0, 0.5)])
def test_smooth_activation_inputs_are_inside_ibp(act: type[nn.Module], scale: float, eps: float,
                                                 compare_ibp: bool) -> None:
    """On deep networks with large weights and wide regions, where IBP is tighter than CROWN for some neurons
    (sigmoid: 1 of 80, tanh: 29, measured before the intersection), the intermediate bounds CROWN uses for every
    smooth activation's input lie inside the IBP bounds, element by element."""
    model = _deep(act, scale)
    x = torch.rand((4, 5), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    g = cached_graph(model, x, torch.float64)
    region = InputRegion(x, torch.full((4,), eps, dtype=torch.float64), math.inf, None)
    ibp = interval_forward(g, region)
    rec = _Recorder()
    with torch.no_grad():
        crown_bounds(g, region, None, hook=rec, compare_ibp=compare_ibp)
    fed = [n.inputs[0] for n in g.nodes if n.op not in ("input", "linear", "dense")]
    assert fed and all(i in rec.seen for i in fed)
    for i in fed:
        iv, ref = rec.seen[i], ibp[i]
        assert ref is not None
        assert bool((iv.l >= ref.l - 1e-12).all() and (iv.u <= ref.u + 1e-12).all()), g.nodes[i].op
