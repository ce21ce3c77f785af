"""A multi-label task on the embedded digits: ten binary attributes of the digit, scored by the digits CNN.

Application layer (like :mod:`certkit_app.digits`): the worked example of label powerset conformal
prediction (:class:`conformal.LabelPowersetICP`, ``notebooks/12_multilabel.ipynb``). Each digit image gets
the 0/1 label set of the attributes its digit has (:data:`DIGITS_LABEL_ATTRIBUTES`); the per-label
probability of an attribute is the digits CNN's probability mass on the digits that have it,
p_k(x) = sum_{d has attribute k} softmax(f(x))_d, so no model is trained beyond the cached
:func:`certkit_app.digits.digits_cnn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from certkit_app.datasets import load_digits_split

__all__ = ["DIGITS_LABEL_ATTRIBUTES", "DigitsMultilabelTask", "attribute_labels", "digits_attribute_probs"]

#: Ten binary attributes of the digits 0-9 (as handwritten in scikit-learn's digits): name -> digits with it.
DIGITS_LABEL_ATTRIBUTES: dict[str, tuple[int, ...]] = {
    "even": (0, 2, 4, 6, 8),
    "at_least_5": (5, 6, 7, 8, 9),
    "closed_loop": (0, 6, 8, 9),
    "straight_stroke": (1, 4, 7),
    "prime": (2, 3, 5, 7),
    "curved_stroke": (0, 2, 3, 5, 6, 8, 9),
    "horizontal_bar": (2, 4, 5, 7),
    "mirror_symmetric": (0, 1, 8),
    "perfect_square": (0, 1, 4, 9),
    "fibonacci": (0, 1, 2, 3, 5, 8),
}


def _membership() -> np.ndarray:
    """(10, K) 0/1: digit d has attribute k."""
    m = np.zeros((10, len(DIGITS_LABEL_ATTRIBUTES)), dtype=np.int64)
    for k, digits in enumerate(DIGITS_LABEL_ATTRIBUTES.values()):
        m[list(digits), k] = 1
    return m


def attribute_labels(digits: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, K) 0/1 attribute label sets of (N,) digit labels."""
    d = digits.numpy() if isinstance(digits, torch.Tensor) else np.asarray(digits)
    return _membership()[d]


@dataclass(frozen=True)
class DigitsMultilabelTask:
    """Per-label probabilities and true label sets of some digits images.

    Attributes:
        probs: (N, K) float64 per-attribute probabilities.
        labels: (N, K) int64 0/1 true attribute label sets.
        digits: (N,) the digit labels behind them.
        names: the K attribute names, in column order.
    """

    probs: np.ndarray
    labels: np.ndarray
    digits: np.ndarray
    names: tuple[str, ...]


def digits_attribute_probs(splits: Sequence[str] = ("calibration", "test"), model: nn.Module | None = None,
                           ) -> DigitsMultilabelTask:
    """The digits multi-label task on the given splits of the fixed digits split.

    Args:
        splits: parts of :func:`certkit_app.datasets.load_digits_split`, concatenated in order.
        model: a digits classifier (10 logits); default the cached :func:`certkit_app.digits.digits_cnn`.
    """
    if model is None:
        from certkit_app.digits import digits_cnn

        model = digits_cnn()
    images, digits = [], []
    for split in splits:
        part = load_digits_split(split)  # type: ignore[arg-type]
        images.append(part.images)
        digits.append(part.labels.numpy())
    with torch.no_grad():
        logits = model.eval()(torch.cat(images)).double()
    class_probs = torch.softmax(logits, 1).numpy()
    y = np.concatenate(digits)
    return DigitsMultilabelTask(probs=np.clip(class_probs @ _membership().astype(np.float64), 0.0, 1.0),
                                labels=attribute_labels(y), digits=y, names=tuple(DIGITS_LABEL_ATTRIBUTES))
