"""Tasks: a classifier's scores are a softmax, a multilabel model's an independent sigmoid
per label, a regression's the predicted values themselves, and every view and trust
metric reads them as such (one output column is a regression, never a one-class softmax)."""

from __future__ import annotations

import html

import pytest
import torch
from torch import nn

import explainer as ex


def _diabetes_mlp() -> tuple[nn.Module, torch.Tensor]:
    """An MLP fitted (seeded, full batch, 200 Adam steps) to load_diabetes's disease
    progression, standardized features; it predicts in the target's units (25..346)."""
    from sklearn.datasets import load_diabetes

    features, y = load_diabetes(return_X_y=True)
    x = torch.tensor((features - features.mean(0)) / features.std(0), dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)
    mu, sd = float(y.mean()), float(y.std())
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        ((net(x).squeeze(1) - (y - mu) / sd) ** 2).mean().backward()
        opt.step()
    with torch.no_grad():  # fitted on the standardized target: back to its units
        net[2].weight.mul_(sd)
        net[2].bias.mul_(sd).add_(mu)
    return net.eval(), x


def test_a_regression_mlp_is_not_treated_as_a_one_class_softmax(tmp_path):
    net, x = _diabetes_mlp()
    x = x[:32]
    model = ex.wrap(net, modality="tabular")  # one output column: a regression
    background = x.mean(0, keepdim=True)
    methods = {
        "kernel_shap": {"background": background, "n_samples": 2**10},
        "gradient_x_input": None,
    }
    exps = ex.explain_many(model, x, methods, progress=False)
    with torch.no_grad():
        values = net(x)
    assert model.task == "regression"
    assert exps[0].manifest["model"]["task"] == "regression"
    assert exps[0].manifest["model"]["task_given"] is False
    torch.testing.assert_close(exps[0].scores, values)  # values, not a softmax of ones
    assert exps[0].targets.eq(0).all()
    scores = ex.evaluate(exps, model, metrics=["faithfulness"], progress=False)
    for method in methods:
        # the curves start at the predicted value, and deleting features moves it
        curves = scores.curves[method]["deletion"]
        torch.testing.assert_close(torch.tensor(curves[:, 0]), values[:, 0].double())
        assert scores.mean(method, "deletion_gain") > 1.0  # in the target's units
        assert scores.mean(method, "insertion_gain") > 1.0
    verdicts = [v for v in scores.verdicts() if v.check.startswith("faithfulness")]
    assert verdicts and all(v.passed for v in verdicts)
    assert "predicted value" in verdicts[0].text
    page = html.unescape(ex.report(exps, path=tmp_path / "r.html", scores=scores).read_text())
    assert f"ŷ = {float(values[0, 0]):.4g}" in page
    assert "p = 1.000" not in page and "p = " not in page
    assert "task regression (inferred from the output columns)" in page


def test_a_regression_target_selects_an_output_column():
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    model = ex.wrap(net, modality="tabular", task="regression")
    x = torch.randn(3, 4)
    exp = ex.explain(model, x, "gradient_x_input", target=1, progress=False)
    torch.testing.assert_close(exp.attributions, x * net.weight[1].detach())
    assert ex.explain(model, x, "saliency", progress=False).targets.eq(0).all()  # default 0
    with torch.no_grad():
        torch.testing.assert_close(model.predict(x), net(x))


def test_a_vector_output_is_one_column():
    net = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))  # (N,)
    model = ex.wrap(net, modality="tabular")
    assert model.predict(torch.randn(3, 4)).shape == (3, 1)
    assert model.task == "regression"


def test_multilabel_scores_are_independent_sigmoids():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    model = ex.wrap(net, modality="tabular", task="multilabel")
    x = torch.randn(6, 4)
    with torch.no_grad():
        logits = net(x)
    torch.testing.assert_close(model.predict(x), logits.sigmoid())
    exp = ex.explain(model, x, "gradient_x_input", target=2, progress=False)
    assert exp.manifest["model"]["task"] == "multilabel"
    torch.testing.assert_close(exp.scores, logits.sigmoid())
    scores = ex.evaluate(exp, model, metrics=["faithfulness"], progress=False)
    start = torch.tensor(scores.curves["gradient_x_input"]["deletion"][:, 0])
    torch.testing.assert_close(start, logits[:, 2].sigmoid().double())  # the label's sigmoid


def test_a_one_column_classification_is_refused_as_a_softmax_that_is_always_one():
    model = ex.wrap(nn.Linear(4, 1), modality="tabular", task="classification")
    with pytest.raises(ex.ModelError, match='task="regression"'):
        ex.explain(model, torch.randn(2, 4), "saliency", progress=False)


def test_an_unknown_task_is_refused_naming_the_tasks():
    with pytest.raises(ex.InputError, match="'classification', 'regression', 'multilabel'"):
        ex.wrap(nn.Linear(4, 2), modality="tabular", task="ranking")
