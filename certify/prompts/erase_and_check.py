"""Erase-and-check: certified filtering of adversarial prompts (Kumar et al., arXiv 2309.02705).

Erase-and-check erases tokens of the prompt and labels it harmful if the safety filter
flags the prompt or any erased version of it. Three threat models fix which erasures
are checked; with ``n`` prompt tokens and budget ``d``:

* ``suffix``: erase the last ``i`` tokens, ``i = 0..min(d, n)``: ``min(d, n) + 1`` checks.
* ``insertion``: erase up to ``k`` contiguous blocks of at most ``d`` tokens each (blocks
  may touch, as inserted sequences may): ``1 + sum_{l<=d} (n - l + 1)`` checks for k = 1.
* ``infusion``: erase any set of at most ``d`` tokens: ``sum_{i<=d} C(n, i)`` checks.

**Guarantee** (deterministic, no failure probability). If the filter flags a prompt P,
then erase-and-check flags P with any adversarial sequence of at most ``d`` tokens
appended (resp. inserted in up to ``k`` places, resp. infused anywhere), because P
itself is one of the checked subsequences. Certified accuracy on harmful prompts is
therefore the filter's accuracy on the clean harmful prompts, for every attack within
the threat model. Equivalently, a *safe* verdict certifies that the prompt is not any
filter-flagged prompt plus at most ``d`` adversarial tokens. Nothing is certified about
safe prompts being labelled safe: that is measured (erased fragments may look harmful).

The guarantee is over token sequences of the given tokenizer. Counting is closed form
(or an O(n k^2 d) recursion for insertion with k > 1), the count is checked against a
budget before anything is evaluated, erased sequences are deduplicated as id tuples, the
clean prompt and its erasures go to the filter together in full batches (pooled across
prompts in the batch API; one call for a prompt that fits a batch), and checking stops at
the first flagged batch.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from certify.prompts.protocol import as_filter
from certify.prompts.tokenizers import Tokenizer, WordTokenizer, check_prompt, resolve_tokenizer
from certkit._validation import check_budget, check_positive_int, check_token_ids, has_visible
from certkit.errors import BudgetExceededError

__all__ = [
    "MODES",
    "BudgetExceededError",
    "EmpiricalCheck",
    "PromptCertificate",
    "erase_and_check",
    "erase_and_check_batch",
    "erased_subsequences",
    "erased_texts",
    "num_subsequences",
]

MODES = ("suffix", "insertion", "infusion")


@dataclass(frozen=True)
class PromptCertificate:
    """The verdict of erase-and-check on one prompt.

    Attributes:
        prompt: the checked prompt (decoded text).
        harmful: True if the filter flagged the prompt or an erased subsequence of it.
        mode: the threat model, ``"suffix"``, ``"insertion"`` or ``"infusion"``.
        max_erase: the budget ``d`` (tokens per block in insertion mode).
        num_blocks: ``k``, the number of inserted blocks (insertion mode; 1 otherwise).
        num_tokens: ``n``, the number of erasable tokens of the prompt.
        num_subsequences: the closed-form number of erasure patterns (before dedup).
        checked: the number of distinct subsequences the filter scored (early exit
            stops at the first flagged batch, so harmful prompts may score fewer).
        flagged: the first flagged subsequence (text), or None when the verdict is safe.
        statement: what this verdict certifies, in words.
    """

    prompt: str
    harmful: bool
    mode: str
    max_erase: int
    num_blocks: int
    num_tokens: int
    num_subsequences: int
    checked: int
    flagged: str | None
    statement: str


@dataclass(frozen=True)
class EmpiricalCheck:
    """The verdict of an empirical (uncertified) erase-and-check variant on one prompt.

    Attributes:
        prompt: the checked prompt.
        harmful: True if the filter flagged the prompt or a subsequence the method tried.
        method: ``"randec"``, ``"greedyec"`` or ``"gradec"``.
        checked: the number of filter evaluations (strings scored).
        flagged: the first flagged subsequence, or None.
        statement: always says that no guarantee holds beyond the clean prompt.
    """

    prompt: str
    harmful: bool
    method: str
    checked: int
    flagged: str | None
    statement: str


def _check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(f"Expected argument `mode` to be one of {MODES}, but got {mode!r}")
    return str(mode)


def _check_erase_args(mode: Any, max_erase: Any, num_blocks: Any) -> tuple[str, int, int]:
    mode = _check_mode(mode)
    d = check_positive_int(max_erase, "max_erase", minimum=0)
    k = check_positive_int(num_blocks, "num_blocks", minimum=1)
    return mode, d, k


def _insertion_count(n: int, d: int, k: int) -> int:
    """Number of erased index sets that are a union of at most k blocks of <= d tokens.

    A set is counted once by its maximal runs r_1, r_2, ... (separated by >= 1 kept
    token); it needs sum_j ceil(r_j / d) blocks. f(p, b) counts the sets of positions
    >= p using at most b blocks: f(p, b) = 1 + sum_{s >= p} sum_r f(s + r + 1, b - ceil(r/d)).
    Computed right to left with a running sum over s: O(n k^2 d).
    """
    if d == 0 or n == 0:
        return 1
    if k == 1:  # closed form: the clean prompt plus every block of length l <= d: 1 + sum_{l<=d} (n - l + 1)
        d = min(d, n)
        return 1 + d * (n + 1) - d * (d + 1) // 2
    f = [[1] * (k + 1) for _ in range(n + 2)]  # f[p][b]; positions >= n: only the empty set
    g = [[0] * (k + 1) for _ in range(n + 2)]  # g[p][b] = sum over runs starting at s >= p
    for p in range(n - 1, -1, -1):
        for b in range(k + 1):
            here = 0
            for r in range(1, min(b * d, n - p) + 1):
                here += f[min(p + r + 1, n)][b - (r + d - 1) // d]
            g[p][b] = g[p + 1][b] + here
            f[p][b] = 1 + g[p][b]
    return f[0][k]


# The most elementary steps (big-integer word operations, dynamic-programming cells) num_subsequences
# spends on an exact count; a count that would cost more is refused (BudgetExceededError), never hung on.
_EXACT_WORK = 10**8


def num_subsequences(n: int, mode: str = "suffix", max_erase: int = 20, num_blocks: int = 1, *,
                     budget: int | None = None) -> int:
    """Closed-form number of erasure patterns checked for ``n`` tokens (clean prompt included).

    suffix: ``min(d, n) + 1``; infusion: ``sum_{i=0..min(d, n)} C(n, i)`` (``2^n`` when d >= n); insertion:
    the number of index sets that are a union of at most ``k`` blocks of at most ``d``
    tokens (``1 + sum_{l=1..min(d,n)} (n - l + 1)`` for k = 1, an O(n k^2 d) recursion for k > 1).
    Distinct patterns can still give equal id sequences (repeated tokens), so the deduplicated count
    is <= this.

    ``budget``: raise :class:`certkit.errors.BudgetExceededError` when the count exceeds it, decided by
    a count capped just above the budget (so it costs O(budget) at most). Without a budget, a count
    whose exact computation would take more than about 1e8 elementary steps (huge ``n`` with a huge
    ``d``, or ``k > 1`` on long prompts) is refused with the same error rather than computed for hours.
    """
    mode, d, k = _check_erase_args(mode, max_erase, num_blocks)
    n = check_positive_int(n, "n", minimum=0)
    what = f"num_subsequences({mode} mode, n={n}, d={d}, k={k})"
    work = _exact_work(n, mode, d, k)
    if budget is not None:
        budget = check_positive_int(budget, "budget", minimum=0)
        if mode == "insertion" and work > _EXACT_WORK:  # lower bounds only: one block, and k single tokens
            m = min(d, n)
            count = max(1 + m * (n + 1) - m * (m + 1) // 2, _count_capped(n, "infusion", min(k, n), 1, budget))
        else:  # O(budget) at most: stopped as soon as the count is known to exceed the budget
            count = _count_capped(n, mode, d, k, budget)
        check_budget(count, budget, what, at_least=True)
        if mode != "insertion" or work <= _EXACT_WORK:
            return count
    if mode == "infusion" and d >= n and n <= 64 * _EXACT_WORK:
        return 1 << n  # closed form: every subset, sum_{i<=n} C(n, i) = 2^n
    if work > _EXACT_WORK:
        raise BudgetExceededError(
            f"{what}: the exact count would take about {work:.2g} elementary steps (limit {_EXACT_WORK:.0e}); "
            "pass `budget=` to compare the count with a budget instead"
        )
    return _count_capped(n, mode, d, k, math.inf)


def _exact_work(n: int, mode: str, d: int, k: int) -> float:
    """Rough cost, in elementary steps, of the exact count (used to refuse counts that would take hours)."""
    d = min(d, n)
    if mode == "suffix" or d == 0 or n == 0:
        return 1.0
    if mode == "infusion":  # d big-integer steps on numbers of up to ~min(n, d log2 n) bits
        return float(d) * (min(n, d * max(1, n.bit_length())) / 64 + 1)
    k = min(k, n)
    # the recursion visits ~n k min(k d, n) / 2 cells, each a Python-level step worth ~20 word operations
    return 1.0 if k == 1 else 10.0 * n * k * min(k * d, n)


def _count_capped(n: int, mode: str, d: int, k: int, cap: float) -> int:
    """:func:`num_subsequences`, except that it returns a value > ``cap`` as soon as the count is known
    to exceed ``cap``: cost O(cap) at most, so a budget check never waits on an unbounded count."""
    d = min(d, n)
    if mode == "suffix":
        return d + 1
    if mode == "infusion":  # sum_i C(n, i) incrementally; stopped past the cap when n is large
        total, c = 0, 1
        for i in range(d + 1):
            total += c
            if total > cap and n > 4096:
                return total
            c = c * (n - i) // (i + 1)
        return total
    if d == 0 or n == 0:
        return 1
    k = min(k, n)  # more blocks than tokens erase nothing new
    one_block = 1 + d * (n + 1) - d * (d + 1) // 2  # 1 + sum_{l<=d} (n - l + 1): every count is >= this
    if one_block > cap:
        return one_block
    # any set of at most k single tokens is a union of at most k blocks: count >= sum_{i<=k} C(n, i)
    singles = _count_capped(n, "infusion", k, 1, cap)
    if singles > cap:
        return singles
    return _insertion_count(n, d, k)  # O(n^2 k) here, with n d <= cap and C(n, k) <= cap


def _insertion_runs(n: int, d: int, pos: int, budget: int) -> Iterator[tuple[tuple[int, int], ...]]:
    """Each erased set (as maximal runs (start, length)) of positions >= pos, exactly once."""
    yield ()
    if budget == 0 or d == 0:
        return
    for s in range(pos, n):
        for r in range(1, min(budget * d, n - s) + 1):
            for rest in _insertion_runs(n, d, s + r + 1, budget - (r + d - 1) // d):
                yield ((s, r), *rest)


def _patterns(ids: tuple[int, ...], mode: str, d: int, k: int) -> Iterator[tuple[int, ...]]:
    """Every erased id sequence, clean prompt first, before deduplication."""
    n = len(ids)
    if mode == "suffix":
        for i in range(min(d, n) + 1):
            yield ids[: n - i]
    elif mode == "infusion":
        for i in range(min(d, n) + 1):
            for erased in itertools.combinations(range(n), i):
                drop = set(erased)
                yield tuple(t for j, t in enumerate(ids) if j not in drop)
    elif k == 1:  # one block of 1..d tokens at every start
        yield ids
        for length in range(1, min(d, n) + 1):
            for s in range(n - length + 1):
                yield ids[:s] + ids[s + length :]
    else:
        for runs in _insertion_runs(n, d, 0, k):
            out: list[int] = []
            prev = 0
            for s, r in runs:
                out.extend(ids[prev:s])
                prev = s + r
            out.extend(ids[prev:])
            yield tuple(out)


def _check_budget(count: int, budget: int | None, n: int, mode: str, d: int, k: int) -> None:
    if budget is None or count <= budget:  # within budget: no message to build
        return
    blocks = f", num_blocks={k}" if mode == "insertion" else ""
    check_budget(
        count, budget, f"erase-and-check in {mode} mode with n={n} tokens, max_erase={d}{blocks} (subsequences)",
        "lower `max_erase` or `num_blocks`, use mode='suffix', or raise `budget`",
        at_least=mode != "suffix",  # past the budget, the count is a lower bound (it stops counting)
    )


def erased_subsequences(
    ids: Sequence[int],
    mode: str = "suffix",
    max_erase: int = 20,
    *,
    num_blocks: int = 1,
    budget: int | None = 100_000,
) -> Iterator[tuple[int, ...]]:
    """The distinct erased id sequences of ``ids``, the clean sequence first.

    The count (:func:`num_subsequences`) is checked against ``budget`` before anything is
    generated; :class:`BudgetExceededError` names both. Deduplication is on id tuples, so
    two sequences are merged only if they are equal.
    """
    mode, d, k = _check_erase_args(mode, max_erase, num_blocks)
    ids = check_token_ids(ids, "ids")
    if budget is not None:
        budget = check_positive_int(budget, "budget")
    cap = math.inf if budget is None else budget
    _check_budget(_count_capped(len(ids), mode, d, k, cap), budget, len(ids), mode, d, k)

    def gen() -> Iterator[tuple[int, ...]]:
        seen: set[tuple[int, ...]] = set()
        for sub in _patterns(ids, mode, d, k):
            if sub not in seen:
                seen.add(sub)
                yield sub

    return gen()


def erased_texts(
    prompt: str,
    mode: str = "suffix",
    max_erase: int = 20,
    *,
    num_blocks: int = 1,
    tokenizer: Tokenizer | None = None,
    budget: int | None = 100_000,
) -> list[str]:
    """The distinct non-empty erased versions of ``prompt`` (clean prompt excluded), as text.

    Used for the paper's erasure augmentation: erased safe prompts are labelled safe when
    training a filter, so that fragments of safe prompts are not flagged.
    """
    tok = resolve_tokenizer(tokenizer)
    ids = tok.encode(check_prompt(prompt))
    out = []
    for sub in itertools.islice(erased_subsequences(ids, mode, max_erase, num_blocks=num_blocks, budget=budget), 1, None):
        text = tok.decode(sub)
        if has_visible(text):
            out.append(text)
    return out


def _scores(filt: Any, texts: list[str]) -> np.ndarray:
    p = np.asarray(filt.predict_proba(texts), dtype=np.float64)
    if p.shape != (len(texts),):
        raise ValueError(f"Expected the filter's `predict_proba` to return shape ({len(texts)},), but got {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("Expected the filter's `predict_proba` to return probabilities in [0, 1], but got other values")
    return p


def _flags(filt: Any, texts: list[str]) -> np.ndarray:
    """Filter verdicts; the empty (all-erased) sequence is never sent to the filter and never harmful.

    An empty string is not a prompt, and the certificate never needs it (the clean harmful
    prompt is non-empty); a filter whose bias flags "" would otherwise flag every prompt once
    d >= n. The reference's Llama filter likewise counts very short subsequences as not harmful.
    """
    out = np.zeros(len(texts), dtype=bool)
    keep = [i for i, t in enumerate(texts) if has_visible(t)]
    if keep:
        out[keep] = _scores(filt, [texts[i] for i in keep]) >= filt.threshold
    return out


def _statement(harmful: bool, mode: str, d: int, k: int, flagged: str | None) -> str:
    adv = {
        "suffix": f"at most {d} adversarial tokens appended",
        "insertion": f"at most {k} adversarial sequence(s) of at most {d} tokens each inserted anywhere",
        "infusion": f"at most {d} adversarial tokens infused at arbitrary positions",
    }[mode]
    if harmful:
        return (
            f"harmful: the filter flags the subsequence {flagged!r}. Guarantee ({mode}, d={d}): every prompt "
            f"that the filter flags stays flagged with {adv}."
        )
    return (
        f"safe: certified not to be any filter-flagged prompt with {adv}; every such decomposition "
        "was checked and none was flagged (this says nothing about the filter's own errors)."
    )


def _resolve(prompt: Any, tok: Tokenizer, explicit: bool) -> tuple[tuple[int, ...], str]:
    if isinstance(prompt, str | bytes | bytearray | memoryview):  # bytes are refused, never read as ids
        text = check_prompt(prompt)
        return tuple(tok.encode(text)), text
    if isinstance(prompt, Sequence | np.ndarray):
        if not explicit:
            raise ValueError("Expected argument `tokenizer` to be given when `prompt` is a sequence of token ids")
        ids = check_token_ids(prompt, "prompt", vocab_size=len(tok) if isinstance(tok, WordTokenizer) else None)
        if not ids:
            raise ValueError("Expected argument `prompt` to hold at least one token id, but it is empty")
        return ids, tok.decode(ids)
    raise TypeError(f"Expected argument `prompt` to be a string or a sequence of token ids, but got {type(prompt).__name__}")


# Fast scores that land this close to the threshold are recomputed by ``predict_proba`` on the decoded
# text, so that a filter's ``score_subsequences`` (float64 sums in another order, or float32 in torch)
# never flips a verdict of the generic path.
_RECHECK = 1e-4
_FAST_MIN = 1  # the fast path beats predict_proba from one string on (TF-IDF: 0.14-0.4 ms vs 3-4 ms)

Item = str | tuple[int, ...]  # a text, or an id sequence of the tokenizer (decoded only when needed)


def _decode(item: Item, tok: Tokenizer) -> str:
    return item if isinstance(item, str) else tok.decode(item)


def _pieces(tok: Tokenizer) -> list[str] | None:
    """The token strings of ``tok`` if decoding an id sequence is concatenating them (a WordTokenizer)."""
    return tok.pieces() if isinstance(tok, WordTokenizer) else None


def _item_flags(filt: Any, tok: Tokenizer, items: Sequence[Item]) -> np.ndarray:
    """Filter verdicts of texts and id sequences; one filter call (``score_subsequences`` when the filter
    has it and ``tok`` decodes by concatenation, else ``predict_proba`` on the decoded texts).

    The protocol method ``score_subsequences(tokens, seqs) -> (N,)`` returns the harmful probabilities
    of the texts ``"".join(tokens[i] for i in seq)``; a filter whose score decomposes over tokens
    computes them without re-running itself on every string. Scores within ``_RECHECK`` of the
    threshold are recomputed by ``predict_proba``, so verdicts equal the generic path's.
    """
    fast = getattr(filt, "score_subsequences", None)
    pieces = _pieces(tok) if callable(fast) and len(items) >= _FAST_MIN else None
    if pieces is None or str in set(map(type, items)):
        return _flags(filt, [_decode(it, tok) for it in items])
    seqs: list[tuple[int, ...]] = list(items)  # type: ignore[arg-type]
    out = np.zeros(len(seqs), dtype=bool)
    # a sequence is visible if one of its tokens is; almost always its first
    shown = {t: has_visible(pieces[t]) for t in set(map(operator.itemgetter(0), filter(None, seqs)))}
    keep: Any
    if all(shown.values()):  # every non-empty sequence is scored
        keep = slice(None) if () not in seqs else list(itertools.compress(range(len(seqs)), seqs))
    else:
        keep = [i for i, s in enumerate(seqs) if s and (shown[s[0]] or has_visible("".join([pieces[j] for j in s])))]
    kept = seqs if isinstance(keep, slice) else list(map(seqs.__getitem__, keep))
    if not kept:
        return out
    p = np.asarray(fast(pieces, kept), dtype=np.float64)  # type: ignore[misc]
    if p.shape != (len(kept),):
        raise ValueError(f"Expected the filter's `score_subsequences` to return shape ({len(kept)},), but got {p.shape}")
    thr = float(filt.threshold)
    if len(kept) <= 64:  # a few scores: plain Python (numpy's fixed cost per call exceeds the work)
        pl = p.tolist()
        near = [i for i, x in enumerate(pl) if not abs(x - thr) > _RECHECK]  # NaN too
    else:
        near = np.flatnonzero(~(np.abs(p - thr) > _RECHECK)).tolist()
    if near:
        p[near] = _scores(filt, [tok.decode(kept[i]) for i in near])
        pl = p.tolist()
    if len(kept) <= 64:
        ok = all(0.0 <= x <= 1.0 for x in pl)
    else:
        ok = bool(p.min() >= 0 and p.max() <= 1)  # NaN fails both
    if not ok:
        raise ValueError("Expected the filter's `score_subsequences` to return probabilities in [0, 1], but got other values")
    if isinstance(keep, slice):
        return p >= thr
    if len(kept) <= 64:
        res = [False] * len(seqs)
        for i, x in zip(keep, pl):
            res[i] = x >= thr
        return np.array(res)
    out[keep] = p >= thr
    return out


def _scan(
    streams: Iterable[Iterator[list[Item]]], filt: Any, batch_size: int, tok: Tokenizer | None = None,
) -> tuple[list[int], list[str | None]]:
    """Score the items of several streams in shared batches of ``batch_size``; stop a stream at its first flag.

    Each stream yields lists of items (texts, or id sequences of ``tok``), consumed in order, each stream until
    it ends or is flagged; the items are pooled into full batches (the last may be short): a prompt whose items
    fit one batch costs one filter call, and a longer one stops at the first batch in which it is flagged.
    Returns, per stream, the number of items scored and its first flagged text (in stream order) or None.
    """
    tok = tok if tok is not None else WordTokenizer()
    checked: list[int] = []
    flagged: list[Item | None] = []
    queue: list[Item] = []
    segs: list[list[int]] = []  # [stream, count] runs of the queue, in order

    def flush() -> None:
        flags = _item_flags(filt, tok, queue)
        if len(segs) == 1:  # one stream in this batch (the single-prompt API)
            j, c = segs[0]
            checked[j] += c
            if flagged[j] is None and flags.any():
                flagged[j] = queue[int(flags.argmax())]
            queue.clear()
            segs.clear()
            return
        hits = np.flatnonzero(flags).tolist()
        starts = list(itertools.accumulate((c for _, c in segs), initial=0))
        for j, c in segs:
            checked[j] += c
        h = 0
        for (j, _), lo, hi in zip(segs, starts, starts[1:]):  # the first hit of each run, if any
            while h < len(hits) and hits[h] < lo:
                h += 1
            if h < len(hits) and hits[h] < hi and flagged[j] is None:
                flagged[j] = queue[hits[h]]
        queue.clear()
        segs.clear()

    for j, stream in enumerate(streams):
        checked.append(0)
        flagged.append(None)
        for chunk in stream:
            i = 0
            while i < len(chunk):
                take = min(batch_size - len(queue), len(chunk) - i)
                queue.extend(chunk if take == len(chunk) else chunk[i : i + take])
                if segs and segs[-1][0] == j:
                    segs[-1][1] += take
                else:
                    segs.append([j, take])
                i += take
                if len(queue) >= batch_size:
                    flush()
                    if flagged[j] is not None:  # early exit: this stream is already harmful
                        break
            if flagged[j] is not None:
                break
    if queue:
        flush()
    return checked, [None if f is None else _decode(f, tok) for f in flagged]


def _items(ids: tuple[int, ...], text: str, tok: Tokenizer, mode: str, d: int, k: int,
           size: int) -> Iterator[list[Item]]:
    """The prompt itself (its text, unless decoding its ids gives the text back), then its distinct erasures in
    the order of :func:`erased_subsequences`, as lists of at most about ``size`` items (suffix and one-block
    insertion erasures of a short prompt are built at once, without the generator)."""
    n = len(ids)
    first: Item = ids if _pieces(tok) is not None else text  # WordTokenizer: decode(encode(text)) == text
    m = min(d, n)
    if mode == "suffix" and m < size:  # distinct lengths: never a duplicate
        yield [first, *[ids[: n - i] for i in range(1, m + 1)]]
        return
    if mode == "insertion" and k == 1 and m * n < 4 * size:  # dict.fromkeys: dedup, first occurrence kept
        yield [first, *dict.fromkeys([ids[:s] + ids[s + ell :] for ell in range(1, m + 1) for s in range(n - ell + 1)])]
        return
    subs = erased_subsequences(ids, mode, d, num_blocks=k, budget=None)
    next(subs)
    yield [first]
    while chunk := list[Item](itertools.islice(subs, size)):
        yield chunk


def erase_and_check_batch(
    prompts: Sequence[Any],
    filter: Any,
    *,
    mode: str = "suffix",
    max_erase: int = 20,
    num_blocks: int = 1,
    tokenizer: Tokenizer | None = None,
    batch_size: int = 1024,
    budget: int | None = 100_000,
) -> list[PromptCertificate]:
    """Erase-and-check on many prompts, pooling their subsequences into full filter batches.

    Each prompt contributes its clean text, then its distinct erased subsequences, to a stream of
    batches of ``batch_size`` strings shared across prompts; a prompt stops contributing at the
    first batch in which it is flagged. A prompt whose subsequences fit one batch therefore costs
    one filter call (or a share of one), clean prompt included.

    Args:
        prompts: strings, or token-id sequences of ``tokenizer``.
        filter: an object with ``predict_proba(list[str]) -> (N,)`` harmful probabilities and
            a ``threshold`` (flag when p >= threshold), e.g. :class:`certify.prompts.filters.TfidfFilter`;
            a plain callable ``list[str] -> (N,)`` scores is used with threshold 0.5.
        mode: ``"suffix"``, ``"insertion"`` or ``"infusion"``.
        max_erase: ``d >= 0``, the most tokens erased (per block in insertion mode).
        num_blocks: ``k >= 1`` inserted blocks (insertion mode).
        tokenizer: defaults to a fresh :class:`certify.prompts.tokenizers.WordTokenizer`.
        batch_size: strings per filter call.
        budget: refuse (:class:`BudgetExceededError`) a prompt needing more subsequences; None: no limit.

    Returns:
        One :class:`PromptCertificate` per prompt, in order. The guarantee is in the module docstring.
    """
    mode, d, k = _check_erase_args(mode, max_erase, num_blocks)
    batch_size = check_positive_int(batch_size, "batch_size")
    if budget is not None:
        budget = check_positive_int(budget, "budget")
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"Expected argument `prompts` to be a list of prompts, but got {type(prompts).__name__}")
    filt = as_filter(filter)
    tok = resolve_tokenizer(tokenizer)
    resolved = [_resolve(p, tok, tokenizer is not None) for p in prompts]
    cap = math.inf if budget is None else budget  # capped counts: the check never waits on a huge count
    counts = [_count_capped(len(ids), mode, d, k, cap) for ids, _ in resolved]
    for (ids, _), c in zip(resolved, counts):  # refuse before evaluating anything
        _check_budget(c, budget, len(ids), mode, d, k)
    checked, flagged = _scan((_items(ids, text, tok, mode, d, k, batch_size) for ids, text in resolved), filt,
                             batch_size, tok)
    return [
        PromptCertificate(
            prompt=text, harmful=flagged[j] is not None, mode=mode, max_erase=d, num_blocks=k,
            num_tokens=len(ids), num_subsequences=counts[j], checked=checked[j], flagged=flagged[j],
            statement=_statement(flagged[j] is not None, mode, d, k, flagged[j]),
        )
        for j, (ids, text) in enumerate(resolved)
    ]


def erase_and_check(
    prompt: str | Sequence[int],
    filter: Any,
    *,
    mode: str = "suffix",
    max_erase: int = 20,
    num_blocks: int = 1,
    tokenizer: Tokenizer | None = None,
    batch_size: int = 1024,
    budget: int | None = 100_000,
) -> PromptCertificate:
    """Erase-and-check one prompt (Kumar et al. 2023, Algorithms 1-3).

    Labels ``prompt`` harmful iff ``filter`` flags it or one of its erased subsequences
    (see the module docstring for the modes and the guarantee, which holds with
    probability 1). Arguments are those of :func:`erase_and_check_batch`.

    Returns:
        A frozen :class:`PromptCertificate`.

    Example:
        >>> from certify.prompts import embedded_tfidf_filter
        >>> cert = erase_and_check("How do I bake bread?", embedded_tfidf_filter(), mode="suffix", max_erase=10)
    """
    return erase_and_check_batch(
        [prompt], filter, mode=mode, max_erase=max_erase, num_blocks=num_blocks,
        tokenizer=tokenizer, batch_size=batch_size, budget=budget,
    )[0]
