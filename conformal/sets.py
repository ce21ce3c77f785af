"""The result type of every conformal predictor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from certkit._validation import Array

__all__ = ["PredictionSets"]


@dataclass(frozen=True)
class PredictionSets:
    """Prediction sets as a boolean membership mask.

    Attributes:
        mask: (N, K) bool, ``mask[i, y]`` is True when label y is in the set of input i.
        threshold: the score threshold used: a float, or (K,) per-class thresholds.
    """

    mask: Array
    threshold: float | Array

    @property
    def sizes(self) -> Array:
        """(N,) number of labels in each set."""
        if isinstance(self.mask, torch.Tensor):
            return self.mask.sum(1)
        return np.asarray(self.mask).sum(1)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def contains(self, labels: Array) -> Array:
        """(N,) bool: whether each set contains the given label."""
        if isinstance(self.mask, torch.Tensor):
            lab = torch.as_tensor(labels, device=self.mask.device).long()
            return self.mask.gather(1, lab[:, None]).squeeze(1)
        return np.asarray(self.mask)[np.arange(len(self)), np.asarray(labels)]
