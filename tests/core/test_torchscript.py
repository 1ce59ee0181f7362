"""TorchScript models (scripted and traced) with in-place ReLU: every method that can run
on them does, nothing writes attributes of a script module, and trust scores work."""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import make_inplace_relu_cnn

import explainer as ex
from explainer.metrics.sanity import randomized_copies

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::explainer.errors.ExplainerWarning"),
]

X = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
BACKGROUND = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
REFUSED = {"deep_shap"} | {
    m.name for m in ex.list_methods() if "layer" in m.defaults or m.name == "attention_rollout"
}
OPTIONS = {
    "deep_shap": {"background": BACKGROUND},
    "gradient_shap": {"background": BACKGROUND, "seed": 0},
    "kernel_shap": {"n_samples": 64, "n_segments": 4, "seed": 0},
    "integrated_gradients": {"n_steps": 16},
}


def compiled(how: str) -> torch.jit.ScriptModule:
    net = make_inplace_relu_cnn()
    return torch.jit.script(net) if how == "script" else torch.jit.trace(net, X)


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("method", [info.name for info in ex.list_methods()])
def test_torchscript_model_with_inplace_relu_runs_every_method_it_supports(how, method):
    model = ex.wrap(compiled(how))
    options = OPTIONS.get(method, {})
    if method in REFUSED:  # on purpose: they follow eager operations or hook its layers
        with pytest.raises(ex.ModelError, match="TorchScript") as info:
            ex.explain(model, X, method, progress=False, **options)
        assert "factory=" in str(info.value)
        return
    e = ex.explain(model, X, method, target=0, progress=False, **options)
    eager = ex.explain(
        ex.wrap(make_inplace_relu_cnn()), X, method, target=0, progress=False, **options
    )
    torch.testing.assert_close(e.attributions, eager.attributions, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_evaluating_a_script_module_sets_no_constant_and_restores_training(how):
    net = compiled(how)
    net.train()
    with ex.wrap(net).evaluating():  # used to set m.inplace: "Can't set constant 'inplace'"
        assert not net.training
        assert all(not p.requires_grad for p in net.parameters())
    assert net.training and all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("how", ["script", "trace"])
def test_randomized_copies_of_a_torchscript_model_can_be_evaluated(how):
    # Deep-copying a script module under autograd made its parameters non-leaf tensors,
    # so freezing their requires_grad in evaluating() raised a RuntimeError.
    model = ex.wrap(compiled(how))
    before = model.fingerprint()
    copies = list(randomized_copies(model, "cascading", seed=0))
    assert len(copies) == 2
    for _, randomized in copies:
        assert all(p.is_leaf for p in randomized.net.parameters())
        with randomized.evaluating():
            assert randomized.predict(X).shape == (3, 3)
    assert model.fingerprint() == before


@pytest.mark.parametrize("how", ["script", "trace"])
def test_evaluate_scores_explanations_of_a_torchscript_model(how):
    model = ex.wrap(compiled(how))
    exps = [
        ex.explain(model, X, "saliency", target=0, progress=False),
        ex.explain(model, X, "integrated_gradients", target=0, progress=False, n_steps=16),
    ]
    scores = ex.evaluate(exps, model, progress=False)
    assert {row["method"] for row in scores.rows} >= {"saliency", "integrated_gradients"}
