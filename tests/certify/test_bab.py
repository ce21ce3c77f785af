"""Complete verification (branch-and-bound) against an exact mixed-integer oracle; timeouts; arguments."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import certify
from certify.bab import verify_complete
from tests.certify.conftest import random_mlp

Oracle = Callable[..., Any]


def _properties(n_nets: int, per_net: int, seed: int) -> list[tuple[nn.Sequential, torch.Tensor, int, float, str]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    shapes = [(3, (12, 12)), (5, (16, 12)), (10, (16, 16)), (8, (24,))]
    for t in range(n_nets):
        d_in, hidden = shapes[t % len(shapes)]
        net = random_mlp(d_in, hidden, 3, seed * 100 + t)
        split = "auto" if t % 2 == 0 else "relu"
        for _ in range(per_net):
            x = torch.rand(1, d_in, generator=g, dtype=torch.float64)
            y = int(net(x).argmax())
            eps = float(torch.rand((), generator=g, dtype=torch.float64)) * 0.3 + 0.01
            out.append((net, x, y, eps, split))
    return out


def _check_against_milp(props: list[tuple[nn.Sequential, torch.Tensor, int, float, str]],
                        milp_min_margin: Oracle) -> dict[str, int]:
    counts = {"verified": 0, "falsified": 0, "unknown": 0}
    for net, x, y, eps, split in props:
        r = verify_complete(net, x, y, eps, domain=(0, 1), timeout=60, split=split)
        counts[r.verdict] += 1
        exact = milp_min_margin(net, x, y, eps)
        if r.verdict == "verified":
            assert exact > -1e-7, (exact, r)
            assert r.lower_bound > 0
        elif r.verdict == "falsified":
            cex = r.counterexample
            assert cex is not None and r.margin is not None and r.margin <= 0
            assert float((cex - x).abs().max()) <= eps * (1 + 1e-12) and float(cex.min()) >= 0 and float(cex.max()) <= 1
            with torch.no_grad():
                out = net(cex)[0]
            assert float(out[y] - torch.cat([out[:y], out[y + 1 :]]).max()) <= 0
            assert exact <= 1e-7
    assert counts["unknown"] == 0, counts
    return counts


def test_complete_verification_matches_milp_small(milp_margin_oracle: Oracle) -> None:
    counts = _check_against_milp(_properties(4, 4, seed=1), milp_margin_oracle)
    assert counts["verified"] and counts["falsified"], counts


@pytest.mark.slow
def test_complete_verification_matches_milp_200_properties(milp_margin_oracle: Oracle) -> None:
    counts = _check_against_milp(_properties(16, 13, seed=2), milp_margin_oracle)
    assert sum(counts.values()) >= 200
    assert counts["verified"] >= 20 and counts["falsified"] >= 20, counts


def test_branch_and_bound_is_exercised(milp_margin_oracle: Oracle) -> None:
    """With CROWN at the root and no attack, the search itself must decide, with both kinds of splits."""
    searched = {"relu": 0, "input": 0}
    for net, x, y, eps, _ in _properties(2, 8, seed=3):
        exact = milp_margin_oracle(net, x, y, eps)
        for split in ("relu", "input"):
            r = verify_complete(net, x, y, eps, domain=(0, 1), timeout=60, split=split, iterations=0,
                                attack_steps=0, attack_restarts=1)
            assert r.verdict == ("verified" if exact > 0 else "falsified"), (exact, r)
            searched[split] += r.branches > 1
    assert searched["relu"] >= 2 and searched["input"] >= 2, searched


def test_progress_bar_on_the_search(capsys: pytest.CaptureFixture[str]) -> None:
    """``progress=True`` shows a tqdm bar of the search (ReLU and input splitting), on stderr; off by default."""
    for split, what in (("relu", "ReLU"), ("input", "input")):
        shown = quiet = 0
        for net, x, y, eps, _ in _properties(2, 8, seed=3):
            kw = {"domain": (0, 1), "timeout": 60, "split": split, "iterations": 0, "attack_steps": 0,
                  "attack_restarts": 1}
            r = verify_complete(net, x, y, eps, progress=True, **kw)
            err = capsys.readouterr().err
            if r.branches > 1:
                assert f"BaB ({what} splits)" in err
                shown += 1
                verify_complete(net, x, y, eps, **kw)
                quiet += f"BaB ({what} splits)" not in capsys.readouterr().err
        assert shown >= 1 and quiet == shown, (split, shown, quiet)


def test_fsb_branching_agrees_with_milp(milp_margin_oracle: Oracle) -> None:
    """Filtered smart branching decides the same properties as BaBSR (exact answers from the MILP)."""
    branches = {"babsr": 0, "fsb": 0}
    for net, x, y, eps, _ in _properties(2, 8, seed=3):
        exact = milp_margin_oracle(net, x, y, eps)
        for branching in ("babsr", "fsb"):
            r = verify_complete(net, x, y, eps, domain=(0, 1), timeout=60, split="relu", iterations=0,
                                attack_steps=0, attack_restarts=1, branching=branching, batch_size=4)
            assert r.verdict == ("verified" if exact > 0 else "falsified"), (exact, r)
            branches[branching] += r.branches
    assert branches["fsb"] > 0 and branches["babsr"] > 0
    with pytest.raises(ValueError, match="branching"):
        verify_complete(net, x, y, eps, branching="random")


def test_intermediate_slopes_in_the_search_agree_with_milp(milp_margin_oracle: Oracle) -> None:
    """``alpha_intermediate=True`` (intermediate bounds' slopes optimised at the root and in every batch of
    sub-domains) decides the same properties as the exact MILP, by ReLU splitting."""
    searched = 0
    for net, x, y, eps, _ in _properties(1, 4, seed=4):
        exact = milp_margin_oracle(net, x, y, eps)
        r = verify_complete(net, x, y, eps, domain=(0, 1), timeout=60, split="relu", iterations=2, bab_iterations=2,
                            attack_steps=0, attack_restarts=1, alpha_intermediate=True, batch_size=8)
        assert r.verdict == ("verified" if exact > 0 else "falsified"), (exact, r)
        searched += r.branches > 1
    assert searched >= 1
    with pytest.raises((ValueError, TypeError), match="alpha_intermediate"):
        verify_complete(net, x, y, eps, alpha_intermediate="no")


def test_l2_leaves_are_decided() -> None:
    """L2 balls: fully split (affine) domains are decided by the dual bound / primal check, so small networks
    get no "unknown"; a verified property resists PGD and sampling, a falsified one has a real counterexample."""
    from certify.attacks import pgd_margins

    g = torch.Generator().manual_seed(11)
    counts = {"verified": 0, "falsified": 0, "unknown": 0}
    for t in range(12):
        net = random_mlp(4, (6, 6), 3, seed=300 + t)
        x = torch.rand(1, 4, generator=g, dtype=torch.float64)
        y = int(net(x).argmax())
        eps = float(torch.rand((), generator=g, dtype=torch.float64)) * 0.4 + 0.05
        r = verify_complete(net, x, y, eps, norm=2, domain=(0, 1), timeout=60, iterations=0, attack_steps=0,
                            attack_restarts=1, batch_size=2)
        counts[r.verdict] += 1
        if r.verdict == "verified":
            found = pgd_margins(net, x, torch.tensor([y]), eps, norm=2, domain=(0, 1), steps=200, restarts=5,
                                generator=torch.Generator().manual_seed(t))
            assert float(found[0].masked_fill(torch.arange(3) == y, math.inf).min()) > 0
            d = torch.randn(20000, 4, generator=g, dtype=torch.float64)
            pts = (x + eps * d / d.norm(dim=1, keepdim=True) * torch.rand(20000, 1, generator=g,
                                                                          dtype=torch.float64) ** 0.25)
            pts = pts[((pts >= 0) & (pts <= 1)).all(1)]
            with torch.no_grad():
                out = net(pts)
            assert bool((out.argmax(1) == y).all())
        elif r.verdict == "falsified":
            cex = r.counterexample
            assert cex is not None and float((cex - x).norm()) <= eps and float(cex.min()) >= 0
            with torch.no_grad():
                out = net(cex)[0]
            assert float(out[y] - torch.cat([out[:y], out[y + 1 :]]).max()) <= 0
    assert counts["unknown"] == 0 and counts["verified"] and counts["falsified"], counts


def test_timeout_returns_unknown() -> None:
    net = random_mlp(64, (256, 256, 256), 10, seed=5).float()
    x = torch.rand(1, 64, generator=torch.Generator().manual_seed(0))
    y = int(net(x).argmax())
    margins = [verify_complete(net, x, y, eps, domain=(0, 1), timeout=0.5) for eps in (0.03, 0.05)]
    unknown = [r for r in margins if r.verdict == "unknown"]
    assert unknown, [r.verdict for r in margins]
    for r in unknown:
        assert r.time < 0.5 + 5.0  # generous for a shared CPU; the benchmark measures the overshoot
        assert r.counterexample is None and r.lower_bound <= 0


def test_result_is_frozen_and_arguments_checked() -> None:
    net = random_mlp(3, (8,), 2, seed=0)
    x = torch.full((1, 3), 0.5, dtype=torch.float64)
    y = int(net(x).argmax())
    r = verify_complete(net, x, y, 0.01, domain=(0, 1), progress=False)
    assert r.verdict in certify.bab.VERDICTS
    with pytest.raises(AttributeError):
        r.verdict = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="x"):
        verify_complete(net, x.repeat(2, 1), y, 0.01)
    with pytest.raises(ValueError, match="timeout"):
        verify_complete(net, x, y, 0.01, timeout=0)
    with pytest.raises(ValueError, match="split"):
        verify_complete(net, x, y, 0.01, split="neurons")
    with pytest.raises(ValueError, match="y"):
        verify_complete(net, x, 5, 0.01)
    with pytest.raises(ValueError, match="eps"):
        verify_complete(net, x, y, -1.0)
    # a misclassified input is its own counterexample
    r = verify_complete(net, x, 1 - y, 0.01)
    assert r.verdict == "falsified" and torch.equal(r.counterexample, x)  # type: ignore[arg-type]


# -- ONNX models with VNN-LIB properties: general linear output specifications -----------------------------


def _vnnlib_text(lo: torch.Tensor, hi: torch.Tensor, conjunctions: list[tuple[np.ndarray, np.ndarray]], k: int) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(lo.numel())]
    lines += [f"(declare-const Y_{j} Real)" for j in range(k)]
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
        lines.append(f"(assert (>= X_{i} {a!r}))\n(assert (<= X_{i} {b!r}))")
    conj = []
    for a_mat, b_vec in conjunctions:
        atoms = []
        for row, rhs in zip(a_mat, b_vec):
            terms = " ".join(f"(* {float(c)!r} Y_{j})" for j, c in enumerate(row))
            atoms.append(f"(<= (+ {terms}) {float(rhs)!r})")
        conj.append("(and " + " ".join(atoms) + ")")
    lines.append("(assert (or " + " ".join(conj) + "))")
    return "\n".join(lines) + "\n"


def _random_properties(n: int, seed: int) -> list[tuple[nn.Sequential, torch.Tensor, torch.Tensor, list[Any]]]:
    """Random MLPs (float32), random input boxes and random disjunctions of 1-3 conjunctions of 1-3 rows
    ``A y <= b``, with ``b`` near ``A f(centre)`` so that both answers occur."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    shapes = [(3, (12, 12)), (6, (16, 8)), (10, (16,))]
    out = []
    for t in range(n):
        d_in, hidden = shapes[t % len(shapes)]
        net = random_mlp(d_in, hidden, 3, seed * 1000 + t).float()
        c = torch.rand(d_in, generator=g)
        w = torch.rand(d_in, generator=g) * 0.3 + 0.01
        lo, hi = c - w, c + w
        with torch.no_grad():
            fc = net(c.unsqueeze(0))[0].double().numpy()
        conj = []
        for _ in range(int(rng.integers(1, 4))):
            m = int(rng.integers(1, 4))
            a = rng.normal(size=(m, 3))
            b = a @ fc + rng.normal(size=m) * 0.5 - 0.3
            conj.append((a, b))
        out.append((net, lo, hi, conj))
    return out


def _export(net: nn.Module, d_in: int, path: Any) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, d_in),), str(path), dynamo=False, input_names=["x"], output_names=["y"])


def _check_properties_against_milp(props: list[Any], tmp_path: Any, milp: Oracle) -> dict[str, int]:
    pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (tests of the 'onnx' extra) is not installed")
    counts = {"verified": 0, "falsified": 0, "unknown": 0}
    for t, (net, lo, hi, conj) in enumerate(props):
        d_in = lo.numel()
        path = tmp_path / f"m{t}.onnx"
        _export(net, d_in, path)
        vpath = tmp_path / f"p{t}.vnnlib"
        vpath.write_text(_vnnlib_text(lo, hi, conj, 3))
        prop = certify.load_vnnlib(vpath, d_in, 3)
        model = certify.load_onnx(path)
        r = certify.verify_property(model, prop, complete=True, timeout=60,
                                    generator=torch.Generator().manual_seed(t))
        counts[r.verdict] += 1
        # the exact answer for the float64 copy of the float32 network; skip a property within rounding of 0
        exact = milp(net.double(), prop.cases[0].lower.numpy(), prop.cases[0].upper.numpy(), conj)
        net.float()
        if abs(exact) < 1e-4:
            continue
        if r.verdict == "verified":
            assert exact > 0, (t, exact, r)
        elif r.verdict == "falsified":
            assert exact < 0, (t, exact, r)
            cex = r.counterexample
            assert cex is not None and r.case == 0
            assert bool(((cex[0] >= lo) & (cex[0] <= hi)).all())
            out = ort.InferenceSession(str(path)).run(None, {"x": cex.numpy().astype(np.float32)})[0][0]
            assert any(bool((a @ out.astype(np.float64) <= b + 1e-5).all()) for a, b in conj), (out, conj)
    assert counts["unknown"] == 0, counts
    return counts


def test_vnnlib_property_complete_matches_milp(tmp_path: Any, milp_oracle: Oracle) -> None:
    counts = _check_properties_against_milp(_random_properties(12, seed=7), tmp_path, milp_oracle)
    assert counts["verified"] >= 2 and counts["falsified"] >= 2, counts


@pytest.mark.slow
def test_vnnlib_property_complete_matches_milp_200(tmp_path: Any, milp_oracle: Oracle) -> None:
    counts = _check_properties_against_milp(_random_properties(200, seed=8), tmp_path, milp_oracle)
    assert counts["verified"] >= 20 and counts["falsified"] >= 20, counts


def test_vnnlib_complete_decides_what_crown_leaves_unknown(tmp_path: Any, milp_oracle: Oracle) -> None:
    """Properties CROWN alone leaves unknown (no counterexample by PGD) are decided by the search,
    both by ReLU splitting (10 inputs) and by input splitting (3 inputs)."""
    decided = {3: 0, 10: 0}
    for net, lo, hi, conj in _random_properties(60, seed=9):
        d_in = lo.numel()
        if d_in not in decided:
            continue
        vpath = tmp_path / "p.vnnlib"
        vpath.write_text(_vnnlib_text(lo, hi, conj, 3))
        prop = certify.load_vnnlib(vpath, d_in, 3)
        if certify.verify_property(net, prop, method="crown").verdict != "unknown":
            continue
        r = certify.verify_property(net, prop, complete=True, timeout=60, attack_steps=0, attack_restarts=1)
        exact = milp_oracle(net.double(), prop.cases[0].lower.numpy(), prop.cases[0].upper.numpy(), conj)
        net.float()
        assert r.verdict == ("verified" if exact > 0 else "falsified"), (exact, r)
        decided[d_in] += 1
    assert decided[3] >= 1 and decided[10] >= 1, decided
