"""certify.prompts: certified filtering of adversarial prompts with erase-and-check (Kumar et al. 2023).

A subpackage of its own, independent of the bound-propagation engine in ``certify``. Modules, in the
order they import each other (no cycle):

* :mod:`~certify.prompts.tokenizers`: the token sequences the guarantee is stated over.
* :mod:`~certify.prompts.protocol`: the safety-filter protocol (``predict_proba`` + ``threshold``).
* :mod:`~certify.prompts.erase_and_check`: the certified procedure and its certificates.
* :mod:`~certify.prompts.randec`, :mod:`~certify.prompts.greedyec`, :mod:`~certify.prompts.gradec`:
  the empirical variants (no certificate; fewer filter calls).
* :mod:`~certify.prompts.attacks`: GCG against differentiable filters and a black-box greedy token attack
  (suffix / insertion / infusion) for evaluation; adversarial training in :mod:`~certify.prompts.adversarial`.
* :mod:`~certify.prompts.augmentation`: erasure augmentation of safe training prompts.
* :mod:`~certify.prompts.corpus`: certkit's generated prompt set (templates x acts, >= 1,000 per class).
* :mod:`~certify.prompts.data`: the embedded prompt set (package data ``harmful.txt``,
  ``benign.txt``) and the paper's prompt files.
* :mod:`~certify.prompts.llm_judge`: an LLM (any ``generate`` function) as the filter, the paper's rule.
* :mod:`~certify.prompts.filters`: the filters (TF-IDF, embedding, Hugging Face, bag of embeddings)
  and the default filters (the shipped MiniLM LoRA delta and head; TF-IDF ones trained on first use and pickled by
  :mod:`certify.prompts._cache`).

Every public name is re-exported here and the main ones from ``certify`` itself.
"""

from certify.prompts.adversarial import adversarial_training, fragment_training
from certify.prompts.attacks import TokenAttack, gcg_attack, greedy_token_attack
from certify.prompts.augmentation import augment_safe
from certify.prompts.corpus import GeneratedPrompts, generated_prompts, split_by_act
from certify.prompts.data import PromptSet, embedded_prompts, load_prompt_dir
from certify.prompts.erase_and_check import (
    MODES,
    BudgetExceededError,
    EmpiricalCheck,
    PromptCertificate,
    erase_and_check,
    erase_and_check_batch,
    erased_subsequences,
    erased_texts,
    num_subsequences,
)
from certify.prompts.filters import (
    BagOfEmbeddingsFilter,
    EmbeddingFilter,
    HFClassifierFilter,
    TfidfFilter,
    default_filter,
    embedded_tfidf_filter,
    embedding_filter,
    generated_filter,
    has_minilm,
    pac_threshold,
)
from certify.prompts.gradec import grad_erase_and_check
from certify.prompts.greedyec import empirical_threshold, greedy_erase_and_check
from certify.prompts.llm_judge import LLMJudgeFilter
from certify.prompts.protocol import CallableFilter, SafetyFilter, as_filter
from certify.prompts.randec import random_erase_and_check
from certify.prompts.tokenizers import HFTokenizer, Tokenizer, WordTokenizer

__all__ = [
    "MODES",
    "BagOfEmbeddingsFilter",
    "BudgetExceededError",
    "CallableFilter",
    "EmbeddingFilter",
    "EmpiricalCheck",
    "GeneratedPrompts",
    "HFClassifierFilter",
    "HFTokenizer",
    "LLMJudgeFilter",
    "PromptCertificate",
    "PromptSet",
    "SafetyFilter",
    "TfidfFilter",
    "TokenAttack",
    "Tokenizer",
    "WordTokenizer",
    "adversarial_training",
    "as_filter",
    "augment_safe",
    "default_filter",
    "embedded_prompts",
    "embedded_tfidf_filter",
    "embedding_filter",
    "empirical_threshold",
    "erase_and_check",
    "erase_and_check_batch",
    "erased_subsequences",
    "erased_texts",
    "fragment_training",
    "gcg_attack",
    "generated_filter",
    "generated_prompts",
    "grad_erase_and_check",
    "greedy_erase_and_check",
    "greedy_token_attack",
    "has_minilm",
    "load_prompt_dir",
    "num_subsequences",
    "pac_threshold",
    "random_erase_and_check",
    "split_by_act",
]
