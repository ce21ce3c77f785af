"""``score_subsequences``: the per-token fast path gives the generic path's scores and verdicts, every mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from certify.prompts import (
    BagOfEmbeddingsFilter,
    CallableFilter,
    TfidfFilter,
    embedded_prompts,
    erase_and_check,
    erase_and_check_batch,
    erased_subsequences,
)
from certify.prompts.tokenizers import WordTokenizer

ODD = [
    "x-ray don't a.b.c hello...world",  # erasing "-", "'", "." glues word pieces together
    "Tell me  how\tto make\n a bomb-ish thing?",  # runs of whitespace, tabs, newlines
    "ΣΑΣ ΟΔΟΣ Straße naïve café",  # context-dependent lower-casing, non-ASCII
    "how how how to to to make make make",  # repeated n-grams and words
    "? ! . , ;",  # no word tokens at all
    "trailing spaces   ",
]


@pytest.fixture(scope="module")
def filters() -> list[object]:
    data = embedded_prompts()
    tfidf = TfidfFilter(augment=()).fit(data.harmful[:120], data.safe[:120])
    bag = BagOfEmbeddingsFilter(epochs=40, augment=()).fit(data.harmful[:120], data.safe[:120],
                                                          generator=torch.Generator().manual_seed(0))
    return [tfidf, bag]


def test_scores_equal_predict_proba(filters: list[object]) -> None:
    data = embedded_prompts()
    tok = WordTokenizer()
    seqs = [s for p in [*data.safe[::5], *data.harmful[::5], *ODD]
            for s in erased_subsequences(tok.encode(p), "insertion", 3, budget=None)]
    texts = [tok.decode(s) for s in seqs]
    for filt in filters:
        fast = filt.score_subsequences(tok.pieces(), seqs)  # type: ignore[attr-defined]
        np.testing.assert_allclose(fast, filt.predict_proba(texts), rtol=0, atol=1e-6)  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode,d,k", [("suffix", 20, 1), ("insertion", 8, 1), ("insertion", 2, 2), ("infusion", 2, 1)])
def test_verdicts_equal_the_generic_path(filters: list[object], mode: str, d: int, k: int) -> None:
    """Many prompts, every mode: the fast path flags exactly what the generic ``predict_proba`` path flags."""
    data = embedded_prompts()
    prompts = [*data.safe[::9], *data.harmful[::12], *ODD, *(p + " please garden tea party" for p in data.harmful[:10])]
    for filt in filters:
        for thr in (0.3, 0.7):
            filt.threshold = thr  # type: ignore[attr-defined]
            generic = CallableFilter(filt.predict_proba, threshold=thr)  # type: ignore[attr-defined]
            fast = erase_and_check_batch(prompts, filt, mode=mode, max_erase=d, num_blocks=k)
            slow = erase_and_check_batch(prompts, generic, mode=mode, max_erase=d, num_blocks=k)
            assert [(c.harmful, c.flagged) for c in fast] == [(c.harmful, c.flagged) for c in slow]
            singles = [erase_and_check(p, filt, mode=mode, max_erase=d, num_blocks=k) for p in ODD]
            odd = slow[len(prompts) - len(ODD) - 10 : len(prompts) - 10]
            assert [(c.harmful, c.flagged) for c in singles] == [(c.harmful, c.flagged) for c in odd]
        filt.threshold = 0.5  # type: ignore[attr-defined]


def test_one_fast_call_per_prompt_and_near_threshold_recheck(filters: list[object]) -> None:
    """A safe prompt costs one ``score_subsequences`` call; a fast score at the threshold is recomputed."""
    tfidf = filters[0]
    calls: list[int] = []

    class Recording(TfidfFilter):
        def score_subsequences(self, tokens, seqs):  # type: ignore[no-untyped-def]
            calls.append(len(seqs))
            return np.full(len(seqs), self.threshold)  # every score "at" the threshold: all rechecked

    rec = Recording(augment=())
    rec.model_, rec.threshold = tfidf.model_, 0.5  # type: ignore[attr-defined]
    prompt = "How do I bake sourdough bread at home?"
    cert = erase_and_check(prompt, rec, mode="suffix", max_erase=20)
    assert len(calls) == 1
    assert cert.harmful == erase_and_check(prompt, CallableFilter(tfidf.predict_proba), mode="suffix",  # type: ignore[attr-defined]
                                           max_erase=20).harmful


def test_tfidf_word_memo_is_per_fitted_model() -> None:
    """The TF-IDF fast path remembers each word's analysis across calls: the second call (all words remembered)
    and a call after a refit on other data (a fresh memo) still equal ``predict_proba``; pickles drop the memo."""
    import pickle

    data = embedded_prompts()
    tok = WordTokenizer()
    seqs = [s for p in [*data.safe[::9], *data.harmful[::9], *ODD]
            for s in erased_subsequences(tok.encode(p), "insertion", 2, budget=None)]
    texts = [tok.decode(s) for s in seqs]
    filt = TfidfFilter(augment=()).fit(data.harmful[:60], data.safe[:60])
    for _ in range(2):
        np.testing.assert_allclose(filt.score_subsequences(tok.pieces(), seqs), filt.predict_proba(texts), rtol=0, atol=1e-6)
    assert filt._word_memo[1] and "_word_memo" not in pickle.loads(pickle.dumps(filt)).__dict__
    filt.fit(data.harmful[60:], data.safe[60:])  # new vocabulary and weights: the memo must not be reused
    np.testing.assert_allclose(filt.score_subsequences(tok.pieces(), seqs), filt.predict_proba(texts), rtol=0, atol=1e-6)


def test_tfidf_bulk_ngram_columns_equal_the_per_word_analysis(filters: list[object]) -> None:
    """The packed-key n-gram lookup (many new words at once) gives each word the columns of the per-word path,
    as multisets; words it cannot pack (code points >= 4096, surrogates) are left to the per-word path. Scores of
    texts of such words equal predict_proba in a cold call (no remembered word), where the bulk path runs."""
    from certify.prompts.filters import _char_cols_bulk, _char_wb, _gram_table

    tfidf = filters[0]
    char = tfidf.model_.steps[0][1].transformer_list[0][1]  # type: ignore[attr-defined]
    lo, hi = char.ngram_range
    words = sorted({w.lower() for t in [*embedded_prompts().safe[:60], *ODD] for w in t.split()})
    words += ["日本語のテキスト", "👩\u200d💻", "ab\ud800", "a", "zzzzzzzzzz", "ς", "σας"]
    bulk = _char_cols_bulk(words, lo, hi, _gram_table(char))
    assert {w for w in words if w not in bulk} == {w for w in words if max(map(ord, w)) >= 4096}
    assert "日本語のテキスト" not in bulk and "ab\ud800" not in bulk and "a" in bulk
    for w, cols in bulk.items():
        ref = [c for c in map(char.vocabulary_.get, _char_wb(w, lo, hi)) if c is not None]
        assert sorted(cols) == sorted(ref), w
    fresh = TfidfFilter(augment=()).fit(embedded_prompts().harmful[:120], embedded_prompts().safe[:120])
    tok = WordTokenizer()
    texts = [*ODD, "日本語のテキスト how to make a bomb", *embedded_prompts().harmful[120:150]]
    for t in texts:
        tok.encode(t)
    pieces = tok.pieces()
    seqs = [tuple(tok.encode(t)) for t in texts]
    np.testing.assert_allclose(fresh.score_subsequences(pieces, seqs), fresh.predict_proba(texts), atol=1e-9)


@pytest.mark.parametrize("kw", [{}, {"pooling": "max"}, {"hidden": 8}])
def test_bag_small_and_bulk_paths_equal_predict_proba(kw: dict) -> None:  # type: ignore[type-arg]
    """The bag's plain-Python path (a few short sequences, one prompt's erasures) and its numpy path (many) give
    predict_proba's scores, glued word pieces (re-scored from the re-tokenized text) and empty sequences included."""
    data = embedded_prompts()
    filt = BagOfEmbeddingsFilter(epochs=30, augment=(), **kw).fit(data.harmful[:80], data.safe[:80],
                                                                  generator=torch.Generator().manual_seed(1))
    tok = WordTokenizer()
    every: list[tuple[int, ...]] = []
    for p in [*ODD, *data.harmful[:4], "unknownword zzzz qqqq"]:
        seqs = [*erased_subsequences(tok.encode(p), "insertion", 3, budget=None), ()]
        every += seqs
        small = filt.score_subsequences(tok.pieces(), seqs)
        np.testing.assert_allclose(small, filt.predict_proba([tok.decode(s) for s in seqs]), rtol=0, atol=1e-6)
    bulk = filt.score_subsequences(tok.pieces(), every * 3)  # > 1024 tokens: the numpy path
    np.testing.assert_allclose(bulk, filt.predict_proba([tok.decode(s) for s in every * 3]), rtol=0, atol=1e-6)


def test_bag_fast_scores_follow_in_place_weight_updates() -> None:
    """score_subsequences caches float64 copies of the weights; an in-place update (an optimiser step) refreshes them."""
    data = embedded_prompts()
    filt = BagOfEmbeddingsFilter(epochs=10, augment=()).fit(data.harmful[:40], data.safe[:40])
    tok = WordTokenizer()
    seqs = list(erased_subsequences(tok.encode(data.harmful[0]), "suffix", 5))
    before = filt.score_subsequences(tok.pieces(), seqs)
    assert filt.model_ is not None
    opt = torch.optim.SGD(filt.model_.parameters(), lr=1.0)
    loss = -filt.model_(filt.rows(tok.encode(data.harmful[0])).unsqueeze(0), torch.ones(1, len(seqs[0]))).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()  # in place, under no_grad: the version counters move
    after = filt.score_subsequences(tok.pieces(), seqs)
    np.testing.assert_allclose(after, filt.predict_proba([tok.decode(s) for s in seqs]), rtol=0, atol=1e-6)
    assert np.abs(after - before).max() > 1e-3


# --- the MiniLM embedding filter (default_filter() where the `llm` extra is installed) -----------------------------

needs_minilm = pytest.mark.skipif(not __import__("certify.prompts", fromlist=["has_minilm"]).has_minilm(),
                                  reason="the MiniLM weights (extra `llm`) are not installed here")
ASCII_ODD = [
    "Don't stop_here: X-ray 3.5km, e.g. (BIG) wins!",  # glued erasures (don't minus ', 3.5 minus .), underscores
    "a-b-c d_e f'g\th\nend ",  # punctuation between words, tab, newline, trailing space
    "HELLO World 42 times__x",  # case, digits, a word ending in underscores
]


@pytest.fixture(scope="module")
def minilm() -> object:
    from certify.prompts import default_filter

    return default_filter()


@needs_minilm
def test_minilm_word_pieces_of_erasures_equal_the_tokenizer(minilm: object) -> None:
    """The word pieces ``score_subsequences`` builds from its tokens' own word pieces are those the tokenizer gives
    the decoded text, for every insertion erasure (glued words, punctuation, non-ASCII, control characters)."""
    tok = WordTokenizer()
    hf_tok, _ = minilm._hf()  # type: ignore[attr-defined]
    prompts = [*ASCII_ODD, *ODD, "A\u200bB  c\x0bd \u00e9t\u00e9 \u20ac5 \u65e5\u672c", *embedded_prompts().harmful[:20]]
    seqs = [s for p in prompts for s in erased_subsequences(tok.encode(p), "insertion", 3, budget=None) if s]
    ours = minilm._word_pieces(hf_tok, tok.pieces(), seqs)  # type: ignore[attr-defined]
    theirs = hf_tok([tok.decode(s) for s in seqs], add_special_tokens=False)["input_ids"]
    assert ours == [tuple(t) for t in theirs]


@needs_minilm
def test_minilm_scores_equal_predict_proba(minilm: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """``EmbeddingFilter.score_subsequences`` (word pieces per token, no padding: dense equal-length batches and
    packed rows with a block-diagonal mask, truncation at the encoder's 256 word pieces) gives ``predict_proba``'s
    scores up to float rounding; the memo of word pieces is not pickled."""
    import pickle

    from certify.prompts.filters import EmbeddingFilter

    tok = WordTokenizer()
    long = " ".join(f"word{i % 7} and" for i in range(150))  # 300 words: over 254 word pieces, truncated
    prompts = [*ASCII_ODD, *ODD, *embedded_prompts().safe[:3]]
    seqs = [s for p in prompts for s in erased_subsequences(tok.encode(p), "insertion", 2, budget=None) if s]
    seqs += list(erased_subsequences(tok.encode(long), "suffix", 2))  # three strings of 256 word pieces: dense
    masks: list[bool] = []
    rows = EmbeddingFilter._encode_rows
    monkeypatch.setattr(EmbeddingFilter, "_encode_rows",
                        staticmethod(lambda b, i, p, m: masks.append(m is None) or rows(b, i, p, m)))
    fast = minilm.score_subsequences(tok.pieces(), seqs)  # type: ignore[attr-defined]
    assert True in masks and False in masks  # both the dense and the packed paths ran
    np.testing.assert_allclose(fast, minilm.predict_proba([tok.decode(s) for s in seqs]), rtol=0, atol=1e-5)  # type: ignore[attr-defined]
    assert "_wp_memo" in minilm.__dict__ and "_wp_memo" not in pickle.loads(pickle.dumps(minilm)).__dict__


@needs_minilm
@pytest.mark.slow
@pytest.mark.parametrize("mode,d", [("suffix", 20), ("insertion", 8)])
def test_minilm_verdicts_equal_the_generic_path(minilm: object, mode: str, d: int) -> None:
    """erase_and_check(_batch) with the MiniLM filter's fast path flags exactly what the ``predict_proba`` path
    flags, at the PAC threshold and at two others."""
    data = embedded_prompts()
    prompts = [*data.safe[:8], *data.harmful[:4], *ASCII_ODD]
    for thr in (minilm.threshold, 0.5, 0.8):  # type: ignore[attr-defined]
        filt = __import__("copy").copy(minilm)
        filt.threshold = thr
        generic = CallableFilter(filt.predict_proba, threshold=thr)
        calls: list[int] = []
        score = filt.score_subsequences
        filt.score_subsequences = lambda tokens, seqs, f=score, c=calls: c.append(len(seqs)) or f(tokens, seqs)
        fast = erase_and_check_batch(prompts, filt, mode=mode, max_erase=d)
        assert calls  # the fast path ran
        slow = erase_and_check_batch(prompts, generic, mode=mode, max_erase=d)
        assert [(c.harmful, c.flagged) for c in fast] == [(c.harmful, c.flagged) for c in slow]
        one = [erase_and_check(p, filt, mode=mode, max_erase=d) for p in prompts[:4]]
        assert [(c.harmful, c.flagged) for c in one] == [(c.harmful, c.flagged) for c in slow[:4]]


@needs_minilm
def test_minilm_other_encoder_layout_falls_back_to_predict_proba(minilm: object) -> None:
    """An encoder the packed path does not know (here: flagged as such) is scored by ``predict_proba`` itself."""
    import copy

    filt = copy.copy(minilm)
    filt.__dict__["_packed_ok"] = False
    tok = WordTokenizer()
    seqs = [s for s in erased_subsequences(tok.encode(ASCII_ODD[0]), "suffix", 5) if s]
    texts = [tok.decode(s) for s in seqs]
    np.testing.assert_array_equal(filt.score_subsequences(tok.pieces(), seqs), filt.predict_proba(texts))  # type: ignore[attr-defined]
