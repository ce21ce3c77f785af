"""``make demo`` section: neural activation patterns (NAPs) as specifications on digits (Geng et al. 2023)."""

from __future__ import annotations

import time

import torch
from torch import nn

import certify
from certkit.cache import load_or_train
from certkit_app.datasets import load_digits_split
from certkit_app.digits import train_classifier

__all__ = ["demo_nap", "digits_nap_mlp"]


def _make() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def digits_nap_mlp() -> nn.Sequential:
    """A small digits MLP 64-32-32-10 (cached; about 96% test accuracy), small enough for exact NAP checks."""
    model = load_or_train("digits_nap_mlp-v1", _make, train_classifier)
    assert isinstance(model, nn.Sequential)
    return model


def demo_nap(deltas: tuple[float, ...] = (0.99, 0.95), eps_values: tuple[float, ...] = (0.05, 0.1),
             n_test: int = 20, timeout: float = 1.0) -> dict[str, object]:
    """Mine each class's NAP from the training split, report how much of the test split follows it, verify
    "no input of [0, 1]^64 that follows class c's NAP is classified otherwise", and compare the region
    "L-inf ball of radius eps AND the NAP" with the ball alone on the first ``n_test`` test images that are
    correctly classified and follow their class's NAP (complete verification, ``timeout`` s each).
    Returns the numbers printed (for tests and the notebook)."""
    start = time.perf_counter()
    model = digits_nap_mlp()
    train, test = load_digits_split("train"), load_digits_split("test")
    with torch.no_grad():
        pred = model(test.images).argmax(1)
    print(f"digits MLP 64-32-32-10 (test accuracy {float((pred == test.labels).float().mean()):.1%}); NAPs mined "
          f"on the {len(train.labels)} training images, checked on the {len(test.labels)} test images")
    print(f"{'delta':<7}{'fixed neurons':>14}{'recall':>8}{'precision':>11}"
          f"{'NAP over [0,1]^64: verified':>29}{'falsified':>11}{'unknown':>9}{'test inputs in a verified NAP':>31}")
    out: dict[str, object] = {}
    idx = torch.arange(len(test.labels))
    for delta in deltas:
        naps = certify.mine_naps(model, train.images, train.labels, delta=delta)
        follows = certify.follows_nap(model, naps, test.images)  # (N, 10)
        recall = float(follows[idx, test.labels].float().mean())
        any_nap = follows.any(1)
        precise = follows[idx, test.labels] & (follows.sum(1) == 1)
        precision = float(precise.sum()) / max(int(any_nap.sum()), 1)
        verdicts = []
        for pat in naps.patterns:
            assert pat is not None
            r = certify.verify_nap(model, pat, test.images[:1], timeout=timeout,
                                   generator=torch.Generator().manual_seed(pat.label))
            verdicts.append(r.verdict)
        verified = torch.tensor([v == "verified" for v in verdicts])
        inside = int((follows & verified.unsqueeze(0)).any(1).sum())
        fixed = sum(p.n_active + p.n_inactive for p in naps.patterns if p is not None) / len(naps.patterns)
        print(f"{delta:<7g}{fixed:>10.1f}/64{recall:>8.1%}{precision:>11.1%}{verdicts.count('verified'):>29}"
              f"{verdicts.count('falsified'):>11}{verdicts.count('unknown'):>9}{inside:>31}")
        out[f"delta={delta}"] = {"recall": recall, "precision": precision, "verdicts": verdicts, "inside": inside}
    naps = certify.mine_naps(model, train.images, train.labels, delta=deltas[0])
    follows = certify.follows_nap(model, naps, test.images)
    chosen = [i for i in range(len(test.labels)) if pred[i] == test.labels[i] and follows[i, test.labels[i]]][:n_test]
    print(f"\nL-inf ball vs ball AND its class's NAP (delta {deltas[0]:g}), {len(chosen)} test images that follow it; "
          f"complete verification, {timeout:g} s each")
    print(f"{'eps':<6}{'ball verified':>14}{'ball AND NAP verified':>23}{'(falsified, unknown)':>22}")
    for eps in eps_values:
        v_ball = v_nap = f_nap = u_nap = 0
        for i in chosen:
            x, c = test.images[i : i + 1], int(test.labels[i])
            rb = certify.verify_complete(model, x, c, eps, domain=(0.0, 1.0), timeout=timeout,
                                         generator=torch.Generator().manual_seed(i))
            pat = naps.patterns[c]
            assert pat is not None
            rn = certify.verify_nap(model, pat, x, lower=(x - eps).clamp(0, 1), upper=(x + eps).clamp(0, 1),
                                    timeout=timeout, generator=torch.Generator().manual_seed(i))
            v_ball += rb.verdict == "verified"
            v_nap += rn.verdict == "verified"
            f_nap += rn.verdict == "falsified"
            u_nap += rn.verdict == "unknown"
        print(f"{eps:<6g}{v_ball:>14}{v_nap:>23}{f'({f_nap}, {u_nap})':>22}")
        out[f"eps={eps}"] = {"ball": v_ball, "nap": v_nap, "n": len(chosen)}
    print(f"({time.perf_counter() - start:.1f} s)")
    return out


if __name__ == "__main__":
    demo_nap()
