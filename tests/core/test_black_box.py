"""Black boxes: ``ex.wrap(fn)`` for a plain callable on numpy arrays (scikit-learn's
``predict_proba``, any function of a batch) is explained by the methods that need only
forward passes and scored by the forward-only trust metrics; gradient methods are refused
naming the methods that work. Fingerprints follow the function's fitted state."""

from __future__ import annotations

import html
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import explainer as ex


def _iris_classifier():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(features, labels), features


def _exact_shapley(f, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Shapley values of f at x by enumerating every coalition, absent features taking the
    background rows' values (v(S) = mean over the rows)."""
    m = len(x)

    def v(coalition: tuple[int, ...]) -> float:
        rows = background.copy()
        rows[:, list(coalition)] = x[list(coalition)]
        return float(f(rows).mean())

    phi = np.zeros(m)
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in itertools.combinations(others, size):
                phi[j] += weight * (v((*s, j)) - v(s))
    return phi


def test_a_scikit_learn_classifier_is_explained_by_kernel_shap_without_a_shim():
    clf, features = _iris_classifier()
    model = ex.wrap(
        clf.predict_proba, modality="tabular", class_names=["setosa", "versicolor", "virginica"]
    )
    assert (model.output, model.input, model.differentiable) == ("probabilities", "numpy", False)
    x, background = features[[0, 60, 120]], features[::15]
    exp = ex.explain(
        model,
        x,
        "kernel_shap",
        target="versicolor",
        background=background,
        n_samples=2**4,
        progress=False,
    )
    f = clf.predict_proba(x.astype(np.float32))[:, 1]
    expected = f - clf.predict_proba(background.astype(np.float32))[:, 1].mean()
    np.testing.assert_allclose(exp.attributions.sum(1).numpy(), expected, atol=1e-6)
    for i in range(len(x)):  # the exact Shapley values, by enumeration of the 2^4 coalitions
        oracle = _exact_shapley(lambda r: clf.predict_proba(r)[:, 1], x[i], background)
        np.testing.assert_allclose(exp.attributions[i].numpy(), oracle, atol=1e-5)
    np.testing.assert_allclose(exp.scores.numpy(), clf.predict_proba(x), atol=1e-6)
    assert exp.manifest["model"]["input"] == "numpy"


@pytest.mark.parametrize(
    "method",
    [
        "saliency",
        "gradient_x_input",
        "integrated_gradients",
        "smoothgrad",
        "gradient_shap",
        "deep_shap",
    ],
)
def test_a_gradient_method_on_a_black_box_is_refused_naming_kernel_shap(method):
    clf, features = _iris_classifier()
    model = ex.wrap(clf.predict_proba, modality="tabular")
    with pytest.raises(ex.ModelError, match=f"got {method}.*Use kernel_shap"):
        params = {"background": features[::30]} if method.endswith("shap") else {}
        ex.explain(model, features[:2], method, progress=False, **params)


def test_the_forward_only_trust_metrics_score_a_black_box(tmp_path):
    clf, features = _iris_classifier()
    model = ex.wrap(clf.predict_proba, modality="tabular")
    x, background = features[::10], features[::15]
    exp = ex.explain(model, x, "kernel_shap", background=background, n_samples=16, progress=False)
    scores = ex.evaluate(exp, model, progress=False)  # every group: randomization has no layers
    metrics = {r["metric"] for r in scores}
    assert {
        "deletion_gain",
        "insertion_gain",
        "infidelity",
        "max_sensitivity",
        "completeness_gap",
    } <= metrics
    assert not any(m.startswith("randomization") for m in metrics)
    checks = {v.check: v.passed for v in scores.verdicts()}
    assert checks["completeness"] is True
    assert checks["faithfulness (deletion/insertion vs random)"] is True
    page = html.unescape(ex.report(exp, path=tmp_path / "r.html", scores=scores).read_text())
    assert "black box (fed numpy, forward passes only)" in page


def test_a_numpy_function_returning_one_value_per_row_is_a_regression():
    w = np.array([1.0, -2.0, 0.5])
    model = ex.wrap(lambda a: np.tanh(a) @ w, modality="tabular")  # (N,) numpy
    x = np.array([[0.3, -0.2, 1.0], [1.0, 0.5, -1.0]])
    background = np.zeros((1, 3))
    exp = ex.explain(model, x, "kernel_shap", background=background, n_samples=8, progress=False)
    assert exp.manifest["model"]["task"] == "regression"
    # additive model: the Shapley value of feature j is w_j * (tanh x_j - tanh 0)
    np.testing.assert_allclose(exp.attributions.numpy(), np.tanh(x) * w, atol=1e-6)
    np.testing.assert_allclose(exp.scores[:, 0].numpy(), np.tanh(x) @ w, atol=1e-6)


def test_the_fingerprint_of_a_callable_follows_its_fitted_weights():
    from sklearn.linear_model import LogisticRegression

    clf, features = _iris_classifier()
    labels = clf.predict(features)
    other = LogisticRegression(C=0.01, max_iter=1000).fit(features, labels)
    first = ex.wrap(clf.predict_proba, modality="tabular").fingerprint()
    assert ex.wrap(clf.predict_proba, modality="tabular").fingerprint() == first
    assert ex.wrap(other.predict_proba, modality="tabular").fingerprint() != first
    fn = lambda a: a.sum(1)  # noqa: E731  (not picklable: its name and id)
    assert ex.wrap(fn).fingerprint() == ex.wrap(fn).fingerprint()
    assert ex.wrap(fn).fingerprint() != ex.wrap(lambda a: a.sum(1)).fingerprint()


def test_a_function_of_tensors_with_input_tensor_gets_gradient_methods():
    torch.manual_seed(0)
    weight = torch.randn(3, 2)
    model = ex.wrap(lambda t: t @ weight, modality="tabular", input="tensor")
    x = torch.randn(4, 3)
    exp = ex.explain(model, x, "gradient_x_input", target=1, progress=False)
    torch.testing.assert_close(exp.attributions, x * weight[:, 1])


def test_a_function_of_tensors_fed_numpy_says_to_pass_input_tensor():
    model = ex.wrap(lambda t: t.softmax(1), modality="tabular")
    with pytest.raises(ex.ModelError, match='input="tensor"'):
        ex.explain(
            model, torch.randn(2, 3), "kernel_shap", background=torch.zeros(1, 3), progress=False
        )


def test_a_module_method_keeps_the_module_weights_and_eval_mode():
    net = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    model = ex.wrap(net.forward, modality="tabular")
    assert (model.input, model.n_parameters) == ("tensor", 8)
    x = torch.randn(4, 3)
    exp = ex.explain(model, x, "gradient_x_input", target=0, progress=False)  # dropout off
    torch.testing.assert_close(exp.attributions, x * net[0].weight[0].detach())
    assert net.training  # restored
