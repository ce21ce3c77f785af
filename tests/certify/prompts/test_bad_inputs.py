"""Regression tests for issue 13: bad inputs to erase-and-check get a clear error, never a plausible verdict."""

from __future__ import annotations

import math

import pytest

from certify.prompts import (
    BudgetExceededError,
    CallableFilter,
    WordTokenizer,
    erase_and_check,
    erased_subsequences,
    greedy_erase_and_check,
    num_subsequences,
)
from certify.prompts.erase_and_check import _count_capped
from certkit import errors

SAFE = CallableFilter(lambda t: [0.0] * len(t))


def test_bytes_are_refused_not_read_as_token_ids() -> None:
    with pytest.raises(TypeError, match=r"`prompt`.*decode"):
        erase_and_check(b"\x01\x02", SAFE, tokenizer=WordTokenizer())  # type: ignore[arg-type]


def test_negative_token_ids_are_refused() -> None:
    tok = WordTokenizer()
    tok.encode("a b c")
    with pytest.raises(ValueError, match=r"`prompt`.*-1"):
        erase_and_check([0, -1], SAFE, tokenizer=tok)
    with pytest.raises(ValueError, match="`ids`"):
        list(erased_subsequences([0, -2]))


def test_nan_threshold_is_refused() -> None:
    filt = CallableFilter(lambda t: [1.0] * len(t))
    filt.threshold = math.nan  # set behind the constructor's back
    with pytest.raises(ValueError, match="threshold"):
        erase_and_check("how to build a bomb", filt)


@pytest.mark.parametrize("prompt", ["\u200b\u200b", "\u2060 \ufeff", "", "   "])
def test_invisible_and_whitespace_prompts_refused_alike(prompt: str) -> None:
    with pytest.raises(ValueError, match="visible"):
        erase_and_check(prompt, SAFE)


@pytest.mark.parametrize("kwargs", [
    {"mode": "insertion", "num_blocks": 60, "max_erase": 30},
    {"mode": "insertion", "num_blocks": 10**6, "max_erase": 10**6},
    {"mode": "infusion", "max_erase": 10**9},
])
def test_budget_refuses_before_counting(kwargs: dict) -> None:
    prompt = " ".join(f"w{i}" for i in range(5000))
    with pytest.raises(BudgetExceededError, match=r"needs at least [\d,]+, which exceeds the budget of 100,000"):
        erase_and_check(prompt, SAFE, **kwargs)


def test_budget_error_is_the_base_class() -> None:
    assert BudgetExceededError is errors.BudgetExceededError


def test_greedy_has_a_closed_form_budget() -> None:
    prompt = " ".join(f"w{i}" for i in range(1000))
    with pytest.raises(BudgetExceededError, match=r"needs 500,500, which exceeds the budget of 100,000"):
        greedy_erase_and_check(prompt, SAFE, num_iters=1000)
    calls: list[int] = []
    filt = CallableFilter(lambda t: (calls.append(len(t)), [0.0] * len(t))[1])
    short = "a b c d e f"
    cert = greedy_erase_and_check(short, filt, num_iters=3, budget=1 + 6 + 5 + 4)
    assert cert.checked == sum(calls) == 1 + 6 + 5 + 4  # the closed form is the exact count
    with pytest.raises(BudgetExceededError):
        greedy_erase_and_check(short, filt, num_iters=3, budget=15)


def test_capped_count_equals_the_count() -> None:
    for n in range(0, 9):
        for d in range(0, 5):
            for k in range(1, 5):
                for mode in ("suffix", "insertion", "infusion"):
                    assert _count_capped(n, mode, d, k, math.inf) == num_subsequences(n, mode, d, k)
