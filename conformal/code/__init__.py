"""PAC prediction sets for code generation: partial programs with holes (Khakhar, Mell, Bastani, ICML 2023).

Modules: ``tree`` (syntax trees, per-node NLL, matching modulo holes), ``milp`` (the exact nested
MILP), ``dp`` (tree-knapsack fast path), ``calibrate`` (the PAC threshold and :class:`PACCodeSets`),
``adapters`` (token scorers, Hugging Face causal LMs), ``lm`` (offline n-gram model and demo task).
"""

from conformal.code.adapters import (
    HuggingFaceScorer,
    ScoredProgram,
    TokenLogProbs,
    TokenScorer,
    score_program,
)
from conformal.code.calibrate import (
    CodeTask,
    Hole,
    PACCodeSets,
    PartialProgram,
    coverage_scores,
    partial_program,
    select_tau,
)
from conformal.code.dp import best_kept, bottom_up_dp, sequential_dp, top_down_dp
from conformal.code.lm import (
    TASK_MODULES,
    TRAIN_MODULES,
    NGramCodeModel,
    perturbation_tasks,
    stdlib_functions,
    stdlib_ngram,
)
from conformal.code.milp import NestedRemovals, check_taus, nested_removals
from conformal.code.tree import CodeTree, covers, node_nll, python_tree

__all__ = [
    "TASK_MODULES",
    "TRAIN_MODULES",
    "CodeTask",
    "CodeTree",
    "Hole",
    "HuggingFaceScorer",
    "NGramCodeModel",
    "NestedRemovals",
    "PACCodeSets",
    "PartialProgram",
    "ScoredProgram",
    "TokenLogProbs",
    "TokenScorer",
    "best_kept",
    "bottom_up_dp",
    "check_taus",
    "coverage_scores",
    "covers",
    "nested_removals",
    "node_nll",
    "partial_program",
    "perturbation_tasks",
    "python_tree",
    "score_program",
    "select_tau",
    "sequential_dp",
    "stdlib_functions",
    "stdlib_ngram",
    "top_down_dp",
]
