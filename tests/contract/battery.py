"""The machinery of the contract suite (issue 13), in the spirit of scikit-learn's common estimator checks.

A :class:`Case` is a *valid* call of one public entry point (a factory, so every call gets fresh
inputs) plus the *kind* of each argument it checks ("prob", "labels", ...). :func:`battery_failures`
runs the valid call (it must succeed and leave its inputs, the model and torch's global RNG as they
were), then replaces one argument at a time by every bad value of its kind: each must raise a
``ValueError``/``TypeError`` (certkit's errors derive from them) whose message names the argument.
It returns the failures as strings, so that a planted unchecked function can be shown to fail.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Factory = Callable[[], tuple[Callable[..., Any], dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """``factory()`` returns ``(fn, kwargs)``, a valid call ``fn(**kwargs)``; ``kinds`` maps argument -> kind."""

    factory: Factory
    kinds: dict[str, str]
    mutates: tuple[str, ...] = ()  # arguments the call changes by design (a trainer's model)
    skip: dict[str, tuple[str, ...]] = field(default_factory=dict)  # arg -> bad-value labels not applicable


def _nan_like(x: Any) -> Any:
    y = x.clone() if isinstance(x, torch.Tensor) else np.array(x, dtype=np.float64, copy=True)
    y.reshape(-1)[0] = math.nan
    return y


def _inf_like(x: Any) -> Any:
    y = x.clone() if isinstance(x, torch.Tensor) else np.array(x, dtype=np.float64, copy=True)
    y.reshape(-1)[0] = math.inf
    return y


def _as_int(x: Any) -> Any:
    return x.long() if isinstance(x, torch.Tensor) else np.asarray(x).astype(np.int64)


def _as_bool(x: Any) -> Any:
    return x > 0.5 if isinstance(x, torch.Tensor) else np.asarray(x) > 0.5


def _as_complex(x: Any) -> Any:
    return x.to(torch.complex64) if isinstance(x, torch.Tensor) else np.asarray(x).astype(np.complex64)


def _other_lib(x: Any) -> Any:
    return x.numpy() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _float_labels(y: Any) -> Any:
    return y.double() + 0.5 if isinstance(y, torch.Tensor) else np.asarray(y, dtype=np.float64) + 0.5


def _shift(y: Any, by: int) -> Any:
    y = y.clone() if isinstance(y, torch.Tensor) else np.array(y, copy=True)
    y[0] = by
    return y


def _row_off(p: Any) -> Any:
    q = p.clone() if isinstance(p, torch.Tensor) else np.array(p, copy=True)
    q[0, 0] += 0.3
    return q


# kind -> [(label, value or callable(valid_value) -> bad value)]
BAD: dict[str, list[tuple[str, Any]]] = {
    "prob": [("zero", 0.0), ("one", 1.0), ("five", 5), ("neg", -0.1), ("nan", math.nan), ("str", "0.1"), ("bool", True)],
    "unit": [("neg", -0.1), ("big", 1.5), ("nan", math.nan), ("str", "0.5"), ("bool", True)],
    "posint": [("zero", 0), ("neg", -1), ("float", 2.5), ("str", "3"), ("bool", True)],
    "count0": [("neg", -1), ("float", 2.5), ("str", "3"), ("bool", True)],
    "positive": [("zero", 0.0), ("neg", -1.0), ("nan", math.nan), ("inf", math.inf), ("str", "1"), ("bool", True)],
    "nonneg": [("neg", -1.0), ("nan", math.nan), ("inf", math.inf), ("str", "1"), ("bool", True)],
    "real": [("nan", math.nan), ("str", "1"), ("bool", True)],
    "bool": [("str", "no"), ("none", None), ("int", 2)],
    "generator": [("numpy", np.random.default_rng(0)), ("seed", 0), ("legacy", np.random.RandomState(0))],
    "tensor": [("nan", _nan_like), ("inf", _inf_like), ("int", _as_int), ("bool", _as_bool), ("complex", _as_complex),
               ("numpy", _other_lib), ("list", lambda x: x.tolist())],
    "array": [("nan", _nan_like), ("bool", _as_bool), ("complex", _as_complex), ("list", lambda x: x.tolist()),
              ("str", "abc")],
    "probs": [("nan", _nan_like), ("logits", lambda p: p * 4 - 1), ("row", _row_off), ("int", _as_int),
              ("1d", lambda p: p[:, 0]), ("list", lambda p: p.tolist())],
    "labels": [("float", _float_labels), ("high", lambda y: _shift(y, 10**6)), ("neg", lambda y: _shift(y, -1)),
               ("short", lambda y: y[:-1]), ("list", lambda y: y.tolist())],
    "groups": [("short", lambda g: g[:-1]), ("nan", lambda g: np.r_[np.asarray(g[:-1], dtype=np.float64), np.nan]),
               ("float", lambda g: np.asarray(g, dtype=np.float64) + 0.5), ("str", "act"), ("bool", lambda g: g > 0)],
    "scores1d": [("nan", _nan_like), ("2d", lambda s: s[:, None]), ("empty", lambda s: s[:0]), ("list", lambda s: s.tolist())],
    "probs1d": [("nan", _nan_like), ("2d", lambda s: s[:, None]), ("empty", lambda s: s[:0]), ("list", lambda s: s.tolist()),
                ("big", lambda s: s + 2.0), ("neg", lambda s: s - 2.0)],
    "prompt": [("bytes", b"\x01\x02"), ("empty", ""), ("blank", " \t\n"), ("invisible", "\u200b\u200c"),
               ("control", "hi\x00"), ("int", 42)],
    "ids": [("bytes", b"\x01\x02"), ("neg", [0, -1]), ("float", [0.0, 1.0]), ("str", "ab")],
    "tokenizer": [("name", "word"), ("int", 3)],
    "threshold": [("nan", math.nan), ("big", 1.5), ("str", "0.5")],
    "model": [("str", "model"), ("fn", len)],
    # objects certkit builds (a pattern, a property, a threat model...): a wrong type must be named
    "nap": [("str", "nap"), ("none", None), ("int", 0)],
    "naps": [("str", "naps"), ("none", None), ("list", [0, 1])],
    "trigger": [("str", "trigger"), ("none", None), ("tensor", torch.zeros(4))],
    "prop": [("str", "prop.vnnlib"), ("none", None)],
    "threat": [("str", "linf"), ("none", None), ("float", 0.1)],
    "smooth": [("str", "smooth"), ("none", None), ("model", torch.nn.Linear(4, 3))],
    "tree": [("str", "x = 1"), ("none", None)],
    "prompts_data": [("str", "prompts"), ("none", None), ("list", ["a", "b"])],
    "callable": [("str", "generate"), ("none", None), ("int", 3)],
    "choice": [("unknown", "no-such-choice"), ("none", None), ("int", 3)],
    "path": [("missing", "/nonexistent/certkit-contract"), ("int", 3), ("none", None), ("bytes", b"/tmp")],
    "parts": [("neg", (0.5, -0.1, 0.6)), ("sum", (0.5, 0.2)), ("nan", (math.nan, 0.5, 0.5)), ("str", "0.6"),
              ("empty", ())],
    # a safety filter: a class (not an instance), a callable that takes no texts (a factory not called), a name
    "filter": [("class", lambda f: type(f)), ("factory", lambda f: (lambda: [0.0])), ("str", "tfidf"), ("none", None)],
    # erase-and-check modes (a sequence of names)
    "modes": [("str", "suffix"), ("unknown", ["no-such-mode"]), ("empty", ()), ("none", None), ("int", 3)],
    # single word tokens of the word tokenizer
    "words": [("str", "please"), ("phrase", ["two words"]), ("contraction", ["don't"]), ("punct", ["e.g."]),
              ("blank", ["  "]), ("int", [3]), ("none", None)],
    "texts": [("str", "one prompt"), ("bytes", [b"bake bread"]), ("none", None), ("int", [3])],
    "size2": [("one", (4,)), ("small", (2, 4)), ("float", (4.0, 4)), ("str", "4x4"), ("bool", (True, 4))],
    "records": [("str", "records"), ("none", None), ("floats", [0.5, 0.25])],
    "radii": [("nan", [0.0, math.nan]), ("neg", [-0.5]), ("str", "0.5"), ("bool", [True])],
    "source": [("bytes", b"x = 1"), ("int", 3), ("none", None)],
    "range": [("reversed", (1.0, -1.0)), ("nan", (math.nan, 1.0)), ("inf", (-math.inf, 1.0)), ("str", "0,1"),
              ("one", (0.0,))],
}


def _bad_values(kind: str, valid: Any, skip: tuple[str, ...]) -> list[tuple[str, Any]]:
    out = []
    for label, bad in BAD[kind]:
        if label in skip:
            continue
        if isinstance(bad, types.FunctionType):  # a transform of the valid value
            if valid is None:
                continue
            bad = bad(valid)
        out.append((label, bad))
    return out


def _snapshot(value: Any, depth: int = 0) -> Any:
    if isinstance(value, torch.nn.Module):
        return ("module", {k: v.detach().clone() for k, v in value.state_dict().items()},
                [m.training for m in value.modules()])
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.Generator) or (callable(value) and not hasattr(value, "__dict__")):
        return ("id", id(value))
    if inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value) or inspect.isclass(value):
        return ("id", id(value))
    if isinstance(value, list | tuple):
        return type(value)(_snapshot(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: _snapshot(v, depth + 1) for k, v in value.items()}
    if hasattr(value, "__dict__") and depth < 4:  # an object: its attributes (a filter, a Smooth)
        return ("obj", type(value), {k: _snapshot(v, depth + 1) for k, v in vars(value).items()
                                     if not k.startswith("_")})
    try:
        return copy.deepcopy(value)
    except Exception:
        return ("id", id(value))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and bool(
            torch.equal(a.nan_to_num(), b.nan_to_num()))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, tuple) and a and a[0] == "module":
        return (isinstance(b, tuple) and a[1].keys() == b[1].keys()
                and all(torch.equal(a[1][k], b[1][k]) for k in a[1]) and a[2] == b[2])
    if isinstance(a, tuple) and a and a[0] in ("id", "obj"):
        return isinstance(b, tuple) and len(a) == len(b) and a[0] == b[0] and a[1] == b[1] and (
            a[0] == "id" or _same(a[2], b[2]))
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return True


def names_argument(message: str, arg: str) -> bool:
    """The message names ``arg`` (as a word, e.g. in backticks)."""
    return re.search(rf"(?<![\w.]){re.escape(arg)}(?!\w)", message) is not None


def battery_failures(case: Case) -> list[str]:
    """Every way ``case`` breaks the input contract, as readable strings (empty: it keeps the contract)."""
    failures: list[str] = []
    fn, kwargs = case.factory()
    before = {k: _snapshot(v) for k, v in kwargs.items()}
    rng = torch.get_rng_state()
    try:
        fn(**kwargs)
    except Exception as e:  # the valid call itself must work
        return [f"the valid call raised {type(e).__name__}: {e}"]
    if not torch.equal(rng, torch.get_rng_state()):
        failures.append("the valid call changed torch's global RNG state")
    for k, snap in before.items():
        if k in case.mutates or snap is None:
            continue
        if not _same(snap, _snapshot(kwargs[k])):
            failures.append(f"the valid call mutated argument `{k}`")
    for arg, kind in case.kinds.items():
        _, valid_kwargs = case.factory()
        for label, bad in _bad_values(kind, valid_kwargs.get(arg), case.skip.get(arg, ())):
            fn, kw = case.factory()
            kw[arg] = bad
            try:
                fn(**kw)
            except (ValueError, TypeError) as e:
                if not names_argument(str(e), arg):
                    failures.append(f"{arg}={label} ({kind}): {type(e).__name__} does not name `{arg}`: {e}")
            except Exception as e:
                failures.append(f"{arg}={label} ({kind}): {type(e).__name__} instead of ValueError/TypeError: {e}")
            else:
                failures.append(f"{arg}={label} ({kind}): accepted silently")
    return failures
