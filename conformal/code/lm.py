"""A small offline language model of Python and the demo task built on it.

:class:`NGramCodeModel` is an interpolated absolute-discounting n-gram model (Ney, Essen, Kneser
1994) over Python lexical tokens (the standard :mod:`tokenize`; string literals are one symbol
``<str>``), mixed with a cache model of the tokens already seen in the same program (Tu, Su,
Devanbu, "On the localness of software", FSE 2014). It is a :data:`TokenScorer`: calling it on a
program returns per-token log-probabilities with character spans.

:func:`stdlib_ngram` trains it on a fixed list of standard-library modules of the running
interpreter (:data:`TRAIN_MODULES`) and caches the counts in ``certkit.cache.cache_dir()``.

The demo task (:func:`perturbation_tasks`): the *true* program is a held-out standard-library
function (:data:`TASK_MODULES`, disjoint from the training modules). The *generated* program is the
true one with K ~ Poisson(``mean_errors``) identifiers replaced; the positions are drawn without
replacement with probability proportional to 1 - p(true identifier | true prefix) under the model,
and each replacement is the model's most probable other identifier there. The generated program is
scored by the model like any model output; the task is covered when the true function's AST
matches the partial program outside its holes.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import keyword
import math
import os
import sysconfig
import tempfile
import textwrap
import tokenize
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from certkit._validation import check_nonnegative, check_positive_int, check_probability
from conformal.code.adapters import TokenLogProbs, score_program
from conformal.code.calibrate import CodeTask
from conformal.code.tree import python_tree

__all__ = [
    "TASK_MODULES",
    "TRAIN_MODULES",
    "Lexeme",
    "NGramCodeModel",
    "lex",
    "perturbation_tasks",
    "stdlib_functions",
    "stdlib_ngram",
]

# Standard-library modules (paths under the interpreter's stdlib directory, without ".py").
TRAIN_MODULES: tuple[str, ...] = (
    "argparse", "ast", "calendar", "collections/__init__", "configparser", "csv", "dataclasses", "difflib",
    "enum", "fractions", "functools", "gettext", "heapq", "inspect", "ipaddress", "json/decoder", "json/encoder",
    "logging/__init__", "ntpath", "optparse", "pathlib", "pickle", "posixpath", "pprint", "random", "shlex",
    "shutil", "statistics", "string", "tarfile", "textwrap", "threading", "tokenize", "typing", "urllib/parse",
    "zipfile",
)
TASK_MODULES: tuple[str, ...] = (
    "base64", "bisect", "codecs", "copy", "datetime", "glob", "gzip", "hmac", "locale", "mimetypes", "netrc",
    "numbers", "operator", "platform", "queue", "quopri", "sched", "secrets", "selectors", "smtplib", "socket",
    "subprocess", "tempfile", "timeit", "traceback", "uuid", "warnings", "weakref", "webbrowser",
)
_SKIP = {tokenize.NL, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER}
_NAMED = {tokenize.NEWLINE: "<nl>", tokenize.INDENT: "<ind>", tokenize.DEDENT: "<ded>", tokenize.STRING: "<str>"}
_BOS, _UNK = "<s>", "<unk>"


@dataclass(frozen=True)
class Lexeme:
    """A lexical token: its model symbol, its text, its character span [start, end), and whether it is an identifier."""

    symbol: str
    text: str
    start: int
    end: int
    identifier: bool


def lex(source: str) -> list[Lexeme]:
    """Python lexical tokens of ``source`` with character spans (comments and blank lines dropped)."""
    line_start = [0]
    for line in source.splitlines(keepends=True):
        line_start.append(line_start[-1] + len(line))
    out: list[Lexeme] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _SKIP:
            continue
        a = line_start[tok.start[0] - 1] + tok.start[1] if tok.start[0] - 1 < len(line_start) else len(source)
        b = line_start[tok.end[0] - 1] + tok.end[1] if tok.end[0] - 1 < len(line_start) else len(source)
        ident = tok.type == tokenize.NAME and not keyword.iskeyword(tok.string)
        out.append(Lexeme(_NAMED.get(tok.type, tok.string), tok.string, min(a, len(source)), min(b, len(source)), ident))
    return out


def _stdlib_file(module: str) -> Path | None:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in (root / f"{module}.py", root / module / "__init__.py"):
        if path.is_file():
            return path
    return None


def stdlib_functions(modules: Sequence[str], min_nodes: int = 20, max_nodes: int = 100) -> list[str]:
    """Source of every function and method in ``modules`` with min_nodes..max_nodes AST nodes, dedented.

    Modules missing from this interpreter are skipped; order is (module, line), deterministic.
    """
    out: list[str] = []
    for module in modules:
        path = _stdlib_file(module)
        if path is None:
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.decorator_list:
                if node.end_lineno is None or node.end_lineno - node.lineno > 3 * max_nodes:
                    continue
                # whole lines (a def starts its line), dedented; the last line is cut at the end column
                seg_lines = lines[node.lineno - 1:node.end_lineno]
                seg_lines[-1] = seg_lines[-1][:node.end_col_offset] if node.end_col_offset is not None else seg_lines[-1]
                seg = textwrap.dedent("".join(seg_lines)).rstrip() + "\n"
                size = sum(1 for _ in ast.walk(node))
                if min_nodes <= size <= max_nodes:
                    out.append(seg)
    return out


class NGramCodeModel:
    """Interpolated absolute-discounting n-gram model of Python tokens with a cache component.

    p(w | prefix) = (1 - lam) p_ngram(w | last order-1 symbols) + lam * count(w in prefix) / len(prefix).
    Out-of-vocabulary symbols get the n-gram probability of ``<unk>`` (not spread over the unknown
    names, so it is not a normalised distribution over strings; it is a score).

    Args:
        order: n-gram order, >= 1.
        discount: absolute discount in (0, 1).
        cache_weight: lam in [0, 1).
        min_count: symbols seen fewer times in training map to ``<unk>``.
    """

    def __init__(self, *, order: int = 3, discount: float = 0.75, cache_weight: float = 0.2, min_count: int = 2) -> None:
        self.order = check_positive_int(order, "order")
        self.discount = check_probability(discount, "discount")
        self.cache_weight = check_nonnegative(cache_weight, "cache_weight")
        if self.cache_weight >= 1:
            raise ValueError(f"Expected argument `cache_weight` to be in [0, 1), but got {cache_weight!r}")
        self.min_count = check_positive_int(min_count, "min_count")
        self.counts_: list[dict[tuple[str, ...], Counter[str]]] | None = None
        self.vocab_: set[str] | None = None

    def fit(self, sources: Sequence[str]) -> NGramCodeModel:
        """Count n-grams over the token streams of ``sources`` (each a whole module or function)."""
        streams = [[t.symbol for t in lex(s)] for s in sources]
        freq = Counter(w for s in streams for w in s)
        self.vocab_ = {w for w, c in freq.items() if c >= self.min_count} | {_UNK}
        counts: list[dict[tuple[str, ...], Counter[str]]] = [{} for _ in range(self.order)]
        for s in streams:
            seq = [_BOS] * (self.order - 1) + [w if w in self.vocab_ else _UNK for w in s]
            for i in range(self.order - 1, len(seq)):
                for k in range(self.order):
                    ctx = tuple(seq[i - k:i])
                    counts[k].setdefault(ctx, Counter())[seq[i]] += 1
        self.counts_ = counts
        self._totals = [{ctx: sum(c.values()) for ctx, c in level.items()} for level in counts]
        return self

    def _fitted(self) -> list[dict[tuple[str, ...], Counter[str]]]:
        if self.counts_ is None:
            from certkit.errors import NotCalibratedError

            raise NotCalibratedError("This NGramCodeModel is not fitted yet: call `fit(...)` first")
        return self.counts_

    def _p_ngram(self, w: str, ctx: tuple[str, ...]) -> float:
        counts = self._fitted()
        uni = counts[0][()]
        p = (uni.get(w, 0) + 1.0) / (self._totals[0][()] + len(uni))  # add-one unigram over the vocabulary
        for k in range(1, len(ctx) + 1):
            c = ctx[len(ctx) - k:]
            table = counts[k].get(c)
            if table is None:
                break
            tot = self._totals[k][c]
            p = max(table.get(w, 0) - self.discount, 0.0) / tot + self.discount * len(table) / tot * p
        return p

    def _p(self, w: str, ctx: tuple[str, ...], cache: Counter[str], n_prefix: int) -> float:
        assert self.vocab_ is not None
        p = self._p_ngram(w if w in self.vocab_ else _UNK, ctx)
        if n_prefix and self.cache_weight:
            p = (1 - self.cache_weight) * p + self.cache_weight * cache.get(w, 0) / n_prefix
        return p

    def token_logprobs(self, symbols: Sequence[str]) -> np.ndarray:
        """(T,) log p(symbol_t | symbols_<t), the program read from its start."""
        self._fitted()
        seq = [_BOS] * (self.order - 1)
        cache: Counter[str] = Counter()
        out = np.empty(len(symbols))
        for t, w in enumerate(symbols):
            ctx = tuple(seq[len(seq) - self.order + 1:]) if self.order > 1 else ()
            out[t] = math.log(self._p(w, ctx, cache, t))
            seq.append(w)
            cache[w] += 1
        return out

    def __call__(self, source: str) -> TokenLogProbs:
        """Token scorer interface: log-probabilities and character spans of the tokens of ``source``."""
        toks = lex(source)
        return TokenLogProbs(self.token_logprobs([t.symbol for t in toks]),
                             np.array([[t.start, t.end] for t in toks], dtype=np.int64).reshape(-1, 2))

    def identifier_predictions(self, symbols: Sequence[str], positions: Sequence[int]) -> list[tuple[float, str | None]]:
        """At each position t: (p(symbols[t] | symbols_<t), the most probable other identifier or None).

        Candidates: identifiers that follow the longest seen context in training, identifiers earlier in
        the program, and the 50 most frequent identifiers (at most 100 per context, by count).
        """
        counts = self._fitted()
        frequent = [w for w, _ in counts[0][()].most_common() if w.isidentifier() and not keyword.iskeyword(w)][:50]
        seq = [_BOS] * (self.order - 1) + list(symbols)
        out: list[tuple[float, str | None]] = []
        for t in positions:
            ctx = tuple(seq[t:t + self.order - 1])
            cache = Counter(symbols[:t])
            cands = set(frequent) | {w for w in cache if w.isidentifier() and not keyword.iskeyword(w)}
            for k in range(len(ctx), 0, -1):
                table = counts[k].get(ctx[len(ctx) - k:])
                if table:
                    cands |= {w for w, _ in table.most_common(300) if w.isidentifier() and not keyword.iskeyword(w)}
                    break
            cands.discard(symbols[t])
            best = max(sorted(cands), key=lambda w: self._p(w, ctx, cache, t), default=None)
            out.append((self._p(symbols[t], ctx, cache, t), best))
        return out

    def to_json(self) -> dict:  # type: ignore[type-arg]
        """The fitted counts as plain JSON data."""
        counts = self._fitted()
        return {
            "order": self.order, "discount": self.discount, "cache_weight": self.cache_weight,
            "min_count": self.min_count, "vocab": sorted(self.vocab_ or ()),
            "counts": [[["\x1f".join(ctx), dict(c)] for ctx, c in level.items()] for level in counts],
        }

    @classmethod
    def from_json(cls, data: dict) -> NGramCodeModel:  # type: ignore[type-arg]
        """Inverse of :meth:`to_json`."""
        model = cls(order=data["order"], discount=data["discount"], cache_weight=data["cache_weight"],
                    min_count=data["min_count"])
        model.vocab_ = set(data["vocab"])
        model.counts_ = [
            {(tuple(ctx.split("\x1f")) if ctx else ()): Counter(c) for ctx, c in level} for level in data["counts"]
        ]
        model._totals = [{ctx: sum(c.values()) for ctx, c in level.items()} for level in model.counts_]
        return model


def stdlib_ngram(cache: bool = True) -> NGramCodeModel:
    """The order-3 model trained on :data:`TRAIN_MODULES`, cached as ``code_ngram-v2-py3.X.json.gz``."""
    from certkit.cache import cache_dir

    path = cache_dir() / f"code_ngram-v2-py{sysconfig.get_python_version()}.json.gz"
    if cache and path.exists():
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return NGramCodeModel.from_json(json.load(f))
        except (OSError, ValueError, KeyError, EOFError):
            pass  # corrupt file: retrain
    sources = [p.read_text(encoding="utf-8") for p in map(_stdlib_file, TRAIN_MODULES) if p is not None]
    model = NGramCodeModel().fit(sources)
    if cache:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as f:
            json.dump(model.to_json(), f)
        os.replace(tmp, path)
    return model


def perturbation_tasks(model: NGramCodeModel, functions: Sequence[str], rng: np.random.Generator,
                       mean_errors: float = 1.0, clip: float = 10.0) -> list[CodeTask]:
    """Demo tasks: each true function against a generated variant with model-chosen identifier errors.

    See the module docstring. Variants that do not parse are dropped (the returned list can be shorter).
    """
    mean_errors = check_nonnegative(mean_errors, "mean_errors")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"Expected argument `rng` to be a numpy.random.Generator, but got {type(rng).__name__}")
    tasks: list[CodeTask] = []
    for src in functions:
        toks = lex(src)
        ids = [i for i, t in enumerate(toks) if t.identifier]
        k = min(int(rng.poisson(mean_errors)), len(ids))
        generated = src
        if k:
            symbols = [t.symbol for t in toks]
            p_true = np.exp(model.token_logprobs(symbols)[ids])
            weight = 1.0 - p_true + 1e-12
            pick = rng.choice(len(ids), size=k, replace=False, p=weight / weight.sum()).tolist()
            alts = model.identifier_predictions(symbols, [ids[j] for j in pick])
            for j, (_, alt) in sorted(zip(pick, alts), reverse=True):  # right to left keeps earlier spans valid
                if alt is not None:
                    t = toks[ids[j]]
                    generated = generated[:t.start] + alt + generated[t.end:]
        try:
            truth = python_tree(src)
            scored = score_program(generated, model, clip=clip)
        except ValueError:
            continue
        tasks.append(CodeTask(tree=scored.tree, nll=scored.nll, truth=truth))
    return tasks
