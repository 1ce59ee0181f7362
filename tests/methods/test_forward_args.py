"""Forward arguments: what a network needs beside the explained inputs (an attention mask,
a conditioning vector, a flag), passed to every forward call, never attributed, and kept
aligned with its sample through every expansion a method makes (IG steps, SHAP coalitions,
noisy copies) and through the trust metrics.

The alignment truth: f(x, c) = W (x * c) with a different c per sample, whose attributions
are known in closed form per sample; any row given another sample's c changes them. The
real-model truth: BERT on ``inputs_embeds`` with a per-sample ``attention_mask``: the
classifier reads the [CLS] token, which attends only to unmasked positions, so the
gradient at a masked position is exactly zero for the sample whose mask hides it.
"""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import assert_same_state, model_state
from torch import nn

import explainer as ex

# the models here are tabular, or BERT on packed embeddings: every method for rows
ALL_METHODS = [m.name for m in ex.list_methods() if "tabular" in m.modalities]
N, F = 4, 6


class Conditioned(nn.Module):
    """f(x, c, scale) = scale * W (x * c) + b: linear in x for a given c."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(F, 2)

    def forward(self, x: torch.Tensor, c: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.lin(x * c) * scale


def rows(seed: int) -> torch.Tensor:
    return torch.randn(N, F, generator=torch.Generator().manual_seed(seed))


def params_for(method: str) -> dict:
    zeros = torch.zeros(1, F)
    return {
        "integrated_gradients": {"n_steps": 8},
        "smoothgrad": {"n_samples": 4},
        "gradient_shap": {"background": zeros, "n_samples": 8},
        "deep_shap": {"background": zeros},
        "kernel_shap": {"background": zeros, "n_samples": 2**F},
    }.get(method, {})


@pytest.mark.parametrize("method", ALL_METHODS)
def test_per_sample_forward_args_stay_aligned_through_every_method(method):
    net = Conditioned()
    x, c = rows(1), rows(2)
    before = model_state(net)
    model = ex.wrap(net, modality="tabular")
    exp = ex.explain(model, x, method, target=1, progress=False,
                     forward_args=(c,), **params_for(method))  # fmt: skip
    w = net.lin.weight[1].detach()
    gradient = c * w  # d f_1 / dx, per sample
    truth = gradient.abs() if method in ("saliency", "smoothgrad") else x * gradient
    torch.testing.assert_close(exp.attributions, truth, atol=2e-6, rtol=1e-5)
    assert exp.manifest["forward_args"] == {"0": f"tensor({N}, {F}) float32, per sample"}
    assert_same_state(before, model_state(net))


def test_constants_and_keywords_go_to_every_call_unchanged():
    net = Conditioned()
    x, c = rows(1), rows(2)[:1]  # one row for a batch of 4: a constant, broadcast by the net
    exp = ex.explain(ex.wrap(net, modality="tabular"), x, "gradient_x_input", target=0,
                     progress=False, forward_args={"c": c, "scale": 3.0})  # fmt: skip
    w = net.lin.weight[0].detach()
    torch.testing.assert_close(exp.attributions, 3.0 * x * c * w)
    assert exp.manifest["forward_args"]["scale"] == "3.0"
    assert "constant" in exp.manifest["forward_args"]["c"]


def test_trust_scores_call_the_network_with_each_samples_arguments():
    net = Conditioned()
    model = ex.wrap(net, modality="tabular")
    x, c = rows(1), rows(2)
    exps = ex.explain_many(model, x, ["gradient_x_input", "ig"], target=1, progress=False,
                           forward_args=(c,))  # fmt: skip
    scores = ex.evaluate(exps, model, progress=False)
    ig = "integrated_gradients"
    rows_of = [
        r["sample"] for r in scores.rows if r["method"] == ig and r["metric"] == "deletion_gain"
    ]
    assert rows_of == list(range(N))
    assert scores.curves[ig]["deletion"].shape[0] == N
    # gradient x input is exact for a linear model: deleting its top feature first beats random
    assert scores.mean("gradient_x_input", "deletion_gain") > 0
    # the explanations' completeness gaps are those of each sample, read back per sample
    assert len(scores.values(ig, "completeness_gap")) == N


def test_a_model_that_needs_its_argument_fails_clearly_without_it():
    with pytest.raises(ex.ModelError, match="failed"):
        ex.explain(ex.wrap(Conditioned(), modality="tabular"), rows(1), "saliency", progress=False)


def test_forward_args_keys_must_be_names():
    with pytest.raises(ex.InputError, match="argument names"):
        ex.explain(ex.wrap(Conditioned(), modality="tabular"), rows(1), "saliency",
                   progress=False, forward_args={0: rows(2)})  # fmt: skip


def test_an_explanation_loaded_from_a_file_says_its_forward_args_are_needed(tmp_path):
    model = ex.wrap(Conditioned(), modality="tabular")
    exp = ex.explain(model, rows(1), "saliency", progress=False, forward_args=(rows(2),))
    back = ex.load_explanation(exp.save(tmp_path / "e.npz"))
    with pytest.raises(ex.InputError, match="forward_args"):
        ex.evaluate(back, model, progress=False)


transformers = pytest.importorskip("transformers")


def tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config).eval()


def bert_inputs(bert: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 50, (3, 8), generator=torch.Generator().manual_seed(4))
    mask = torch.ones(3, 8, dtype=torch.long)
    mask[0, 5:], mask[1, 3:] = 0, 0  # a different padding per sample
    with torch.no_grad():
        embeds = bert.get_input_embeddings()(ids)
    return embeds, mask


def bert_params(method: str, embeds: torch.Tensor) -> dict:
    reference = torch.zeros_like(embeds[:1])
    return {
        "integrated_gradients": {"n_steps": 16},
        "smoothgrad": {"n_samples": 3},
        "gradient_shap": {"background": (reference,), "n_samples": 6},
        "deep_shap": {"background": (reference,)},
        "kernel_shap": {"background": (reference,), "n_samples": 2**8},
    }.get(method, {})


@pytest.mark.parametrize("method", ALL_METHODS)
def test_bert_on_inputs_embeds_with_a_per_sample_attention_mask(method):
    bert = tiny_bert()
    embeds, mask = bert_inputs(bert)
    before = model_state(bert)
    exp = ex.explain(ex.wrap(bert), {"inputs_embeds": embeds}, method, target=1, progress=False,
                     forward_args={"attention_mask": mask}, **bert_params(method, embeds))  # fmt: skip
    (attr,) = exp.attributions
    assert attr.shape == embeds.shape and torch.isfinite(attr).all()
    per_token = attr.abs().sum(2)  # (N, L)
    masked = mask == 0
    # nothing reaches [CLS] from a position its own sample's mask hides
    assert per_token[masked].max() < 1e-6 * max(per_token.max().item(), 1e-12) + 1e-9
    assert (per_token[~masked] > 0).float().mean() > 0.5
    if "relative_gap" in exp.extras and method != "gradient_shap":
        assert exp.extras["relative_gap"].max() < 0.05
    assert_same_state(before, model_state(bert))


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input"])
@pytest.mark.parametrize("rows_per_chunk", [None, 1, 3])  # None: the whole batch at once
def test_row_aligned_methods_explain_the_batch_in_one_call_with_each_samples_rows(
    method, rows_per_chunk, monkeypatch
):
    import explainer.methods.saliency as saliency

    if rows_per_chunk is not None:  # chunks bound to their own samples' rows
        monkeypatch.setattr(saliency, "chunk_size", lambda *args: rows_per_chunk)
    net = Conditioned()
    x, c = rows(1), rows(2)
    batches = []
    net.register_forward_pre_hook(lambda _, args: batches.append(len(args[0])))
    exp = ex.explain(ex.wrap(net, modality="tabular"), x, method, progress=False,
                     forward_args=(c,), memory_budget=10**6)  # fmt: skip
    gradient = c * net.lin.weight.detach()[exp.targets]
    truth = gradient.abs() if method == "saliency" else x * gradient
    torch.testing.assert_close(exp.attributions, truth, atol=2e-6, rtol=1e-5)
    # not one call per sample: the explained rows go through in chunks of the size chosen
    last = N if rows_per_chunk is None else (N % rows_per_chunk or rows_per_chunk)
    assert batches[-1] == last
    assert ex.get_method(method).row_aligned and not ex.get_method("smoothgrad").row_aligned


def test_bert_saliency_of_a_padded_batch_equals_each_sentence_explained_alone():
    bert = tiny_bert()
    embeds, mask = bert_inputs(bert)
    model = ex.wrap(bert)

    def saliency(rows: slice) -> torch.Tensor:
        return ex.explain(model, {"inputs_embeds": embeds[rows]}, "saliency", target=1,
                          progress=False, forward_args={"attention_mask": mask[rows]}
                          ).attributions[0]  # fmt: skip

    alone = torch.cat([saliency(slice(i, i + 1)) for i in range(3)])
    torch.testing.assert_close(saliency(slice(0, 3)), alone, rtol=1e-4, atol=1e-7)
