"""Generative language models: a continuation's log-probabilities attributed to the prompt.

Truths: exact Shapley values over the prompt tokens by enumeration (kernel SHAP at full
budget), captum's LayerIntegratedGradients on GPT-2's token embeddings with a forward that
returns the continuation's log-probability, and completeness (each row adds up to the change
in log p between the prompt and the reference prompt)."""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import assert_same_state, exact_shapley, model_state

import explainer as ex

transformers = pytest.importorskip("transformers")

PROMPT, CONTINUATION = [3, 5, 7, 11], [2, 9]


def tiny_gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=20, n_embd=16, n_layer=2, n_head=2, n_positions=16)
    lm = transformers.GPT2LMHeadModel(config)
    for p in lm.parameters():
        p.data.mul_(3.0)
    return lm.eval()


def log_prob(lm, prompt_ids: torch.Tensor) -> torch.Tensor:
    """log p(continuation | prompt) per continuation token, and their sum: (rows, C + 1)."""
    c = torch.tensor(CONTINUATION)
    ids = torch.cat([prompt_ids, c.expand(len(prompt_ids), -1)], 1)
    steps = lm(ids).logits[:, prompt_ids.shape[1] - 1 : -1].log_softmax(-1)
    each = steps.gather(2, c[None, :, None].expand(len(ids), -1, 1)).squeeze(2)
    return torch.cat([each, each.sum(1, keepdim=True)], 1)


def test_kernel_shap_over_prompt_tokens_equals_exact_shapley_values():
    lm = tiny_gpt2().double()
    g = ex.explain_generation(ex.wrap(lm, modality="text"), PROMPT, CONTINUATION, "kernel_shap",
                              n_samples=2**6, progress=False)  # fmt: skip
    m = len(PROMPT)

    def value(coalition, column: int) -> float:
        kept = torch.tensor(
            [t if present else 0 for t, present in zip(PROMPT, coalition, strict=True)]
        )
        with torch.no_grad():
            return float(log_prob(lm, kept[None])[0, column])

    for column, row in enumerate([*g.matrix, g.total]):
        truth = exact_shapley(lambda c, column=column: value(c, column), m)
        torch.testing.assert_close(row.double(), truth, atol=1e-8, rtol=1e-6)


def test_integrated_gradients_equals_captums_layer_ig_on_the_token_embeddings():
    captum = pytest.importorskip("captum.attr")
    lm = tiny_gpt2()
    g = ex.explain_generation(ex.wrap(lm, modality="text"), PROMPT, CONTINUATION, "ig",
                              n_steps=32, progress=False)  # fmt: skip
    ids = torch.tensor([PROMPT + CONTINUATION])
    baseline = torch.tensor([[0] * len(PROMPT) + CONTINUATION])  # the prompt becomes token 0

    def total(full):
        return log_prob(lm, full[:, : len(PROMPT)])[:, -1]

    lig = captum.LayerIntegratedGradients(total, lm.transformer.wte)
    theirs = lig.attribute(ids, baselines=baseline, n_steps=32, method="gausslegendre").sum(-1)
    torch.testing.assert_close(g.total, theirs[0, : len(PROMPT)].detach(), atol=1e-5, rtol=1e-4)
    assert theirs[0, len(PROMPT) :].abs().max() < 1e-6  # the continuation: never attributed


def test_each_row_adds_up_to_the_change_in_log_probability_and_the_model_is_untouched():
    lm = tiny_gpt2()
    before = model_state(lm)
    g = ex.explain_generation(ex.wrap(lm, modality="text"), PROMPT, CONTINUATION, "ig",
                              tolerance=0.01, progress=False)  # fmt: skip
    with torch.no_grad():
        change = log_prob(lm, torch.tensor([PROMPT])) - log_prob(
            lm, torch.zeros(1, 4, dtype=torch.long)
        )
    rows = torch.cat([g.matrix, g.total[None]])
    torch.testing.assert_close(
        rows.sum(1), change[0], atol=0.02 * change.abs().max().item(), rtol=0
    )
    torch.testing.assert_close(g.log_probs, log_prob(lm, torch.tensor([PROMPT]))[0, :-1].detach())
    assert g.matrix.shape == (2, 4) and (g.relative_gaps < 0.01).all()
    assert_same_state(before, model_state(lm))


def test_the_matrix_view_escapes_tokens_and_bad_calls_say_what_to_pass():
    class Hostile:
        def encode(self, text):
            return [3, 5] if text == "p" else [2]

        def decode(self, ids):
            return "<script>alert(1)</script>" if ids[0] == 3 else "tok"

    model = ex.wrap(tiny_gpt2(), modality="text", tokenizer=Hostile())
    g = ex.explain_generation(model, "p", "c", "gradient_x_input", progress=False)
    html = g._repr_html_()
    assert "&lt;script&gt;" in html and "<script>" not in html
    with pytest.raises(ex.InputError, match="modality='text'"):
        ex.explain_generation(ex.wrap(tiny_gpt2()), [3], [2], progress=False)
    with pytest.raises(ex.InputError, match="continuation"):
        ex.explain_generation(model, "p", [], progress=False)
