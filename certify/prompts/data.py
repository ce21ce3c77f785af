"""Prompt data for the safety filters: certkit's embedded prompt set and the paper's prompt files.

:func:`embedded_prompts` reads the package data ``harmful.txt`` / ``benign.txt`` (written for certkit);
:func:`load_prompt_dir` reads the files of Kumar et al.'s repository and splits off a held-out part
without leaking erasures of held-out prompts into training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from certkit._validation import check_path, generator_or_seed

__all__ = ["PromptSet", "embedded_prompts", "load_prompt_dir"]


@dataclass(frozen=True)
class PromptSet:
    """Harmful and safe prompts, plus optional erased safe prompts for augmentation."""

    harmful: tuple[str, ...]
    safe: tuple[str, ...]
    erased_safe: tuple[str, ...] = ()


def _read_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def embedded_prompts() -> PromptSet:
    """certkit's own prompt set (written for certkit): >= 150 harmful requests over many harm
    categories and >= 150 benign prompts of similar length and style."""
    root = resources.files("certify.prompts")
    return PromptSet(
        harmful=tuple(_read_lines((root / "harmful.txt").read_text(encoding="utf-8"))),
        safe=tuple(_read_lines((root / "benign.txt").read_text(encoding="utf-8"))),
    )


def _lcp(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _erased_lines_of(erased: list[str], originals: Sequence[str]) -> list[str]:
    """Lines of an erased-prompts file that are erasures of one of ``originals``.

    A line is an erasure of ``o`` when it is ``o`` with one contiguous piece removed, up
    to whitespace and case (the files were made with a WordPiece tokenizer, whose
    decoding changes spacing). This covers suffix and single-block insertion erasures.
    """
    def norm(s: str) -> str:
        return "".join(s.lower().split())

    outs = [norm(o) for o in originals]
    # Erasing one contiguous piece keeps a prefix of o and a suffix of o, one of them at
    # least 3 characters long when the erasure has >= 6: index the originals by both ends.
    by_head: dict[str, list[str]] = {}
    by_tail: dict[str, list[str]] = {}
    for o in outs:
        by_head.setdefault(o[:3], []).append(o)
        by_tail.setdefault(o[-3:], []).append(o)
    hits = []
    for line in erased:
        e = norm(line)
        if not e:
            continue
        cands = outs if len(e) < 6 else by_head.get(e[:3], []) + by_tail.get(e[-3:], [])
        for o in cands:
            if len(e) > len(o):
                continue
            p = _lcp(e, o)
            s = _lcp(e[p:][::-1], o[::-1])
            if p + s >= len(e):
                hits.append(line)
                break
    return hits


def load_prompt_dir(
    path: str | Path,
    *,
    test_fraction: float = 0.2,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> tuple[PromptSet, PromptSet]:
    """Load the paper's prompt files from ``path`` and split off a held-out part.

    Reads ``harmful_prompts_train.txt``, ``safe_prompts_train.txt`` and the erased files
    ``safe_prompts_train_{suffix,insertion}_erased.txt`` (each lists the original prompts,
    then their erasures in blank-line separated blocks). A random ``test_fraction`` of the
    *original* prompts (deduplicated) is held out; every erased line that is an erasure of
    a held-out safe prompt is removed from the training erasures, so nothing derived from
    a test prompt is trained on. ``generator`` draws the split (None: seeded with 0);
    ``seed`` is deprecated.

    Returns:
        ``(train, test)``; ``train.erased_safe`` holds the remaining erased lines.
    """
    root = check_path(path, "path", kind="dir")  # InvalidPathError: both a ValueError and a FileNotFoundError

    def read(name: str) -> list[str]:
        p = root / name
        return p.read_text(encoding="utf-8").splitlines() if p.exists() else []

    harmful = list(dict.fromkeys(x.strip() for x in read("harmful_prompts_train.txt") if x.strip()))
    safe_raw = [x.strip() for x in read("safe_prompts_train.txt") if x.strip()]
    safe = list(dict.fromkeys(safe_raw))
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) or not 0 <= test_fraction <= 1:
        raise ValueError(f"Expected argument `test_fraction` to be a number in [0, 1], but got {test_fraction!r}")
    g = generator_or_seed(generator, seed, where="load_prompt_dir")
    h_test = set(torch.randperm(len(harmful), generator=g, device=g.device)[: round(test_fraction * len(harmful))].tolist())
    s_test = set(torch.randperm(len(safe), generator=g, device=g.device)[: round(test_fraction * len(safe))].tolist())
    safe_test = [s for i, s in enumerate(safe) if i in s_test]
    test_set = set(safe_test) | {h for i, h in enumerate(harmful) if i in h_test}
    erased: list[str] = []
    for mode in ("suffix", "insertion"):
        lines = [x.strip() for x in read(f"safe_prompts_train_{mode}_erased.txt")]
        erasures = [x for x in lines[len(safe_raw):] if x]  # skip the originals listed first
        erased.extend(x for x in dict.fromkeys(erasures) if x not in test_set)
    leaked = set(_erased_lines_of(erased, safe_test))
    train = PromptSet(
        harmful=tuple(h for i, h in enumerate(harmful) if i not in h_test),
        safe=tuple(s for i, s in enumerate(safe) if i not in s_test),
        erased_safe=tuple(x for x in erased if x not in leaked),
    )
    test = PromptSet(harmful=tuple(h for i, h in enumerate(harmful) if i in h_test), safe=tuple(safe_test))
    return train, test
