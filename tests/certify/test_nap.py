"""Neural activation patterns: deterministic mining by the delta rule, verdicts against a MILP with fixed
ReLU phases, verified NAP properties resist a pattern-constrained PGD attack, overlap of two NAPs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import certify
from certify.attacks import pgd_box_minimize
from certify.nap import NAP, follows_nap, mine_naps, naps_overlap, relu_preactivations, verify_nap
from tests.certify.conftest import random_mlp

Oracle = Callable[..., Any]


def _data(net: nn.Module, n: int, d_in: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, d_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        return x, net(x).argmax(1)


def test_mining_follows_the_delta_rule_and_is_deterministic() -> None:
    net = random_mlp(6, (16, 12), 3, seed=0)
    x, _ = _data(net, 300, 6, seed=1)
    y = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(3))  # any labels: the rule is per label
    naps = mine_naps(net, x, y, delta=0.9)
    again = mine_naps(net, x.clone(), y.clone(), delta=0.9)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(2))
    shuffled = mine_naps(net, x[perm], y[perm], delta=0.9, batch_size=7)
    pres = relu_preactivations(net, x)
    assert [p.shape for p in pres] == [(300, 16), (300, 12)]
    for c in range(3):
        pat = naps.patterns[c]
        assert pat is not None and pat.label == c and pat.support == int((y == c).sum())
        for other in (again.patterns[c], shuffled.patterns[c]):
            assert other is not None
            assert all(torch.equal(a, b) for a, b in zip(pat.phases, other.phases))
        for ph, z in zip(pat.phases, pres):  # the rule, neuron by neuron
            zc = z[y == c]
            frac_on = (zc > 0).double().mean(0)
            expect = torch.where(frac_on >= 0.9, 1, torch.where(1 - frac_on >= 0.9, -1, 0))
            assert torch.equal(ph.to(torch.long), expect)
        assert 0 < pat.n_active + pat.n_inactive <= pat.n_neurons == 28
    # a larger delta fixes fewer neurons; every training example of class c follows a delta = 1 pattern
    strict = mine_naps(net, x, y, delta=1.0)
    assert all(s.n_active + s.n_inactive <= p.n_active + p.n_inactive  # type: ignore[union-attr]
               for s, p in zip(strict.patterns, naps.patterns))
    f = follows_nap(net, strict, x)
    assert bool(f[torch.arange(300), y].all())
    with pytest.raises(ValueError, match="delta"):
        mine_naps(net, x, y, delta=0.5)
    with pytest.raises(ValueError, match="y"):
        mine_naps(net, x, y.double())  # type: ignore[arg-type]


def _fixed(nap: NAP) -> dict[tuple[int, int], int]:
    out = {}
    for li, ph in enumerate(nap.phases):
        for i, v in enumerate(ph.tolist()):
            if v:
                out[(li, i)] = 1 if v > 0 else 0
    return out


def _margin_conj(c: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    conj = []
    for j in range(k):
        if j != c:
            a = np.zeros((1, k))
            a[0, c], a[0, j] = 1.0, -1.0
            conj.append((a, np.zeros(1)))
    return conj


def _pattern_pgd(net: nn.Module, nap: NAP, lo: torch.Tensor, hi: torch.Tensor, seed: int) -> float:
    """Smallest ``max(margin, pattern violation)`` found by PGD with restarts: <= 0 would be a counterexample
    inside the constraint set (the box and the pattern's closure)."""
    c = nap.label

    def objective(z: torch.Tensor) -> torch.Tensor:
        out = net(z)
        other = out.clone()
        other[:, c] = -math.inf
        margin = out[:, c] - other.max(1).values
        viol = torch.full_like(margin, -math.inf)
        h = z
        li = 0
        for m in net:
            h = m(h)
            if isinstance(m, nn.Linear) and li < len(nap.phases):
                s = nap.phases[li].to(h.dtype)
                v = torch.where(s != 0, -s * h, torch.full_like(h, -math.inf)).amax(1)
                viol = torch.maximum(viol, v)
                li += 1
        return torch.maximum(margin, viol)

    _, val = pgd_box_minimize(objective, lo, hi, steps=100, restarts=10, generator=torch.Generator().manual_seed(seed))
    return float(val.min())


def _cases(n: int, seed: int) -> list[tuple[nn.Sequential, NAP, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(n):
        d_in = (3, 5, 8)[t % 3]
        net = random_mlp(d_in, (10, 8), 3, seed=seed * 100 + t)
        x, y = _data(net, 200, d_in, seed=seed * 100 + t)
        naps = mine_naps(net, x, y, delta=0.9)
        c = int(y[int(torch.randint(0, 200, (1,), generator=g))])
        pat = naps.patterns[c]
        assert pat is not None
        if t % 4 == 0:  # the whole input domain
            lo, hi = torch.zeros(1, d_in, dtype=torch.float64), torch.ones(1, d_in, dtype=torch.float64)
        else:  # a box around a random point
            centre = torch.rand(1, d_in, generator=g, dtype=torch.float64)
            w = float(torch.rand((), generator=g)) * 0.4 + 0.05
            lo, hi = (centre - w).clamp(0, 1), (centre + w).clamp(0, 1)
        out.append((net, pat, lo, hi))
    return out


def _check_naps(cases: list[Any], milp_oracle: Oracle) -> dict[str, int]:
    counts = {"verified": 0, "falsified": 0, "unknown": 0}
    unknown: list[Any] = []
    for t, (net, pat, lo, hi) in enumerate(cases):
        # each case takes < 1 s alone; the generous timeout keeps a loaded CI machine from turning a case into a
        # timeout "unknown" (seen once in session 13 under load 4+, never reproduced alone: 80 of 80 decided)
        r = verify_nap(net, pat, lo, lower=lo, upper=hi, timeout=600, generator=torch.Generator().manual_seed(t))
        counts[r.verdict] += 1
        if r.verdict == "unknown":
            unknown.append((t, r))
        exact = milp_oracle(net, lo[0].numpy(), hi[0].numpy(), _margin_conj(pat.label, 3), _fixed(pat))
        if r.verdict == "verified":
            assert exact > -1e-7, (t, exact, r)
            assert _pattern_pgd(net, pat, lo, hi, seed=t) > 0
        elif r.verdict == "falsified":
            assert exact <= 1e-7, (t, exact, r)
            cex = r.counterexample
            assert cex is not None and bool(((cex >= lo) & (cex <= hi)).all())
            pres = relu_preactivations(net, cex)
            for ph, z in zip(pat.phases, pres):  # the closure of the pattern
                assert bool(((ph.double() * z[0]) >= 0).all())
            with torch.no_grad():
                out = net(cex)[0]
            assert float(out[pat.label] - torch.cat([out[: pat.label], out[pat.label + 1 :]]).max()) <= 0
    assert counts["unknown"] == 0, (counts, unknown)
    return counts


def test_nap_verdicts_agree_with_milp(milp_oracle: Oracle) -> None:
    counts = _check_naps(_cases(8, seed=1), milp_oracle)
    assert counts["verified"] >= 2 and counts["falsified"] >= 2, counts


@pytest.mark.slow
def test_nap_verdicts_agree_with_milp_many(milp_oracle: Oracle) -> None:
    counts = _check_naps(_cases(80, seed=2), milp_oracle)
    assert counts["verified"] >= 10 and counts["falsified"] >= 10, counts


def test_nap_overlap_agrees_with_milp(milp_oracle: Oracle) -> None:
    seen = set()
    for t in range(8):
        net = random_mlp(4, (8, 6), 3, seed=50 + t)
        x, _ = _data(net, 300, 4, seed=t)
        y = (x[:, 0] * 3).long().clamp(max=2)  # classes by region of the input: patterns that differ
        naps = mine_naps(net, x, y, delta=0.75 if t % 2 else 0.95)
        pats = [p for p in naps.patterns if p is not None]
        for i in range(len(pats)):
            for j in range(i + 1, len(pats)):
                a, b = pats[i], pats[j]
                r = naps_overlap(net, a, b, x[:1], timeout=60)
                fixed = _fixed(a)
                conflict = any(fixed.get(key, v) != v for key, v in _fixed(b).items())
                fixed.update(_fixed(b))
                feasible = not conflict and milp_oracle(net, np.zeros(4), np.ones(4),
                                                        [(np.zeros((1, 3)), np.zeros(1))], fixed) < math.inf
                assert r.verdict == ("falsified" if feasible else "verified"), (t, i, j, r)
                seen.add(r.verdict + ("/conflict" if r.reason == "conflicting neuron" else ""))
                if r.verdict == "falsified":
                    assert r.counterexample is not None
                    pres = relu_preactivations(net, r.counterexample)
                    for pat in (a, b):
                        for ph, z in zip(pat.phases, pres):
                            assert bool(((ph.double() * z[0]) >= 0).all())
    assert "falsified" in seen and any(s.startswith("verified") for s in seen), seen


def test_results_frozen_and_exported() -> None:
    net = random_mlp(3, (6,), 2, seed=0)
    x, y = _data(net, 50, 3, seed=0)
    naps = certify.mine_naps(net, x, y, delta=0.8)
    pat = next(p for p in naps.patterns if p is not None)
    r = certify.verify_nap(net, pat, x[:1], timeout=10)
    with pytest.raises(AttributeError):
        r.verdict = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        pat.label = 3  # type: ignore[misc]
    assert certify.follows_nap(net, naps, x).shape == (50, 2)
    with pytest.raises(TypeError, match="nap"):
        certify.verify_nap(net, "pattern", x[:1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x_ref"):
        certify.verify_nap(net, pat, x)
