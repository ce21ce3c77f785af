import importlib

import pytest
import torch

import certkit
from certkit._validation import check_eval_mode
from certkit_app import digits as zoo
from certkit_app.datasets import DIGITS_SPLIT_SIZES, load_digits_split


@pytest.mark.parametrize("pkg", ["certkit", "certify", "smoothing", "conformal"])
def test_all_names_resolve(pkg: str) -> None:
    mod = importlib.import_module(pkg)
    assert isinstance(mod.__all__, list)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{pkg}.{name} is in __all__ but missing"


def test_digits_split_is_fixed_and_disjoint() -> None:
    parts = {s: load_digits_split(s) for s in DIGITS_SPLIT_SIZES}
    assert {s: len(p) for s, p in parts.items()} == DIGITS_SPLIT_SIZES
    flat = torch.cat([p.flat for p in parts.values()])
    assert flat.shape == (1797, 64) and float(flat.min()) == 0.0 and float(flat.max()) == 1.0
    assert torch.equal(load_digits_split("test").labels, parts["test"].labels)
    with pytest.raises(ValueError, match="`split`"):
        load_digits_split("val")  # type: ignore[arg-type]


def test_reference_models_accurate_and_cached(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    test = load_digits_split("test")
    for build in (zoo.digits_mlp, zoo.digits_cnn):
        model = build()
        assert not model.training
        with torch.inference_mode():
            acc = (model(test.images).argmax(1) == test.labels).float().mean()
        assert acc >= 0.95
    state = torch.random.get_rng_state()
    monkeypatch.setenv("CERTKIT_CACHE", str(tmp_path))
    calls = []
    m1 = zoo.load_or_train("tiny-v1", lambda: torch.nn.Linear(2, 2), lambda m: calls.append(1))
    m2 = zoo.load_or_train("tiny-v1", lambda: torch.nn.Linear(2, 2), lambda m: calls.append(1))
    assert calls == [1] and (tmp_path / "tiny-v1.pt").exists()
    assert torch.equal(m1.weight, m2.weight)
    assert torch.equal(state, torch.random.get_rng_state()), "model building must not touch the global RNG"


def test_eval_mode_required() -> None:
    m = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"eval mode"):
        check_eval_mode(m)
    check_eval_mode(m.eval())
    assert certkit.__version__
