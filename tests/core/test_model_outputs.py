"""Whatever a network's forward returns, ``ex.wrap`` finds the explained tensor in it: a
tensor as it is, a HuggingFace ``ModelOutput``'s ``.logits``, a dict's ``"logits"``, a
tuple's first element, or what the user's ``select`` names; what was taken is recorded."""

from __future__ import annotations

import html

import pytest
import torch
from torch import nn

import explainer as ex


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


class ReturnsDict(nn.Module):
    def __init__(self, key: str = "logits") -> None:
        super().__init__()
        self.linear, self.key = _linear(), key

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hidden": torch.tanh(x), self.key: self.linear(x)}


class ReturnsTuple(nn.Module):
    def __init__(self, first: bool = True) -> None:
        super().__init__()
        self.linear, self.first = _linear(), first

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.linear(x)
        return (y, torch.tanh(x)) if self.first else (torch.tanh(x), y)


def _x() -> torch.Tensor:
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(1))


def _tiny_vit() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    return ViTForImageClassification(config).eval()


def test_a_huggingface_classifier_is_explained_through_its_model_output_logits():
    vit = _tiny_vit()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model = ex.wrap(vit)
    sal = ex.explain(model, x, "saliency", target=1, absolute=False, progress=False)
    ig = ex.explain(model, x, "integrated_gradients", target=1, n_steps=32, progress=False)
    # oracle: autograd on the logits the ModelOutput holds
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(vit(pixel_values=xg).logits[:, 1].sum(), xg)
    torch.testing.assert_close(sal.attributions, grad, rtol=1e-4, atol=1e-6)
    assert sal.manifest["model"]["selected"] == "attribute .logits (automatic)"
    assert ig.manifest["model"]["selected"] == "attribute .logits (automatic)"
    assert float(ig.extras["relative_gap"].max()) < 0.01  # completeness on the logits
    with torch.no_grad():
        torch.testing.assert_close(sal.scores, vit(pixel_values=x).logits.softmax(1))


def test_a_dict_returning_net_is_explained_through_its_logits_entry():
    net, x = ReturnsDict(), _x()
    exp = ex.explain(
        ex.wrap(net, modality="tabular"), x, "gradient_x_input", target=2, progress=False
    )
    torch.testing.assert_close(exp.attributions, x * net.linear.weight[2].detach())
    assert exp.manifest["model"]["selected"] == "key 'logits' (automatic)"


def test_a_tuple_returning_net_is_explained_through_its_first_element():
    net, x = ReturnsTuple(), _x()
    exp = ex.explain(
        ex.wrap(net, modality="tabular"), x, "gradient_x_input", target=0, progress=False
    )
    torch.testing.assert_close(exp.attributions, x * net.linear.weight[0].detach())
    assert exp.manifest["model"]["selected"] == "element [0] (automatic)"


@pytest.mark.parametrize(
    ("net", "select", "recorded"),
    [
        (ReturnsDict("scores"), "scores", "key 'scores'"),
        (ReturnsTuple(first=False), 1, "element [1]"),
        (ReturnsDict("scores"), lambda out: out["scores"], "function "),
    ],
    ids=["key", "index", "function"],
)
def test_a_user_key_index_or_function_selects_the_explained_tensor(net, select, recorded):
    x = _x()
    model = ex.wrap(net, modality="tabular", select=select)
    exp = ex.explain(model, x, "gradient_x_input", target=1, progress=False)
    torch.testing.assert_close(exp.attributions, x * net.linear.weight[1].detach())
    assert exp.manifest["model"]["selected"].startswith(recorded)


def test_a_key_the_output_does_not_have_is_refused_naming_the_keys_it_has():
    model = ex.wrap(ReturnsDict("scores"), modality="tabular")
    with pytest.raises(ex.ModelError, match=r"'hidden', 'scores'.*select="):
        ex.explain(model, _x(), "saliency", progress=False)  # no "logits" to find
    with pytest.raises(ex.ModelError, match="key or attribute 'probs'"):
        ex.explain(ex.wrap(model, select="probs"), _x(), "saliency", progress=False)


def test_a_select_that_is_neither_key_index_nor_function_is_refused():
    with pytest.raises(ex.InputError, match="`select`"):
        ex.wrap(ReturnsDict(), modality="tabular", select=1.5)


def test_output_logits_and_probabilities_keep_their_meaning():
    net, x = _linear(), _x()
    with torch.no_grad():
        logits = net(x)
    torch.testing.assert_close(ex.wrap(net, modality="tabular").predict(x), logits.softmax(1))
    probs = ex.wrap(nn.Sequential(net, nn.Softmax(1)), modality="tabular", output="probabilities")
    torch.testing.assert_close(probs.predict(x), logits.softmax(1))
    assert ex.wrap(net, modality="tabular", output="probabilities").predict(x).equal(logits)


def test_the_report_shows_how_the_explained_tensor_was_selected(tmp_path):
    exp = ex.explain(ex.wrap(ReturnsDict(), modality="tabular"), _x(), "saliency", progress=False)
    page = html.unescape(ex.report(exp, path=tmp_path / "r.html").read_text())
    assert "explained tensor: key 'logits' (automatic)" in page
    assert "task classification (inferred from the output columns)" in page
