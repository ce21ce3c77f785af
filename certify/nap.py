"""Neural activation patterns (NAPs) as specifications (Geng et al., "Towards Reliable Neural Specifications", ICML 2023).

A NAP fixes the phase of some ReLU neurons: ``P = (A, D)`` with neurons in ``A`` active
(pre-activation ``z > 0``) and neurons in ``D`` inactive (``z <= 0``); every other neuron is free.
An input *follows* ``P`` when its activations agree on ``A`` and ``D``.

Mining (the paper's statistical rule, its delta-relaxed dominant NAP): for class ``c`` with training
examples ``S_c``, neuron ``n`` is in ``A_c`` if it is active on at least ``delta |S_c|`` of them and in
``D_c`` if it is inactive on at least ``delta |S_c|`` (``delta`` in (0.5, 1], so the two never overlap;
``delta = 1`` gives the pattern shared by all examples). Deterministic: counts over the given data,
no randomness.

Specifications verified here (by the complete verifier :func:`certify.verify_complete`'s search, with
the pattern as the branch-and-bound split constraints ``s_k z_k >= 0`` from the start):

* :func:`verify_nap`: no input of the region (an input box: the whole input domain, or an L-inf ball
  around a reference input) that follows ``P_c`` is classified otherwise: ``f_c(x) > f_j(x)`` for every
  ``j != c``. Verified over the *closure* of the pattern (``z >= 0`` for active neurons), which is
  slightly stronger than the strict pattern; a counterexample follows the closure.
* :func:`naps_overlap`: no input of the region follows two NAPs at once. Two patterns with a neuron
  active in one and inactive in the other are disjoint outright; otherwise the search looks for an
  input following both (closures), and reports one or proves there is none.

Exact on small networks (checked against a mixed-integer program); on larger ones the answer may be
``"unknown"`` at the timeout. Deviation from the authors' code: they verify with Marabou; here the same
properties go through certify's alpha/beta-CROWN branch-and-bound, whose verdicts are sound up to the
floating-point caveats of :mod:`certify.bab`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from certify._grad_mode import outside_inference_mode
from certkit._validation import (
    check_array,
    check_bool,
    check_generator,
    check_inputs,
    check_instance,
    check_positive,
    check_positive_int,
    check_real,
)

__all__ = ["NAP", "NAPSet", "NAPVerification", "follows_nap", "mine_naps", "naps_overlap", "relu_preactivations",
           "verify_nap"]


@dataclass(frozen=True)
class NAP:
    """One class's neural activation pattern.

    ``label``: the class; ``phases``: one int8 tensor per ReLU layer (the layer's shape, no batch
    dimension) with +1 (active), -1 (inactive) or 0 (free); ``layers``: the ReLU layers' node names;
    ``delta``: the mining threshold; ``support``: the number of examples it was mined from.
    """

    label: int
    phases: tuple[Tensor, ...]
    layers: tuple[str, ...]
    delta: float
    support: int

    @property
    def n_active(self) -> int:
        return int(sum(int((p > 0).sum()) for p in self.phases))

    @property
    def n_inactive(self) -> int:
        return int(sum(int((p < 0).sum()) for p in self.phases))

    @property
    def n_neurons(self) -> int:
        return int(sum(p.numel() for p in self.phases))


@dataclass(frozen=True)
class NAPSet:
    """The NAPs of every class (``patterns[c]`` is class c's; a class without examples has none: None)."""

    patterns: tuple[NAP | None, ...]
    delta: float
    layers: tuple[str, ...]


@dataclass(frozen=True)
class NAPVerification:
    """Outcome of :func:`verify_nap` / :func:`naps_overlap`.

    ``verdict``: ``"verified"`` (no input of the region follows the pattern and is classified otherwise:
    for :func:`naps_overlap`, no input follows both patterns), ``"falsified"`` (``counterexample``
    (1, ...) follows the pattern(s), lies in the region and, for :func:`verify_nap`, is not classified
    ``label``: ``margin = min_j f_label - f_j <= 0`` over the classes checked), or ``"unknown"`` (timeout).
    ``reason``: how it was decided; ``branches``: sub-domains bounded; ``time``: seconds.
    """

    verdict: str
    label: int | None
    counterexample: Tensor | None
    margin: float | None
    branches: int
    time: float
    reason: str


def _relu_nodes(g: object) -> list[tuple[int, int, str]]:
    """(ReLU node, its pre-activation node, the ReLU's name) in graph order."""
    return [(i, n.inputs[0], n.name) for i, n in enumerate(g.nodes) if n.op == "relu"]  # type: ignore[attr-defined]


def _graph(model: nn.Module, x: Tensor) -> object:
    from certify._graph import cached_graph

    return cached_graph(model, x[:1], x.dtype)


def relu_preactivations(model: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    """Pre-activations of every ReLU layer on inputs ``x`` (N, ...): one (N, *layer shape) tensor per layer,
    in graph order (the layers certify's bound engine sees; ``F.relu`` and ``nn.ReLU`` alike)."""
    from certify.api import _check_model
    from certify.bab import _node_values

    model = _check_model(model)
    g = _graph(model, x)
    with torch.no_grad():
        vals = _node_values(g, x)
    return tuple(vals[pre] for _, pre, _ in _relu_nodes(g))


def mine_naps(model: nn.Module, x: Tensor, y: Tensor, *, delta: float = 0.99, num_classes: int | None = None,
              batch_size: int = 512) -> NAPSet:
    """Mine each class's delta-relaxed NAP from examples ``x`` (N, ...) with labels ``y`` (N,).

    Neuron n is active in class c's pattern if ``z_n > 0`` on at least ``delta * |S_c|`` of class c's
    examples, inactive if ``z_n <= 0`` on at least that many (Geng et al. 2023, Section 3). Deterministic.

    Args:
        model: a ReLU network (layers as for :func:`certify.bounds`).
        x: the examples (the training data).
        y: their labels (or the model's predictions).
        delta: the fraction, in (0.5, 1].
        num_classes: the number of classes (default: the model's output size).
        batch_size: examples per forward pass.
    """
    from certify.api import _check_model

    model = _check_model(model)
    check_inputs(model, x, "x", min_ndim=2)
    if not isinstance(delta, int | float) or isinstance(delta, bool) or not 0.5 < float(delta) <= 1.0:
        raise ValueError(f"Expected argument `delta` to be a fraction in (0.5, 1], but got {delta!r}")
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError("Expected argument `x` to be a floating-point tensor of shape (N, ...)")
    if not isinstance(y, Tensor) or y.is_floating_point() or y.shape != (x.shape[0],):
        raise ValueError(f"Expected argument `y` to be integer labels of shape ({x.shape[0]},)")
    batch_size = check_positive_int(batch_size, "batch_size")
    with torch.no_grad():
        k = int(model(x[:1]).shape[1]) if num_classes is None else check_positive_int(num_classes, "num_classes")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
        raise ValueError(f"Expected argument `y` to hold labels in [0, {k - 1}]")
    g = _graph(model, x)
    nodes = _relu_nodes(g)
    if not nodes:
        raise ValueError("The model has no ReLU layer: there is no activation pattern to mine")
    active = [torch.zeros((k, *g.nodes[pre].shape), dtype=torch.long) for _, pre, _ in nodes]  # type: ignore[attr-defined]
    for i0 in range(0, x.shape[0], batch_size):
        pres = relu_preactivations(model, x[i0 : i0 + batch_size])
        onehot = torch.nn.functional.one_hot(y[i0 : i0 + batch_size], k).to(torch.long).cpu()
        for acc, z in zip(active, pres):
            acc += torch.tensordot(onehot.t(), (z > 0).to(torch.long).cpu().flatten(1), dims=1).reshape(acc.shape)
    counts = torch.bincount(y.cpu(), minlength=k)
    names = tuple(name for _, _, name in nodes)
    pats: list[NAP | None] = []
    d = float(delta)
    for c in range(k):
        n_c = int(counts[c])
        if n_c == 0:
            pats.append(None)
            continue
        need = d * n_c
        phases = tuple(torch.where(acc[c] >= need, 1, torch.where(n_c - acc[c] >= need, -1, 0)).to(torch.int8)
                       for acc in active)
        pats.append(NAP(c, phases, names, d, n_c))
    return NAPSet(tuple(pats), d, names)


def follows_nap(model: nn.Module, naps: NAPSet | NAP, x: Tensor) -> Tensor:
    """Whether each input follows each pattern: (N, C) booleans for a :class:`NAPSet` (False for a class
    without a pattern), (N,) for one :class:`NAP`. Strict: active means ``z > 0``, inactive ``z <= 0``."""
    from certify.api import _check_model

    check_inputs(_check_model(model), x, "x", min_ndim=2)
    check_instance(naps, (NAPSet, NAP), "naps", "a NAPSet or a NAP (certify.mine_naps)")
    pres = relu_preactivations(model, x)
    single = isinstance(naps, NAP)
    pats = (naps,) if single else naps.patterns  # type: ignore[union-attr]
    out = torch.zeros((x.shape[0], len(pats)), dtype=torch.bool)
    for c, pat in enumerate(pats):
        if pat is None:
            continue
        if len(pat.phases) != len(pres):
            raise ValueError(f"The pattern has {len(pat.phases)} ReLU layers but the model has {len(pres)}")
        ok = torch.ones(x.shape[0], dtype=torch.bool)
        for ph, z in zip(pat.phases, pres):
            zf, pf = z.flatten(1).cpu(), ph.flatten().to(torch.int8)
            ok &= ((zf > 0) | (pf != 1)).all(1) & ((zf <= 0) | (pf != -1)).all(1)
        out[:, c] = ok
    return out[:, 0] if single else out


def _box(x_ref: Tensor, lower: Tensor | float | None, upper: Tensor | float | None) -> tuple[Tensor, Tensor]:
    for name, v in (("lower", lower), ("upper", upper)):
        if isinstance(v, Tensor):
            check_array(v, name, tensor=True)
        elif v is not None:
            check_real(v, name)
    lo = torch.as_tensor(lower if lower is not None else 0.0, dtype=x_ref.dtype).expand_as(x_ref).clone()
    hi = torch.as_tensor(upper if upper is not None else 1.0, dtype=x_ref.dtype).expand_as(x_ref).clone()
    if bool((lo > hi).any()):
        raise ValueError("Expected arguments `lower` <= `upper`")
    return lo, hi


def _pattern_dict(g: object, pats: list[NAP]) -> dict[int, Tensor]:
    nodes = _relu_nodes(g)
    out: dict[int, Tensor] = {}
    for pat in pats:
        if len(pat.phases) != len(nodes):
            raise ValueError(f"The pattern has {len(pat.phases)} ReLU layers but the model has {len(nodes)}")
        for (_, pre, _), ph in zip(nodes, pat.phases):
            cur = out.get(pre, torch.zeros_like(ph, dtype=torch.int8))
            out[pre] = torch.where(ph != 0, ph.to(torch.int8), cur)
    return {pre: s.unsqueeze(0) for pre, s in out.items() if bool((s != 0).any())}


@outside_inference_mode
def verify_nap(model: nn.Module, nap: NAP, x_ref: Tensor, *, lower: Tensor | float | None = 0.0,
               upper: Tensor | float | None = 1.0, others: Sequence[int] | None = None,
               timeout: float = 30.0, batch_size: int = 64,
               attack_restarts: int = 5, attack_steps: int = 50, sound: bool = False,
               generator: torch.Generator | None = None) -> NAPVerification:
    """Decide "every input of the box ``lower <= x <= upper`` that follows ``nap`` is classified ``nap.label``".

    Args:
        model: a ReLU network.
        nap: the pattern (:func:`mine_naps`).
        x_ref: an input of the model's shape (1, ...) (gives the shape, dtype and device; e.g. a test image).
        lower: the input box's lower corner, a scalar or a tensor like ``x_ref`` (default 0, the domain
            [0, 1]; an L-inf ball: ``x_ref - eps`` clipped to the domain).
        upper: its upper corner (default 1; an L-inf ball: ``x_ref + eps`` clipped to the domain).
        others: the classes ``j`` that must never win (``f_label > f_j``); default all other classes (the
            prediction is ``label``). One class: the paper's "this misclassification never happens".
        timeout: seconds.
        batch_size: as for :func:`certify.verify_complete`.
        attack_restarts: as for :func:`certify.verify_complete`.
        attack_steps: as for :func:`certify.verify_complete`.
        sound: as for :func:`certify.verify_complete`.
        generator: seeds the PGD restarts.

    Returns:
        :class:`NAPVerification`: ``"verified"`` is sound as the complete verifier is (closure of the
        pattern); ``"falsified"`` carries an input of the box following the pattern's closure whose
        margin is <= 0, checked by a forward pass.
    """
    from certify.api import _check_model
    from certify.bab import _Problem, _search

    t0 = time.perf_counter()
    model = _check_model(model)
    if not isinstance(nap, NAP):
        raise TypeError(f"Expected argument `nap` to be a NAP, but got {type(nap).__name__}")
    check_inputs(model, x_ref, "x_ref", min_ndim=2)
    if x_ref.shape[0] != 1:
        raise ValueError("Expected argument `x_ref` to be one input of shape (1, ...)")
    timeout = check_positive(timeout, "timeout")
    check_positive_int(attack_restarts, "attack_restarts")
    check_positive_int(attack_steps, "attack_steps", minimum=0)
    check_bool(sound, "sound")
    check_generator(generator)
    with torch.no_grad():
        k = int(model(x_ref).shape[1])
    c = nap.label
    lo, hi = _box(x_ref, lower, upper)
    rows = [j for j in range(k) if j != c] if others is None else sorted({int(j) for j in others})
    if not rows or any(j == c or not 0 <= j < k for j in rows):
        raise ValueError(f"Expected argument `others` to be classes in [0, {k - 1}] other than {c}, but got {others!r}")
    a = torch.zeros((len(rows), k), dtype=torch.float64)
    for i, j in enumerate(rows):
        a[i, c], a[i, j] = 1.0, -1.0
    p = _Problem.box(model, lo, hi, a, torch.zeros(len(rows), dtype=torch.float64), torch.arange(len(rows)),
                     len(rows), sound)
    p.pattern = _pattern_dict(p.g, [nap])
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
    res = _search(p, t0=t0, timeout=timeout, use_input=False, batch_size=check_positive_int(batch_size, "batch_size"),
                    iterations=20, bab_iterations=10, lr_alpha=0.1, lr_beta=0.05, attack_restarts=attack_restarts,
                  attack_steps=attack_steps, progress=False, seed=seed, check_first=(lo + hi) / 2)
    how = {"none": "bounds over the region", "relu": "branch-and-bound"}.get(res.split, res.split)
    return NAPVerification(res.verdict, c, res.counterexample, res.margin, res.branches, time.perf_counter() - t0,
                           how if res.verdict != "unknown" else "timeout")


@outside_inference_mode
def naps_overlap(model: nn.Module, a: NAP, b: NAP, x_ref: Tensor, *, lower: Tensor | float | None = 0.0,
                 upper: Tensor | float | None = 1.0, timeout: float = 30.0, batch_size: int = 64,
                 generator: torch.Generator | None = None) -> NAPVerification:
    """Decide "no input of the box follows both ``a`` and ``b``": ``"verified"`` (disjoint), ``"falsified"``
    (``counterexample`` follows both closures) or ``"unknown"`` (timeout).

    Patterns with a neuron active in one and inactive in the other are disjoint outright (``reason``
    ``"conflicting neuron"``). Otherwise the search bounds the constant specification 0 under both
    patterns: a sub-domain closes only when its split constraints are contradictory, so ``"verified"``
    means no input of the box satisfies both sets of constraints."""
    from certify.api import _check_model
    from certify.bab import _Problem, _search

    t0 = time.perf_counter()
    model = _check_model(model)
    if not isinstance(a, NAP) or not isinstance(b, NAP):
        raise TypeError("Expected arguments `a` and `b` to be NAPs")
    check_inputs(model, x_ref, "x_ref", min_ndim=2)
    timeout = check_positive(timeout, "timeout")
    check_positive_int(batch_size, "batch_size")
    check_generator(generator)
    _box(x_ref, lower, upper)
    for pa, pb in zip(a.phases, b.phases):
        if bool(((pa.to(torch.int16) * pb.to(torch.int16)) < 0).any()):
            return NAPVerification("verified", None, None, None, 0, time.perf_counter() - t0, "conflicting neuron")
    with torch.no_grad():
        k = int(model(x_ref).shape[1])
    lo, hi = _box(x_ref, lower, upper)
    zero = torch.zeros((1, k), dtype=torch.float64)
    p = _Problem.box(model, lo, hi, zero, torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.long), 1,
                     False)
    p.pattern = _pattern_dict(p.g, [a, b])
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
    r = _search(p, t0=t0, timeout=timeout, use_input=False, batch_size=check_positive_int(batch_size, "batch_size"),
                iterations=0, bab_iterations=0, lr_alpha=0.1, lr_beta=0.05, attack_restarts=5, attack_steps=50,
                progress=False, seed=seed, check_first=(lo + hi) / 2)
    how = "no input satisfies both patterns" if r.verdict == "verified" else (
        "an input follows both" if r.verdict == "falsified" else "timeout")
    return NAPVerification(r.verdict, None, r.counterexample, None, r.branches, time.perf_counter() - t0, how)
