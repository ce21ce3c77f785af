"""Erase-and-check: time per prompt by mode and d, against a straightforward loop; accuracy.

Baseline (the reference implementation's structure): build every erased token sequence in
a Python list (no dedup), decode each, and score them one at a time with the same filter,
with no early exit. Ours: :func:`certify.erase_and_check_batch` (dedup on id tuples,
batched filter calls shared across prompts, early exit on the first flagged batch).

Data: the held-out 20% of ``../shared/data/prompts`` (filter trained on the other 80% plus
the erased safe prompts not derived from held-out ones) when present, else certkit's
embedded prompt set (seeded 80/20 split). Run:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_erase_and_check.py``.
"""

from __future__ import annotations

import copy
import itertools
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from certify.prompts import (
    BagOfEmbeddingsFilter,
    PromptSet,
    TfidfFilter,
    embedded_prompts,
    load_prompt_dir,
)
from certify.prompts.erase_and_check import erase_and_check_batch
from certify.prompts.gradec import grad_erase_and_check
from certify.prompts.greedyec import greedy_erase_and_check
from certify.prompts.randec import random_erase_and_check
from certify.prompts.tokenizers import WordTokenizer

SHARED = Path(os.environ.get("CERTKIT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "prompts"


def data() -> tuple[str, PromptSet, PromptSet]:
    if SHARED.is_dir():
        train, test = load_prompt_dir(SHARED, test_fraction=0.2)
        return "shared (paper's prompts, held-out 20%)", train, test
    d = embedded_prompts()
    rng = np.random.default_rng(0)
    h, s = rng.permutation(len(d.harmful)), rng.permutation(len(d.safe))
    cut_h, cut_s = len(h) // 5, len(s) // 5
    test = PromptSet(tuple(d.harmful[i] for i in h[:cut_h]), tuple(d.safe[i] for i in s[:cut_s]))
    train = PromptSet(tuple(d.harmful[i] for i in h[cut_h:]), tuple(d.safe[i] for i in s[cut_s:]))
    return "embedded (certkit's prompts, held-out 20%; ../shared absent)", train, test


def baseline(prompts: list[str], filt: TfidfFilter, mode: str, d: int) -> list[bool]:
    """Reference-style loop: list of all erasures, decode each, score one at a time, no early exit."""
    tok = WordTokenizer()
    out = []
    for prompt in prompts:
        ids = tok.encode(prompt)
        n = len(ids)
        subs = [ids]
        if mode == "suffix":
            subs += [ids[: n - i] for i in range(1, min(d, n) + 1)]
        elif mode == "insertion":
            subs += [ids[:s] + ids[s + ell:] for s in range(n) for ell in range(1, d + 1) if s + ell <= n]
        else:
            for i in range(1, min(d, n) + 1):
                subs += [[t for j, t in enumerate(ids) if j not in c] for c in itertools.combinations(range(n), i)]
        flags = [filt.predict_proba([tok.decode(s)])[0] >= filt.threshold for s in subs]
        out.append(any(flags))
    return out


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def greedy_suffix(filt: TfidfFilter | BagOfEmbeddingsFilter, prompt: str, vocab: list[str], length: int) -> str:
    """A greedy suffix attack: append the word that most lowers the harmful score, `length` times."""
    out = prompt
    for _ in range(length):
        cands = [out + " " + v for v in vocab]
        out = cands[int(np.argmin(filt.predict_proba(cands)))]
    return out


def main() -> None:
    name, train, test = data()
    t0 = time.perf_counter()
    filt = TfidfFilter().fit(train.harmful, train.safe, extra_safe=train.erased_safe)
    fit_s = time.perf_counter() - t0
    print(f"data: {name}; train {len(train.harmful)} harmful + {len(train.safe)} safe + "
          f"{len(train.erased_safe)} erased safe; test {len(test.harmful)} harmful + {len(test.safe)} safe")
    print(f"filter: TF-IDF + logistic regression, fit in {fit_s:.1f} s")
    safe, harmful = list(test.safe), list(test.harmful)
    p_h = filt.predict_proba(harmful)
    print(f"clean harmful detected by the filter (= certified accuracy, every mode and d): {np.mean(p_h >= 0.5):.1%}")
    print()
    print("| mode | d | safe labelled safe | checks / prompt | ms / safe prompt | ms / harmful prompt "
          "| baseline ms / safe prompt | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    grid = [("suffix", 0), ("suffix", 10), ("suffix", 20), ("suffix", 30), ("insertion", 4), ("insertion", 8),
            ("insertion", 12), ("infusion", 1), ("infusion", 2), ("infusion", 3)]
    for mode, d in grid:
        certs, t_safe = timed(lambda mode=mode, d=d: erase_and_check_batch(safe, filt, mode=mode, max_erase=d))
        hcerts, t_harm = timed(lambda mode=mode, d=d: erase_and_check_batch(harmful, filt, mode=mode, max_erase=d))
        n_base = len(safe) if mode != "infusion" or d < 3 else 20
        base, t_base = timed(lambda mode=mode, d=d, n=n_base: baseline(safe[:n], filt, mode, d))
        acc = np.mean([not c.harmful for c in certs])
        assert base == [c.harmful for c in certs[:n_base]]  # same verdicts as the loop
        assert all(c.harmful for c, p in zip(hcerts, p_h) if p >= 0.5)  # the certificate
        per = 1e3 * t_safe / len(safe)
        per_base = 1e3 * t_base / n_base
        print(f"| {mode} | {d} | {acc:.1%} | {np.mean([c.checked for c in certs]):.1f} | {per:.2f} | "
              f"{1e3 * t_harm / len(harmful):.2f} | {per_base:.1f} | {per_base / per:.0f}x |", flush=True)

    print()
    # Attack vocabulary: the 60 most frequent words of the safe training prompts (they pull the score down).
    words = [w.strip("?.,!'\"").lower() for p in train.safe for w in p.split()]
    vocab = [w for w, _ in Counter(w for w in words if w.isalpha()).most_common(60)]
    flagged = [h for h, p in zip(harmful, p_h) if p >= 0.5][:30]
    attacked = [greedy_suffix(filt, h, vocab, 20) for h in flagged]
    print(f"greedy 20-word suffix attack (words of safe prompts) on {len(attacked)} flagged harmful prompts")
    print("| defence | % detected | ms / prompt |")
    print("|---|---|---|")
    alone, t = timed(lambda: filt.predict_proba(attacked) >= 0.5)
    print(f"| filter alone | {np.mean(alone):.1%} | {1e3 * t / len(attacked):.2f} |")
    res, t = timed(lambda: erase_and_check_batch(attacked, filt, mode="suffix", max_erase=20))
    print(f"| erase-and-check suffix d=20 (certified) | {np.mean([c.harmful for c in res]):.1%} | "
          f"{1e3 * t / len(attacked):.2f} |")
    for r in (0.1, 0.2, 0.3):
        res2, t = timed(lambda r=r: [random_erase_and_check(a, filt, ratio=r, max_erase=20, generator=torch.Generator().manual_seed(i))
                                     for i, a in enumerate(attacked)])
        print(f"| RandEC ratio={r} | {np.mean([c.harmful for c in res2]):.1%} | {1e3 * t / len(attacked):.2f} |")
    for it in (3, 6, 9, 12):
        res3, t = timed(lambda it=it: [greedy_erase_and_check(a, filt, num_iters=it) for a in attacked])
        print(f"| GreedyEC {it} rounds | {np.mean([c.harmful for c in res3]):.1%} | {1e3 * t / len(attacked):.2f} |")
    fp, t = timed(lambda: [greedy_erase_and_check(s, filt, num_iters=12).harmful for s in safe])
    print(f"GreedyEC 12 rounds flags {np.mean(fp):.1%} of the held-out safe prompts")

    print()
    t0 = time.perf_counter()
    erased = list(train.erased_safe)
    sample = [erased[i] for i in np.random.default_rng(0).permutation(len(erased))[:4000]]
    bag = BagOfEmbeddingsFilter(augment_per_prompt=10).fit(train.harmful, train.safe, extra_safe=sample)
    pb = bag.predict_proba(harmful)
    print(f"differentiable bag-of-embeddings filter (fit {time.perf_counter() - t0:.0f} s): clean harmful detected "
          f"{np.mean(pb >= 0.5):.1%}, clean safe passed {np.mean(bag.predict_proba(safe) < 0.5):.1%}")
    flagged_b = [h for h, p in zip(harmful, pb) if p >= 0.5][:30]
    attacked_b = [greedy_suffix(bag, h, vocab, 20) for h in flagged_b]
    print(f"greedy 20-word suffix attack on {len(attacked_b)} prompts the bag filter flags")
    print("| defence | % detected | ms / prompt |")
    print("|---|---|---|")
    alone, t = timed(lambda: bag.predict_proba(attacked_b) >= 0.5)
    print(f"| filter alone | {np.mean(alone):.1%} | {1e3 * t / len(attacked_b):.2f} |")
    res, t = timed(lambda: erase_and_check_batch(attacked_b, bag, mode="suffix", max_erase=20))
    print(f"| erase-and-check suffix d=20 (certified) | {np.mean([c.harmful for c in res]):.1%} | "
          f"{1e3 * t / len(attacked_b):.2f} |")
    for it in (5, 10, 25, 100):
        res4, t = timed(lambda it=it: [grad_erase_and_check(a, bag, num_iters=it) for a in attacked_b])
        print(f"| GradEC {it} iterations | {np.mean([c.harmful for c in res4]):.1%} | "
              f"{1e3 * t / len(attacked_b):.2f} |")
    res5, t = timed(lambda: [greedy_erase_and_check(a, bag, num_iters=9) for a in attacked_b])
    print(f"| GreedyEC 9 rounds | {np.mean([c.harmful for c in res5]):.1%} | {1e3 * t / len(attacked_b):.2f} |")
    fp2 = [grad_erase_and_check(s, bag, num_iters=25).harmful for s in safe]
    print(f"GradEC 25 iterations flags {np.mean(fp2):.1%} of the held-out safe prompts")

def vs_reference_one_call(repeats: int = 5, n: int = 100) -> None:
    """Issue 18: per-prompt time against the reference loop with ONE filter call per prompt (all its erasures).

    Both sides use the same fitted filter; each timing is the best of ``repeats`` runs (the 2-core machine is
    shared). Verdicts are asserted identical, and certkit's fast path (the filter's ``score_subsequences``)
    is also checked against the generic path (the same filter wrapped as a plain callable).
    """
    from certify.prompts import BagOfEmbeddingsFilter, CallableFilter, erase_and_check

    name, train, test = data()
    tfidf = TfidfFilter().fit(train.harmful, train.safe)
    bag = BagOfEmbeddingsFilter().fit(train.harmful, train.safe, generator=torch.Generator().manual_seed(0))
    bag_max = BagOfEmbeddingsFilter(pooling="max").fit(train.harmful, train.safe,
                                                       generator=torch.Generator().manual_seed(0))
    safe = list(test.safe)[:n]
    tok = WordTokenizer()
    print(f"data: {name}; {len(safe)} held-out safe prompts, mean {np.mean([len(tok.encode(p)) for p in safe]):.1f} "
          f"word tokens; CPU time per prompt, best of {repeats} runs")

    def ref(filt, p: str, mode: str, d: int) -> bool:  # type: ignore[no-untyped-def]
        ids = tok.encode(p)
        n = len(ids)
        if mode == "suffix":
            subs = [ids] + [ids[: n - i] for i in range(1, min(d, n) + 1)]
        else:
            subs = [ids] + [list(x) for x in {tuple(ids[:s] + ids[s + ell:]) for s in range(n)
                                                for ell in range(1, d + 1) if s + ell <= n}]
        texts = [t for t in (tok.decode(x) for x in subs) if t.strip()]  # "" is never harmful (as certkit)
        return bool(np.any(filt.predict_proba(texts) >= filt.threshold))

    def best(fn):  # type: ignore[no-untyped-def]
        times = []  # process CPU time (one thread): waiting for a core on the loaded machine is not counted
        for _ in range(repeats):
            for f in (tfidf, bag, bag_max):  # each run starts cold: no word analysis or token lookup remembered
                for cache in ("_word_memo", "_piece_memo"):  # (model state is kept: TF-IDF's n-gram index of fit,
                    f.__dict__.pop(cache, None)  # the bag's float64 weight copy)
            t0 = time.process_time()
            r = fn()
            times.append(time.process_time() - t0)
        return r, min(times)

    print("| filter | mode | d | reference, 1 call / prompt (ms) | erase_and_check (ms) | erase_and_check_batch (ms) |")
    print("|---|---|---|---|---|---|")
    for fname, filt in (("TF-IDF", tfidf), ("bag of embeddings", bag), ("bag of embeddings, max pooling", bag_max)):
        generic = CallableFilter(filt.predict_proba, threshold=filt.threshold)
        for mode, d in (("suffix", 20), ("insertion", 8)):
            r, tr = best(lambda f=filt, mode=mode, d=d: [ref(f, p, mode, d) for p in safe])
            s1, ts = best(lambda f=filt, mode=mode, d=d: [erase_and_check(p, f, mode=mode, max_erase=d).harmful
                                                         for p in safe])
            b, tb = best(lambda f=filt, mode=mode, d=d: [c.harmful for c in erase_and_check_batch(safe, f, mode=mode,
                                                                                                  max_erase=d)])
            g = [c.harmful for c in erase_and_check_batch(safe, generic, mode=mode, max_erase=d)]
            assert r == s1 == b == g
            k = 1e3 / len(safe)
            print(f"| {fname} | {mode} | {d} | {tr * k:.2f} | {ts * k:.2f} ({tr / ts:.1f}x) | "
                  f"{tb * k:.2f} ({tr / tb:.1f}x) |", flush=True)


def empirical_vs_gcg(n_attacked: int = 25, iters: int = 40) -> None:
    """Issue 18: detection of GCG adversarial prompts (t = 10, 20) by each defence, false positives on safe
    prompts (default and safe-calibrated thresholds), and adversarial training. Filter: the differentiable
    bag of embeddings trained on the shared 80% (GCG needs gradients)."""
    from certify.prompts import (
        empirical_threshold,
        gcg_attack,
        generated_prompts,
        split_by_act,
    )

    name, train, test = data()
    g0 = torch.Generator().manual_seed(0)
    erased = list(train.erased_safe)
    extra = [erased[i] for i in np.random.default_rng(0).permutation(len(erased))[:4000]]
    bag = BagOfEmbeddingsFilter(augment_per_prompt=10).fit(train.harmful, train.safe, extra_safe=extra, generator=g0)
    safe, harmful = list(test.safe), list(test.harmful)
    flagged = [h for h in harmful if bag.predict_proba([h])[0] >= bag.threshold][:n_attacked]
    cal_safe = list(split_by_act(generated_prompts())[1].safe)[:150]  # certkit's own prompts, unseen by the filter
    print(f"data: {name}; bag-of-embeddings filter: clean harmful detected "
          f"{np.mean(bag.predict_proba(harmful) >= 0.5):.1%}, clean safe kept {np.mean(bag.predict_proba(safe) < 0.5):.1%}")
    t0 = time.process_time()
    thr_greedy = empirical_threshold(cal_safe, bag, method="greedyec", num_iters=12)
    thr_grad = empirical_threshold(cal_safe, bag, method="gradec", num_iters=25)
    print(f"safe-calibrated thresholds (alpha = 5%, 150 generated safe prompts): GreedyEC-12 {thr_greedy:.3f}, "
          f"GradEC-25 {thr_grad:.3f} ({time.process_time() - t0:.0f} s CPU)")

    def at(thr: float) -> BagOfEmbeddingsFilter:
        f = copy.copy(bag)
        f.threshold = thr
        return f

    attacked = {}
    for t in (10, 20):
        t0 = time.process_time()
        att = [gcg_attack(h, bag, num_tokens=t, mode="suffix", num_iters=iters, generator=torch.Generator().manual_seed(i))
               for i, h in enumerate(flagged)]
        attacked[t] = [a.attacked for a in att]
        print(f"GCG t={t}: {len(att)} flagged held-out harmful prompts, filter fooled on "
              f"{np.mean([a.score_after < bag.threshold for a in att]):.0%} "
              f"({(time.process_time() - t0) / len(att):.2f} s CPU / prompt)", flush=True)
    rows = [
        ("filter alone", lambda ps, t: [bool(p >= bag.threshold) for p in bag.predict_proba(ps)]),
        ("erase-and-check suffix, d = t (certified)", lambda ps, t: [c.harmful for c in erase_and_check_batch(ps, bag, mode="suffix", max_erase=t)]),
        ("erase-and-check insertion, d = t (certified)", lambda ps, t: [c.harmful for c in erase_and_check_batch(ps, bag, mode="insertion", max_erase=t)]),
        ("RandEC suffix d = t, ratio 0.3", lambda ps, t: [random_erase_and_check(p, bag, ratio=0.3, max_erase=t, generator=torch.Generator().manual_seed(i)).harmful for i, p in enumerate(ps)]),
        ("GreedyEC 12 rounds", lambda ps, t: [greedy_erase_and_check(p, bag, num_iters=12).harmful for p in ps]),
        (f"GreedyEC 12 rounds, safe-calibrated threshold {thr_greedy:.3f}", lambda ps, t: [greedy_erase_and_check(p, at(thr_greedy), num_iters=12).harmful for p in ps]),
        ("GradEC 25 iterations", lambda ps, t: [grad_erase_and_check(p, bag, num_iters=25).harmful for p in ps]),
        (f"GradEC 25 iterations, safe-calibrated threshold {thr_grad:.3f}", lambda ps, t: [grad_erase_and_check(p, at(thr_grad), num_iters=25).harmful for p in ps]),
    ]
    print()
    print("| defence | GCG t = 10 detected | GCG t = 20 detected | safe prompts flagged (t = 10 / 20 settings) | ms CPU / prompt (t = 20) |")
    print("|---|---|---|---|---|")
    for label, fn in rows:
        d10, d20 = np.mean(fn(attacked[10], 10)), None
        t0 = time.process_time()
        d20 = np.mean(fn(attacked[20], 20))
        ms = 1e3 * (time.process_time() - t0) / len(attacked[20])
        fp10, fp20 = np.mean(fn(safe, 10)), np.mean(fn(safe, 20))
        print(f"| {label} | {d10:.1%} | {d20:.1%} | {fp10:.1%} / {fp20:.1%} | {ms:.1f} |", flush=True)


def adversarial_asr(n_attacked: int = 25, iters: int = 40) -> None:
    """Issue 18: attack success rate of fresh GCG attacks (same budget) on held-out harmful prompts, against the
    bag-of-embeddings filter before and after ``adversarial_training`` (one round; with and without its random
    attacked copies), mean and max pooling."""
    from certify.prompts import adversarial_training, gcg_attack

    name, train, test = data()
    erased = list(train.erased_safe)
    extra = [erased[i] for i in np.random.default_rng(0).permutation(len(erased))[:4000]]
    bag = BagOfEmbeddingsFilter(augment_per_prompt=10).fit(train.harmful, train.safe, extra_safe=extra,
                                                           generator=torch.Generator().manual_seed(0))
    safe, harmful = list(test.safe), list(test.harmful)
    filters = {"standard": bag}
    for label, copies in (("adversarially trained, random_attacks=0 (GCG only)", 0),
                          ("adversarially trained (default: GCG + 8 random copies)", 8)):
        t0 = time.process_time()
        filters[label] = adversarial_training(bag, list(train.harmful), list(train.safe), num_tokens=10,
                                              random_attacks=copies, extra_safe=extra, num_iters=20,
                                              generator=torch.Generator().manual_seed(1))
        print(f"{label}: {time.process_time() - t0:.0f} s CPU", flush=True)
    # max pooling: adding tokens never lowers the highest word score, so no suffix / insertion / infusion attack
    # can succeed on a prompt the filter flags, trained adversarially or not
    bag_max = BagOfEmbeddingsFilter(augment_per_prompt=10, pooling="max").fit(
        train.harmful, train.safe, extra_safe=extra, generator=torch.Generator().manual_seed(0))
    filters["max pooling"] = bag_max
    filters["max pooling, adversarially trained (default)"] = adversarial_training(
        bag_max, list(train.harmful), list(train.safe), num_tokens=10, extra_safe=extra, num_iters=20,
        generator=torch.Generator().manual_seed(1))
    print(f"data: {name}; GCG ({iters} iterations, top-k 50, 128 candidates) on the first {n_attacked} held-out "
          "harmful prompts each filter flags")
    print("| filter | clean harmful flagged | clean safe kept | suffix t = 10 | suffix t = 20 | insertion t = 10 "
          "| infusion t = 10 |")
    print("|---|---|---|---|---|---|---|")
    for fname, f in filters.items():
        targets = [h for h in harmful if f.predict_proba([h])[0] >= f.threshold][:n_attacked]
        cells = []
        for mode, t in (("suffix", 10), ("suffix", 20), ("insertion", 10), ("infusion", 10)):
            res = [gcg_attack(h, f, num_tokens=t, mode=mode, num_iters=iters, generator=torch.Generator().manual_seed(i))
                   for i, h in enumerate(targets)]
            cells.append(f"{np.mean([r.score_after < f.threshold for r in res]):.0%}")
        print(f"| {fname} | {np.mean(f.predict_proba(harmful) >= f.threshold):.1%} | "
              f"{np.mean(f.predict_proba(safe) < f.threshold):.1%} | " + " | ".join(cells) + " |", flush=True)


def fragment_false_positives(n_attacked: int = 20, iters: int = 40) -> None:
    """Issue 18: GreedyEC / GradEC false positives on the held-out safe prompts at the paper's settings (9 / 12
    rounds, 10 / 25 iterations, threshold 0.5), for bag filters trained with random infusion erasures of the safe
    prompts, then with ``fragment_training`` (the fragments the searches reach on the safe training prompts added
    as safe), mean and max pooling; with GCG suffixes (t = 10, 20) on the first ``n_attacked`` held-out harmful
    prompts each filter flags: the attack's success rate and the share of attacked prompts each defence flags."""
    from certify.prompts import fragment_training, gcg_attack

    name, train, test = data()
    erased = list(train.erased_safe)
    extra = [erased[i] for i in np.random.default_rng(0).permutation(len(erased))[:4000]]
    safe, harmful = list(test.safe), list(test.harmful)
    print(f"data: {name}; {len(safe)} held-out safe, {len(harmful)} held-out harmful prompts; CPU seconds")
    aug = ("suffix", "insertion", "infusion")
    filters = {}
    for label, kw in (("mean pooling", {}), ("max pooling", {"pooling": "max"})):
        t0 = time.process_time()
        base = BagOfEmbeddingsFilter(augment_per_prompt=20, augment=aug, **kw).fit(
            train.harmful, train.safe, extra_safe=extra, generator=torch.Generator().manual_seed(0))
        filters[f"{label}, random infusion erasures"] = (base, time.process_time() - t0)
        t0 = time.process_time()
        filters[f"{label}, + fragment_training"] = (fragment_training(
            base, train.harmful, train.safe, extra_safe=extra, generator=torch.Generator().manual_seed(0)),
            time.process_time() - t0)
    defences = (("GreedyEC 9", lambda p, f: greedy_erase_and_check(p, f, num_iters=9).harmful),
                ("GreedyEC 12", lambda p, f: greedy_erase_and_check(p, f, num_iters=12).harmful),
                ("GradEC 10", lambda p, f: grad_erase_and_check(p, f, num_iters=10).harmful),
                ("GradEC 25", lambda p, f: grad_erase_and_check(p, f, num_iters=25).harmful))
    print("| filter (threshold 0.5) | fit s | clean harmful flagged | clean safe kept | "
          + " | ".join(f"{d} safe flagged" for d, _ in defences) + " |")
    print("|---|---|---|---|" + "---|" * len(defences))
    for fname, (f, secs) in filters.items():
        fp = [np.mean([fn(s_, f) for s_ in safe]) for _, fn in defences]
        print(f"| {fname} | {secs:.0f} | {np.mean(f.predict_proba(harmful) >= f.threshold):.1%} | "
              f"{np.mean(f.predict_proba(safe) < f.threshold):.1%} | " + " | ".join(f"{x:.1%}" for x in fp) + " |",
              flush=True)
    print()
    print(f"GCG suffixes ({iters} iterations) on the first {n_attacked} held-out harmful prompts each filter flags: "
          "attack success (filter fooled), then the share of attacked prompts each defence flags")
    print("| filter | t | GCG success | filter alone | " + " | ".join(d for d, _ in defences) + " |")
    print("|---|---|---|---|" + "---|" * len(defences))
    for fname, (f, _) in filters.items():
        targets = [h for h in harmful if f.predict_proba([h])[0] >= f.threshold][:n_attacked]
        for t in (10, 20):
            att = [gcg_attack(h, f, num_tokens=t, mode="suffix", num_iters=iters,
                              generator=torch.Generator().manual_seed(i)).attacked for i, h in enumerate(targets)]
            alone = f.predict_proba(att) >= f.threshold
            det = [np.mean([fn(a, f) for a in att]) for _, fn in defences]
            print(f"| {fname} | {t} | {1 - np.mean(alone):.0%} | {np.mean(alone):.0%} | "
                  + " | ".join(f"{x:.0%}" for x in det) + " |", flush=True)


class _SearchRecorder:
    """Wraps a filter for GreedyEC / GradEC: flags nothing (scores capped below 1, threshold 1) so that the search
    runs to the end, and records per ``predict_proba`` call its largest score on visible strings and the number of
    GradEC gradient steps taken before it. The search path does not depend on the threshold (only where it stops),
    so one run per prompt gives the verdict of every shorter run (GreedyEC-9 is the first 10 calls of GreedyEC-12,
    GradEC-10 the candidates scored within the first 10 steps of GradEC-25) at every threshold."""

    def __init__(self, filt: object) -> None:
        self.filt, self.threshold, self.calls, self.steps = filt, 1.0, [], 0
        for name in ("token_ids", "token_embeddings", "token_strings"):
            if hasattr(filt, name):
                setattr(self, name, getattr(filt, name))

    def logit_from_embeddings(self, emb: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        self.steps += 1
        return self.filt.logit_from_embeddings(emb, keep)  # type: ignore[attr-defined,no-any-return]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        from certkit._validation import has_visible

        p = np.asarray(self.filt.predict_proba(texts), dtype=np.float64)  # type: ignore[attr-defined]
        vis = np.array([has_visible(t) for t in texts], dtype=bool)
        self.calls.append((self.steps, float(np.max(np.where(vis, p, 0.0))) if len(p) else 0.0))
        return np.minimum(p, np.nextafter(1.0, 0.0))


def search_maxima(filt: object, prompts: list[str]) -> np.ndarray:
    """(N, 4): per prompt the largest score GreedyEC-9, GreedyEC-12, GradEC-10 and GradEC-25 compare with the
    threshold; the prompt is flagged at threshold t iff the entry is >= t."""
    out = []
    for s in prompts:
        g = _SearchRecorder(filt)
        greedy_erase_and_check(s, g, num_iters=12)
        r = _SearchRecorder(filt)
        grad_erase_and_check(s, r, num_iters=25)
        gm = [m for _, m in g.calls]
        out.append((max(gm[:10]), max(gm), max(m for k, m in r.calls if k <= 10), max(m for _, m in r.calls)))
    return np.array(out)


_DELTA: str | None = None  # --delta PATH
_DELTA_ONLY = False  # --delta-only
_DEFAULT_ONLY = False  # --default-only
_DELTA_NAMES: set[str] = set()  # names of the --delta filters in _minilm_filters(): the ones tested at 0.5


def _minilm_filters() -> dict[str, object]:
    """The default MiniLM filter (the shipped LoRA delta) and the frozen encoder with the shipped head, and with
    ``--delta PATH`` the filter of an encoder delta written by ``python -m certify.prompts._minilm_lora --out PATH``
    (its PAC threshold is stored in the file)."""
    from certify.prompts import default_filter
    from certify.prompts.filters import _filter_with_delta, _frozen_minilm_filter

    out: dict[str, object] = {} if _DELTA_ONLY else {"default (shipped LoRA delta + head)": default_filter()}
    if not (_DELTA_ONLY or _DEFAULT_ONLY):
        out["frozen encoder + minilm_head.txt"] = _frozen_minilm_filter()
    if _DELTA is not None:
        path = _DELTA
        name = f"LoRA-fine-tuned encoder + head ({Path(path).name})"
        with np.load(path) as npz:
            out[name] = _filter_with_delta({k: npz[k] for k in npz.files})
        _DELTA_NAMES.add(name)
    return out


def _gcg_threshold(name: str, f: object) -> float:
    """The threshold ``--minilm-gcg`` / ``--minilm-gcg-insertion`` test filter ``name`` at (set on ``f``): 0.5 for a
    ``--delta`` filter, the filter's own (PAC) threshold otherwise. (Before issue 18 session 13 a ``"LoRA" in name``
    test also moved the shipped default, "default (shipped LoRA delta + head)", to 0.5.)"""
    if name in _DELTA_NAMES:
        f.threshold = 0.5  # type: ignore[attr-defined]
    return float(f.threshold)  # type: ignore[attr-defined]


def minilm_false_positives(n: int = 40) -> None:
    """GreedyEC (9, 12 rounds) and GradEC (10, 25 iterations) false positives of the MiniLM filters (the default,
    whose encoder is fine-tuned, and the frozen encoder with the shipped head) on the first ``n`` held-out shared
    safe prompts, at each filter's PAC threshold and at 0.5 (one full search per prompt: ``search_maxima``)."""
    safe = list(data()[2].safe)[:n]
    print(f"{len(safe)} held-out safe prompts; share flagged")
    print("| MiniLM filter | threshold | GreedyEC-9 | GreedyEC-12 | GradEC-10 | GradEC-25 | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, f in _minilm_filters().items():
        t0 = time.process_time()
        m = search_maxima(f, safe)
        secs = time.process_time() - t0
        for thr in (f.pac_threshold_, 0.5):  # type: ignore[attr-defined]
            print(f"| {name} | {thr:.3f} | " + " | ".join(f"{x:.1%}" for x in (m >= thr).mean(0))
                  + f" | {secs:.0f} |", flush=True)


def generated_safe_sets() -> dict[str, list[str]]:
    """The generated held-out safe prompts on which GreedyEC / GradEC false positives are measured and retrained
    MiniLM models are chosen (issue 18, session 12; never the shared data): the held-out knowledge questions (32
    topics x 4 frames), 2 frames of each held-out benign act (24 acts), and the evaluation-only diverse benign prompts
    (``corpus._EVALUATION_BENIGN``, 66: questions, code, creative writing, plans, multi-sentence requests)."""
    from certify.prompts import generated_prompts, split_by_act
    from certify.prompts.corpus import _evaluation_benign_prompts, _knowledge_prompts

    _, _, held = split_by_act(generated_prompts())
    count: Counter[int] = Counter()
    acts = []
    for p, g, y in zip(held.prompts, held.groups, held.labels):
        if y == 0 and count[g] < 2:
            count[g] += 1
            acts.append(p)
    return {"held-out knowledge questions": list(_knowledge_prompts(held_out=True)),
            "held-out benign acts (2 frames each)": acts,
            "evaluation-only diverse benign": list(_evaluation_benign_prompts())}


def minilm_false_positives_generated() -> None:
    """GreedyEC-9/12 and GradEC-10/25 false positives of the default MiniLM filter (and of ``--delta PATH``; the
    frozen-encoder head is left out: it is not a candidate) on the generated held-out safe sets of
    :func:`generated_safe_sets`, at each filter's PAC threshold and at 0.5, with the share flagged unattacked."""
    sets = generated_safe_sets()
    filters = _minilm_filters()
    filters.pop("frozen encoder + minilm_head.txt", None)
    print("| MiniLM filter | safe set (n) | threshold | clean prompt | GreedyEC-9 | GreedyEC-12 | GradEC-10 | GradEC-25 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f in filters.items():
        t0 = time.process_time()
        allm = []
        for sname, prompts in sets.items():
            m = search_maxima(f, prompts)
            clean = np.asarray(f.predict_proba(prompts), dtype=np.float64)  # type: ignore[attr-defined]
            allm.append((clean, m))
            for thr in (f.pac_threshold_, 0.5):  # type: ignore[attr-defined]
                print(f"| {name} | {sname} ({len(prompts)}) | {thr:.3f} | {np.mean(clean >= thr):.1%} | "
                      + " | ".join(f"{x:.1%}" for x in (m >= thr).mean(0)) + " |", flush=True)
        clean, m = np.concatenate([c for c, _ in allm]), np.concatenate([x for _, x in allm])
        thr = f.pac_threshold_  # type: ignore[attr-defined]
        print(f"| {name} | all ({len(clean)}) | {thr:.3f} | {np.mean(clean >= thr):.1%} | "
              + " | ".join(f"{x:.1%}" for x in (m >= thr).mean(0)) + f" | ({time.process_time() - t0:.0f} CPU s)",
              flush=True)


def minilm_adversarial(n_attacked: int = 20, iters: int = 20) -> None:
    """Issue 18: adversarial training of the MiniLM embedding filter (head refitted; GCG through the encoder) on the
    shared 80%: attack success of fresh GCG attacks (t = 10) on the first ``n_attacked`` held-out harmful prompts
    each filter flags, before and after one round (GCG 8 iterations, 32 candidates per training prompt)."""
    from certify.prompts import EmbeddingFilter, adversarial_training, gcg_attack

    name, train, test = data()
    safe, harmful = list(test.safe), list(test.harmful)
    t0 = time.process_time()
    base = EmbeddingFilter(augment_per_prompt=2).fit(train.harmful, train.safe)
    print(f"data: {name}; MiniLM head fitted in {time.process_time() - t0:.0f} s CPU", flush=True)
    t0 = time.process_time()
    adv = adversarial_training(base, list(train.harmful), list(train.safe), num_tokens=10, modes=("suffix", "insertion"),
                               num_iters=8, num_candidates=32, generator=torch.Generator().manual_seed(1))
    print(f"adversarial training: {time.process_time() - t0:.0f} s CPU", flush=True)
    print("| MiniLM filter | clean harmful flagged | clean safe kept | GCG suffix t = 10 success | GCG insertion t = 10 success |")
    print("|---|---|---|---|---|")
    for fname, f in (("standard", base), ("adversarially trained (GCG + 8 random copies)", adv)):
        targets = [h for h in harmful if f.predict_proba([h])[0] >= f.threshold][:n_attacked]
        cells = []
        for mode in ("suffix", "insertion"):
            res = [gcg_attack(h, f, num_tokens=10, mode=mode, num_iters=iters, num_candidates=64,
                              generator=torch.Generator().manual_seed(i)) for i, h in enumerate(targets)]
            cells.append(f"{np.mean([r.score_after < f.threshold for r in res]):.0%}")
        print(f"| {fname} | {np.mean(f.predict_proba(harmful) >= f.threshold):.1%} | "
              f"{np.mean(f.predict_proba(safe) < f.threshold):.1%} | " + " | ".join(cells) + " |", flush=True)


def adversarial_rounds(n_attacked: int = 25, iters: int = 40) -> None:
    """Issue 18: a setting where adversarial training lowers the attack success rate on the held-out shared
    prompts. Mean-pooled bag filter (shared 80%), ``adversarial_training`` with 3 rounds (GCG t = 10, 20
    iterations, + 8 random attacked copies per harmful prompt; and with ``random_attacks=0``); fresh GCG suffix
    attacks (``iters`` iterations) with budgets t = 5 and t = 10 on the first ``n_attacked`` held-out harmful
    prompts each filter flags."""
    from certify.prompts import adversarial_training, gcg_attack

    name, train, test = data()
    erased = list(train.erased_safe)
    extra = [erased[i] for i in np.random.default_rng(0).permutation(len(erased))[:4000]]
    bag = BagOfEmbeddingsFilter(augment_per_prompt=10).fit(train.harmful, train.safe, extra_safe=extra,
                                                           generator=torch.Generator().manual_seed(0))
    safe, harmful = list(test.safe), list(test.harmful)
    filters: dict[str, tuple[BagOfEmbeddingsFilter, float]] = {"standard": (bag, 0.0)}
    for label, rounds, copies in (("3 rounds, GCG only (`random_attacks=0`)", 3, 0),
                                  ("1 round (default: GCG + 8 random copies)", 1, 8),
                                  ("3 rounds (GCG + 8 random copies)", 3, 8)):
        t0 = time.process_time()
        adv = adversarial_training(bag, list(train.harmful), list(train.safe), rounds=rounds, num_tokens=10,
                                   random_attacks=copies, extra_safe=extra, num_iters=20,
                                   generator=torch.Generator().manual_seed(1))
        filters[label] = (adv, time.process_time() - t0)
    print(f"data: {name}; GCG suffix ({iters} iterations, top-k 50, 128 candidates) on the first {n_attacked} "
          "held-out harmful prompts each filter flags; attack success rate (the filter no longer flags)")
    print("| mean-pooled bag filter | training s CPU | clean harmful flagged | clean safe kept | GCG t = 5 success "
          "| GCG t = 10 success |")
    print("|---|---|---|---|---|---|")
    for fname, (f, secs) in filters.items():
        targets = [h for h in harmful if f.predict_proba([h])[0] >= f.threshold][:n_attacked]
        cells = []
        for t in (5, 10):
            res = [gcg_attack(h, f, num_tokens=t, mode="suffix", num_iters=iters,
                              generator=torch.Generator().manual_seed(i)) for i, h in enumerate(targets)]
            ok = sum(r.score_after < f.threshold for r in res)
            cells.append(f"{ok / len(res):.0%} ({ok}/{len(res)})")
        print(f"| {fname} | {secs:.0f} | {np.mean(f.predict_proba(harmful) >= f.threshold):.1%} | "
              f"{np.mean(f.predict_proba(safe) < f.threshold):.1%} | " + " | ".join(cells) + " |", flush=True)


def minilm_vs_gcg(n_attacked: int = 8, iters: int = 20, n_safe: int = 40) -> None:
    """Issue 18: detection of GCG suffixes (t = 10, 20 word tokens; ``iters`` iterations, 64 candidates, top-k 50)
    on the first ``n_attacked`` held-out shared harmful prompts the default MiniLM filter flags, by each defence at
    the filter's PAC threshold (with ``--delta PATH`` also the fine-tuned filter at 0.5), and the false positives of
    the same defences on the first ``n_safe`` held-out shared safe prompts. GreedyEC / GradEC via ``search_maxima``."""
    from certify.prompts import gcg_attack

    _, _, test = data()
    safe, harmful = list(test.safe)[:n_safe], list(test.harmful)
    filters = _minilm_filters()
    for name, f in filters.items():
        thr = _gcg_threshold(name, f)
        targets = [h for h in harmful if f.predict_proba([h])[0] >= thr][:n_attacked]  # type: ignore[attr-defined]
        attacked: dict[int, list[str]] = {}
        for t in (10, 20):
            t0 = time.process_time()
            att = [gcg_attack(h, f, num_tokens=t, mode="suffix", num_iters=iters, num_candidates=64,
                              generator=torch.Generator().manual_seed(i)) for i, h in enumerate(targets)]
            attacked[t] = [a.attacked for a in att]
            print(f"{name}, threshold {thr:.3f}: GCG t={t} on {len(att)} flagged held-out harmful prompts fools the "
                  f"filter on {np.mean([a.score_after < thr for a in att]):.0%} "
                  f"({(time.process_time() - t0) / len(att):.0f} s CPU / prompt)", flush=True)
        rows: list[tuple[str, object]] = [
            ("filter alone", lambda ps, t, f=f, thr=thr: [bool(p >= thr) for p in f.predict_proba(ps)]),
            ("erase-and-check suffix, d = t (certified)",
             lambda ps, t, f=f: [c.harmful for c in erase_and_check_batch(ps, f, mode="suffix", max_erase=t)]),
            ("RandEC suffix d = t, ratio 0.3", lambda ps, t, f=f: [random_erase_and_check(
                p, f, ratio=0.3, max_erase=t, generator=torch.Generator().manual_seed(i)).harmful
                for i, p in enumerate(ps)]),
        ]
        print(f"| {name}, threshold {thr:.3f} | GCG t = 10 detected | GCG t = 20 detected "
              f"| safe flagged (t = 10 / 20 settings) |")
        print("|---|---|---|---|")
        for label, fn in rows:
            d = [np.mean(fn(attacked[t], t)) for t in (10, 20)]  # type: ignore[operator]
            fp = [np.mean(fn(safe, t)) for t in (10, 20)]  # type: ignore[operator]
            print(f"| {label} | {d[0]:.0%} | {d[1]:.0%} | {fp[0]:.1%} / {fp[1]:.1%} |", flush=True)
        m = {t: search_maxima(f, attacked[t]) >= thr for t in (10, 20)}
        fp_m = search_maxima(f, safe) >= thr
        for j, label in enumerate(("GreedyEC 9 rounds", "GreedyEC 12 rounds", "GradEC 10 iterations",
                                   "GradEC 25 iterations")):
            print(f"| {label} | {m[10][:, j].mean():.0%} | {m[20][:, j].mean():.0%} | {fp_m[:, j].mean():.1%} |",
                  flush=True)


def threshold_rules(seeds: int = 200) -> None:
    """Issue 18, session 11: each default filter's threshold under valid and invalid PAC rules (epsilon = delta =
    0.05) on the calibration harmful prompts (520 of 130 acts since session 12; 392 of 98 before), and its accuracy
    there. Rules: per-prompt (Park et al.; not valid for prompts clustered by act), group KL (the shipped rule,
    ``pac_threshold(..., groups=acts)``), the lowest score per act + the binomial rule, one random frame per act +
    the binomial rule (``seeds`` draws: median and 5-95%). Harmful flagged / safe kept on the held-out generated part (with the mean per-act miss
    fraction and the acts with a miss) and on all of ``../shared/data/prompts``."""
    from certify.prompts import generated_filter, generated_prompts, pac_threshold, split_by_act
    from certify.prompts.filters import _frozen_minilm_filter, default_filter, has_minilm
    from certkit._ranks import pac_rank

    _, cal, held = split_by_act(generated_prompts())
    cal_h = [p for p, y in zip(cal.prompts, cal.labels) if y == 1]
    cg = np.array([g for g, y in zip(cal.groups, cal.labels) if y == 1])
    hg = np.array([g for g, y in zip(held.groups, held.labels) if y == 1])
    sets = {"held-out generated": (list(held.harmful), list(held.safe))}
    if SHARED.is_dir():
        a, b = load_prompt_dir(SHARED, test_fraction=1.0)
        sets["shared prompts"] = (list(a.harmful + b.harmful), list(a.safe + b.safe))
    filters = {"TF-IDF fallback": lambda: generated_filter(kind="tfidf")}
    if has_minilm():
        filters = {"default (LoRA)": default_filter, "frozen encoder + head": _frozen_minilm_filter, **filters}
    acts = np.unique(cg)
    k = pac_rank(len(acts), 0.05, 0.05)
    print("| filter | rule | threshold | " + " | ".join(sets) + " | held-out acts with a miss, mean act miss |")
    print("|---|---|---|" + "---|" * len(sets) + "---|")
    for name, make in filters.items():
        f = make()
        c = np.asarray(f.predict_proba(cal_h), dtype=np.float64)
        probs = {key: (f.predict_proba(h), f.predict_proba(s)) for key, (h, s) in sets.items()}
        mins = np.sort([c[cg == g].min() for g in acts])
        rnd = []
        for seed in range(seeds):
            gen = torch.Generator().manual_seed(seed)
            pick = [c[cg == g][int(torch.randint(int((cg == g).sum()), (1,), generator=gen))] for g in acts]
            rnd.append(np.sort(pick)[k])
        rules = {"per-prompt (not valid here)": pac_threshold(c), "group KL": pac_threshold(c, groups=cg),
                 "lowest per act + binomial": float(mins[k]), "random frame + binomial, median": float(np.median(rnd)),
                 # the group rule, for the TF-IDF fallback capped at its out-of-fold max (session 14)
                 "**shipped**": float(f.pac_threshold_)}  # type: ignore[union-attr,arg-type]
        for rule, thr in rules.items():
            cells = [f"{np.mean(ph >= thr):.1%} / {np.mean(ps < thr):.1%}" for ph, ps in probs.values()]
            miss = probs["held-out generated"][0] < thr
            am = np.array([miss[hg == g].mean() for g in np.unique(hg)])
            print(f"| {name} | {rule} | {thr:.4f} | " + " | ".join(cells)
                  + f" | {int((am > 0).sum())} / {len(am)}, {am.mean():.1%} |", flush=True)
        print(f"| {name} | random frame + binomial, 5-95% over {seeds} draws | "
              f"{np.quantile(rnd, 0.05):.4f}-{np.quantile(rnd, 0.95):.4f} | |" + " |" * len(sets), flush=True)


def minilm_accuracy() -> None:
    """The MiniLM filters' accuracy (harmful flagged / safe kept) on the held-out generated prompts (acts never
    trained on) and on all of ``../shared/data/prompts`` (never trained on), at 0.5, 0.3 and each PAC threshold."""
    from certify.prompts import generated_prompts, split_by_act

    _, _, held = split_by_act(generated_prompts())
    sets = {"held-out generated": (list(held.harmful), list(held.safe))}
    if SHARED.is_dir():
        a, b = load_prompt_dir(SHARED, test_fraction=1.0)
        sets["shared prompts"] = (list(a.harmful + b.harmful), list(a.safe + b.safe))
    print("| MiniLM filter | threshold | " + " | ".join(sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for name, f in _minilm_filters().items():
        probs = {k: (f.predict_proba(h), f.predict_proba(s)) for k, (h, s) in sets.items()}  # type: ignore[attr-defined]
        for thr in (0.5, 0.3, f.pac_threshold_):  # type: ignore[attr-defined]
            cells = [f"{np.mean(ph >= thr):.1%} / {np.mean(ps < thr):.1%}" for ph, ps in probs.values()]
            print(f"| {name} | {thr:.3f} | " + " | ".join(cells) + " |", flush=True)


def default_thresholds(thresholds: tuple[float, ...] = (0.963, 0.99, 0.999, 0.9999)) -> None:
    """The shipped default filter's trade-off above its PAC threshold (issue 18, session 15): harmful flagged and
    safe kept at each threshold on the harm-word benign acts of the fresh-2 evaluation set (kept by
    ``_fresh2.kept()``, 2 corpus + 2 terse frames), the session-14 fresh evaluation-only acts, and (when present) all
    of ``../shared/data/prompts``. A threshold above the PAC one keeps more benign prompts but voids its guarantee."""
    from certify.prompts import _contrast, _fresh2, default_filter
    from certify.prompts.corpus import _evaluation_act_prompts

    kept = _fresh2.kept()["EVALUATION_BENIGN_ACTS"]
    fresh = _evaluation_act_prompts()
    sets = {"fresh-2 harm-word benign kept": (_contrast._framed([a for a in kept if a in
                                                                  _fresh2.EVALUATION_BENIGN_ACTS[:40]], 2, 2), 0),
            "fresh benign kept": (list(fresh.safe), 0), "fresh harmful flagged": (list(fresh.harmful), 1)}
    if SHARED.is_dir():
        a, b = load_prompt_dir(SHARED, test_fraction=1.0)
        sets["shared harmful flagged"] = (list(a.harmful + b.harmful), 1)
        sets["shared safe kept"] = (list(a.safe + b.safe), 0)
    f = default_filter()
    scores = {k: (np.asarray(f.predict_proba(x)), y) for k, (x, y) in sets.items()}
    print("| default filter threshold | " + " | ".join(f"{k} ({len(sets[k][0])})" for k in sets) + " |")
    print("|---|" + "---|" * len(sets))
    for t in thresholds:
        cells = [f"{np.mean(s >= t) if y else np.mean(s < t):.1%}" for s, y in scores.values()]
        print(f"| {t:g} | " + " | ".join(cells) + " |", flush=True)


def _act_miss(f: object, acts: list[str], thr: float) -> np.ndarray:
    """Per act, the share of its 4 frames (2 corpus + 2 terse, ``_contrast._framed``) scored below ``thr``: missed
    for a harmful act, kept for a benign one."""
    from certify.prompts import _contrast

    p = np.asarray(f.predict_proba(_contrast._framed(acts, 2, 2)), dtype=np.float64)  # type: ignore[attr-defined]
    return (p < thr).reshape(len(acts), 4).mean(1)


def fresh_acts(sets: tuple[str, ...] = ("fresh2", "fresh3", "fresh4", "fresh5", "shared")) -> None:
    """Issue 18, session 16: the MiniLM filters (the default and ``--delta``) at their PAC thresholds on the blind
    evaluation acts of ``_fresh2`` to ``_fresh5`` (those their ``kept()`` keeps; 2 corpus + 2 terse frames per act):
    mean act miss (share of a harmful act's frames not flagged, averaged over acts; all / generic / victim-or-purpose)
    and benign kept (all / harm-word / everyday); and on all of ``../shared/data/prompts`` (when present), harmful
    flagged / safe kept. ``sets`` chooses which (``--fresh-sets``)."""
    from certify.prompts import _fresh2, _fresh3, _fresh4, _fresh5

    parts: dict[str, tuple[list[str], set[str], list[str], set[str]]] = {}
    if "fresh2" in sets:
        k = _fresh2.kept()
        parts["fresh-2"] = (list(k["EVALUATION_HARMFUL_ACTS"]), set(_fresh2.EVALUATION_HARMFUL_ACTS[:40]),
                            list(k["EVALUATION_BENIGN_ACTS"]), set(_fresh2.EVALUATION_BENIGN_ACTS[:40]))
    for n, mod in ((3, _fresh3), (4, _fresh4), (5, _fresh5)):
        if f"fresh{n}" in sets:
            k = mod.kept()
            harm, benign = getattr(mod, f"EVALUATION_HARMFUL_ACTS_{n}"), getattr(mod, f"EVALUATION_BENIGN_ACTS_{n}")
            parts[f"fresh-{n}"] = (list(k[f"EVALUATION_HARMFUL_ACTS_{n}"]), set(harm[:mod.N_GENERIC]),
                                   list(k[f"EVALUATION_BENIGN_ACTS_{n}"]), set(benign[:mod.N_HARMWORD]))
    shared = None
    if "shared" in sets and SHARED.is_dir():
        a, b = load_prompt_dir(SHARED, test_fraction=1.0)
        shared = (list(a.harmful + b.harmful), list(a.safe + b.safe))
    filters = _minilm_filters()
    filters.pop("frozen encoder + minilm_head.txt", None)
    for name, f in filters.items():
        thr = float(f.pac_threshold_)  # type: ignore[attr-defined]
        print(f"{name}: PAC threshold {thr:.4f}")
        for pname, (harm, generic, benign, harmword) in parts.items():
            miss = _act_miss(f, harm, thr)
            kept = _act_miss(f, benign, thr)  # share of a benign act's frames below thr: kept
            g = np.array([h in generic for h in harm])
            w = np.array([x in harmword for x in benign])
            print(f"  {pname}: mean act miss {miss.mean():.2%} (n={len(harm)}; generic {miss[g].mean():.2%} n={g.sum()}"
                  f", victim/purpose {miss[~g].mean():.2%} n={(~g).sum()}); benign kept {kept.mean():.2%} "
                  f"(n={len(benign)}; harm-word {kept[w].mean():.2%} n={w.sum()}, everyday {kept[~w].mean():.2%} "
                  f"n={(~w).sum()})", flush=True)
        if shared is not None:
            ph = np.asarray(f.predict_proba(shared[0]))  # type: ignore[attr-defined]
            ps = np.asarray(f.predict_proba(shared[1]))  # type: ignore[attr-defined]
            print(f"  shared: harmful flagged {np.mean(ph >= thr):.2%} ({len(ph)}), safe kept {np.mean(ps < thr):.2%}"
                  f" ({len(ps)})", flush=True)


def vs_reference_minilm(n: int = 40, repeats: int = 3) -> None:
    """Issue 18: the default MiniLM filter (``default_filter()`` with the ``llm`` extra) against the reference loop
    with one filter call per prompt, suffix d = 20 and insertion d = 8, on the first ``n`` held-out safe prompts.

    The reference (certified-llm-safety's classifier path): all erased strings of a prompt (word tokens, as
    certkit; insertion erasures deduplicated) decoded and encoded in ONE forward pass, the tokenizer padding the
    whole list to its longest string, mean pooling over the attention mask, normalisation, the same logistic head
    (under ``torch.inference_mode``, as certkit). certkit: ``erase_and_check`` (one prompt per call) and
    ``erase_and_check_batch`` (all prompts), through ``EmbeddingFilter.score_subsequences``. Process CPU time, best
    of ``repeats``. The floor: the encoder forward passes alone (``model(...)`` for the reference, the packed rows
    for certkit), timed inside the same runs. Verdicts are asserted identical to the reference and to the generic
    path (``predict_proba`` on decoded texts)."""
    from certify.prompts import CallableFilter, EmbeddingFilter, default_filter, erase_and_check

    filt = default_filter()
    if not isinstance(filt, EmbeddingFilter):
        raise SystemExit("--filter minilm needs the MiniLM default filter (pip install 'certkit[llm]')")
    name, _, test = data()
    safe = list(test.safe)[:n]
    tok = WordTokenizer()
    hf_tok, model = filt._hf()
    coef = torch.as_tensor(np.asarray(filt.head_.coef_, dtype=np.float64).reshape(-1))
    bias = float(np.asarray(filt.head_.intercept_).reshape(-1)[0])
    max_len = int(filt.encoder().max_seq_length)
    fwd = {"s": 0.0}

    def forward(**enc):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        h = model(**enc).last_hidden_state
        fwd["s"] += time.process_time() - t0
        return h

    @torch.inference_mode()
    def ref(p: str, mode: str, d: int) -> bool:
        ids = tok.encode(p)
        m = len(ids)
        if mode == "suffix":
            subs = [ids] + [ids[: m - i] for i in range(1, min(d, m) + 1)]
        else:
            subs = [ids] + [list(x) for x in {tuple(ids[:s] + ids[s + ell:]) for s in range(m)
                                              for ell in range(1, d + 1) if s + ell <= m}]
        texts = [t for t in (tok.decode(x) for x in subs) if t.strip()]  # "" is never harmful (as certkit)
        enc = hf_tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        h = forward(**enc)
        mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), p=2, dim=1)
        probs = torch.sigmoid(e.double() @ coef + bias)
        return bool((probs >= filt.threshold).any())

    orig = filt._embed_packed

    def packed(*a):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = orig(*a)
        fwd["s"] += time.process_time() - t0
        return out

    filt._embed_packed = packed  # type: ignore[method-assign]

    def best(fn):  # type: ignore[no-untyped-def]
        times, floors = [], []
        for _ in range(repeats):
            filt.__dict__.pop("_wp_memo", None)  # each run starts with no token's word pieces remembered
            fwd["s"] = 0.0
            t0 = time.process_time()
            r = fn()
            times.append(time.process_time() - t0)
            floors.append(fwd["s"])
        i = int(np.argmin(times))
        return r, times[i], floors[i]

    print(f"data: {name}; {len(safe)} held-out safe prompts, mean {np.mean([len(tok.encode(p)) for p in safe]):.1f} "
          f"word tokens; MiniLM default filter, threshold {filt.threshold:.3f}; CPU time per prompt, best of {repeats}")
    print("| mode | d | strings / prompt | reference, 1 call / prompt (ms) | of which forward (ms) "
          "| erase_and_check, predict_proba path (ms) | erase_and_check (ms) | of which forward (ms) "
          "| erase_and_check_batch (ms) | of which forward (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    generic = CallableFilter(filt.predict_proba, threshold=filt.threshold)
    for mode, d in (("suffix", 20), ("insertion", 8)):
        r, tr, fr = best(lambda mode=mode, d=d: [ref(p, mode, d) for p in safe])
        s1, ts, fs = best(lambda mode=mode, d=d: [erase_and_check(p, filt, mode=mode, max_erase=d) for p in safe])
        b, tb, fb = best(lambda mode=mode, d=d: erase_and_check_batch(safe, filt, mode=mode, max_erase=d))
        g, tg, _ = best(lambda mode=mode, d=d: [erase_and_check(p, generic, mode=mode, max_erase=d) for p in safe])
        assert r == [c.harmful for c in s1] == [c.harmful for c in b] == [c.harmful for c in g]
        k = 1e3 / len(safe)
        print(f"| {mode} | {d} | {np.mean([c.checked for c in s1]):.1f} | {tr * k:.1f} | {fr * k:.1f} | "
              f"{tg * k:.1f} ({tr / tg:.2f}x) | {ts * k:.1f} ({tr / ts:.2f}x) | {fs * k:.1f} | "
              f"{tb * k:.1f} ({tr / tb:.2f}x) | {fb * k:.1f} |", flush=True)
        print(f"  safe prompts flagged: {np.mean(r):.1%}", flush=True)
    filt.__dict__.pop("_embed_packed")
    print(f"load average {os.getloadavg()[0]:.1f}")


def minilm_gcg_insertion(n_attacked: int = 8, iters: int = 20, n_safe: int = 40) -> None:
    """Issue 18: certified erase-and-check in insertion mode (d = t) against GCG with the MiniLM filter(s): GCG
    suffixes and inserted blocks (one block at a random word boundary) of t = 10 and 20 word tokens (``iters``
    iterations, 64 candidates, top-k 50, seeded) on the first ``n_attacked`` held-out shared harmful prompts the
    filter flags; detection by the filter alone and by suffix / insertion erase-and-check with d = t, and the share
    of the first ``n_safe`` held-out safe prompts each flags (the filter at its threshold; ``--delta``: also the
    fine-tuned filter, at 0.5)."""
    from certify.prompts import gcg_attack

    _, _, test = data()
    safe, harmful = list(test.safe)[:n_safe], list(test.harmful)
    for name, f in _minilm_filters().items():
        thr = _gcg_threshold(name, f)
        targets = [h for h in harmful if f.predict_proba([h])[0] >= thr][:n_attacked]  # type: ignore[attr-defined]
        print(f"| {name}, threshold {thr:.3f} | GCG suffix t = 10 | GCG suffix t = 20 | GCG insertion t = 10 "
              "| GCG insertion t = 20 | safe flagged (d = 10 / 20) | ms CPU / safe prompt (d = 20) |")
        print("|---|---|---|---|---|---|---|")
        attacked: dict[tuple[str, int], list[str]] = {}
        fooled: dict[tuple[str, int], float] = {}
        for mode in ("suffix", "insertion"):
            for t in (10, 20):
                att = [gcg_attack(h, f, num_tokens=t, mode=mode, num_iters=iters, num_candidates=64,
                                  generator=torch.Generator().manual_seed(i)) for i, h in enumerate(targets)]
                attacked[mode, t] = [a.attacked for a in att]
                fooled[mode, t] = float(np.mean([a.score_after < thr for a in att]))
        keys = list(attacked)
        print("| GCG fools the filter alone | " + " | ".join(f"{fooled[k]:.0%}" for k in keys) + " | | |", flush=True)
        for ec in ("suffix", "insertion"):
            det = [np.mean([c.harmful for c in erase_and_check_batch(attacked[k], f, mode=ec, max_erase=k[1])])
                   for k in keys]
            fp, ms = [], 0.0
            for d in (10, 20):
                t0 = time.process_time()
                fp.append(np.mean([c.harmful for c in erase_and_check_batch(safe, f, mode=ec, max_erase=d)]))
                ms = 1e3 * (time.process_time() - t0) / len(safe)
            print(f"| erase-and-check {ec}, d = t | " + " | ".join(f"{x:.0%}" for x in det)
                  + f" | {fp[0]:.1%} / {fp[1]:.1%} | {ms:.0f} |", flush=True)
        print(f"({len(targets)} attacked prompts per column; insertion erase-and-check with d = t is certified for "
              "both attack kinds, suffix erase-and-check only for suffixes)")


def _args(argv: list[str] | None = None):  # type: ignore[no-untyped-def]
    import argparse

    ap = argparse.ArgumentParser(
        description="Erase-and-check benchmarks (issue 18). Data: the held-out 20% of ../shared/data/prompts "
        "(CERTKIT_SHARED overrides the location) when present, else certkit's embedded prompts. Run with "
        "PYTHONPATH=. OMP_NUM_THREADS=1. Without a mode flag: time per prompt by mode and d against a "
        "straightforward loop (TF-IDF), then greedy-suffix attacks on TF-IDF and bag filters.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--vs-reference", action="store_true",
                      help="per-prompt CPU time of erase_and_check / erase_and_check_batch against the reference "
                      "loop (one filter call per prompt), suffix d=20 and insertion d=8, safe prompts (see --filter)")
    mode.add_argument("--empirical", action="store_true",
                      help="GCG t=10/20 detection by each defence, false positives, adversarial training "
                      "(bag-of-embeddings filter; about 10 min)")
    mode.add_argument("--adversarial", action="store_true",
                      help="GCG attack success before / after one round of adversarial_training (bag filters)")
    mode.add_argument("--adversarial-rounds", action="store_true",
                      help="GCG t=5/10 attack success after 1 and 3 rounds of adversarial_training (bag filter)")
    mode.add_argument("--fragments", action="store_true",
                      help="GreedyEC / GradEC false positives and GCG detection of bag filters with fragment_training")
    mode.add_argument("--minilm-fp", action="store_true",
                      help="GreedyEC-9/12 and GradEC-10/25 false positives of the MiniLM filter(s) on 40 safe prompts")
    mode.add_argument("--minilm-fp-generated", action="store_true",
                      help="GreedyEC-9/12 and GradEC-10/25 false positives of the default MiniLM filter (and --delta) "
                      "on generated held-out safe prompts (never the shared data; issue 18, session 12)")
    mode.add_argument("--minilm-accuracy", action="store_true",
                      help="accuracy of the MiniLM filter(s) on held-out generated and shared prompts")
    mode.add_argument("--threshold-rules", action="store_true",
                      help="each default filter's threshold under the per-prompt, group KL (shipped), lowest-per-act "
                      "and random-frame PAC rules, with its accuracy there (issue 18, session 11)")
    mode.add_argument("--minilm-gcg", action="store_true",
                      help="GCG t=10/20 detection by each defence with the MiniLM filter(s), and false positives")
    mode.add_argument("--minilm-gcg-insertion", action="store_true",
                      help="GCG suffix / insertion t=10/20 detection by suffix and insertion erase-and-check (d=t) "
                      "with the MiniLM filter(s), and false positives (about 15-20 min)")
    mode.add_argument("--default-thresholds", action="store_true",
                      help="the default filter's harmful flagged / safe kept above its PAC threshold (harm-word "
                      "benign prompts; issue 18, session 15)")
    mode.add_argument("--fresh-acts", action="store_true",
                      help="the default MiniLM filter (and --delta) on the blind fresh-2 / fresh-3 evaluation acts and "
                      "the shared prompts at its PAC threshold (issue 18, session 16)")
    mode.add_argument("--minilm-adversarial", action="store_true",
                      help="GCG attack success before / after adversarial training of a MiniLM head")
    ap.add_argument("--filter", choices=("tfidf-bag", "minilm"), default="tfidf-bag",
                    help="with --vs-reference: the TF-IDF and bag-of-embeddings filters (default), or the default "
                    "MiniLM filter (needs the llm extra)")
    ap.add_argument("--n", type=int, default=None,
                    help="with --vs-reference: number of held-out safe prompts (default 100; 40 with --filter minilm)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="with --vs-reference: timed runs, the best is reported (default 5; 3 with --filter minilm)")
    ap.add_argument("--delta", metavar="PATH", default=None,
                    help="with the --minilm-* modes: also the filter of an encoder delta written by "
                    "python -m certify.prompts._minilm_lora --out PATH")
    ap.add_argument("--delta-only", action="store_true",
                    help="with --delta: only the delta's filter (not the default one)")
    ap.add_argument("--default-only", action="store_true",
                    help="with the --minilm-* modes: only the default filter (and --delta), not the frozen encoder's")
    ap.add_argument("--fresh-sets", default="fresh2,fresh3,fresh4,fresh5,shared",
                    help="with --fresh-acts: comma-separated sets among fresh2, fresh3, fresh4, fresh5, shared")
    return ap.parse_args(argv)


if __name__ == "__main__":
    args = _args()
    _DELTA, _DELTA_ONLY, _DEFAULT_ONLY = args.delta, args.delta_only, args.default_only
    if args.vs_reference and args.filter == "minilm":
        vs_reference_minilm(n=args.n or 40, repeats=args.repeats or 3)
    elif args.vs_reference:
        vs_reference_one_call(repeats=args.repeats or 5, n=args.n or 100)
    elif args.minilm_accuracy:
        minilm_accuracy()
    elif args.fresh_acts:
        fresh_acts(tuple(args.fresh_sets.split(",")))
    elif args.default_thresholds:
        default_thresholds()
    elif args.threshold_rules:
        threshold_rules()
    elif args.minilm_gcg:
        minilm_vs_gcg()
    elif args.minilm_gcg_insertion:
        minilm_gcg_insertion()
    elif args.minilm_fp_generated:
        minilm_false_positives_generated()
    elif args.minilm_fp:
        minilm_false_positives()
    elif args.empirical:
        empirical_vs_gcg()
    elif args.adversarial_rounds:
        adversarial_rounds()
    elif args.adversarial:
        adversarial_asr()
    elif args.minilm_adversarial:
        minilm_adversarial()
    elif args.fragments:
        fragment_false_positives()
    else:
        main()
