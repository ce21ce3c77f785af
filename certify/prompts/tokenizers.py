"""Tokenizers for erase-and-check: prompt text <-> a sequence of erasable token ids.

Erase-and-check (Kumar et al., "Certifying LLM Safety against Adversarial Prompting",
arXiv 2309.02705) works on token sequences: the adversary appends, inserts or infuses
at most ``d`` tokens, and the defence erases tokens. A tokenizer here has two methods,
``encode(text) -> list[int]`` (the *erasable* ids only, no special tokens) and
``decode(ids) -> str``.

:class:`WordTokenizer` is the default: each token is a word or one punctuation mark with
the whitespace before it, so ``decode(encode(text)) == text`` exactly (unicode included)
and erasing a token never glues two words together. :class:`HFTokenizer` adapts a local
Hugging Face tokenizer (WordPiece, BPE, ...); its decoding is only as exact as the
tokenizer's own (uncased WordPiece lower-cases, for instance).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from certkit._validation import check_text

__all__ = ["HFTokenizer", "Tokenizer", "WordTokenizer", "check_prompt", "resolve_tokenizer"]

# A token: optional leading whitespace, then a run of word characters or one other
# non-space character. The final alternative catches trailing whitespace, so the matches
# tile the whole string and joining them gives it back exactly.
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")


@runtime_checkable
class Tokenizer(Protocol):
    """What erase-and-check needs from a tokenizer."""

    def encode(self, text: str) -> list[int]:
        """The erasable token ids of ``text``."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """The text of a (possibly erased) id sequence."""
        ...


def check_prompt(prompt: Any, name: str = "prompt") -> str:
    """Return ``prompt`` if it is a string with a visible character (``certkit._validation.check_text``)."""
    return check_text(prompt, name)


def resolve_tokenizer(tokenizer: Any, name: str = "tokenizer") -> Tokenizer:
    """``tokenizer`` if it has ``encode`` and ``decode``; a fresh :class:`WordTokenizer` when None."""
    if tokenizer is None:
        return WordTokenizer()
    if not isinstance(tokenizer, Tokenizer):
        hint = " (pass WordTokenizer() or HFTokenizer(path), not a name)" if isinstance(tokenizer, str) else ""
        raise TypeError(
            f"Expected argument `{name}` to be a tokenizer with encode/decode or None, "
            f"but got {type(tokenizer).__name__} {tokenizer!r:.40}{hint}"
        )
    return tokenizer


class WordTokenizer:
    """Word-level tokenizer with exact detokenisation.

    Tokens are words (``\\w+``) or single punctuation marks, each carrying the whitespace
    before it; trailing whitespace is a token of its own. Ids index a vocabulary that
    grows as new tokens are seen (thread-safe), so the same token string always has the
    same id within one tokenizer. ``decode`` concatenates token strings, hence
    ``decode(encode(s)) == s`` for every string ``s``.

    At the string level an appended (inserted) adversarial text is a whole number of
    tokens when it starts with whitespace (and, for insertion, is followed by a token that
    starts with whitespace); the certificate is stated over token sequences.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._tokens: list[str] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tokens)

    def __getstate__(self) -> dict[str, Any]:  # the lock is not copyable: a copy gets a fresh one
        return {"_ids": dict(self._ids), "_tokens": list(self._tokens)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._ids, self._tokens, self._lock = state["_ids"], state["_tokens"], threading.Lock()

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into token strings whose concatenation is ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"Expected argument `text` to be a string, but got {type(text).__name__}")
        return _TOKEN.findall(text)

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text`` (new tokens are added to the vocabulary)."""
        pieces = self.tokenize(text)
        out = []
        with self._lock:
            for p in pieces:
                i = self._ids.get(p)
                if i is None:
                    i = self._ids[p] = len(self._tokens)
                    self._tokens.append(p)
                out.append(i)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Concatenate the token strings of ``ids``."""
        tokens = self._tokens
        try:
            return "".join([tokens[i] for i in ids])
        except (IndexError, TypeError) as e:
            raise ValueError(
                f"Expected argument `ids` to hold ids in [0, {len(tokens)}) of this tokenizer, but got {list(ids)!r}"
            ) from e

    def token(self, i: int) -> str:
        """The token string of id ``i``."""
        return self._tokens[i]

    def pieces(self) -> list[str]:
        """The token strings indexed by id (the live list: read it, never modify it); ``decode(ids)`` is
        ``"".join(pieces()[i] for i in ids)``."""
        return self._tokens


class HFTokenizer:
    """Adapter for a Hugging Face tokenizer (an object, or a local path; never downloads).

    Special tokens ([CLS], [SEP], <s>, ...) are not part of the erasable sequence:
    ``encode`` uses ``add_special_tokens=False`` and the filter adds them back when it
    re-tokenizes the decoded text. The reference implementation instead takes
    ``input_ids[1:]``, which drops [CLS] but keeps [SEP] erasable: its first "suffix
    erasure" removes [SEP], so its effective suffix budget is d - 1, and erasures in the
    middle leave a literal "[SEP]" in the decoded text. We exclude all special tokens so
    that ``d`` means d real tokens.
    """

    def __init__(self, tokenizer: Any) -> None:
        if isinstance(tokenizer, str | Path):
            from transformers import AutoTokenizer  # lazy: optional dependency (extra `llm`)

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
        if not (hasattr(tokenizer, "decode") and callable(tokenizer)):
            raise TypeError(
                "Expected argument `tokenizer` to be a Hugging Face tokenizer or a local path, "
                f"but got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ``ids`` (special tokens skipped)."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))
