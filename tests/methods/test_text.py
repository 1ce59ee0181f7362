"""Text models end to end: strings or token ids in, one attribution per token out.

Truths: captum's LayerIntegratedGradients on the word embeddings (the IG oracle, equal steps
and baseline), exact Shapley values over tokens by enumeration (kernel SHAP at full budget),
IG's completeness with ``tolerance``, and a trigger-token model whose decision is the
trigger: every method puts its largest attribution there. Real architectures from
``transformers`` (random weights, small configs): BERT, DistilBERT, GPT-2 classifiers.
"""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import assert_same_state, exact_shapley, model_state
from torch import nn

import explainer as ex

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the movie was great awful not good bad plot acting zap".split()
)
TEXT_METHODS = [m.name for m in ex.list_methods() if "tabular" in m.modalities]
# methods whose attributions are relative to the reference (the special tokens kept)
REFERENCE_METHODS = ("integrated_gradients", "gradient_shap", "deep_shap", "kernel_shap")
SENTENCES = ["the movie was great", "not good acting", "bad plot zap the movie"]


def word_tokenizer():
    """A word-level HuggingFace tokenizer built here (no download): [CLS] words [SEP]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


def hf_classifier(kind: str) -> nn.Module:
    torch.manual_seed(0)
    common = {"vocab_size": len(WORDS), "num_labels": 2}
    if kind == "bert":
        config = transformers.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=32, **common)  # fmt: skip
        net = transformers.BertForSequenceClassification(config)
    elif kind == "distilbert":
        config = transformers.DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                               max_position_embeddings=32, **common)  # fmt: skip
        net = transformers.DistilBertForSequenceClassification(config)
    else:
        config = transformers.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                         pad_token_id=0, **common)  # fmt: skip
        net = transformers.GPT2ForSequenceClassification(config)
    for p in net.parameters():  # larger weights: outputs that depend visibly on the tokens
        p.data.mul_(4.0)
    return net.eval()


def params_for(method: str) -> dict:
    return {
        "integrated_gradients": {"n_steps": 32},
        "smoothgrad": {"n_samples": 3},
        "gradient_shap": {"n_samples": 8},
        "kernel_shap": {"n_samples": 2**7},  # 2^(tokens) or more: exact for these sentences
    }.get(method, {})


@pytest.mark.parametrize("kind", ["bert", "distilbert", "gpt2"])
@pytest.mark.parametrize("method", TEXT_METHODS)
def test_every_method_gives_one_attribution_per_token_on_huggingface_classifiers(kind, method):
    net = hf_classifier(kind)
    before = model_state(net)
    model = ex.wrap(net, modality="text", tokenizer=word_tokenizer())
    exp = ex.explain(model, SENTENCES, method, target=1, progress=False, **params_for(method))
    assert exp.modality == "text" and exp.attributions.shape == exp.inputs.shape
    assert exp.tokens[1][:4] == ("[CLS]", "not", "good", "acting")
    mask = exp.extras["attention_mask"].bool()
    assert torch.isfinite(exp.attributions).all()
    peak = exp.attributions.abs().max()
    assert peak > 0 and exp.attributions[~mask].abs().max() <= 1e-6 * peak  # padding: none
    if method in REFERENCE_METHODS:  # references keep the special tokens: nothing on them
        special = torch.isin(exp.inputs, torch.tensor([2, 3]))
        assert exp.attributions[special].abs().max() <= 1e-6 * peak
    if method in ("kernel_shap", "deep_shap"):
        assert exp.extras["relative_gap"].max() < 1e-3
    assert_same_state(before, model_state(net))


def test_integrated_gradients_equals_captums_layer_ig_on_the_word_embeddings():
    captum = pytest.importorskip("captum.attr")
    net = hf_classifier("bert")
    tok = word_tokenizer()
    model = ex.wrap(net, modality="text", tokenizer=tok)
    exp = ex.explain(model, SENTENCES, "ig", target=0, n_steps=32, progress=False)
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = torch.isin(ids, torch.tensor([2, 3])) | (mask == 0)
    reference = torch.where(special, ids, torch.zeros_like(ids))  # [PAD] elsewhere

    def logits(i, m):
        return net(i, attention_mask=m).logits

    lig = captum.LayerIntegratedGradients(logits, net.bert.embeddings.word_embeddings)
    theirs = lig.attribute(ids, baselines=reference, additional_forward_args=(mask,), target=0,
                           n_steps=32, method="gausslegendre")  # fmt: skip
    torch.testing.assert_close(
        exp.extras["embedding_attributions"], theirs.detach(), atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(exp.attributions, theirs.detach().sum(-1), atol=1e-5, rtol=1e-4)


def test_integrated_gradients_with_a_tolerance_adds_up_within_one_percent():
    model = ex.wrap(hf_classifier("bert"), modality="text", tokenizer=word_tokenizer())
    exp = ex.explain(model, SENTENCES, "ig", target=1, tolerance=0.01, progress=False)
    assert (exp.extras["relative_gap"] < 0.01).all()
    assert not exp.warnings


def test_kernel_shap_over_tokens_equals_exact_shapley_values_by_enumeration():
    net = hf_classifier("bert").double()
    tok = word_tokenizer()
    model = ex.wrap(net, modality="text", tokenizer=tok)
    sentence = "bad plot zap the movie"
    exp = ex.explain(model, [sentence], "kernel_shap", target=1, n_samples=2**7, progress=False)
    ids = tok([sentence], return_tensors="pt")["input_ids"]
    words = list(range(1, ids.shape[1] - 1))  # the players: every token but [CLS] and [SEP]

    def value(coalition) -> float:
        kept = ids.clone()
        for k, present in zip(words, coalition, strict=True):
            if not present:
                kept[0, k] = 0  # [PAD], the reference token
        with torch.no_grad():
            return float(net(kept).logits[0, 1])

    truth = exact_shapley(value, len(words))
    torch.testing.assert_close(exp.attributions[0, 1:-1].double(), truth, atol=1e-8, rtol=1e-6)


class BagOfWords(nn.Module):
    """Class 1's logit is the mean over tokens of (embedding . v)^2, class 0's is 0; the
    trigger's embedding lies along v, every other token's is small: the decision is the
    trigger (and, the score being quadratic, so is the gradient)."""

    def __init__(self, trigger: int) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embed = nn.Embedding(len(WORDS), 8)
        self.register_buffer("v", torch.linspace(-1.0, 1.0, 8))
        with torch.no_grad():
            self.embed.weight.mul_(0.1)
            self.embed.weight[trigger] = self.v
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.to(self.embed.weight.dtype)
        z = (self.embed(ids) @ self.v) ** 2  # (N, L)
        score = self.scale * (z * m).sum(1) / m.sum(1)
        return torch.stack([torch.zeros_like(score), score], 1)


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_every_method_finds_the_trigger_token(method):
    trigger = WORDS.index("zap")
    model = ex.wrap(BagOfWords(trigger), modality="text", tokenizer=word_tokenizer())
    texts = ["the movie zap was great", "zap not good acting", "bad plot zap"]
    exp = ex.explain(model, texts, method, target=1, progress=False, **params_for(method))
    top = (
        exp.attributions.abs().argmax(1)
        if method in ("saliency", "smoothgrad")
        else exp.attributions.argmax(1)
    )
    assert (exp.inputs.gather(1, top[:, None]).squeeze(1) == trigger).all(), exp.attributions


def test_trust_scores_remove_whole_tokens_and_find_the_trigger_faithful():
    trigger = WORDS.index("zap")
    model = ex.wrap(BagOfWords(trigger), modality="text", tokenizer=word_tokenizer())
    texts = ["the movie zap was great", "zap not good acting", "bad plot zap", "the zap plot"]
    exps = ex.explain_many(model, texts, ["gradient_x_input", "ig"], target=1, progress=False)
    scores = ex.evaluate(exps, model, progress=False)
    assert len(scores.values("integrated_gradients", "deletion_gain")) == 4
    assert scores.mean("integrated_gradients", "deletion_gain") > 0.05


def test_a_text_explanation_saves_and_loads_with_its_tokens(tmp_path):
    model = ex.wrap(BagOfWords(5), modality="text", tokenizer=word_tokenizer())
    exp = ex.explain(model, SENTENCES, "gradient_x_input", progress=False)
    back = ex.load_explanation(exp.save(tmp_path / "t.npz"))
    assert back.modality == "text" and back.tokens == exp.tokens
    assert torch.equal(back.attributions, exp.attributions) and torch.equal(back.inputs, exp.inputs)


def test_token_ids_and_a_mask_work_without_a_tokenizer():
    net = BagOfWords(5)
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    exp = ex.explain(ex.wrap(net, modality="text"), ids, "gradient_x_input", target=1,
                     forward_args={"attention_mask": mask}, progress=False)  # fmt: skip
    assert exp.attributions[1, 3] == 0 and exp.tokens[0] == ("2", "5", "6", "3")


@pytest.mark.parametrize(
    ("inputs", "wrap_options", "match"),
    [
        (["a sentence"], {}, "tokenizer"),
        (torch.rand(2, 4), {}, "token ids"),
        (torch.tensor([[2, 5, 3]]), {"reference_token": "bos"}, "reference_token"),
        (torch.tensor([[2, 5, 3]]), {"embedding": "nope"}, "embedding"),
    ],
    ids=["strings without tokenizer", "float ids", "unknown reference", "unknown embedding layer"],
)
def test_bad_text_inputs_get_a_clear_error(inputs, wrap_options, match):
    model = ex.wrap(BagOfWords(5), modality="text", **wrap_options)
    with pytest.raises(ex.InputError, match=match):
        ex.explain(model, inputs, "saliency", forward_args={"attention_mask": torch.ones(1, 3)},
                   progress=False)  # fmt: skip


def wordpiece_tokenizer():
    """A WordPiece tokenizer from a vocabulary given here: "playing" is play + ##ing."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "play", "##ing", "##ed",
             "was", "great", "film", "##s"]  # fmt: skip
    return transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})


def test_kernel_shap_over_words_equals_exact_shapley_values_of_whole_words():
    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=13, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=2)  # fmt: skip
    net = transformers.BertForSequenceClassification(config).double().eval()
    for p in net.parameters():
        p.data.mul_(4.0)
    model = ex.wrap(net, modality="text", tokenizer=tok)
    sentence = "the playing films was great"
    exp = ex.explain(model, [sentence], "kernel_shap", target=1, feature_mask="words",
                     n_samples=2**8, progress=False)  # fmt: skip
    ids = tok([sentence], return_tensors="pt")["input_ids"]
    assert exp.tokens[0] == (
        "[CLS]",
        "the",
        "play",
        "##ing",
        "film",
        "##s",
        "was",
        "great",
        "[SEP]",
    )
    words = [[1], [2, 3], [4, 5], [6], [7]]  # token positions of each word

    def value(coalition) -> float:
        kept = ids.clone()
        for positions, present in zip(words, coalition, strict=True):
            if not present:
                kept[0, positions] = 0  # every piece of the word becomes [PAD]
        with torch.no_grad():
            return float(net(kept).logits[0, 1])

    truth = exact_shapley(value, len(words))
    per_word = torch.stack([exp.attributions[0, p].double().sum() for p in words])
    torch.testing.assert_close(per_word, truth, atol=1e-8, rtol=1e-6)
    # a word's value is spread evenly over its pieces
    torch.testing.assert_close(exp.attributions[0, 2], exp.attributions[0, 3])
    scores = ex.evaluate(exp, model, metrics=["robustness"], progress=False)  # re-runs by words
    assert len(scores.values("kernel_shap", "max_sensitivity")) == 1


def test_a_text_models_memory_costs_are_measured_once_not_per_call(monkeypatch):
    import explainer._runtime as runtime

    probes = []
    real = runtime._probe
    monkeypatch.setattr(runtime, "_probe", lambda run: probes.append(1) or real(run))
    model = ex.wrap(hf_classifier("bert"), modality="text", tokenizer=word_tokenizer())
    ex.explain(model, SENTENCES, "ig", n_steps=8, progress=False)
    first = len(probes)
    ex.explain(model, SENTENCES, "ig", n_steps=8, progress=False)  # a new call, a new wrapper
    assert first > 0 and len(probes) == first


@pytest.mark.parametrize("method", ["layer_gradient_x_activation", "layer_integrated_gradients"])
def test_layer_methods_attribute_to_a_text_models_block_per_token(method):
    captum = pytest.importorskip("captum.attr")
    net = hf_classifier("bert")
    tok = word_tokenizer()
    model = ex.wrap(net, modality="text", tokenizer=tok)
    params = {"n_steps": 32} if method == "layer_integrated_gradients" else {}
    exp = ex.explain(model, SENTENCES, method, target=1, layer="bert.encoder.layer.0",
                     progress=False, **params)  # fmt: skip
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    block = net.bert.encoder.layer[0]

    def logits(i, m):
        return net(i, attention_mask=m).logits

    if method == "layer_gradient_x_activation":
        theirs = captum.LayerGradientXActivation(logits, block).attribute(
            ids, target=1, additional_forward_args=(mask,))  # fmt: skip
    else:
        special = torch.isin(ids, torch.tensor([2, 3])) | (mask == 0)
        reference = torch.where(special, ids, torch.zeros_like(ids))
        theirs = captum.LayerIntegratedGradients(logits, block).attribute(
            ids, baselines=reference, target=1, additional_forward_args=(mask,), n_steps=32,
            method="gausslegendre")  # fmt: skip
    theirs = theirs[0] if isinstance(theirs, tuple) else theirs
    torch.testing.assert_close(
        exp.extras["layer_attributions"], theirs.detach(), atol=1e-5, rtol=1e-4
    )
    # one attribution per token: the block's attributions summed over its features
    torch.testing.assert_close(exp.attributions, theirs.detach().sum(-1), atol=1e-5, rtol=1e-4)


def test_a_text_layer_method_needs_the_block_named():
    model = ex.wrap(hf_classifier("bert"), modality="text", tokenizer=word_tokenizer())
    with pytest.raises(ex.InputError, match="layer="):
        ex.explain(model, SENTENCES, "layer_gradient_x_activation", progress=False)


def test_token_heatmap_rows_say_how_far_the_methods_agree():
    from explainer.viz.panels import text_rows

    model = ex.wrap(BagOfWords(WORDS.index("zap")), modality="text", tokenizer=word_tokenizer())
    texts = ["the movie zap was great", "bad plot zap"]
    a = ex.explain(model, texts, "gradient_x_input", target=1, progress=False)
    rows = text_rows([a, a])
    assert [round(r.agreement, 6) for r in rows] == [1.0, 1.0]  # a map agrees with itself
