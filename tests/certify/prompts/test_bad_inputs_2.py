"""Regression tests for issue 13 (continued): tokenizers given by name are refused with a hint."""

from __future__ import annotations

import pytest

from certify.prompts import CallableFilter, erase_and_check, greedy_erase_and_check, random_erase_and_check


@pytest.mark.parametrize("fn", [erase_and_check, greedy_erase_and_check, random_erase_and_check])
def test_tokenizer_by_name_is_refused(fn: object) -> None:
    with pytest.raises(TypeError, match=r"`tokenizer`.*not a name"):
        fn("hello there", CallableFilter(lambda t: [0.0] * len(t)), tokenizer="word")  # type: ignore[operator]
