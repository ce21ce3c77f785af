"""collect_probs: probabilities and labels of a model over tensors, (x, y) pairs, Datasets and DataLoaders."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conformal import SplitConformal, collect_probs, predict_proba


def _model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def test_every_data_form_gives_the_same_probs_and_labels() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(70, 4, generator=g), torch.randint(0, 3, (70,), generator=g)
    model = _model()
    ref = predict_proba(model, x)
    rng = torch.get_rng_state()
    for data in ((x, y), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=16)):
        out = collect_probs(model, data, batch_size=32)
        torch.testing.assert_close(out.probs, ref)
        assert out.labels is not None and torch.equal(out.labels, y)
    unlabelled = collect_probs(model, x, batch_size=8)
    torch.testing.assert_close(unlabelled.probs, ref)
    assert unlabelled.labels is None
    assert torch.equal(rng, torch.get_rng_state())
    # a model that outputs probabilities already
    probs_model = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    torch.testing.assert_close(collect_probs(probs_model, (x, y), from_logits=False).probs, ref)
    out = collect_probs(model, DataLoader(TensorDataset(x, y), batch_size=10))
    assert SplitConformal(score="thr", alpha=0.2).calibrate(out.probs, out.labels).predict(out.probs).mask.shape == (70, 3)


def test_bad_input() -> None:
    model, x = _model(), torch.randn(5, 4)
    with pytest.raises(ValueError, match="from_logits=True"):
        collect_probs(model, x, from_logits=False)
    with pytest.raises(TypeError, match="`data`"):
        collect_probs(model, "abc")
    with pytest.raises(ValueError, match="`data`"):
        collect_probs(model, (x, torch.zeros(3, dtype=torch.long)))
    with pytest.raises(ValueError, match="`data`"):
        collect_probs(model, x[:0])
    with pytest.raises(TypeError, match="`model`"):
        collect_probs(len, x)
    with pytest.raises(ValueError, match="eval"):
        collect_probs(_model().train(), x)
