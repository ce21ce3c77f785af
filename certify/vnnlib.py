"""VNN-LIB properties (the format of the verification competition VNN-COMP), as linear constraints.

A VNN-LIB file declares inputs ``X_i`` and outputs ``Y_j`` and asserts the *violation* of a
property: the property holds iff no input in the stated region gives outputs that satisfy the
assertions. :func:`load_vnnlib` reads the subset used in VNN-COMP -- ``declare-const`` of ``Real``
variables, ``assert`` of ``<=``/``>=``/``<``/``>`` atoms combined with ``and``/``or``, linear terms
with numeric coefficients (``+``, ``-``, ``*`` by a constant) -- into a :class:`VnnlibProperty`:
a tuple of :class:`VnnlibCase`, each an input box and a disjunction of conjunctions of linear
output constraints ``A y <= b`` (the unsafe outputs for that box).

Strict inequalities are read as non-strict (the closure of the unsafe set: proving that no input
reaches it proves the strict property too; a counterexample on the boundary is reported as one).
"""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from certkit._validation import check_path

__all__ = ["OutputConstraint", "VnnlibCase", "VnnlibError", "VnnlibProperty", "load_vnnlib"]

_MAX_DISJUNCTS = 100_000


class VnnlibError(ValueError):
    """A malformed or unsupported VNN-LIB file; the message names the file and line."""


@dataclass(frozen=True)
class OutputConstraint:
    """A conjunction ``A @ y <= b`` over the outputs: ``A`` (M, K), ``b`` (M,) (float64)."""

    A: Tensor
    b: Tensor

    def satisfied(self, y: Tensor, tol: float = 0.0) -> Tensor:
        """Whether outputs ``y`` (N, K) satisfy every row (within ``tol``), shape (N,)."""
        v = y.to(torch.float64) @ self.A.t().to(y.device) - self.b.to(y.device)
        return (v <= tol).all(dim=1)


@dataclass(frozen=True)
class VnnlibCase:
    """One input box ``lower <= x <= upper`` (each (num_inputs,)) and the unsafe outputs for it: the
    disjunction (any) of the conjunctions in ``unsafe``."""

    lower: Tensor
    upper: Tensor
    unsafe: tuple[OutputConstraint, ...]


@dataclass(frozen=True)
class VnnlibProperty:
    """A parsed VNN-LIB file: the property is violated iff, for some case, some input in its box
    has outputs in one of its unsafe conjunctions."""

    path: str
    num_inputs: int
    num_outputs: int
    cases: tuple[VnnlibCase, ...]


# -- s-expressions -----------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(;[^\n]*)|(\()|(\))|([^\s();]+))")


@dataclass
class _Sx:
    items: list[Any]
    line: int


def _parse_sexprs(text: str, path: str) -> list[_Sx]:
    stack: list[_Sx] = []
    top: list[_Sx] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise VnnlibError(f"{path}:{line}: cannot read {text[pos:pos + 20]!r}")
            break
        line += text.count("\n", pos, m.start(0) + len(m.group(0)) - len(m.group(0).lstrip()))
        tok_line = line
        pos = m.end()
        if m.group(1) is not None:
            continue
        if m.group(2) is not None:
            stack.append(_Sx([], tok_line))
        elif m.group(3) is not None:
            if not stack:
                raise VnnlibError(f"{path}:{tok_line}: unbalanced ')'")
            done = stack.pop()
            (stack[-1].items if stack else top).append(done)  # type: ignore[arg-type]
        else:
            if not stack:
                raise VnnlibError(f"{path}:{tok_line}: token {m.group(4)!r} outside parentheses")
            stack[-1].items.append((m.group(4), tok_line))
    if stack:
        raise VnnlibError(f"{path}:{stack[-1].line}: '(' opened here is never closed")
    return top


# -- formulas ------------------------------------------------------------------------------------

_VAR = re.compile(r"^([XY])_(0|[1-9]\d*)$")  # no leading zeros: X_00 would alias X_0


def _linear(t: Any, path: str, line: int) -> tuple[dict[str, float], float]:
    """A linear term as ({variable: coefficient}, constant)."""
    if isinstance(t, tuple):
        tok, ln = t
        try:
            value = float(tok)
        except ValueError:
            pass
        else:
            if not math.isfinite(value):
                raise VnnlibError(f"{path}:{ln}: expected a finite number, got {tok!r}")
            return {}, value
        if _VAR.match(tok):
            return {tok: 1.0}, 0.0
        raise VnnlibError(f"{path}:{ln}: unknown symbol {tok!r} (expected a number or X_i / Y_j)")
    if not t.items or not isinstance(t.items[0], tuple):
        raise VnnlibError(f"{path}:{t.line}: expected a term")
    op = t.items[0][0]
    args = [_linear(a, path, t.line) for a in t.items[1:]]
    if op == "+" and args:
        out: dict[str, float] = {}
        c = 0.0
        for v, k in args:
            for name, coef in v.items():
                out[name] = out.get(name, 0.0) + coef
            c += k
        return out, c
    if op == "-" and len(args) in (1, 2):
        if len(args) == 1:
            v, k = args[0]
            return {n: -x for n, x in v.items()}, -k
        (va, ka), (vb, kb) = args
        out = dict(va)
        for name, coef in vb.items():
            out[name] = out.get(name, 0.0) - coef
        return out, ka - kb
    if op == "*" and len(args) == 2:
        (va, ka), (vb, kb) = args
        if va and vb:
            raise VnnlibError(f"{path}:{t.line}: product of two variables is not linear")
        (v, k), s = ((vb, kb), ka) if not va else ((va, ka), kb)
        return {n: s * x for n, x in v.items()}, s * k
    raise VnnlibError(f"{path}:{t.line}: unsupported term operator {op!r} with {len(args)} arguments "
                      "(supported: + - * with numeric coefficients)")


# An atom is (coefficients, constant, line) meaning sum coef * var + constant <= 0.
_Atom = tuple[dict[str, float], float, int]


def _dnf_size(f: Any) -> int:
    """The most conjunctions :func:`_dnf` holds at once expanding ``f`` (its result's length, or a part's where
    larger), capped just above ``_MAX_DISJUNCTS``, counted on the formula without expanding it; a malformed node
    counts 1 (``_dnf`` reports it)."""
    if isinstance(f, tuple) or not f.items or not isinstance(f.items[0], tuple) or f.items[0][0] not in ("and", "or"):
        return 1
    sizes = [_dnf_size(a) for a in f.items[1:]]
    total = sum(sizes) if f.items[0][0] == "or" else math.prod(sizes)
    return min(max([total, *sizes]), _MAX_DISJUNCTS + 1)


def _dnf(f: Any, path: str) -> list[list[_Atom]]:
    """The formula as a disjunction (list) of conjunctions (lists of atoms)."""
    if isinstance(f, tuple) or not f.items or not isinstance(f.items[0], tuple):
        raise VnnlibError(f"{path}:{f[1] if isinstance(f, tuple) else f.line}: expected a formula")
    op = f.items[0][0]
    if op in ("and", "or"):
        parts = [_dnf(a, path) for a in f.items[1:]]
        if op == "or":
            return [c for p in parts for c in p]
        size = 1
        for p in parts:
            size *= len(p)
        if size > _MAX_DISJUNCTS:
            raise VnnlibError(f"{path}:{f.line}: the formula expands to more than {_MAX_DISJUNCTS} cases")
        return [[a for c in combo for a in c] for combo in itertools.product(*parts)]
    if op in ("<=", ">=", "<", ">"):
        if len(f.items) != 3:
            raise VnnlibError(f"{path}:{f.line}: {op!r} takes two arguments, got {len(f.items) - 1}")
        (va, ka), (vb, kb) = _linear(f.items[1], path, f.line), _linear(f.items[2], path, f.line)
        if op in (">=", ">"):
            (va, ka), (vb, kb) = (vb, kb), (va, ka)
        coefs = dict(va)
        for name, c in vb.items():
            coefs[name] = coefs.get(name, 0.0) - c
        return [[({n: c for n, c in coefs.items() if c != 0.0}, ka - kb, f.line)]]
    raise VnnlibError(f"{path}:{f.line}: unsupported operator {op!r} (supported: and, or, <=, >=, <, >)")


def load_vnnlib(path: str | os.PathLike[str], num_inputs: int, num_outputs: int) -> VnnlibProperty:
    """Parse the VNN-LIB file at ``path`` for a model with ``num_inputs`` inputs and ``num_outputs`` outputs.

    Returns a :class:`VnnlibProperty`: one :class:`VnnlibCase` per distinct input box, each with the
    disjunction of its unsafe output conjunctions. Input constraints must be bounds on single
    inputs (``(<= X_3 0.5)``); output constraints may be any linear inequalities over the outputs.

    Raises:
        FileNotFoundError: no file at ``path``.
        VnnlibError: (a ValueError) malformed or unsupported content, or variables that do not match
            ``num_inputs``/``num_outputs``; the message names the file and line.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"Expected argument `path` to be a path to a .vnnlib file, but got {type(path).__name__}")
    for name, v in (("num_inputs", num_inputs), ("num_outputs", num_outputs)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"Expected argument `{name}` to be an integer >= 1, but got {v!r}")
    p = os.fspath(check_path(path, "path", kind="file"))  # InvalidPathError: a ValueError and a FileNotFoundError
    try:
        with open(p, encoding="utf-8-sig") as fh:  # -sig: a byte-order mark some editors write is skipped
            text = fh.read()
    except UnicodeDecodeError as e:
        raise VnnlibError(f"{p}: expected UTF-8 text, but it is not ({e.reason} at byte {e.start})") from None
    declared: dict[str, int] = {}
    conj: list[list[_Atom]] = [[]]
    for sx in _parse_sexprs(text, p):
        head = sx.items[0][0] if sx.items and isinstance(sx.items[0], tuple) else None
        if head is None:
            raise VnnlibError(f"{p}:{sx.line}: expected a command (declare-const or assert), got a bare list")
        if head == "declare-const":
            if len(sx.items) != 3 or not all(isinstance(a, tuple) for a in sx.items[1:]):
                raise VnnlibError(f"{p}:{sx.line}: expected (declare-const NAME Real)")
            name, typ = sx.items[1][0], sx.items[2][0]
            m = _VAR.match(name)
            if m is None or typ != "Real":
                raise VnnlibError(f"{p}:{sx.line}: expected a Real variable named X_i or Y_j, got {name} {typ}")
            limit = num_inputs if m.group(1) == "X" else num_outputs
            if int(m.group(2)) >= limit:
                kind = "inputs" if m.group(1) == "X" else "outputs"
                raise VnnlibError(f"{p}:{sx.line}: variable {name} does not exist: the model has {limit} {kind}")
            declared[name] = sx.line
        elif head == "assert":
            if len(sx.items) != 2:
                raise VnnlibError(f"{p}:{sx.line}: assert takes one formula")
            try:
                size = _dnf_size(sx.items[1])  # in closed form, before expanding anything
                if len(conj) * size > _MAX_DISJUNCTS:
                    raise VnnlibError(f"{p}:{sx.line}: the assertions expand to more than {_MAX_DISJUNCTS} cases")
                d = _dnf(sx.items[1], p)
            except RecursionError:
                raise VnnlibError(f"{p}:{sx.line}: the formula is nested too deeply") from None
            for atoms in d:
                for names, _, line in atoms:
                    for n in names:
                        if n not in declared:
                            raise VnnlibError(f"{p}:{line}: variable {n} is used but not declared")
            conj = [a + b for a in conj for b in d]
        else:
            raise VnnlibError(f"{p}:{sx.line}: unsupported command {head!r} (supported: declare-const, assert)")
    missing = [f"X_{i}" for i in range(num_inputs) if f"X_{i}" not in declared]
    if missing:
        raise VnnlibError(f"{p}: inputs {missing[:5]} are not declared (the model has {num_inputs} inputs)")
    cases: dict[tuple[tuple[float, ...], tuple[float, ...]], list[OutputConstraint]] = {}
    for atoms in conj:
        lo = torch.full((num_inputs,), -float("inf"), dtype=torch.float64)
        hi = torch.full((num_inputs,), float("inf"), dtype=torch.float64)
        rows: list[list[float]] = []
        rhs: list[float] = []
        feasible = True
        for coefs, const, line in atoms:
            xs = [n for n in coefs if n[0] == "X"]
            if xs and len(coefs) != 1:
                raise VnnlibError(f"{p}:{line}: input constraints must bound a single input (got a linear "
                                  f"constraint over {sorted(coefs)})")
            if xs:
                i, c = int(xs[0][2:]), coefs[xs[0]]
                bound = -const / c  # c x + const <= 0
                if c > 0:
                    hi[i] = min(float(hi[i]), bound)
                else:
                    lo[i] = max(float(lo[i]), bound)
            elif coefs:
                row = [0.0] * num_outputs
                for n, c in coefs.items():
                    row[int(n[2:])] = c
                rows.append(row)
                rhs.append(-const)
            elif const > 0:  # a constant atom that is false
                feasible = False
        if not feasible or bool((lo > hi).any()):
            continue
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            free = [f"X_{i}" for i in range(num_inputs) if not (torch.isfinite(lo[i]) and torch.isfinite(hi[i]))]
            raise VnnlibError(f"{p}: inputs {free[:5]} have no lower or upper bound in some case")
        key = (tuple(lo.tolist()), tuple(hi.tolist()))
        if not rows:  # no output constraint: every output is unsafe; the row 0 <= 0 holds everywhere
            rows, rhs = [[0.0] * num_outputs], [0.0]
        a = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), num_outputs)
        cases.setdefault(key, []).append(OutputConstraint(a, torch.tensor(rhs, dtype=torch.float64)))
    return VnnlibProperty(p, num_inputs, num_outputs, tuple(
        VnnlibCase(torch.tensor(k[0], dtype=torch.float64), torch.tensor(k[1], dtype=torch.float64), tuple(v))
        for k, v in cases.items()))
