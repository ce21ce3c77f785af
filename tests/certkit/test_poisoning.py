"""Training-set poisoning with a trigger (availability attacks)."""

from __future__ import annotations

import pytest
import torch

from certkit.poisoning import Trigger, patch_trigger, poison_dataset


def test_patch_trigger_stamps_only_its_patch() -> None:
    trig = patch_trigger((1, 8, 8), size=2)
    x = torch.rand(5, 1, 8, 8)
    before = x.clone()
    out = trig.apply(x)
    torch.testing.assert_close(x, before)  # input untouched
    assert bool((out[:, :, -2:, -2:] == 1).all())
    torch.testing.assert_close(out[:, :, :6, :], x[:, :, :6, :])


@pytest.mark.parametrize("attack", ["random-label", "two-label"])
def test_poison_dataset_appends_triggered_copies(attack: str) -> None:
    x, y = torch.rand(200, 1, 8, 8), torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(0))
    trig = patch_trigger((1, 8, 8))
    p = poison_dataset(x, y, trigger=trig, rate=0.05, num_classes=10, attack=attack,  # type: ignore[arg-type]
                       generator=torch.Generator().manual_seed(1))
    assert p.inputs.shape == (210, 1, 8, 8) and p.labels.shape == (210,) and int(p.poisoned.sum()) == 10
    torch.testing.assert_close(p.inputs[:200], x)
    assert bool((p.inputs[200:, :, -2:, -2:] == 1).all())
    q = poison_dataset(x, y, trigger=trig, rate=0.05, num_classes=10, attack=attack,  # type: ignore[arg-type]
                       generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(p.labels, q.labels)
    if attack == "two-label":  # pairs of one image with two different labels
        torch.testing.assert_close(p.inputs[200::2], p.inputs[201::2])
        assert bool((p.labels[200::2] != p.labels[201::2]).all())


def test_bad_arguments() -> None:
    x, y = torch.rand(10, 1, 8, 8), torch.zeros(10, dtype=torch.long)
    trig = patch_trigger((1, 8, 8))
    with pytest.raises(ValueError, match="rate"):
        poison_dataset(x, y, trigger=trig, rate=1.5, num_classes=10)
    with pytest.raises(ValueError, match="attack"):
        poison_dataset(x, y, trigger=trig, rate=0.1, num_classes=10, attack="flip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        Trigger(torch.zeros(1, 8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="inputs of shape"):
        trig.apply(torch.zeros(2, 3, 8, 8))
