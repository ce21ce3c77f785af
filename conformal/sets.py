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
        threshold: the score threshold used: a float, (K,) per-class thresholds, or (N,) per-input
            thresholds (:class:`conformal.WeightedConformal`).
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
        """(N,) bool: whether each set contains the given label (labels (N,) in [0, K))."""
        lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if lab.shape != (len(self),) or (lab.size and (lab.min() < 0 or lab.max() >= self.mask.shape[1])):
            raise ValueError(
                f"Expected argument `labels` to have shape ({len(self)},) with values in [0, {self.mask.shape[1] - 1}], "
                f"but got shape {lab.shape}" + (f" and values in [{lab.min()}, {lab.max()}]" if lab.size else "")
            )
        if isinstance(self.mask, torch.Tensor):
            idx = torch.as_tensor(labels, device=self.mask.device).long()
            return self.mask.gather(1, idx[:, None]).squeeze(1)
        return np.asarray(self.mask)[np.arange(len(self)), np.asarray(labels)]
