"""smoothing: randomized smoothing (Cohen et al. 2019) with fixed-n and anytime-valid certification.

``Smooth`` wraps a base classifier f into g(x) = argmax_c P[f(x + δ) = c], δ ~ N(0, σ² I), and
certifies L2 radii with failure probability alpha per input; with uniform or Laplace noise
(``smoothing.noise``) it certifies L1 radii, and ``Certificate.to_norm`` turns a radius into one for
another norm (L2 -> L-inf divides by √d). ``certify_sequential`` reaches the same
guarantee with far fewer draws by stopping early (confidence sequences). ``certify_dataset`` runs
either over a dataset, serially or on any executor.
"""

from smoothing.availability import FallbackMonitor, MonitorState, detection_delay, smoothing_availability
from smoothing.certifier import SmoothingCertifier
from smoothing.cohen import (
    Certificate,
    Prediction,
    Smooth,
    binomial_p_value,
    certificate_from_counts,
    clopper_pearson_lower,
    min_predict_samples,
    prediction_from_counts,
    randomized_clopper_pearson_lower,
    smoothed_radius,
)
from smoothing.contrastive import info_nce, karras_levels, pretrain_contrastive_denoising, random_shift
from smoothing.dataset import (
    CertifiedRecord,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_lower,
    certify_dataset,
    plot_certified_accuracy,
)
from smoothing.denoised import DenoisedClassifier, make_conv_denoiser, make_unet_denoiser, train_denoiser
from smoothing.noise import GaussianNoise, LaplaceNoise, Noise, UniformNoise, convert_radius
from smoothing.regression import SmoothedRegressionCertifier, smoothed_regression_bounds
from smoothing.scores import ScoreFn, SmoothedScores, smoothed_scores
from smoothing.sequential import (
    certify_sequential,
    certify_sequential_batch,
    confidence_sequence,
    mixture_log_wealth,
)
from smoothing.training import consistency_loss, train_consistency, train_noise_augmented

__all__ = [
    "Certificate",
    "CertifiedRecord",
    "DenoisedClassifier",
    "FallbackMonitor",
    "GaussianNoise",
    "LaplaceNoise",
    "MonitorState",
    "Noise",
    "Prediction",
    "ScoreFn",
    "Smooth",
    "SmoothedRegressionCertifier",
    "SmoothedScores",
    "SmoothingCertifier",
    "UniformNoise",
    "average_certified_radius",
    "binomial_p_value",
    "certificate_from_counts",
    "certified_accuracy",
    "certified_accuracy_lower",
    "certify_dataset",
    "certify_sequential",
    "certify_sequential_batch",
    "clopper_pearson_lower",
    "confidence_sequence",
    "consistency_loss",
    "convert_radius",
    "detection_delay",
    "info_nce",
    "karras_levels",
    "make_conv_denoiser",
    "make_unet_denoiser",
    "min_predict_samples",
    "mixture_log_wealth",
    "plot_certified_accuracy",
    "prediction_from_counts",
    "pretrain_contrastive_denoising",
    "random_shift",
    "randomized_clopper_pearson_lower",
    "smoothed_radius",
    "smoothed_regression_bounds",
    "smoothed_scores",
    "smoothing_availability",
    "train_consistency",
    "train_denoiser",
    "train_noise_augmented",
]
