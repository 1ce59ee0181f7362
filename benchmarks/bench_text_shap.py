"""Kernel SHAP over words beside shap's text explainers, at equal evaluations.

The demo's text model (explainer/demo/text.py) on 6 sentences of 8-12 words (two template
reviews run together), with a word-level HuggingFace tokenizer over the demo's vocabulary.
The game: the logit of "positive" with the absent words replaced by [PAD] (special tokens
kept). The truth: exact Shapley values by enumeration of the 2^M coalitions. At each budget
(evaluations per sentence): ``ex.explain(..., "kernel_shap", feature_mask="words",
n_samples=budget)`` and shap's ``PermutationExplainer`` and ``PartitionExplainer`` with
``maskers.Text(tokenizer, mask_token="[PAD]", collapse_mask_token=False)`` (the same game)
and ``max_evals=budget``; the error is the relative L2 distance to the truth, averaged over
the sentences. A finding: with the Text masker's partition tree (its ``clustering``),
shap's explainers estimate *Owen* values of that tree, not Shapley values (the Permutation
explainer then only samples permutations that respect the tree; with 6000 evaluations it
converges to values up to 2x off the exact Shapley ones). The Permutation explainer is
therefore run with the tree removed (``clustering = None``: plain Shapley permutations, the
same quantity as ours), the Partition explainer as shap ships it (its error is the
distance between Owen and Shapley values plus its sampling error).

``quick``: 2 sentences, budgets 64 and 256.
"""

from __future__ import annotations

import itertools
import math
import os
import time

import numpy as np
import torch


def _tokenizer():
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from explainer.demo.text import VOCAB

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


def _exact(net, ids: torch.Tensor) -> np.ndarray:
    """Shapley values of the words of one sentence (ids with [CLS] ... [SEP]) by enumeration."""
    words = list(range(1, ids.shape[1] - 1))
    m = len(words)
    coalitions = np.array(list(itertools.product([0, 1], repeat=m)), dtype=bool)
    rows = ids.repeat(len(coalitions), 1)
    rows[:, 1:-1] = torch.where(
        torch.from_numpy(coalitions), rows[:, 1:-1], torch.zeros_like(rows[:, 1:-1])
    )
    with torch.no_grad():
        v = net(rows, torch.ones_like(rows))[:, 1].double().numpy()
    index = {tuple(c): k for k, c in enumerate(coalitions)}
    phi = np.zeros(m)
    for k in range(m):
        for c in coalitions:
            if c[k]:
                continue
            size = int(c.sum())
            w = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            with_k = c.copy()
            with_k[k] = True
            phi[k] += w * (v[index[tuple(with_k)]] - v[index[tuple(c)]])
    return phi


def run(quick: bool = False) -> dict:
    import shap

    import explainer as ex
    from explainer.demo.text import load_text_model, make_reviews

    torch.set_num_threads(2)
    net = load_text_model()
    tok = _tokenizer()
    reviews = make_reviews(24, "test", seed=3).texts
    sentences = [f"{a} {b}" for a, b in zip(reviews[::2], reviews[1::2], strict=True)]
    sentences = [s for s in sentences if 8 <= len(s.split()) <= 12][: 2 if quick else 6]
    budgets = (64, 256) if quick else (32, 64, 128, 256, 512)
    model = ex.wrap(net, modality="text", tokenizer=tok)

    def f(texts):
        enc = tok(list(texts), padding=True, return_tensors="pt")
        with torch.no_grad():
            return net(enc["input_ids"], enc["attention_mask"])[:, 1].numpy()

    masker = shap.maskers.Text(tok, mask_token="[PAD]", collapse_mask_token=False)
    flat = shap.maskers.Text(tok, mask_token="[PAD]", collapse_mask_token=False)
    flat.clustering = None  # Shapley values, not the partition tree's Owen values
    truths = [_exact(net, tok([s], return_tensors="pt")["input_ids"]) for s in sentences]
    results: dict[str, dict[int, float]] = {
        "ours": {},
        "shap_permutation": {},
        "shap_partition": {},
    }
    seconds: dict[str, float] = dict.fromkeys(results, 0.0)

    def error(estimate: np.ndarray, truth: np.ndarray) -> float:
        return float(np.linalg.norm(estimate - truth) / max(np.linalg.norm(truth), 1e-12))

    for budget in budgets:
        errors: dict[str, list[float]] = {k: [] for k in results}
        for s, truth in zip(sentences, truths, strict=True):
            t = time.perf_counter()
            exp = ex.explain(model, [s], "kernel_shap", target=1, feature_mask="words",
                             n_samples=budget, progress=False)  # fmt: skip
            seconds["ours"] += time.perf_counter() - t
            errors["ours"].append(error(exp.attributions[0, 1:-1].double().numpy(), truth))
            for name, cls, m in (("shap_permutation", shap.explainers.Permutation, flat),
                                 ("shap_partition", shap.explainers.Partition, masker)):  # fmt: skip
                t = time.perf_counter()
                values = cls(f, m)([s], max_evals=budget, silent=True).values[0]
                seconds[name] += time.perf_counter() - t
                errors[name].append(error(np.asarray(values)[1:-1], truth))
        for k in results:
            results[k][budget] = round(float(np.mean(errors[k])), 4)
    words = [len(s.split()) for s in sentences]
    return {
        "model": "explainer.demo.text.TinyTransformer, word-level tokenizer",
        "sentences": len(sentences),
        "words_per_sentence": words,
        "budgets": list(budgets),
        "mean_relative_l2_error": results,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "summary": {f"error_at_{b}": {k: results[k][b] for k in results} for b in budgets},
        "headline": [
            f"text kernel SHAP over words ({len(sentences)} sentences of {min(words)}-{max(words)} "
            f"words), mean relative L2 error vs exact at {b} evaluations: ours "
            f"{results['ours'][b]:.3f}, shap Permutation (no tree) "
            f"{results['shap_permutation'][b]:.3f}, shap Partition (Owen values) "
            f"{results['shap_partition'][b]:.3f}"
            for b in budgets
        ],
    }
