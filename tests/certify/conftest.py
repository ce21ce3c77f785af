"""An exact oracle for small ReLU MLPs: a mixed-integer program (scipy.optimize.milp, HiGHS), big-M from IBP.

``milp_min(model, lo, hi, conjunctions, fixed)`` returns ``min over conjunctions (A, b) of
min_{lo <= x <= hi} max_i (A_i f(x) - b_i)``: the property "no x in the box has ``A f(x) <= b`` for any
conjunction" holds iff the value is > 0. ``fixed`` maps (hidden layer index, neuron) to 1 (the
pre-activation is >= 0) or 0 (<= 0): activation-pattern constraints. Returns +inf when the constraints are
infeasible (no input has the pattern). Written independently of certify's code (it is the reference).

``random_mlp(d_in, hidden, k, seed)`` builds the small float64 ReLU networks those tests decide (shared by
``test_bab.py`` and ``test_nap.py``; import it as ``from tests.certify.conftest import random_mlp``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from torch import nn

Oracle = Callable[..., float]


def random_mlp(d_in: int, hidden: tuple[int, ...], k: int, seed: int) -> nn.Sequential:
    """A float64 ReLU MLP ``d_in -> hidden... -> k`` in eval mode: weights N(0, 1/fan_in), biases N(0, 0.01),
    drawn from a generator seeded with ``seed`` (torch's global RNG is untouched)."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    d = d_in
    for h in (*hidden, k):
        lin = nn.Linear(d, h).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(h, d, generator=g, dtype=torch.float64) / math.sqrt(d))
            lin.bias.copy_(torch.randn(h, generator=g, dtype=torch.float64) * 0.1)
        layers += [lin, nn.ReLU()]
        d = h
    return nn.Sequential(*layers[:-1]).eval()


def milp_min(model: nn.Sequential, lo: np.ndarray, hi: np.ndarray,
             conjunctions: Sequence[tuple[np.ndarray, np.ndarray]],
             fixed: dict[tuple[int, int], int] | None = None) -> float:
    from scipy.optimize import Bounds, LinearConstraint, milp

    fixed = fixed or {}
    lins = [m for m in model if isinstance(m, nn.Linear)]
    d_in = lo.shape[0]
    hidden = [lin.out_features for lin in lins[:-1]]
    # variables: x, per hidden layer a (post-activation) and d (indicator), then t
    n_var = d_in + 2 * sum(hidden) + 1
    offs_a, offs_d, o = [], [], d_in
    for h in hidden:
        offs_a.append(o)
        offs_d.append(o + h)
        o += 2 * h
    t_idx = n_var - 1
    lb = np.full(n_var, -np.inf)
    ub = np.full(n_var, np.inf)
    lb[:d_in], ub[:d_in] = lo, hi
    integrality = np.zeros(n_var)
    rows: list[np.ndarray] = []
    rlo: list[float] = []
    rhi: list[float] = []

    def add(r: np.ndarray, low: float, high: float) -> None:
        rows.append(r)
        rlo.append(low)
        rhi.append(high)

    prev_off, prev_n, l_prev, u_prev = 0, d_in, lo, hi
    for li, lin in enumerate(lins[:-1]):
        w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        wp, wn = np.clip(w, 0, None), np.clip(w, None, 0)
        l_z, u_z = wp @ l_prev + wn @ u_prev + b, wp @ u_prev + wn @ l_prev + b
        oa, od = offs_a[li], offs_d[li]
        for i in range(w.shape[0]):
            def row(coef_z: float, coef_a: float, coef_d: float, i: int = i, w: np.ndarray = w, oa: int = oa,
                    od: int = od, prev_off: int = prev_off, prev_n: int = prev_n) -> np.ndarray:
                r = np.zeros(n_var)
                r[prev_off : prev_off + prev_n] = coef_z * w[i]
                r[oa + i] = coef_a
                r[od + i] = coef_d
                return r
            lb[od + i], ub[od + i] = 0, 1
            integrality[od + i] = 1
            lb[oa + i], ub[oa + i] = 0, max(u_z[i], 0)
            phase = fixed.get((li, i))
            if phase == 1:  # z >= 0 and a = z
                add(row(1, 0, 0), -b[i], np.inf)
                add(row(-1, 1, 0), b[i], b[i])
                lb[od + i] = 1
                continue
            if phase == 0:  # z <= 0 and a = 0
                add(row(1, 0, 0), -np.inf, -b[i])
                ub[oa + i] = ub[od + i] = 0
                continue
            if u_z[i] <= 0:
                ub[oa + i] = ub[od + i] = 0
                continue
            if l_z[i] >= 0:  # a = z
                add(row(-1, 1, 0), b[i], b[i])
                lb[od + i] = 1
                continue
            add(row(-1, 1, 0), b[i], np.inf)  # a >= z
            add(row(-1, 1, -l_z[i]), -np.inf, b[i] - l_z[i])  # a <= z - l (1 - d)
            r = np.zeros(n_var)
            r[oa + i], r[od + i] = 1, -u_z[i]
            add(r, -np.inf, 0.0)  # a <= u d
        prev_off, prev_n = offs_a[li], w.shape[0]
        l_prev, u_prev = np.maximum(l_z, 0), np.maximum(u_z, 0)
    w, b = lins[-1].weight.detach().double().numpy(), lins[-1].bias.detach().double().numpy()
    best = math.inf
    for a_mat, b_vec in conjunctions:
        extra_rows, extra_hi = [], []
        for i in range(a_mat.shape[0]):  # A_i (W a + b) - b_i <= t
            r = np.zeros(n_var)
            r[prev_off : prev_off + prev_n] = a_mat[i] @ w
            r[t_idx] = -1
            extra_rows.append(r)
            extra_hi.append(float(b_vec[i] - a_mat[i] @ b))
        all_rows = rows + extra_rows
        cons = LinearConstraint(np.array(all_rows), np.array(rlo + [-np.inf] * len(extra_rows)),
                                np.array(rhi + extra_hi))
        c = np.zeros(n_var)
        c[t_idx] = 1
        res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(lb, ub))
        if res.status == 2:  # infeasible: no input satisfies the fixed pattern
            return math.inf
        assert res.status == 0, res.message
        best = min(best, float(res.fun))
    return best


def milp_min_margin(model: nn.Sequential, x: torch.Tensor, y: int, eps: float) -> float:
    """Exact ``min_{x' in box} min_{j != y} f_y(x') - f_j(x')`` over the L-inf box clipped to [0, 1]."""
    lo = (x[0] - eps).clamp(0, 1).double().numpy()
    hi = (x[0] + eps).clamp(0, 1).double().numpy()
    k = [m for m in model if isinstance(m, nn.Linear)][-1].out_features
    conj = []
    for j in range(k):
        if j != y:
            a = np.zeros((1, k))
            a[0, y], a[0, j] = 1.0, -1.0
            conj.append((a, np.zeros(1)))
    return milp_min(model, lo, hi, conj)


@pytest.fixture(scope="session")
def milp_oracle() -> Oracle:
    return milp_min


@pytest.fixture(scope="session")
def milp_margin_oracle() -> Oracle:
    return milp_min_margin
