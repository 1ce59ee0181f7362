"""Text: integrated gradients through the embeddings beside captum, in one process.

A BERT-sized small configuration (hidden 256, 4 layers, 4 heads, intermediate 1024; random
weights, no download), 4 sentences of 32 tokens with padding, 32 Gauss-Legendre steps:
``ex.explain(model, ids, "integrated_gradients", n_steps=32)`` against captum's
``LayerIntegratedGradients`` on ``bert.embeddings.word_embeddings`` with the same baseline
(id 0 wherever a token is not padding: wrapped without a tokenizer, no token is known
to be special) and the same steps. Medians of 5
interleaved repeats; the two results are compared (max abs difference of the per-token
attributions, relative to captum's largest).

Ours explains a batch one sentence per call for IG (the ids and the attention mask are
per-sample forward arguments, so every row a method builds keeps its sentence's ids; saliency
and gradient x input, which build no rows, take the batch in one call), and runs one
no-grad forward of the batch for the targets and the recorded scores; captum runs the
batch's 4 x 32 path rows in one call.

``quick``: 2 sentences of 16 tokens, 1 repeat.
"""

from __future__ import annotations

import os
import statistics
import time

import torch


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run(quick: bool = False) -> dict:
    import transformers
    from captum.attr import LayerIntegratedGradients

    import explainer as ex

    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=64, num_labels=2,
    )  # fmt: skip
    bert = transformers.BertForSequenceClassification(config).eval()
    n, length = (2, 16) if quick else (4, 32)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (n, length), generator=g)
    ids[:, 0], mask = 2, torch.ones(n, length, dtype=torch.long)
    for i in range(n):  # [SEP] and padding at the end, a different length per sentence
        end = length - 1 - 2 * i
        ids[i, end], ids[i, end + 1 :], mask[i, end + 1 :] = 3, 0, 0
    # Without a tokenizer explainer knows no special tokens: only padding is kept in its
    # reference, every other token becomes id 0; captum is given the same baseline.
    baseline = torch.where(mask == 0, ids, torch.zeros_like(ids))
    model = ex.wrap(bert, modality="text")

    def ours():
        return ex.explain(model, ids, "integrated_gradients", target=1, n_steps=32,
                          forward_args={"attention_mask": mask}, progress=False)  # fmt: skip

    lig = LayerIntegratedGradients(
        lambda i, m: bert(i, attention_mask=m).logits, bert.bert.embeddings.word_embeddings
    )

    def theirs():
        return lig.attribute(ids, baselines=baseline, additional_forward_args=(mask,), target=1,
                             n_steps=32, method="gausslegendre")  # fmt: skip

    repeats = 1 if quick else 5
    times: dict[str, list[float]] = {"ours": [], "captum": []}
    results = {}
    start_load = _load()
    for r in range(repeats + 1):  # the first round warms up
        for name, fn in (("ours", ours), ("captum", theirs))[:: 1 if r % 2 else -1]:
            t = time.perf_counter()
            results[name] = fn()
            if r:
                times[name].append(time.perf_counter() - t)
    a = results["ours"].attributions
    b = results["captum"].detach().sum(-1)
    difference = float((a - b).abs().max() / b.abs().max())
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["ours"] / median["captum"]
    return {
        "network": "BertForSequenceClassification, hidden 256, 4 layers (random weights)",
        "sentences": n,
        "tokens": length,
        "n_steps": 32,
        "seconds": times,
        "median_s": median,
        "ratio_ours_over_captum": round(ratio, 3),
        "max_abs_difference_relative": difference,
        "load_average_at_start": start_load,
        "load_average_at_end": _load(),
        "summary": {"ig_ratio_ours_over_captum": round(ratio, 3), "difference": difference},
        "headline": [
            f"text IG (BERT-sized, {n} x {length} tokens, 32 steps): ours {median['ours']:.2f} s, "
            f"captum LayerIntegratedGradients {median['captum']:.2f} s, ratio {ratio:.2f}; "
            f"per-token difference {difference:.1e} of captum's largest"
        ],
    }
