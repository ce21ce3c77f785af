"""conformal: calibrated prediction sets, and the robust ones that consume certificates.

Split, class-conditional and PAC prediction sets over any score; robust sets built on the
certificates of ``certify`` (bound propagation) and ``smoothing`` (randomized smoothing).
"""

from conformal import metrics, scores
from conformal.class_conditional import ClassConditional
from conformal.functional import conformal_quantile, conformal_rank, pac_quantile, pac_rank, prediction_mask
from conformal.model import predict_proba
from conformal.pac import PACPredictionSet
from conformal.sets import PredictionSets
from conformal.split import SplitConformal

__all__ = [
    "ClassConditional",
    "PACPredictionSet",
    "PredictionSets",
    "SplitConformal",
    "conformal_quantile",
    "conformal_rank",
    "metrics",
    "pac_quantile",
    "pac_rank",
    "predict_proba",
    "prediction_mask",
    "scores",
]
