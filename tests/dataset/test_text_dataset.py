"""Text datasets: explain_dataset on a list of strings (or token ids) for a text model; the
store keeps the padded ids, the masks, the per-token attributions and the text of every id,
and reads back text explanations that reports and trust scores take."""

from __future__ import annotations

import pytest
import torch

import explainer as ex
from explainer.demo.text import TEXT_CLASSES, WordTokenizer, load_text_model, make_reviews


@pytest.fixture(scope="module")
def text_model():
    return ex.wrap(load_text_model(), modality="text", tokenizer=WordTokenizer(),
                   class_names=TEXT_CLASSES)  # fmt: skip


def test_a_store_of_texts_reads_back_what_explain_gives(text_model, tmp_path):
    reviews = make_reviews(10, "test")
    texts = list(reviews.texts)
    store = ex.explain_dataset(text_model, texts, {"gradient_x_input": None}, tmp_path / "t.zarr",
                               labels=reviews.labels, batch_size=4, progress=False)  # fmt: skip
    assert store.modality == "text" and store.n == 10
    stored = store[0:10]["gradient_x_input"]
    direct = ex.explain(text_model, texts, "gradient_x_input", progress=False)
    assert stored.tokens == direct.tokens  # the ids padded the same way, the tokens read back
    torch.testing.assert_close(stored.attributions, direct.attributions, atol=1e-6, rtol=1e-5)
    assert torch.equal(stored.extras["attention_mask"], direct.extras["attention_mask"])
    assert "embedding_attributions" not in stored.extras  # per token only: the store stays small


def test_a_text_store_gets_a_report_and_trust_scores(text_model, tmp_path):
    texts = list(make_reviews(8, "test").texts)
    store = ex.explain_dataset(text_model, texts, {"ig": {"n_steps": 16}}, tmp_path / "t.zarr",
                               progress=False)  # fmt: skip
    html = ex.report(store, path=tmp_path / "r.html").read_text()
    assert html.count('class="tok"') >= 8 * 5
    scores = ex.evaluate(store, text_model, metrics=["faithfulness", "robustness"], progress=False)
    assert len(scores.values("integrated_gradients", "deletion_gain")) == 8


def test_strings_without_a_tokenizer_and_float_data_are_refused_before_writing(tmp_path):
    bare = ex.wrap(load_text_model(), modality="text")
    with pytest.raises(ex.InputError, match="tokenizer"):
        ex.explain_dataset(
            bare, ["the film was good"], "saliency", tmp_path / "a.zarr", progress=False
        )
    with pytest.raises(ex.InputError, match="token ids"):
        ex.explain_dataset(bare, torch.rand(4, 6), "saliency", tmp_path / "b.zarr", progress=False)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
