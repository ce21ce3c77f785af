"""conformal: calibrated prediction sets, and the robust ones that consume certificates.

Split, class-conditional and PAC prediction sets over any score; robust sets built on the
certificates of ``certify`` (bound propagation) and ``smoothing`` (randomized smoothing).
"""

from conformal import code, metrics, regression, scores
from conformal.attacks import pgd_attack, smoothed_score_pgd
from conformal.certified_sets import CertifiedSets, certified_sets
from conformal.class_conditional import ClassConditional
from conformal.cluster import ClusteredConformal
from conformal.code import CodeTask, CodeTree, PACCodeSets, PartialProgram, nested_removals, python_tree
from conformal.data import ModelProbs, collect_probs
from conformal.dual_threshold import AbstainingSets, DualThreshold, DualThresholdReport
from conformal.functional import conformal_quantile, conformal_rank, pac_quantile, pac_rank, prediction_mask
from conformal.ltt import LTTResult, binomial_pvalue, hoeffding_bentkus_pvalue, learn_then_test
from conformal.model import predict_proba
from conformal.multilabel import (
    ForcedPrediction,
    LabelPowersetICP,
    LabelSetRegions,
    label_powerset_regions,
    label_set_scores,
)
from conformal.pac import PACPredictionSet
from conformal.ptt import PTT
from conformal.pvalues import conformal_pvalues, pvalue_mask
from conformal.rct import train_rct
from conformal.risk_control import (
    ConformalRiskControl,
    RiskControlResult,
    conformal_risk_control,
    false_negative_rate,
)
from conformal.robust_pac import RobustPAC, SmoothedRobustPAC
from conformal.rscp import RSCP, RSCPPlus
from conformal.safety_threshold import SafetyThreshold, calibrate_filter_threshold
from conformal.score_bounds import (
    ScoreBounds,
    certified_score_bounds,
    score_bounds_from_logits,
    score_bounds_from_margins,
)
from conformal.sets import PredictionSets
from conformal.split import SplitConformal
from conformal.vrcp import VRCP
from conformal.weighted import WeightedConformal, weighted_conformal_quantile

__all__ = [
    "PTT",
    "RSCP",
    "VRCP",
    "AbstainingSets",
    "CertifiedSets",
    "ClassConditional",
    "ClusteredConformal",
    "CodeTask",
    "CodeTree",
    "ConformalRiskControl",
    "DualThreshold",
    "DualThresholdReport",
    "ForcedPrediction",
    "LTTResult",
    "LabelPowersetICP",
    "LabelSetRegions",
    "ModelProbs",
    "PACCodeSets",
    "PACPredictionSet",
    "PartialProgram",
    "PredictionSets",
    "RSCPPlus",
    "RiskControlResult",
    "RobustPAC",
    "SafetyThreshold",
    "ScoreBounds",
    "SmoothedRobustPAC",
    "SplitConformal",
    "WeightedConformal",
    "binomial_pvalue",
    "calibrate_filter_threshold",
    "certified_score_bounds",
    "certified_sets",
    "code",
    "collect_probs",
    "conformal_pvalues",
    "conformal_quantile",
    "conformal_rank",
    "conformal_risk_control",
    "false_negative_rate",
    "hoeffding_bentkus_pvalue",
    "label_powerset_regions",
    "label_set_scores",
    "learn_then_test",
    "metrics",
    "nested_removals",
    "pac_quantile",
    "pac_rank",
    "pgd_attack",
    "predict_proba",
    "prediction_mask",
    "pvalue_mask",
    "python_tree",
    "regression",
    "score_bounds_from_logits",
    "score_bounds_from_margins",
    "scores",
    "smoothed_score_pgd",
    "train_rct",
    "weighted_conformal_quantile",
]
