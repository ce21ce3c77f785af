"""Conformal regression: prediction intervals with finite-sample marginal coverage.

One module per method: split conformal with absolute residuals (:mod:`.split`), normalised
residuals (:mod:`.normalized`), CQR (:mod:`.cqr`), jackknife+ and CV+ (:mod:`.jackknife`),
conformal predictive distributions (:mod:`.cpd`), and intervals that stay valid under adversarial
input perturbations, from bound propagation or a smoothed regressor (:mod:`.robust`). All use the
exact conformal rank of classification (:func:`conformal.conformal_rank`) and accept numpy
arrays or torch tensors.
"""

from conformal.regression.cpd import ConformalPredictiveSystem
from conformal.regression.cqr import ConformalizedQuantileRegressor, cqr_scores
from conformal.regression.intervals import PredictionIntervals
from conformal.regression.jackknife import CVPlus, JackknifePlus, jackknife_plus_bounds
from conformal.regression.normalized import NormalizedConformalRegressor, normalized_residuals
from conformal.regression.robust import (
    OutputBounds,
    RobustConformalRegressor,
    bound_propagation_output_bounds,
    smoothed_output_bounds,
    worst_case_residuals,
)
from conformal.regression.split import SplitConformalRegressor, absolute_residuals

__all__ = [
    "CVPlus",
    "ConformalPredictiveSystem",
    "ConformalizedQuantileRegressor",
    "JackknifePlus",
    "NormalizedConformalRegressor",
    "OutputBounds",
    "PredictionIntervals",
    "RobustConformalRegressor",
    "SplitConformalRegressor",
    "absolute_residuals",
    "bound_propagation_output_bounds",
    "cqr_scores",
    "jackknife_plus_bounds",
    "normalized_residuals",
    "smoothed_output_bounds",
    "worst_case_residuals",
]
