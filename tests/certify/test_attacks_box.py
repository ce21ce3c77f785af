"""``certify.attacks.pgd_box_minimize`` (the box PGD of complete verification), which shares its loop with
``pgd_minimize``: stays in the box, finds the minimising corner of a linear objective, stops early with
``until``, draws only from its generator."""

from __future__ import annotations

import torch

from certify.attacks import pgd_box_minimize


def test_box_pgd_finds_the_corner_stays_inside_and_stops_early() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 6, generator=g)
    lower = torch.rand(5, 6, generator=g) - 1
    upper = lower + torch.rand(5, 6, generator=g) + 0.1
    calls = []

    def objective(z: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return (w * z).sum(1)

    best_x, best_val = pgd_box_minimize(objective, lower, upper, steps=40, restarts=2,
                                        generator=torch.Generator().manual_seed(1))
    assert bool(((best_x >= lower) & (best_x <= upper)).all())
    corner = torch.where(w > 0, lower, upper)  # the exact minimiser of a linear objective over a box
    torch.testing.assert_close(best_val, (w * corner).sum(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(best_val, (w * best_x).sum(1))
    full = len(calls)
    calls.clear()
    state = torch.random.get_rng_state()
    _, val = pgd_box_minimize(objective, lower, upper, steps=40, restarts=5, until=1e9,
                              generator=torch.Generator().manual_seed(1))
    assert len(calls) == 1  # the centre already reaches `until`: no step is taken
    torch.testing.assert_close(val, (w * (lower + upper) / 2).sum(1))
    assert torch.equal(state, torch.random.get_rng_state())
    assert full == 1 + 2 * (40 + 1)
