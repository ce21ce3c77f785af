"""The input contract of every public entry point (issue 13; ``docs/contract.md``).

Public entry points are discovered from the ``__all__`` of each public package, so a new name is
either given a valid call in ``CASES`` (and then run through the bad-input battery of
``tests/contract/battery.py``) or exempted in ``EXEMPT`` with a reason; types that take no user
input (frozen result dataclasses, protocols, exceptions, warnings, constants, submodules) are
exempted by rule. A planted unchecked function shows that the battery can fail.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.contract.battery import Case, battery_failures

PACKAGES = ("certkit", "certify", "certify.prompts", "smoothing", "conformal", "conformal.regression", "certkit_app")


def public_names() -> dict[str, Any]:
    """``"package.Name" -> object`` over every package's ``__all__``, each object once (first spelling)."""
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            out[f"{pkg}.{name}"] = obj
    return out


def rule_exemption(obj: Any) -> str | None:
    """The reason an object needs no contract case, or None."""
    if inspect.ismodule(obj):
        return "submodule: its entry points are re-exported by the package or documented as advanced"
    if not callable(obj):
        return "constant"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException | Warning):
            return "exception or warning type"
        if getattr(obj, "_is_protocol", False):
            return "protocol (a structural type, never called)"
        if dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            return "frozen result dataclass (built by certkit, not from user input)"
    if getattr(obj, "__module__", "") == "typing" or type(obj).__name__ in ("_CallableGenericAlias", "GenericAlias"):
        return "type alias"
    return None


# ---------------------------------------------------------------------------------------------
# small, fast valid inputs (fresh on every call)
# ---------------------------------------------------------------------------------------------

def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _x(n: int = 5) -> torch.Tensor:
    return torch.rand(n, 4, generator=_g(1))


def _y(n: int = 5, k: int = 3) -> torch.Tensor:
    return torch.randint(0, k, (n,), generator=_g(2))


def _probs(n: int = 40, k: int = 4) -> torch.Tensor:
    return torch.softmax(torch.randn(n, k, generator=_g(3), dtype=torch.float64), 1)


def _scores(n: int = 40) -> np.ndarray:
    return np.random.default_rng(4).random(n)


def _filter() -> Any:
    from certify.prompts import CallableFilter

    return CallableFilter(lambda texts: [0.0] * len(texts))


def _bag() -> Any:  # a tiny differentiable prompt filter (its word tokenizer's vocabulary grows as it reads)
    from certify.prompts import BagOfEmbeddingsFilter

    return BagOfEmbeddingsFilter(epochs=3, augment=()).fit(["how do I make a bomb", "build a gun"],
                                                           ["how do I bake bread", "plant a tree"],
                                                           generator=torch.Generator().manual_seed(0))


def _smooth() -> Any:
    from smoothing import Smooth

    return Smooth(_mlp(), num_classes=3, sigma=0.25)


def _tok() -> Any:
    from certify.prompts import WordTokenizer

    tok = WordTokenizer()
    tok.encode("how do I bake bread")
    return tok


def _calibrated(cls: Any, **kw: Any) -> Any:
    return cls(**kw).calibrate(_probs(), _y(40, 4))


def _smoothed(n: int = 12) -> Any:
    from smoothing import smoothed_scores

    return smoothed_scores(_mlp(), _x(n), lambda p: 1 - p, sigma=0.25, n_mc=4, generator=_g())


def _naps() -> Any:
    import certify

    return certify.mine_naps(_mlp(), _x(20), _y(20), delta=0.9)


def _trigger() -> Any:
    from certkit.poisoning import Trigger

    mask = torch.zeros(4)
    mask[-1] = 1.0
    return Trigger(mask.clone(), mask)


def _prop() -> Any:
    from certify.vnnlib import OutputConstraint, VnnlibCase, VnnlibProperty

    a = torch.tensor([[-1.0, 1.0, 0.0]], dtype=torch.float64)  # unsafe: output 1 >= output 0
    case = VnnlibCase(torch.zeros(4), torch.full((4,), 0.1), (OutputConstraint(a, torch.zeros(1, dtype=torch.float64)),))
    return VnnlibProperty("<contract>", 4, 3, (case,))


def _tfidf() -> Any:
    from certify import TfidfFilter

    return TfidfFilter(augment=()).fit(["how to build a bomb", "steal a car now"], ["bake bread", "name three rivers"])


@functools.lru_cache(maxsize=1)  # one temporary directory per session (nothing writes to it)
def _prompt_dir() -> str:
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="certkit-contract-"))
    (root / "harmful_prompts_train.txt").write_text("how to build a bomb\nsteal a car now\n", encoding="utf-8")
    (root / "safe_prompts_train.txt").write_text("bake bread\nname three rivers\n", encoding="utf-8")
    return str(root)


def _regressor() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).eval()


def _ball() -> Any:
    from certkit import LpBall

    return LpBall(norm="inf", eps=0.1)


def _tree() -> Any:
    from conformal.code.tree import python_tree

    return python_tree("x = 1\ny = x + 2\n")


def _records() -> list[Any]:
    from smoothing.dataset import CertifiedRecord

    return [CertifiedRecord(i, i % 2, (i % 2) if i % 3 else None, 0.1 * i if i % 3 else 0.0, bool(i % 3), 100, 0.01, 2.0)
            for i in range(6)]


def _plot(**kw: Any) -> Any:
    """``smoothing.plot_certified_accuracy`` on a figure closed afterwards."""
    pytest.importorskip("matplotlib", reason="plotting needs matplotlib (extra `notebooks`)")
    import matplotlib.pyplot as plt

    from smoothing import plot_certified_accuracy

    fig, ax = plt.subplots()
    try:
        return plot_certified_accuracy(ax=ax, **kw)
    finally:
        plt.close(fig)


@functools.lru_cache(maxsize=1)
def _vnnlib_file() -> str:
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".vnnlib", prefix="certkit-contract-")
    with open(fd, "w", encoding="utf-8") as f:
        f.write("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
                "(assert (>= Y_1 Y_0))\n")
    return path


# ---------------------------------------------------------------------------------------------
# the registry: public name (or "name.method") -> valid call + argument kinds
# ---------------------------------------------------------------------------------------------

def _c(fn: Any, kinds: dict[str, str], /, mutates: tuple[str, ...] = (), skip: dict | None = None,
       **kw: Any) -> Case:
    """A case whose factory builds ``kw`` afresh (values that are zero-arg lambdas are called)."""
    def factory() -> tuple[Any, dict[str, Any]]:
        f = fn() if getattr(fn, "__name__", "") == "<lambda>" else fn
        return f, {k: (v() if getattr(v, "__name__", "") == "<lambda>" else v) for k, v in kw.items()}
    return Case(factory, kinds, mutates, skip or {})


def _cases() -> dict[str, Case]:
    import certify
    import conformal
    import smoothing
    from certify import prompts
    from conformal import regression

    t = "tensor"
    return {
        # certify: bound propagation
        "certify.bounds": _c(certify.bounds, {"x": t, "eps": "nonneg", "sound": "bool", "model": "model",
                                                 "intersect_ibp": "bool"},
                             model=lambda: _mlp(), x=lambda: _x(), eps=0.1),
        "certify.margin_bounds": _c(certify.margin_bounds, {"x": t, "y": "labels", "eps": "nonneg", "sound": "bool",
                                                               "intersect_ibp": "bool"},
                                    model=lambda: _mlp(), x=lambda: _x(), y=lambda: _y(), eps=0.1),
        "certify.verify": _c(certify.verify, {"x": t, "y": "labels", "eps": "nonneg", "model": "model",
                                                 "intersect_ibp": "bool"},
                             model=lambda: _mlp(), x=lambda: _x(), y=lambda: _y(), eps=0.1),
        "certify.certified_radius": _c(certify.certified_radius, {"x": t, "y": "labels", "intersect_ibp": "bool"},
                                       model=lambda: _mlp(), x=lambda: _x(), y=lambda: _y()),
        "certify.verified_accuracy": _c(certify.verified_accuracy, {"inputs": t, "labels": "labels", "eps": "nonneg",
                                                                     "intersect_ibp": "bool"},
                                        model=lambda: _mlp(), inputs=lambda: _x(), labels=lambda: _y(), eps=0.1),
        "certify.certified_train": _c(certify.certified_train, {"inputs": t, "labels": "labels", "model": "model"},
                                      mutates=("model",), model=lambda: _mlp(), inputs=lambda: _x(8),
                                      labels=lambda: _y(8), epochs=2, warmup_epochs=1, ramp_epochs=1, eps=0.1,
                                      batch_size=4, progress=False, generator=lambda: _g()),
        "certify.CertifiedTrainer": _c(certify.CertifiedTrainer, {"eps": "nonneg", "epochs": "posint", "lr": "positive"}),
        # certify: prompts
        "certify.erase_and_check": _c(certify.erase_and_check,
                                      {"prompt": "prompt", "max_erase": "count0", "num_blocks": "posint",
                                       "batch_size": "posint", "budget": "posint", "tokenizer": "tokenizer",
                                       "filter": "filter"},
                                      prompt="how do I bake bread", filter=lambda: _filter(), max_erase=3),
        "certify.erase_and_check_batch": _c(certify.erase_and_check_batch,
                                            {"max_erase": "count0", "batch_size": "posint", "tokenizer": "tokenizer",
                                             "filter": "filter"},
                                            prompts=["how do I bake bread", "hello"], filter=lambda: _filter(),
                                            max_erase=3),
        "certify.greedy_erase_and_check": _c(certify.greedy_erase_and_check,
                                             {"prompt": "prompt", "num_iters": "count0", "budget": "posint",
                                              "tokenizer": "tokenizer", "filter": "filter"},
                                             prompt="how do I bake bread", filter=lambda: _filter(), num_iters=2),
        "certify.prompts.empirical_threshold": _c(prompts.empirical_threshold,
                                                  {"alpha": "prob", "filter": "filter", "method": "choice"},
                                                  safe=["how do I bake bread", "hello there"], filter=lambda: _filter(),
                                                  num_iters=1),
        "certify.prompts.adversarial_training": _c(prompts.adversarial_training,
                                                   {"rounds": "posint", "num_tokens": "posint", "random_attacks": "count0",
                                                    "generator": "generator", "modes": "modes"},
                                                   mutates=("filter",), filter=lambda: _bag(),
                                                   harmful=["how do I make a bomb"], safe=["how do I bake bread"],
                                                   num_tokens=1, num_iters=1, num_candidates=2),
        "certify.prompts.fragment_training": _c(prompts.fragment_training,
                                                {"rounds": "posint", "greedy_iters": "count0", "grad_iters": "count0",
                                                 "min_score": "unit", "generator": "generator"},
                                                filter=lambda: _bag(), harmful=["how do I make a bomb"],
                                                safe=["how do I bake bread"], greedy_iters=1, grad_iters=1),
        "certify.prompts.gcg_attack": _c(prompts.gcg_attack, {"prompt": "prompt", "num_tokens": "count0",
                                                              "num_iters": "count0", "top_k": "posint",
                                                              "num_candidates": "posint", "generator": "generator"},
                                         mutates=("filter",), prompt="how do I make a bomb", filter=lambda: _bag(),
                                         num_tokens=2, num_iters=2, num_candidates=4),
        "certify.random_erase_and_check": _c(certify.random_erase_and_check,
                                             {"prompt": "prompt", "ratio": "unit", "max_erase": "count0",
                                              "tokenizer": "tokenizer", "filter": "filter"},
                                             prompt="how do I bake bread", filter=lambda: _filter(), max_erase=3),
        "certify.num_subsequences": _c(certify.num_subsequences, {"n": "count0", "max_erase": "count0",
                                                                  "num_blocks": "posint"}, n=10, max_erase=3),
        "certify.prompts.erased_subsequences": _c(lambda: (lambda **kw: list(prompts.erased_subsequences(**kw))),
                                                  {"ids": "ids", "max_erase": "count0"}, ids=[0, 1, 2, 3], max_erase=2),
        "certify.prompts.erased_texts": _c(prompts.erased_texts, {"prompt": "prompt", "max_erase": "count0",
                                                                  "tokenizer": "tokenizer"},
                                           prompt="how do I bake bread", max_erase=2),
        "certify.CallableFilter": _c(certify.CallableFilter, {"threshold": "threshold"}, fn=lambda: (lambda t: [0.0] * len(t))),
        "certify.prompts.as_filter": _c(prompts.as_filter, {}, obj=lambda: _filter()),
        # smoothing
        "smoothing.smoothed_radius": _c(smoothing.smoothed_radius, {"p_lower": "unit", "sigma": "positive"},
                                        skip={"p_lower": ()}, p_lower=0.9, sigma=0.25),
        "smoothing.clopper_pearson_lower": _c(smoothing.clopper_pearson_lower,
                                              {"successes": "count0", "trials": "count0", "alpha": "prob"},
                                              successes=90, trials=100, alpha=0.001),
        "smoothing.randomized_clopper_pearson_lower": _c(smoothing.randomized_clopper_pearson_lower,
                                                         {"successes": "count0", "trials": "count0", "alpha": "prob",
                                                          "u": "unit"}, successes=90, trials=100, alpha=0.001, u=0.5),
        "smoothing.binomial_p_value": _c(smoothing.binomial_p_value, {"top": "count0", "runner_up": "count0"},
                                         top=60, runner_up=40),
        "smoothing.min_predict_samples": _c(smoothing.min_predict_samples, {"alpha": "prob"}, alpha=0.001),
        "smoothing.certificate_from_counts": _c(smoothing.certificate_from_counts, {"alpha": "prob", "u": "unit"},
                                                selection=[0, 95, 5], counts=[0, 990, 10], alpha=0.001, sigma=0.25, u=0.5),
        "smoothing.prediction_from_counts": _c(smoothing.prediction_from_counts, {"alpha": "prob"},
                                               counts=[900, 100, 0], alpha=0.001),
        "smoothing.Smooth": _c(smoothing.Smooth, {"num_classes": "posint", "sigma": "positive",
                                                  "base_classifier": "model"},
                               skip={"num_classes": ()}, base_classifier=lambda: _mlp(), num_classes=3, sigma=0.25),
        "smoothing.Smooth.certify": _c(lambda: _smooth().certify,
                                       {"x": t, "n0": "posint", "n": "posint", "alpha": "prob", "batch_size": "posint",
                                        "generator": "generator", "randomized": "bool"},
                                       skip={"x": ("list", "numpy")},
                                       x=lambda: torch.rand(4, generator=_g()), n0=10, n=50, alpha=0.01, batch_size=32,
                                       generator=lambda: _g()),
        "smoothing.Smooth.predict": _c(lambda: _smooth().predict,
                                       {"x": t, "n": "posint", "alpha": "prob", "batch_size": "posint",
                                        "generator": "generator"},
                                       x=lambda: torch.rand(4, generator=_g()), n=50, alpha=0.01, batch_size=32,
                                       generator=lambda: _g()),
        "smoothing.smoothed_scores": _c(smoothing.smoothed_scores,
                                        {"x": t, "sigma": "positive", "n_mc": "posint", "generator": "generator",
                                         "batch_size": "posint", "score_fn": "callable", "budget": "posint"},
                                        skip={"n_mc": ()},
                                        model=lambda: _mlp(), x=lambda: _x(), score_fn=lambda: (lambda p: 1 - p),
                                        sigma=0.25, n_mc=4, generator=lambda: _g()),
        "smoothing.certify_dataset": _c(smoothing.certify_dataset, {"inputs": t, "labels": "labels"},
                                        smooth=lambda: _smooth(), inputs=lambda: _x(3), labels=lambda: _y(3),
                                        n0=10, n=20, batch_size=16, progress=False),
        "smoothing.train_noise_augmented": _c(smoothing.train_noise_augmented,
                                              {"inputs": t, "labels": "labels", "sigma": "positive",
                                               "epochs": "posint", "generator": "generator"},
                                              mutates=("model",), model=lambda: _mlp(), inputs=lambda: _x(8),
                                              labels=lambda: _y(8), sigma=0.25, epochs=1, generator=lambda: _g()),
        "smoothing.karras_levels": _c(smoothing.karras_levels, {"sigma_min": "positive", "levels": "posint"},
                                      sigma_min=0.02, sigma_max=1.0, levels=4),
        "smoothing.info_nce": _c(smoothing.info_nce, {"z": t, "tau": "positive"}, skip={"z": ("int", "bool", "complex")},
                                 z=lambda: torch.randn(4, 3, generator=_g()), z_target=lambda: torch.randn(4, 3, generator=_g(1)),
                                 tau=0.2),
        "smoothing.random_shift": _c(smoothing.random_shift, {"x": t, "generator": "generator", "max_shift": "count0"},
                                     skip={"x": ("nan", "inf", "int", "bool", "complex")},
                                     x=lambda: torch.rand(2, 1, 4, 4, generator=_g()), generator=lambda: _g()),
        # batch 2: constructors' keyword hyperparameters and small pure functions
        "smoothing.convert_radius": _c(smoothing.convert_radius, {"radius": "nonneg", "dim": "posint"},
                                       skip={"radius": ("inf",)},  # an infinite radius converts to an infinite one
                                       radius=0.5, from_norm=2, to_norm="inf", dim=4),
        "smoothing.confidence_sequence": _c(smoothing.confidence_sequence, {"alpha": "prob"},
                                            successes=40, trials=50, alpha=0.01),
        "smoothing.consistency_loss": _c(smoothing.consistency_loss, {"lam": "nonneg", "eta": "nonneg"},
                                         logits=lambda: torch.randn(2, 3, 4, generator=_g()), labels=lambda: _y(3, 4),
                                         lam=1.0, eta=0.5),
        "smoothing.FallbackMonitor": _c(smoothing.FallbackMonitor, {"baseline": "unit", "delta": "prob"},
                                        skip={"baseline": ()}, baseline=0.1),
        "smoothing.train_consistency": _c(smoothing.train_consistency,
                                          {"inputs": t, "labels": "labels", "sigma": "positive", "copies": "posint",
                                           "epochs": "posint", "generator": "generator"},
                                          mutates=("model",), model=lambda: _mlp(), inputs=lambda: _x(8),
                                          labels=lambda: _y(8), sigma=0.25, epochs=1, generator=lambda: _g()),
        "smoothing.certify_sequential": _c(smoothing.certify_sequential,
                                           {"x": t, "alpha": "prob", "n0": "posint", "n_max": "posint",
                                            "batch_size": "posint", "smooth": "smooth"},
                                           skip={"x": ("list", "numpy")},
                                           smooth=lambda: _smooth(), x=lambda: torch.rand(4, generator=_g()), n0=10,
                                           n_max=200, batch_size=64, generator=lambda: _g()),
        "certify.margin_spec": _c(certify.margin_spec, {"y": "labels", "k": "posint"},
                                  skip={"y": ("short",)}, y=lambda: _y(), k=3),
        # limit: bytes; a string is valid too ("3" bytes, "512MiB"), so the battery's bad string does not apply
        "certify.memory_budget": _c(certify.memory_budget, {"limit": "posint"}, skip={"limit": ("str",)},
                                    limit=1 << 30),
        "certify.default_filter": _c(certify.default_filter, {"threshold": "threshold", "variant": "choice"}),
        "certify.prompts.embedded_tfidf_filter": _c(prompts.embedded_tfidf_filter, {"threshold": "threshold"}),
        "certify.TfidfFilter": _c(certify.TfidfFilter, {"threshold": "threshold", "C": "positive"}),
        "certify.BagOfEmbeddingsFilter": _c(certify.BagOfEmbeddingsFilter,
                                            {"threshold": "threshold", "dim": "posint", "epochs": "posint",
                                             "lr": "positive", "hidden": "count0"}),
        "conformal.RSCPPlus": _c(conformal.RSCPPlus, {"alpha": "prob", "beta": "prob"}, sigma=0.25, eps=0.1, n_mc=32),
        "conformal.SmoothedRobustPAC": _c(conformal.SmoothedRobustPAC, {"epsilon": "prob", "delta": "prob"},
                                          sigma=0.25, eps=0.1, n_mc=32),
        "conformal.RobustPAC": _c(conformal.RobustPAC, {"epsilon": "prob", "delta": "prob", "eps": "nonneg"}, eps=0.1),
        "conformal.VRCP": _c(conformal.VRCP, {"alpha": "prob", "eps": "nonneg"}, eps=0.1),
        "conformal.DualThreshold": _c(conformal.DualThreshold, {"alpha": "prob", "delta": "prob", "n_grid": "posint"}),
        "conformal.PACCodeSets": _c(conformal.PACCodeSets, {"epsilon": "prob", "delta": "prob", "max_holes": "count0"}),
        "conformal.regression.CVPlus": _c(regression.CVPlus, {"alpha": "prob", "n_folds": "posint",
                                                             "generator": "generator"},
                                          skip={"n_folds": ("zero",)}, fit=lambda: (lambda x, y: (lambda z: z))),
        "conformal.regression.JackknifePlus": _c(regression.JackknifePlus, {"alpha": "prob", "chunk_size": "posint"},
                                                 fit=lambda: (lambda x, y: (lambda z: z))),
        "conformal.regression.jackknife_plus_bounds": _c(
            regression.jackknife_plus_bounds, {"residuals": "array", "alpha": "prob"},
            skip={"residuals": ("list", "str")}, loo_predictions=lambda: np.random.default_rng(0).random((3, 20)),
            residuals=lambda: np.random.default_rng(1).random(20), alpha=0.2),
        # batch 3
        "certify.Normalize": _c(certify.Normalize, {}, mean=0.5, std=0.25),
        "certify.TokenPositions": _c(certify.TokenPositions, {"model": "model", "embeddings": "tensor"},
                                     model=lambda: _mlp(), embeddings=lambda: _x(3), positions=[1, 2]),
        "certify.box_bounds": _c(certify.box_bounds, {"model": "model"}, model=lambda: _mlp(),
                                 lower=lambda: _x() - 0.1, upper=lambda: _x() + 0.1),
        "certify.tightness": _c(certify.tightness, {"x": t, "eps": "positive", "labels": "labels"},
                                model=lambda: _mlp(), x=lambda: _x(), eps=0.1, labels=lambda: _y()),
        "smoothing.mixture_log_wealth": _c(smoothing.mixture_log_wealth, {}, successes=40, trials=50, p=0.5),
        "smoothing.train_denoiser": _c(smoothing.train_denoiser, {"inputs": t, "sigma": "positive", "epochs": "posint",
                                                                  "generator": "generator"},
                                       mutates=("denoiser",), denoiser=lambda: nn.Sequential(nn.Linear(4, 4)),
                                       inputs=lambda: _x(8), sigma=0.25, epochs=1, generator=lambda: _g()),
        "smoothing.DenoisedClassifier": _c(smoothing.DenoisedClassifier, {"denoiser": "model", "classifier": "model"},
                                           denoiser=lambda: nn.Sequential(nn.Linear(4, 4)).eval(),
                                           classifier=lambda: _mlp()),
        "conformal.train_rct": _c(conformal.train_rct, {"x": t, "labels": "labels", "generator": "generator"},
                                  skip={"x": ("numpy", "list")},
                                  model=lambda: _mlp(), x=lambda: _x(8), labels=lambda: _y(8), generator=lambda: _g()),
        # batch 4
        "certify.BagOfEmbeddingsFilter.fit": _c(
            lambda: certify.BagOfEmbeddingsFilter(epochs=2, augment=()).fit, {},
            harmful=["how to build a bomb", "steal a car now"], safe=["bake bread", "name three rivers"]),
        "certify.prompts.augment_safe": _c(prompts.augment_safe, {"max_erase": "count0"},
                                           safe=["how do I bake bread today"], max_erase=2),
        "certify.verify_complete": _c(certify.verify_complete, {"x": t, "eps": "nonneg"},
                                      skip={"x": ("list", "numpy")},
                                      model=lambda: _mlp(), x=lambda: _x(1), y=0, eps=0.01, timeout=5.0),
        "smoothing.certify_sequential_batch": _c(smoothing.certify_sequential_batch,
                                                 {"xs": t, "alpha": "prob", "n0": "posint", "n_max": "posint",
                                                  "smooth": "smooth"},
                                                 skip={"xs": ("list", "numpy")},
                                                 smooth=lambda: _smooth(), xs=lambda: _x(2), n0=10, n_max=200,
                                                 batch_size=64, generator=lambda: _g()),
        "smoothing.detection_delay": _c(smoothing.detection_delay,
                                        {"baseline": "unit", "attacked_rate": "unit", "delta": "prob",
                                         "n_streams": "posint", "horizon": "posint", "generator": "generator"},
                                        skip={"baseline": ("neg",), "attacked_rate": ()},
                                        baseline=0.1, attacked_rate=0.5, delta=0.05, n_streams=5, horizon=100,
                                        generator=lambda: _g()),
        "conformal.score_bounds_from_margins": _c(conformal.score_bounds_from_margins,
                                                  {"margin_lower": t, "lam": "nonneg", "k_reg": "count0"},
                                                  skip={"margin_lower": ("inf",)},
                                                  score="thr", margin_lower=lambda: torch.zeros(3, 4, 4) - 1,
                                                  margin_upper=lambda: torch.zeros(3, 4, 4) + 1),
        "conformal.certified_score_bounds": _c(conformal.certified_score_bounds, {"x": t, "eps": "nonneg"},
                                               model=lambda: _mlp(), x=lambda: _x(), eps=0.05),
        "conformal.regression.RobustConformalRegressor": _c(regression.RobustConformalRegressor, {"alpha": "prob"}),
        "conformal.smoothed_score_pgd": _c(conformal.smoothed_score_pgd,
                                           {"x": t, "labels": "labels", "sigma": "positive", "eps": "nonneg",
                                            "steps": "count0", "n_noise": "posint", "generator": "generator"},
                                           skip={"x": ("list", "numpy")}, model=lambda: _mlp(), x=lambda: _x(),
                                           labels=lambda: _y(), score_fn=lambda: (lambda p: 1 - p), sigma=0.25, eps=0.1,
                                           steps=2, n_noise=4, generator=lambda: _g()),
        # conformal: functional
        "conformal.conformal_rank": _c(conformal.conformal_rank, {"n": "posint", "alpha": "prob"}, n=99, alpha=0.1),
        "conformal.conformal_quantile": _c(conformal.conformal_quantile, {"scores": "scores1d", "alpha": "prob"},
                                           scores=lambda: _scores(), alpha=0.1),
        "conformal.pac_rank": _c(conformal.pac_rank, {"n": "posint", "epsilon": "prob", "delta": "prob"},
                                 n=1000, epsilon=0.1, delta=0.05),
        "conformal.pac_quantile": _c(conformal.pac_quantile, {"scores": "scores1d", "epsilon": "prob", "delta": "prob"},
                                     scores=lambda: _scores(200), epsilon=0.1, delta=0.1),
        "conformal.prediction_mask": _c(conformal.prediction_mask, {"scores": "array", "threshold": "real"},
                                        scores=lambda: _scores(20).reshape(5, 4), threshold=0.5),
        "conformal.predict_proba": _c(conformal.predict_proba, {"inputs": t, "batch_size": "posint",
                                                                "temperature": "positive", "model": "model"},
                                      skip={"inputs": ("numpy", "list")}, model=lambda: _mlp(), inputs=lambda: _x()),
        "conformal.calibrate_filter_threshold": _c(conformal.calibrate_filter_threshold,
                                                   {"harmful_scores": "probs1d", "epsilon": "prob", "delta": "prob",
                                                    "groups": "groups"},
                                                   skip={"harmful_scores": ("list",)},
                                                   harmful_scores=lambda: _scores(200), epsilon=0.1, delta=0.1,
                                                   groups=lambda: np.arange(200) // 4),
        "conformal.pvalue_mask": _c(conformal.pvalue_mask, {"alpha": "prob", "n_calibration": "posint",
                                                            "pvalues": "array"},
                                    pvalues=lambda: np.full((3, 4), 0.5), alpha=0.1, n_calibration=39),
        "conformal.conformal_pvalues": _c(conformal.conformal_pvalues,
                                          {"calibration_scores": "scores1d", "smoothed": "bool", "generator": "generator",
                                           "test_scores": "array"},
                                          calibration_scores=lambda: _scores(), test_scores=lambda: _scores(12).reshape(3, 4),
                                          smoothed=True, generator=lambda: _g()),
        "conformal.pgd_attack": _c(conformal.pgd_attack, {"x": t, "labels": "labels", "steps": "count0",
                                                          "generator": "generator"},
                                   skip={"x": ("numpy", "list")},
                                   model=lambda: _mlp(), x=lambda: _x(), labels=lambda: _y(), eps=0.1, steps=2,
                                   generator=lambda: _g()),
        # conformal: risk control and Learn then Test (issue 16)
        "conformal.conformal_risk_control": _c(conformal.conformal_risk_control,
                                               {"losses": "array", "alpha": "prob", "bound": "positive"},
                                               losses=lambda: np.tile([1.0, 0.5, 0.0], (20, 1)), alpha=0.2),
        "conformal.false_negative_rate": _c(conformal.false_negative_rate, {"labels": "labels"},
                                            sets=lambda: np.eye(3, dtype=bool), labels=lambda: np.eye(3, dtype=int)),
        "conformal.ConformalRiskControl": _c(conformal.ConformalRiskControl, {"alpha": "prob", "bound": "positive"}),
        "conformal.ConformalRiskControl.calibrate": _c(lambda: conformal.ConformalRiskControl(alpha=0.3).calibrate,
                                                       {"probs": "array"}, probs=lambda: _probs(),
                                                       labels=lambda: (_probs() > 0.3).long()),
        "conformal.learn_then_test": _c(conformal.learn_then_test, {"losses": "array", "alpha": "prob", "delta": "prob"},
                                        losses=lambda: (np.random.default_rng(5).random((50, 4)) < 0.1).astype(float),
                                        alpha=0.2, delta=0.1),
        "conformal.hoeffding_bentkus_pvalue": _c(conformal.hoeffding_bentkus_pvalue, {"alpha": "prob", "n": "posint"},
                                                 risk=0.05, n=100, alpha=0.1),
        "conformal.binomial_pvalue": _c(conformal.binomial_pvalue, {"alpha": "prob"}, errors=2, n=50, alpha=0.1),
        "conformal.LabelPowersetICP": _c(conformal.LabelPowersetICP, {"alpha": "prob", "max_size": "posint"}),
        "conformal.LabelPowersetICP.calibrate": _c(lambda: conformal.LabelPowersetICP(alpha=0.2).calibrate,
                                                   {"probs": "array"}, probs=lambda: _probs(),
                                                   labels=lambda: (_probs() > 0.3).long()),
        "conformal.label_set_scores": _c(conformal.label_set_scores, {"probs": "array"}, probs=lambda: _probs(),
                                         label_sets=lambda: np.eye(4, dtype=int)),
        "conformal.label_powerset_regions": _c(conformal.label_powerset_regions,
                                               {"probs": "array", "calibration_scores": "scores1d", "alpha": "prob",
                                                "max_size": "posint"},
                                               probs=lambda: _probs(5).numpy(), calibration_scores=lambda: _scores(),
                                               alpha=0.2),
        # conformal: calibrators (constructors and methods)
        "conformal.SplitConformal": _c(conformal.SplitConformal, {"alpha": "prob", "validate": "bool"}),
        "conformal.SplitConformal.calibrate": _c(lambda: conformal.SplitConformal(alpha=0.1).calibrate,
                                                 {"probs": "probs", "labels": "labels"},
                                                 probs=lambda: _probs(), labels=lambda: _y(40, 4)),
        "conformal.SplitConformal.predict": _c(lambda: _calibrated(conformal.SplitConformal).predict,
                                               {"probs": "probs"}, probs=lambda: _probs(6)),
        "conformal.ClassConditional": _c(conformal.ClassConditional, {"alpha": "prob"}),
        # audit-inputs: smoothed p-values without a generator drew from torch's global RNG
        "conformal.SplitConformal.predict_p": _c(
            lambda: _calibrated(conformal.SplitConformal, score="thr").predict_p,
            {"probs": "probs", "smoothed": "bool", "generator": "generator"}, probs=lambda: _probs(6), smoothed=True),
        # audit-inputs: a non-randomised score still checks `generator` (a seed was silently ignored) and
        # `from_logits` (a truthy "no" silently took the softmax of probabilities)
        "conformal.ClassConditional.calibrate": _c(
            lambda: conformal.ClassConditional(alpha=0.2, score="thr").calibrate,
            {"probs": "probs", "labels": "labels", "generator": "generator", "from_logits": "bool"},
            probs=lambda: _probs(), labels=lambda: _y(40, 4), generator=lambda: _g(), from_logits=False),
        "conformal.ClassConditional.predict": _c(
            lambda: _calibrated(conformal.ClassConditional, alpha=0.2, score="thr").predict,
            {"probs": "probs", "generator": "generator", "from_logits": "bool"},
            probs=lambda: _probs(6), generator=lambda: _g(), from_logits=False),
        "conformal.PACPredictionSet.predict": _c(
            lambda: _calibrated(conformal.PACPredictionSet, score="thr").predict,
            {"probs": "probs", "generator": "generator"}, probs=lambda: _probs(6), generator=lambda: _g()),
        "conformal.WeightedConformal.predict": _c(
            lambda: conformal.WeightedConformal(alpha=0.2, score="thr").calibrate(_probs(), _y(40, 4),
                                                                              weights=np.ones(40)).predict,
            {"probs": "probs", "weights": "array", "generator": "generator"}, skip={"weights": ("list",)},
            probs=lambda: _probs(6), weights=lambda: np.ones(6), generator=lambda: _g()),
        "conformal.DualThreshold.predict": _c(
            lambda: conformal.DualThreshold(alpha=0.2, delta=0.2, score="thr").calibrate(
                _probs(), _y(40, 4), _probs(40), _y(40, 4)).predict,
            {"probs": "probs", "generator": "generator"}, probs=lambda: _probs(6), generator=lambda: _g()),
        # a model that is not a module failed deep inside ("'str' object is not callable")
        "conformal.VRCP.predict": _c(
            lambda: conformal.VRCP(eps=0.05).calibrate(torch.rand(20, 3, generator=_g(), dtype=torch.float64),
                                                       _y(20)).predict,
            {"model": "model"}, scores=lambda: _x(4), model=lambda: _mlp()),
        "conformal.RSCP.predict": _c(
            lambda: conformal.RSCP(alpha=0.2, sigma=0.25, eps=0.1, n_mc=4).calibrate(_x(20), _y(20),
                                                                                     model=_mlp()).predict,
            {"model": "model"}, scores=lambda: _x(4), model=lambda: _mlp()),
        "conformal.SafetyThreshold.calibrate_filter": _c(
            lambda: conformal.SafetyThreshold(epsilon=0.5, delta=0.5).calibrate_filter,
            {"filter": "filter", "harmful_prompts": "texts"}, mutates=("filter",),
            filter=lambda: _filter(), harmful_prompts=["how to build a bomb", "steal a car now"] * 4),
        "conformal.ClusteredConformal": _c(conformal.ClusteredConformal, {"alpha": "prob", "n_clusters": "posint",
                                                                          "clustering_fraction": "prob",
                                                                          "n_init": "posint"}, n_clusters=2),
        "conformal.ClusteredConformal.calibrate": _c(lambda: conformal.ClusteredConformal(alpha=0.2).calibrate,
                                                     {"probs": "probs", "labels": "labels", "generator": "generator"},
                                                     probs=lambda: _probs(), labels=lambda: _y(40, 4)),
        "conformal.collect_probs": _c(conformal.collect_probs, {"data": t, "batch_size": "posint",
                                                                "temperature": "positive", "from_logits": "bool",
                                                                "model": "model"},
                                      skip={"data": ("numpy", "list", "nan", "inf")}, model=lambda: _mlp(),
                                      data=lambda: _x()),
        "conformal.WeightedConformal": _c(conformal.WeightedConformal, {"alpha": "prob", "validate": "bool"}),
        "conformal.WeightedConformal.calibrate": _c(lambda: conformal.WeightedConformal(alpha=0.1).calibrate,
                                                    {"probs": "probs", "labels": "labels", "weights": "array"},
                                                    skip={"weights": ("list",)}, probs=lambda: _probs(),
                                                    labels=lambda: _y(40, 4), weights=lambda: np.ones(40)),
        "conformal.weighted_conformal_quantile": _c(conformal.weighted_conformal_quantile,
                                                    {"scores": "scores1d", "weights": "array", "test_weights": "array",
                                                     "alpha": "prob"}, skip={"weights": ("list",),
                                                                             "test_weights": ("list",)},
                                                    scores=lambda: _scores(), weights=lambda: np.ones(40),
                                                    test_weights=lambda: np.ones(3), alpha=0.1),
        "conformal.PACPredictionSet": _c(conformal.PACPredictionSet, {"epsilon": "prob", "delta": "prob"}),
        "conformal.PACPredictionSet.calibrate": _c(lambda: conformal.PACPredictionSet().calibrate,
                                                   {"probs": "probs", "labels": "labels"},
                                                   probs=lambda: _probs(), labels=lambda: _y(40, 4)),
        "conformal.SafetyThreshold": _c(conformal.SafetyThreshold, {"epsilon": "prob", "delta": "prob"}),
        "conformal.SafetyThreshold.calibrate": _c(lambda: conformal.SafetyThreshold(epsilon=0.1, delta=0.1).calibrate,
                                                  {"harmful_scores": "scores1d", "groups": "groups"},
                                                  skip={"harmful_scores": ("list",)}, harmful_scores=lambda: _scores(200),
                                                  groups=lambda: np.arange(200) // 4),
        "conformal.SafetyThreshold.flag": _c(
            lambda: conformal.SafetyThreshold(epsilon=0.1, delta=0.1).calibrate(_scores(200)).flag,
            {"scores": "array"}, skip={"scores": ("list",)}, scores=lambda: _scores(5)),
        "conformal.RSCP": _c(conformal.RSCP, {"alpha": "prob", "sigma": "positive", "eps": "nonneg"}, sigma=0.25, eps=0.1),
        "conformal.RSCP.calibrate": _c(lambda: conformal.RSCP(alpha=0.1, sigma=0.25, eps=0.0).calibrate,
                                       {"scores": "tensor"}, skip={"scores": ("int", "bool", "numpy", "list")},
                                       scores=lambda: torch.rand(30, generator=_g(), dtype=torch.float64)),
        "conformal.PTT": _c(conformal.PTT, {"alpha": "prob", "temperature": "positive"}),
        # batch 5 (issue 13 follow-up): the names that had no case
        "certify.EmbeddingFilter": _c(certify.EmbeddingFilter,
                                      {"threshold": "threshold", "C": "positive", "augment_max_erase": "count0",
                                       "augment_per_prompt": "count0", "batch_size": "posint"}),
        "certify.mine_naps": _c(certify.mine_naps, {"x": t, "y": "labels", "delta": "unit", "batch_size": "posint",
                                                    "num_classes": "posint", "model": "model"},
                                skip={"x": ("list", "numpy"), "num_classes": ()},
                                model=lambda: _mlp(), x=lambda: _x(), y=lambda: _y(), delta=0.9, num_classes=3),
        "certify.follows_nap": _c(certify.follows_nap, {"x": t, "model": "model", "naps": "naps"},
                                  skip={"x": ("list", "numpy")},
                                  model=lambda: _mlp(), naps=lambda: _naps(), x=lambda: _x()),
        "certify.verify_nap": _c(certify.verify_nap,
                                 {"x_ref": t, "timeout": "positive", "batch_size": "posint", "attack_restarts": "posint",
                                  "attack_steps": "count0", "sound": "bool", "generator": "generator",
                                  "model": "model", "nap": "nap", "lower": "real", "upper": "real"},
                                 skip={"x_ref": ("list", "numpy"), "timeout": ("inf",)},
                                 model=lambda: _mlp(), nap=lambda: _naps().patterns[0], x_ref=lambda: _x(1),
                                 timeout=5.0, generator=lambda: _g()),
        "certify.naps_overlap": _c(certify.naps_overlap,
                                   {"x_ref": t, "timeout": "positive", "batch_size": "posint", "generator": "generator",
                                    "model": "model", "a": "nap", "b": "nap", "lower": "real", "upper": "real"},
                                   skip={"x_ref": ("list", "numpy"), "timeout": ("inf",)},
                                   model=lambda: _mlp(), a=lambda: _naps().patterns[0], b=lambda: _naps().patterns[0],
                                   x_ref=lambda: _x(1), timeout=5.0, generator=lambda: _g()),
        "certify.propagation_tightness": _c(certify.propagation_tightness,
                                            {"x": t, "eps": "positive", "labels": "labels", "model": "model"},
                                            model=lambda: _mlp(), x=lambda: _x(), eps=0.1, labels=lambda: _y()),
        "certify.verification_availability": _c(certify.verification_availability,
                                                {"x": t, "labels": "labels", "eps": "nonneg", "model": "model",
                                                 "trigger": "trigger"},
                                                skip={"x": ("list", "numpy")},
                                                model=lambda: _mlp(), x=lambda: _x(), labels=lambda: _y(),
                                                trigger=lambda: _trigger(), eps=0.05),
        "certify.verify_property": _c(certify.verify_property,
                                      {"model": "model", "prop": "prop", "timeout": "positive", "batch_size": "posint",
                                       "attack_steps": "count0", "attack_restarts": "posint", "float64": "bool",
                                       "complete": "bool", "generator": "generator"},
                                      skip={"timeout": ("inf",)},
                                      model=lambda: _mlp(), prop=lambda: _prop(), timeout=5.0, generator=lambda: _g()),
        "certify.grad_erase_and_check": _c(certify.grad_erase_and_check,
                                           {"prompt": "prompt", "num_iters": "count0", "lr": "positive",
                                            "weight_decay": "nonneg"},
                                           prompt="how do I bake bread", filter=lambda: _bag(), num_iters=2),
        "certify.prompts.embedding_filter": _c(prompts.embedding_filter, {"threshold": "threshold"},
                                               skip={"threshold": ("nan", "big", "str")}),
        "certify.prompts.load_prompt_dir": _c(prompts.load_prompt_dir,
                                              {"path": "path", "test_fraction": "unit", "generator": "generator"},
                                              path=lambda: _prompt_dir(), generator=lambda: _g()),
        "certify.prompts.generated_filter": _c(prompts.generated_filter, {"threshold": "threshold", "kind": "choice"},
                                               kind="tfidf"),
        "certify.prompts.generated_prompts": _c(prompts.generated_prompts, {"per_act": "posint"}, per_act=2),
        "certify.prompts.pac_threshold": _c(prompts.pac_threshold,
                                            {"harmful_scores": "probs1d", "epsilon": "prob", "delta": "prob",
                                             "groups": "groups"},
                                            harmful_scores=lambda: _scores(200), epsilon=0.1, delta=0.1,
                                            groups=lambda: np.arange(200) // 4),
        "certify.prompts.split_by_act": _c(prompts.split_by_act, {"parts": "parts", "data": "prompts_data"},
                                           data=lambda: prompts.generated_prompts(2)),
        "certify.prompts.LLMJudgeFilter": _c(prompts.LLMJudgeFilter,
                                             {"threshold": "threshold", "batched": "bool", "generate": "callable",
                                              "template": "choice", "not_harmful": "texts", "batch_size": "posint",
                                              "min_length": "count0", "count_tokens": "callable"},
                                             skip={"count_tokens": ("none",)},
                                             generate=lambda: (lambda prompts: ["not harmful"] * len(prompts)),
                                             batched=True, batch_size=8, not_harmful=lambda: ["not harmful"]),
        "certify.prompts.greedy_token_attack": _c(prompts.greedy_token_attack,
                                                  {"prompt": "prompt", "num_tokens": "count0", "candidates": "posint",
                                                   "mode": "choice", "generator": "generator", "vocab": "words",
                                                   "filter": "filter"},
                                                  prompt="how do I bake bread", filter=lambda: _filter(), num_tokens=2,
                                                  candidates=4, generator=lambda: _g()),
        "smoothing.smoothed_regression_bounds": _c(
            smoothing.smoothed_regression_bounds,
            {"x": t, "sigma": "positive", "eps": "nonneg", "n_samples": "posint", "beta": "prob",
             "batch_size": "posint", "generator": "generator", "model": "model", "output_range": "range"},
            skip={"x": ("list", "numpy")},
            model=lambda: _regressor(), x=lambda: _x(3), sigma=0.25, eps=0.1, output_range=(-10.0, 10.0),
            n_samples=50, generator=lambda: _g()),
        "smoothing.smoothing_availability": _c(smoothing.smoothing_availability,
                                               {"x": t, "labels": "labels", "radius": "nonneg", "n0": "posint",
                                                "n": "posint", "alpha": "prob", "batch_size": "posint",
                                                "generator": "generator", "trigger": "trigger", "smooth": "smooth"},
                                               skip={"x": ("list", "numpy")},
                                               smooth=lambda: _smooth(), x=lambda: _x(3), labels=lambda: _y(3),
                                               trigger=lambda: _trigger(), n0=10, n=20, generator=lambda: _g()),
        "smoothing.pretrain_contrastive_denoising": _c(
            smoothing.pretrain_contrastive_denoising,
            {"inputs": t, "sigma_min": "positive", "levels": "posint", "tau": "positive", "projection_dim": "posint",
             "momentum": "prob", "epochs": "posint", "lr": "positive", "batch_size": "posint",
             "generator": "generator", "encoder": "model"},
            skip={"inputs": ("list", "numpy")}, mutates=("encoder",),
            encoder=lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 8)), inputs=lambda: torch.rand(4, 1, 4, 4, generator=_g()),
            levels=2, projection_dim=4, epochs=1, batch_size=4, generator=lambda: _g()),
        "conformal.certified_sets": _c(conformal.certified_sets,
                                       {"x_cal": t, "y_cal": "labels", "x_test": t, "alpha": "prob", "eps": "nonneg",
                                        "model": "model"},
                                       skip={"x_cal": ("list", "numpy"), "x_test": ("list", "numpy")},
                                       model=lambda: _mlp(), x_cal=lambda: _x(20), y_cal=lambda: _y(20),
                                       x_test=lambda: _x(3), eps=0.05),
        "conformal.nested_removals": _c(conformal.nested_removals,
                                        {"nll": "array", "taus": "array", "max_holes": "count0",
                                         "time_limit": "positive", "tree": "tree"},
                                        skip={"nll": ("list", "str"), "taus": ("list", "str"), "time_limit": ("inf",)},
                                        tree=lambda: _tree(), nll=lambda: np.linspace(0.1, 1.0, _tree().size),
                                        taus=lambda: np.array([0.5, 2.0]), max_holes=2, method="dp"),
        "conformal.score_bounds_from_logits": _c(conformal.score_bounds_from_logits,
                                                 {"lower": t, "upper": t, "labels": "labels", "lam": "nonneg",
                                                  "k_reg": "count0"},
                                                 score="thr", lower=lambda: torch.zeros(5, 3) - 1,
                                                 upper=lambda: torch.zeros(5, 3) + 1, labels=lambda: _y()),
        "conformal.regression.bound_propagation_output_bounds": _c(
            regression.bound_propagation_output_bounds, {"x": t, "model": "model", "threat": "threat"},
            skip={"x": ("list", "numpy")}, model=lambda: _regressor(), x=lambda: _x(3), threat=lambda: _ball()),
        "conformal.regression.smoothed_output_bounds": _c(
            regression.smoothed_output_bounds,
            {"x": t, "sigma": "positive", "eps": "nonneg", "n_samples": "posint", "beta": "prob",
             "batch_size": "posint", "generator": "generator", "model": "model", "output_range": "range"},
            skip={"x": ("list", "numpy")},
            model=lambda: _regressor(), x=lambda: _x(3), sigma=0.25, eps=0.1, output_range=(-10.0, 10.0),
            n_samples=50, generator=lambda: _g()),
        "conformal.regression.absolute_residuals": _c(regression.absolute_residuals,
                                                      {"predictions": "array", "targets": "array"},
                                                      predictions=lambda: _scores(10), targets=lambda: _scores(10)),
        "conformal.regression.worst_case_residuals": _c(regression.worst_case_residuals,
                                                        {"targets": "array", "lower": "array", "upper": "array"},
                                                        targets=lambda: _scores(10), lower=lambda: _scores(10) - 1,
                                                        upper=lambda: _scores(10) + 1),
        "conformal.regression.cqr_scores": _c(regression.cqr_scores,
                                              {"lower": "array", "upper": "array", "targets": "array"},
                                              lower=lambda: _scores(10) - 1, upper=lambda: _scores(10) + 1,
                                              targets=lambda: _scores(10)),
        "conformal.regression.normalized_residuals": _c(regression.normalized_residuals,
                                                        {"predictions": "array", "targets": "array",
                                                         "difficulty": "array"},
                                                        predictions=lambda: _scores(10), targets=lambda: _scores(10),
                                                        difficulty=lambda: _scores(10) + 0.5),
        # batch 6: names that were exempted although they take user input
        "smoothing.make_conv_denoiser": _c(smoothing.make_conv_denoiser,
                                           {"channels": "posint", "width": "posint", "depth": "posint"},
                                           channels=1, width=4, depth=2),
        "smoothing.average_certified_radius": _c(smoothing.average_certified_radius, {"results": "records"},
                                                 results=lambda: _records()),
        "smoothing.certified_accuracy": _c(smoothing.certified_accuracy, {"results": "records", "radii": "radii"},
                                           results=lambda: _records(), radii=lambda: [0.0, 0.25, 0.5]),
        "smoothing.certified_accuracy_lower": _c(smoothing.certified_accuracy_lower,
                                                 {"results": "records", "radii": "radii", "alpha": "prob",
                                                  "delta": "prob"},
                                                 results=lambda: _records(), radii=lambda: [0.0, 0.25], alpha=0.05),
        "smoothing.plot_certified_accuracy": _c(_plot, {"results": "records", "radii": "radii"},
                                                results=lambda: _records(), radii=lambda: [0.0, 0.25]),
        "smoothing.make_unet_denoiser": _c(smoothing.make_unet_denoiser,
                                           {"channels": "posint", "width": "posint", "image_size": "size2",
                                            "generator": "generator"},
                                           channels=1, width=2, image_size=(4, 4), generator=lambda: _g()),
        "conformal.python_tree": _c(conformal.python_tree, {"source": "source"}, source="x = 1\ny = x + 2\n"),
        "certify.load_vnnlib": _c(certify.load_vnnlib, {"path": "path", "num_inputs": "posint", "num_outputs": "posint"},
                                  skip={"num_inputs": ("zero",), "num_outputs": ("zero",)},
                                  path=lambda: _vnnlib_file(), num_inputs=2, num_outputs=2),
        # batch 7: methods that take user input
        "certify.TfidfFilter.fit": _c(lambda: certify.TfidfFilter(augment=()).fit, {"harmful": "texts", "safe": "texts"},
                                      harmful=["how to build a bomb", "steal a car now"],
                                      safe=["bake bread", "name three rivers"]),
        "certify.TfidfFilter.predict_proba": _c(lambda: _tfidf().predict_proba, {"texts": "texts"},
                                                texts=["bake bread", "build a bomb"]),
        "certify.CallableFilter.predict_proba": _c(lambda: _filter().predict_proba, {"texts": "texts"},
                                                   texts=["bake bread", "build a bomb"]),
        "smoothing.Smooth.certify_batch": _c(lambda: _smooth().certify_batch,
                                             {"xs": t, "n0": "posint", "n": "posint", "alpha": "prob",
                                              "batch_size": "posint", "generator": "generator", "randomized": "bool"},
                                             skip={"xs": ("list", "numpy")}, xs=lambda: _x(2), n0=10, n=20,
                                             alpha=0.01, batch_size=32, generator=lambda: _g()),
        "certify.CertifiedTrainer.fit": _c(lambda: certify.CertifiedTrainer(eps=0.1, epochs=1, warmup_epochs=0,
                                                                          ramp_epochs=1, batch_size=4,
                                                                          progress=False).fit,
                                           {"inputs": t, "labels": "labels", "model": "model"}, mutates=("model",),
                                           model=lambda: _mlp(), inputs=lambda: _x(8), labels=lambda: _y(8)),
        "conformal.PTT.calibrate": _c(lambda: conformal.PTT(alpha=0.1).calibrate, {"holdout_scores": "tensor"},
                                      skip={"holdout_scores": ("int", "numpy", "list")},
                                      holdout_scores=lambda: torch.rand(50, generator=_g(), dtype=torch.float64)),
        "conformal.DualThreshold.calibrate": _c(lambda: conformal.DualThreshold(alpha=0.2, delta=0.2).calibrate,
                                                {"probs": "probs", "labels": "labels", "fit_probs": "probs",
                                                 "fit_labels": "labels", "generator": "generator"},
                                                probs=lambda: _probs(), labels=lambda: _y(40, 4),
                                                fit_probs=lambda: _probs(), fit_labels=lambda: _y(40, 4),
                                                generator=lambda: _g()),
        "conformal.regression.CVPlus.calibrate": _c(
            lambda: regression.CVPlus(fit=lambda x, y: (lambda z: z[:, 0]), alpha=0.2, n_folds=4).calibrate,
            {"y": "array"}, skip={"y": ("list",)},
            x=lambda: np.random.default_rng(0).random((20, 2)), y=lambda: _scores(20)),
        # conformal.regression
        "conformal.regression.SplitConformalRegressor.calibrate": _c(
            lambda: regression.SplitConformalRegressor(alpha=0.2).calibrate,
            {"predictions": "array", "targets": "array"}, skip={"predictions": ("list",), "targets": ("list",)},
            predictions=lambda: _scores(20), targets=lambda: _scores(20)[::-1].copy()),
        "conformal.regression.SplitConformalRegressor.predict": _c(
            lambda: regression.SplitConformalRegressor(alpha=0.2).calibrate(_scores(20), _scores(20)[::-1].copy()).predict,
            {"predictions": "array"}, skip={"predictions": ("list",)}, predictions=lambda: _scores(5)),
        "conformal.regression.ConformalizedQuantileRegressor.calibrate": _c(
            lambda: regression.ConformalizedQuantileRegressor(alpha=0.2).calibrate,
            {"lower": "array", "upper": "array", "targets": "array"},
            skip={"lower": ("list",), "upper": ("list",), "targets": ("list",)},
            lower=lambda: _scores(20) - 1, upper=lambda: _scores(20) + 1, targets=lambda: _scores(20)[::-1].copy()),
        "conformal.regression.NormalizedConformalRegressor.calibrate": _c(
            lambda: regression.NormalizedConformalRegressor(alpha=0.2).calibrate,
            {"predictions": "array", "targets": "array", "difficulty": "array"},
            skip={"predictions": ("list",), "targets": ("list",), "difficulty": ("list",)},
            predictions=lambda: _scores(20), targets=lambda: _scores(20)[::-1].copy(),
            difficulty=lambda: _scores(20) + 0.5),
        "conformal.regression.ConformalPredictiveSystem.calibrate": _c(
            lambda: regression.ConformalPredictiveSystem(alpha=0.2).calibrate,
            {"predictions": "array", "targets": "array"}, skip={"predictions": ("list",), "targets": ("list",)},
            predictions=lambda: _scores(20), targets=lambda: _scores(20)[::-1].copy()),
        # audit-inputs: cdf drew tau from torch's global RNG, passed an int generator to torch, accepted tau=2.0/NaN
        "conformal.regression.ConformalPredictiveSystem.cdf": _c(
            lambda: regression.ConformalPredictiveSystem(alpha=0.2).calibrate(_scores(20), _scores(20)[::-1].copy()).cdf,
            {"tau": "unit", "generator": "generator"}, predictions=lambda: _scores(5), targets=lambda: _scores(5)),
        "conformal.regression.SplitConformalRegressor": _c(regression.SplitConformalRegressor, {"alpha": "prob"}),
        "conformal.regression.ConformalizedQuantileRegressor": _c(regression.ConformalizedQuantileRegressor,
                                                                  {"alpha": "prob"}),
        "conformal.regression.NormalizedConformalRegressor": _c(regression.NormalizedConformalRegressor,
                                                                {"alpha": "prob"}),
        "conformal.regression.ConformalPredictiveSystem": _c(regression.ConformalPredictiveSystem, {"alpha": "prob"}),
    }


CASES = _cases()

EXEMPT: dict[str, str] = {
    # need an optional extra's model file, or take no user input the battery could vary
    "certify.load_onnx": ("needs the optional `onnx` extra and an ONNX file; errors for missing/unreadable files are "
                          "tested in tests/certify/test_onnx_vnnlib.py"),
    "certify.HFClassifierFilter": "needs a local Hugging Face model directory (optional extra `llm`)",
    "certify.HFTokenizer": "needs a local Hugging Face tokenizer (optional extra `llm`)",
    "certify.embedded_prompts": "takes no arguments",
    "certify.WordTokenizer": "takes no arguments",
    "smoothing.Noise": "abstract base class of the noise distributions",
    "smoothing.ScoreFn": "type alias",
}
EXEMPT["certify.prompts.has_minilm"] = "takes no arguments (reports whether the optional MiniLM extra is installed)"


def test_every_public_name_is_covered_or_exempted() -> None:
    names = public_names()
    covered = {c.split(".")[0] + "." + c.split(".")[1] if False else c for c in CASES}
    missing = []
    for name, obj in names.items():
        if name in CASES or name in EXEMPT or rule_exemption(obj):
            continue
        missing.append(name)
    assert not missing, (
        "public names with neither a contract case (tests/test_contract.py CASES) nor an exemption with a "
        f"reason (EXEMPT): {missing}"
    )
    assert all(isinstance(r, str) and r.strip() for r in EXEMPT.values())
    stale = [n for n in EXEMPT if n not in names]
    assert not stale, f"exemptions for names that are no longer public: {stale}"
    roots = {n for n in covered if n in names} | {n.rsplit(".", 1)[0] for n in covered if n not in names}
    assert not (roots - set(names)), f"cases for names that are not public: {sorted(roots - set(names))}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_input_contract(name: str) -> None:
    failures = battery_failures(CASES[name])
    assert not failures, f"{name} breaks the input contract:\n  " + "\n  ".join(failures)


# ---------------------------------------------------------------------------------------------
# the battery can fail: a planted function that forgets to check one argument
# ---------------------------------------------------------------------------------------------

def _planted(x: torch.Tensor, alpha: float) -> float:
    """Test-only: checks ``alpha`` but not ``x`` (NaN flows through), and draws from the global RNG."""
    from certkit._validation import check_probability

    check_probability(alpha, "alpha")
    return float(x.sum() * (1 - alpha) + 0 * torch.rand(()))


def test_a_planted_unchecked_argument_fails_the_battery() -> None:
    failures = battery_failures(_c(_planted, {"x": "tensor", "alpha": "prob"}, x=lambda: _x(), alpha=0.1))
    assert any(f.startswith("x=nan") and "accepted silently" in f for f in failures), failures
    assert any("global RNG" in f for f in failures), failures
    assert not any(f.startswith("alpha=") for f in failures), failures


def test_a_planted_mutation_fails_the_battery() -> None:
    def mutate(x: torch.Tensor) -> None:
        x.mul_(2)

    failures = battery_failures(_c(mutate, {}, x=lambda: _x()))
    assert failures == ["the valid call mutated argument `x`"]


# ---------------------------------------------------------------------------------------------
# trainers warn on low-precision models and inputs, as bounds do
# ---------------------------------------------------------------------------------------------

def _trainer_calls() -> dict[str, Any]:
    import certify
    import conformal
    import smoothing

    def model() -> nn.Module:
        return _mlp().to(torch.bfloat16)

    def x(n: int = 8) -> torch.Tensor:
        return _x(n).to(torch.bfloat16)

    return {
        "certify.certified_train": lambda: certify.certified_train(
            model(), x(), _y(8), epochs=1, warmup_epochs=0, ramp_epochs=1, eps=0.1, batch_size=4, progress=False,
            generator=_g()),
        "smoothing.train_noise_augmented": lambda: smoothing.train_noise_augmented(
            model(), x(), _y(8), sigma=0.25, epochs=1, generator=_g()),
        "smoothing.train_consistency": lambda: smoothing.train_consistency(
            model(), x(), _y(8), sigma=0.25, epochs=1, generator=_g()),
        "smoothing.train_denoiser": lambda: smoothing.train_denoiser(
            nn.Sequential(nn.Linear(4, 4)).to(torch.bfloat16), x(), sigma=0.25, epochs=1, generator=_g()),
        "smoothing.pretrain_contrastive_denoising": lambda: smoothing.pretrain_contrastive_denoising(
            nn.Sequential(nn.Flatten(), nn.Linear(16, 8)).to(torch.bfloat16),
            torch.rand(4, 1, 4, 4, generator=_g()).to(torch.bfloat16), levels=2, projection_dim=4, epochs=1,
            batch_size=4, generator=_g()),
        "conformal.train_rct": lambda: conformal.train_rct(model(), x(), _y(8), generator=_g()),
    }


@pytest.mark.parametrize("name", sorted(_trainer_calls()))
def test_trainers_warn_on_low_precision(name: str) -> None:
    import warnings

    from certkit.warnings import LowPrecisionWarning

    with warnings.catch_warnings():  # raised as an error: it must come before the first step
        warnings.simplefilter("error", LowPrecisionWarning)
        with pytest.raises(LowPrecisionWarning, match="bfloat16"):
            _trainer_calls()[name]()
