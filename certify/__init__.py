"""certify: deterministic certifiers for torch classifiers and LLM prompt filters.

* Bound propagation: ``bounds`` / ``margin_bounds`` / ``verify`` / ``certified_radius`` /
  ``verified_accuracy`` with ``method="ibp"`` (Gowal et al. 2018), ``"crown"`` (Zhang et al. 2018),
  ``"crown-ibp"`` (Zhang et al. 2020), ``"alpha-crown"`` (Xu et al. 2021) or ``"auto_lirpa:<METHOD>"``.
* Complete verification ``verify_complete``: attack + alpha-CROWN + beta-CROWN branch-and-bound.
* Neural activation patterns as specifications (Geng et al. 2023): ``mine_naps``, ``verify_nap``.
* The IBP tightness metric of Mao et al. (ICLR 2024) and certified training (IBP, CROWN-IBP).
* Erase-and-check certified prompt filtering (Kumar et al. 2023) with RandEC/GreedyEC/GradEC: the
  subpackage ``certify.prompts`` (its main names are re-exported here).
"""

from certify import attacks, prompts, training
from certify._graph import Normalize, UnsupportedLayerError
from certify._memory import memory_budget
from certify.api import (
    Bounds,
    bounds,
    certified_radius,
    margin_bounds,
    margin_spec,
    verified_accuracy,
    verify,
)
from certify.availability import verification_availability
from certify.bab import CompleteVerification, verify_complete
from certify.certifier import BoundCertifier
from certify.nap import NAP, NAPSet, NAPVerification, follows_nap, mine_naps, naps_overlap, verify_nap
from certify.onnx_io import load_onnx
from certify.prompts import (
    BagOfEmbeddingsFilter,
    BudgetExceededError,
    CallableFilter,
    EmbeddingFilter,
    EmpiricalCheck,
    HFClassifierFilter,
    HFTokenizer,
    PromptCertificate,
    TfidfFilter,
    WordTokenizer,
    default_filter,
    embedded_prompts,
    erase_and_check,
    erase_and_check_batch,
    grad_erase_and_check,
    greedy_erase_and_check,
    num_subsequences,
    random_erase_and_check,
)
from certify.properties import PropertyResult, box_bounds, verify_property
from certify.tightness import Tightness, propagation_tightness, tightness
from certify.token_positions import TokenPositions
from certify.training import CertifiedTrainer, certified_train
from certify.vnnlib import OutputConstraint, VnnlibCase, VnnlibError, VnnlibProperty, load_vnnlib

__all__ = [
    "NAP",
    "BagOfEmbeddingsFilter",
    "BoundCertifier",
    "Bounds",
    "BudgetExceededError",
    "CallableFilter",
    "CertifiedTrainer",
    "CompleteVerification",
    "EmbeddingFilter",
    "EmpiricalCheck",
    "HFClassifierFilter",
    "HFTokenizer",
    "NAPSet",
    "NAPVerification",
    "Normalize",
    "OutputConstraint",
    "PromptCertificate",
    "PropertyResult",
    "TfidfFilter",
    "Tightness",
    "TokenPositions",
    "UnsupportedLayerError",
    "VnnlibCase",
    "VnnlibError",
    "VnnlibProperty",
    "WordTokenizer",
    "attacks",
    "bounds",
    "box_bounds",
    "certified_radius",
    "certified_train",
    "default_filter",
    "embedded_prompts",
    "erase_and_check",
    "erase_and_check_batch",
    "follows_nap",
    "grad_erase_and_check",
    "greedy_erase_and_check",
    "load_onnx",
    "load_vnnlib",
    "margin_bounds",
    "margin_spec",
    "memory_budget",
    "mine_naps",
    "naps_overlap",
    "num_subsequences",
    "prompts",
    "propagation_tightness",
    "random_erase_and_check",
    "tightness",
    "training",
    "verification_availability",
    "verified_accuracy",
    "verify",
    "verify_complete",
    "verify_nap",
    "verify_property",
]
