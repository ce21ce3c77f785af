import numpy as np
import pytest

from conformal.code.adapters import HuggingFaceScorer, TokenLogProbs, score_program
from conformal.code.tree import python_tree

SRC = "def f(a):\n    return a + 1\n"


def char_scorer(source: str) -> TokenLogProbs:
    """Uniform over 2 symbols, one token per non-space character."""
    pos = [i for i, ch in enumerate(source) if not ch.isspace()]
    return TokenLogProbs(np.full(len(pos), -np.log(2.0)), np.array([[i, i + 1] for i in pos]))


def test_score_program_with_any_callable() -> None:
    scored = score_program(SRC, char_scorer)
    n_chars = sum(not ch.isspace() for ch in SRC)
    assert scored.nll.shape == (scored.tree.size,)
    np.testing.assert_allclose(scored.nll.sum(), n_chars * np.log(2.0))  # no node reaches the clip, nothing double counted
    with pytest.raises(TypeError, match="`scorer`"):
        score_program(SRC, lambda s: [0.0])  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="`tree`"):
        score_program(SRC, char_scorer, tree=python_tree("x = 1\n"))


def _tiny_lm() -> tuple[object, object]:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import torch

    vocab = {ch: i for i, ch in enumerate(["[UNK]", *sorted(set(SRC + "xyz0123456789=()+-*:,\n "))])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split("", behavior="isolated")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=128, n_embd=16, n_layer=1, n_head=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config).eval()
    return model, fast


def test_hugging_face_scorer_matches_a_manual_forward_pass() -> None:
    import torch

    model, tok = _tiny_lm()
    scorer = HuggingFaceScorer(model, tok, prefix="# f\n")
    out = scorer(SRC)
    spans = out.spans.tolist()
    assert [SRC[a:b] for a, b in spans] == list(SRC)  # one token per character, offsets relative to the program
    ids = tok("# f\n" + SRC, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    expect = [float(logp[j - 1, ids[j]]) for j in range(4, len(ids))]
    np.testing.assert_allclose(out.logprobs, expect, rtol=1e-10)
    scored = score_program(SRC, scorer)
    assert np.all((scored.nll >= 0) & (scored.nll <= 10))


def test_hugging_face_scorer_bad_input() -> None:
    model, tok = _tiny_lm()
    model.train()  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="eval mode"):
        HuggingFaceScorer(model, tok)
    model.eval()  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="`tokenizer`"):
        HuggingFaceScorer(model, object())
