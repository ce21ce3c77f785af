"""Fine-tune the MiniLM filter's encoder (LoRA) with its head and write the delta as ``.npz`` (issue 18).

``python -m certify.prompts._minilm_lora`` trains the encoder delta of the default MiniLM
:class:`~certify.prompts.filters.EmbeddingFilter` and rewrites ``certify/prompts/minilm_lora.npz`` (float16 LoRA
factors, the head and the PAC threshold; about 0.6 MB; ``--out PATH`` writes elsewhere);
``benchmarks/bench_erase_and_check.py --minilm-fp --delta PATH`` measures a delta. ``--contrast --generic --generic2
--out certify/prompts/minilm_lora_specific.npz`` writes the delta of ``default_filter(variant="specific")`` (session
16, candidate L6, shipped as an opt-in variant). ``--styles`` also trains on
the training-side benign styles and decontaminated harmful extras (session 14, lora14; not shipped: at its PAC
threshold 0.655 it flagged 86.5% of the shared harmful prompts and kept 50.0% of the fresh benign acts, BENCHMARKS.md). Only certkit's own
prompts are used, never ``../shared``: the training part of :func:`certify.prompts.corpus.generated_prompts` (split
by act) plus the embedded prompts, as the shipped head (``_minilm_head.py``).

The frozen encoder with a logistic head scores some erased fragments of safe prompts as harmful, so GreedyEC and
GradEC, which search those fragments, flag many safe prompts. As Kumar et al. (arXiv 2309.02705, Section 5: the
DistilBERT filter fine-tuned on safe prompts and erased subsequences of them labelled safe), the whole classifier is
trained here, cheaply: rank-:data:`RANK` LoRA adapters (Hu et al. 2021) on every linear map of the six encoder layers
(query, key, value, attention output, both feed-forward maps; 332k parameters) and the logistic head on the
mean-pooled, normalised embedding (started from the shipped head), jointly, with Adam. Safe examples: the safe
prompts, 2 suffix / insertion erasures per prompt, :data:`SUBSETS_PER_PROMPT` random in-order subsequences of any
length and :data:`SHORT_PER_PROMPT` short fragments (1 to 4 words) per prompt; then :data:`MINE_ROUNDS` round(s) in
which GreedyEC's path (the fragment each of its 12 rounds keeps) on :data:`MINE_PROMPTS` safe training prompts,
searched against the current model, is added as safe and training continues. Harmful examples: the harmful prompts,
weighted :data:`HARMFUL_WEIGHT` times the safe class. ``pac_threshold`` is
:func:`certify.prompts.filters.pac_threshold` (groups = act ids, epsilon = delta = 0.05) of the stored (float16, merged) model on the
calibration harmful prompts.

The default since issue 18, session 10 (BENCHMARKS.md): at its group-valid PAC threshold (0.963 on the 130
calibration acts of session 12's 50 / 40 / 10 split; 0.743 on session 11's 98 acts) it flags none of 40 held-out
shared safe prompts under GreedyEC-9/12 and GradEC-10/25 (7.5% at 0.743; the frozen encoder with ``minilm_head.txt``
at its group-valid threshold: see BENCHMARKS.md). In session 9 it missed one whole calibration act of the generated
set (20 acts) and its PAC threshold collapsed to about 1e-3; the session-10 prompt set (harmful acts that state their
harm) fixed that. Adding the knowledge questions to the safe prompts (session 12, not shipped) pulled the
eating-disorder acts down and the threshold to 0.205.

Deterministic on CPU: initialisation, shuffling and samples come from torch generators seeded with 0; dropout is off.
About 9-12 CPU minutes on one core (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from certify.prompts._lora_delta import TARGETS, _get, _set
from certify.prompts._minilm_head import short_fragments
from certify.prompts.tokenizers import WordTokenizer

#: LoRA rank
RANK = 8
SUBSETS_PER_PROMPT = 4
SHORT_PER_PROMPT = 4
EPOCHS = 2
MINE_ROUNDS = 1
MINE_PROMPTS = 200
MINE_EPOCHS = 1
BATCH = 32
LR_LORA, LR_HEAD = 5e-4, 2e-3
#: the harmful class weighs HARMFUL_WEIGHT times the safe class
HARMFUL_WEIGHT = 2.0


class _LoRALinear(nn.Module):
    """``base(x) + (x A^T) B^T``; ``A`` (r, in) random, ``B`` (out, r) zero at the start."""

    def __init__(self, base: nn.Linear, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.t()) @ self.b.t()  # type: ignore[no-any-return]


def fragments(prompts: Sequence[str], per_prompt: int, generator: torch.Generator) -> list[str]:
    """``per_prompt`` random in-order subsequences of each prompt's word tokens: ``k ~ uniform{1..n-1}`` kept."""
    tok = WordTokenizer()
    out: list[str] = []
    for prompt in prompts:
        ids = tok.encode(prompt)
        n = len(ids)
        if n < 2:
            continue
        for _ in range(per_prompt):
            k = 1 + int(torch.randint(n - 1, (1,), generator=generator))
            keep = sorted(torch.randperm(n, generator=generator)[:k].tolist())
            text = tok.decode([ids[i] for i in keep])
            if text.strip():
                out.append(text)
    return out


class _Model(nn.Module):
    def __init__(self, encoder: Any, tokenizer: Any, generator: torch.Generator, head: Any) -> None:
        super().__init__()
        self.encoder, self.tokenizer = encoder, tokenizer
        for p in encoder.parameters():
            p.requires_grad_(False)
        self.adapters: dict[str, _LoRALinear] = {}
        for i, layer in enumerate(encoder.encoder.layer):
            for name in TARGETS:
                lora = _LoRALinear(_get(layer, name), RANK, generator)
                _set(layer, name, lora)
                self.adapters[f"{i}.{name}"] = lora
        self.lora = nn.ModuleList(self.adapters.values())
        self.w = nn.Parameter(torch.as_tensor(np.asarray(head.coef_, dtype=np.float32).reshape(-1)).clone())
        self.bias = nn.Parameter(torch.tensor(float(np.asarray(head.intercept_).reshape(-1)[0])))

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        h = self.encoder(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        pooled = nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)
        return pooled @ self.w + self.bias

    def delta(self) -> dict[str, np.ndarray]:
        return {**{f"{k}.a": v.a.detach().numpy().astype(np.float16) for k, v in self.adapters.items()},
                **{f"{k}.b": v.b.detach().numpy().astype(np.float16) for k, v in self.adapters.items()},
                "head_w": self.w.detach().numpy().astype(np.float64), "head_b": np.array([float(self.bias.detach())])}


def _epoch(model: _Model, opt: torch.optim.Optimizer, texts: list[str], y: torch.Tensor, wts: torch.Tensor,
           generator: torch.Generator, log: Any) -> None:
    order = torch.randperm(len(texts), generator=generator).tolist()
    total = 0.0
    for s in range(0, len(order), BATCH):
        idx = order[s:s + BATCH]
        loss = (nn.functional.binary_cross_entropy_with_logits(model.logits([texts[i] for i in idx]), y[idx],
                                                                reduction="none") * wts[idx]).sum() / wts[idx].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        if log and (s // BATCH) % 50 == 0:
            log(f"  step {s // BATCH}/{math.ceil(len(order) / BATCH)} loss {float(loss.detach()):.4f}")
    if log:
        log(f" epoch loss {total / len(order):.4f}")


def _greedy_path(model: _Model, prompt: str, rounds: int = 12) -> list[str]:
    """The fragments GreedyEC keeps on ``prompt`` against the current model (no threshold: all rounds)."""
    tok = WordTokenizer()
    cur = tuple(tok.encode(prompt))
    path = []
    with torch.no_grad():
        for _ in range(rounds):
            if len(cur) <= 1:
                break
            cands = list(dict.fromkeys(cur[:i] + cur[i + 1:] for i in range(len(cur))))
            texts = [tok.decode(c) for c in cands]
            vis = [i for i, t in enumerate(texts) if t.strip()]
            if not vis:
                break
            p = model.logits([texts[i] for i in vis])
            best = vis[int(torch.argmax(p))]
            cur = cands[best]
            path.append(texts[best])
    return path


def train_delta(*, epochs: int = EPOCHS, mine_rounds: int = MINE_ROUNDS, mine_prompts: int = MINE_PROMPTS,
                subset: int | None = None, styles: bool = False, contrast: bool = False, generic: bool = False,
                generic2: bool = False, harmful_weight: float = HARMFUL_WEIGHT, log: Any = None,
                snapshot: Any = None) -> dict[str, np.ndarray]:
    """The delta (LoRA factors ``"{layer}.{name}.a|b"`` as float16, ``head_w``, ``head_b``) that
    ``minilm_lora.npz`` ships with the defaults; ``subset``: only the first ``subset`` prompts of each class (a
    reduced run, for tests); ``styles``: also train on :func:`certify.prompts.corpus._training_benign_prompts` (added
    to the safe prompts before augmentation, so they get the same erasures and fragments) and
    ``_training_harmful_extra(decontaminated=True)`` (added to the harmful prompts; session 14, lora14);
    ``contrast``: also train on :func:`certify.prompts._contrast.training_contrast_prompts` (harm-word benign and
    harmful acts, terse imperative frames; session 15); ``generic``: also train on
    :func:`certify.prompts._contrast.generic_prompts` (harmful acts with no named victim; session 15); ``generic2``:
    also train on :func:`certify.prompts._blind.generic2_prompts` (a second blind set of such acts; session 16);
    ``harmful_weight``: the harmful class weighs that many times the safe class. ``pac_threshold`` is added by
    :func:`main`."""
    from certify.prompts.augmentation import augment_safe
    from certify.prompts.filters import EmbeddingFilter, _frozen_minilm_filter, _training_data

    torch.set_num_threads(max(1, torch.get_num_threads()))
    harmful, safe, _, _ = _training_data()
    if styles:
        from certify.prompts.corpus import _training_benign_prompts, _training_harmful_extra

        harmful = [*harmful, *_training_harmful_extra(decontaminated=True)[0]]
        safe = [*safe, *_training_benign_prompts()[0]]
    if contrast:
        from certify.prompts._contrast import training_contrast_prompts

        more_harmful, more_safe = training_contrast_prompts()
        harmful, safe = [*harmful, *more_harmful], [*safe, *more_safe]
    if generic:
        from certify.prompts._contrast import generic_prompts

        harmful = [*harmful, *generic_prompts()]
    if generic2:
        from certify.prompts._blind import generic2_prompts

        harmful = [*harmful, *generic2_prompts()]
    if subset is not None:
        harmful, safe = harmful[:subset], safe[:subset]
    g = torch.Generator().manual_seed(0)
    extra = [*augment_safe(safe, max_per_prompt=2), *fragments(safe, SUBSETS_PER_PROMPT, g),
             *short_fragments(safe, SHORT_PER_PROMPT, 4, g)]
    enc = EmbeddingFilter().encoder()
    # start from the frozen encoder's shipped head (minilm_head.txt): step 0 is the earlier default filter
    model = _Model(enc[0].auto_model, enc.tokenizer, g, _frozen_minilm_filter().head_)
    model.encoder.eval()  # no dropout: deterministic
    opt = torch.optim.Adam([{"params": model.lora.parameters(), "lr": LR_LORA},
                            {"params": [model.w, model.bias], "lr": LR_HEAD}])

    def data(extra_safe: list[str]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        texts = [*harmful, *safe, *extra_safe]
        y = torch.cat([torch.ones(len(harmful)), torch.zeros(len(safe) + len(extra_safe))])
        n_safe = len(safe) + len(extra_safe)
        wts = torch.cat([torch.full((len(harmful),), harmful_weight * n_safe / len(harmful)), torch.ones(n_safe)])
        return texts, y, wts

    texts, y, wts = data(extra)
    for e in range(epochs):
        if log:
            log(f"epoch {e + 1}/{epochs}: {len(texts)} examples")
        _epoch(model, opt, texts, y, wts, g, log)
        if snapshot:
            snapshot(f"epoch{e + 1}", model.delta())
    for r in range(mine_rounds):
        picks = torch.randperm(len(safe), generator=g)[:mine_prompts].tolist()
        mined = [t for i in picks for t in _greedy_path(model, safe[i])]
        extra = [*extra, *mined]
        texts, y, wts = data(extra)
        for e in range(MINE_EPOCHS):
            if log:
                log(f"mining round {r + 1}: +{len(mined)} fragments; epoch {e + 1}: {len(texts)} examples")
            _epoch(model, opt, texts, y, wts, g, log)
        if snapshot:
            snapshot(f"mine{r + 1}", model.delta())
    return model.delta()


def delta_filter(delta: dict[str, np.ndarray]) -> Any:
    """An :class:`~certify.prompts.filters.EmbeddingFilter` with ``delta`` applied (threshold 0.5)."""
    from certify.prompts.filters import _filter_with_delta

    return _filter_with_delta(delta)


def main(argv: Sequence[str] | None = None) -> None:
    import time

    from certify.prompts.filters import _default_pac_threshold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("minilm_lora.npz"))
    parser.add_argument("--styles", action="store_true",
                        help="also train on the training-side benign styles and decontaminated harmful extras")
    parser.add_argument("--contrast", action="store_true",
                        help="also train on the harm-word contrast acts and terse frames (certify.prompts._contrast)")
    parser.add_argument("--generic", action="store_true",
                        help="also train on the generic harmful acts (certify.prompts._contrast.generic_prompts)")
    parser.add_argument("--generic2", action="store_true",
                        help="also train on the second generic harmful acts (certify.prompts._blind.generic2_prompts)")
    parser.add_argument("--harmful-weight", type=float, default=HARMFUL_WEIGHT,
                        help=f"weight of the harmful class relative to the safe class (default {HARMFUL_WEIGHT})")
    parser.add_argument("--calibration", choices=("generated", "mixture"), default="generated",
                        help="the PAC rule's calibration acts: the 130 generated calibration acts, or those plus the "
                             "blind generic calibration acts of certify.prompts._fresh2 (session 16)")
    args = parser.parse_args(argv)
    t0 = time.process_time()
    delta = train_delta(styles=args.styles, contrast=args.contrast, generic=args.generic, generic2=args.generic2,
                        harmful_weight=args.harmful_weight,
                        log=lambda s: print(f"[{time.process_time() - t0:7.0f} s CPU] {s}", flush=True))
    # group-valid: act ids of the calibration prompts
    pac = _default_pac_threshold(delta_filter(delta), mixture=args.calibration == "mixture")
    np.savez_compressed(args.out, **{"pac_threshold": np.array([pac]), **delta})  # type: ignore[arg-type]
    print(f"wrote {args.out} (pac_threshold {pac:.4f}; {time.process_time() - t0:.0f} s CPU)")


if __name__ == "__main__":  # pragma: no cover - a maintenance script
    main()
