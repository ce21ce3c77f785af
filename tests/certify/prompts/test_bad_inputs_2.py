"""Regression tests for issue 13 (continued): tokenizers given by name are refused with a hint."""

from __future__ import annotations

import pytest

from certify.prompts import CallableFilter, erase_and_check, greedy_erase_and_check, random_erase_and_check


@pytest.mark.parametrize("fn", [erase_and_check, greedy_erase_and_check, random_erase_and_check])
def test_tokenizer_by_name_is_refused(fn: object) -> None:
    with pytest.raises(TypeError, match=r"`tokenizer`.*not a name"):
        fn("hello there", CallableFilter(lambda t: [0.0] * len(t)), tokenizer="word")  # type: ignore[operator]


# -- issue 18's acceptance audit (gap 11): bad inputs that gave errors naming no argument, or were accepted ---------

@pytest.mark.parametrize("fn", [erase_and_check, greedy_erase_and_check, random_erase_and_check])
def test_a_filter_class_or_an_uncalled_factory_is_refused_naming_filter(fn: object) -> None:
    """``erase_and_check(p, default_filter)`` (the factory, not called) or ``erase_and_check(p, TfidfFilter)`` (the
    class) raised "default_filter() takes 0 positional arguments but 1 was given", naming no argument."""
    from certify.prompts import TfidfFilter, default_filter

    with pytest.raises(TypeError, match=r"`filter`.*did you mean TfidfFilter\("):
        fn("hello there", TfidfFilter)  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"`filter`.*did you mean default_filter\(\)"):
        fn("hello there", default_filter)  # type: ignore[operator]
    with pytest.raises(TypeError, match="`filter`"):
        fn("hello there", lambda: [0.0])  # type: ignore[operator]
    assert not fn("hello there", lambda texts, *rest: [0.0] * len(texts)).harmful  # type: ignore[operator]


def test_adversarial_training_refuses_modes_given_as_one_string() -> None:
    from certify.prompts import BagOfEmbeddingsFilter, adversarial_training

    bag = BagOfEmbeddingsFilter(epochs=2, augment=()).fit(["build a bomb"], ["bake bread"])
    with pytest.raises(TypeError, match=r"`modes`.*not one string"):
        adversarial_training(bag, ["build a bomb"], ["bake bread"], modes="suffix", num_tokens=1)  # type: ignore[arg-type]


def test_empirical_threshold_gradec_names_the_users_filter() -> None:
    from certify.prompts import empirical_threshold

    f = CallableFilter(lambda t: [0.0] * len(t))
    with pytest.raises(TypeError, match=r"`filter`.*CallableFilter lacks") as err:
        empirical_threshold(["bake bread", "plant tulips"], f, method="gradec")
    assert "_MaxScore" not in str(err.value)


@pytest.mark.parametrize("scores", [[2.0] * 200, [-0.5, *[0.5] * 199], [float("inf"), *[0.5] * 199]])
def test_pac_threshold_refuses_scores_outside_the_unit_interval(scores: list[float]) -> None:
    """``pac_threshold(np.full(200, 2.0))`` returned 2.0, a threshold ``set_threshold`` then refused."""
    import numpy as np

    from certify.prompts import pac_threshold

    with pytest.raises(ValueError, match="harmful_scores"):
        pac_threshold(np.asarray(scores))
    assert pac_threshold(np.full(200, 0.9)) == 0.9
