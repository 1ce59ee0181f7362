"""The method contract, checked for every registered method and every modality it supports.

A method returns attributions shaped like the inputs, finite; leaves the model exactly as it
found it (training flags, requires_grad, .grad, inplace flags, hooks, parameters and
buffers), also when it raises; is deterministic given ``seed``; and its chunking by memory
budget does not change the result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_helpers import (
    HOOK_DICTS,
    SAMPLING_METHODS,
    assert_same_state,
    dress_up,
    inputs_for,
    method_cases,
    method_params,
    minimum_budget,
    model_for,
    model_state,
)
from torch import nn

import explainer as ex

CASES = method_cases()
CAM_METHODS = {
    "grad_cam",
    "hires_cam",
    "grad_cam_pp",
    "xgrad_cam",
    "layer_cam",
    "eigen_cam",
    "score_cam",
}
IDS = [f"{m}-{mod}" for m, mod in CASES]


def run(model, x, method, modality, target=0, **overrides):
    params = {**method_params(method, modality), **overrides}
    return ex.explain(model, x, method, target=target, progress=False, **params)


def test_the_documented_methods_are_checked_for_both_modalities():
    documented = (
        "saliency",
        "gradient_x_input",
        "smoothgrad",
        "integrated_gradients",
        "gradient_shap",
        "deep_shap",
        "kernel_shap",
    )
    assert {(name, mod) for name in documented for mod in ("image", "tabular")} <= set(CASES)


@pytest.mark.parametrize(("method", "modality"), CASES, ids=IDS)
@pytest.mark.parametrize("n", [1, 3])
def test_attributions_have_the_input_shape_and_are_finite(method, modality, n):
    # CAM maps are ReLU'd: on seed 0's CNN class 0 has only negative evidence at every
    # layer, and the all-zero map is then the right answer; seed 1's has some.
    model = model_for(modality, seed=1 if method in CAM_METHODS else 0)
    x = inputs_for(modality, n)
    exp = run(model, x, method, modality)
    assert exp.attributions.shape == x.shape
    assert exp.attributions.dtype == torch.float32
    assert torch.isfinite(exp.attributions).all()
    assert exp.attributions.abs().sum() > 0, "all-zero attributions"
    assert exp.method == method and exp.modality == modality
    assert torch.equal(exp.inputs, x) and exp.targets.tolist() == [0] * n


@pytest.mark.parametrize(("method", "modality"), CASES, ids=IDS)
def test_method_leaves_the_model_unchanged_after_success(method, modality):
    model = model_for(modality)
    net = dress_up(model.net)
    before = model_state(net)
    run(model, inputs_for(modality, 2), method, modality)
    assert_same_state(before, model_state(net))


class FailsOnCall(nn.Module):
    """Runs ``net`` but raises on the ``fail_at``-th forward call."""

    def __init__(self, net: nn.Module, fail_at: int) -> None:
        super().__init__()
        self.net, self.fail_at, self.calls = net, fail_at, 0
        self.hooks_seen: list[int] = []  # hooks attached to the inner network at each call
        self.modes_seen: list[int] = []  # torch function modes active at each call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.modes_seen.append(torch._C._len_torch_function_stack())
        self.hooks_seen.append(
            sum(
                len(getattr(m, attr))
                for m in self.net.modules()
                for attr in HOOK_DICTS
                if hasattr(m, attr)
            )
        )
        if self.calls == self.fail_at:
            raise RuntimeError("forced failure inside the method")
        return self.net(x)


def forward_calls(method: str, modality: str) -> int:
    """How many forward calls a successful run of ``method`` makes (explain()'s own included)."""
    net = FailsOnCall(model_for(modality).net, fail_at=0)
    run(ex.wrap(net, modality=modality), inputs_for(modality, 2), method, modality)
    return net.calls


# Call 1 is explain()'s own forward; the second call is the method's first (usually the memory
# probe); the last is deep in the method's main loop (inside a traced pass, for deep_shap).
@pytest.mark.parametrize(("method", "modality"), CASES, ids=IDS)
@pytest.mark.parametrize("when", ["second", "middle", "last"])
def test_method_leaves_the_model_unchanged_when_the_forward_fails(method, modality, when):
    total = forward_calls(method, modality)
    assert total >= 3
    fail_at = {"second": 2, "middle": (total + 3) // 2, "last": total}[when]
    inner = model_for(modality).net
    net = dress_up(FailsOnCall(inner, fail_at))
    model = ex.wrap(net, modality=modality)
    before = model_state(net)
    with pytest.raises(RuntimeError, match="forced failure"):
        run(model, inputs_for(modality, 2), method, modality)
    assert net.calls == fail_at
    assert_same_state(before, model_state(net))


@pytest.mark.parametrize("modality", ["image", "tabular"])
def test_deep_shap_leaves_no_trace_when_the_forward_fails_while_it_traces(modality):
    # deep_shap's engine follows the forward with a torch function mode (no hooks): a failure
    # inside a traced pass must leave the mode stack empty and the model as it was.
    probe = FailsOnCall(model_for(modality).net, fail_at=0)
    run(ex.wrap(probe, modality=modality), inputs_for(modality, 2), "deep_shap", modality)
    traced = [call for call, n in enumerate(probe.modes_seen, start=1) if n > 0]
    assert traced, "deep_shap traces its forward passes"
    assert not any(probe.hooks_seen), "no hook is ever attached to the network"
    net = dress_up(FailsOnCall(model_for(modality).net, fail_at=traced[-1]))
    before = model_state(net)
    with pytest.raises(RuntimeError, match="forced failure"):
        run(ex.wrap(net, modality=modality), inputs_for(modality, 2), "deep_shap", modality)
    assert net.modes_seen[-1] > 0, "the failure happened inside a traced pass"
    assert torch._C._len_torch_function_stack() == 0
    assert_same_state(before, model_state(net))


BAD_PARAMS = {
    "integrated_gradients": {"rule": "simpson"},
    "smoothgrad": {"base": "no_such_method"},
    "gradient_shap": {"n_samples": 0},
    "deep_shap": {"background": torch.zeros(2, 5, 5)},
    "kernel_shap": {"feature_mask": torch.zeros(2, 2)},
}


@pytest.mark.parametrize(
    ("method", "modality"),
    [c for c in CASES if c[0] in BAD_PARAMS],
    ids=[i for c, i in zip(CASES, IDS, strict=True) if c[0] in BAD_PARAMS],
)
def test_method_leaves_the_model_unchanged_when_a_parameter_is_rejected(method, modality):
    model = model_for(modality)
    net = dress_up(model.net)
    before = model_state(net)
    with pytest.raises(ex.ExplainerError):
        run(model, inputs_for(modality, 2), method, modality, **BAD_PARAMS[method])
    assert_same_state(before, model_state(net))


@pytest.mark.parametrize(("method", "modality"), CASES, ids=IDS)
def test_same_seed_gives_identical_results(method, modality):
    model = model_for(modality)
    x = inputs_for(modality, 2)
    seed = {"seed": 3} if "seed" in ex.get_method(method).parameters else {}
    first = run(model, x, method, modality, **seed)
    second = run(model, x, method, modality, **seed)
    assert torch.equal(first.attributions, second.attributions)
    if seed:
        assert first.manifest["seed"] == 3 and first.params["seed"] == 3


@pytest.mark.parametrize(
    ("method", "modality"),
    [c for c in CASES if c[0] in SAMPLING_METHODS],
    ids=[i for c, i in zip(CASES, IDS, strict=True) if c[0] in SAMPLING_METHODS],
)
def test_sampling_methods_give_different_results_for_different_seeds(method, modality):
    model = model_for(modality)
    x = inputs_for(modality, 2)
    a = run(model, x, method, modality, seed=1).attributions
    b = run(model, x, method, modality, seed=2).attributions
    assert not torch.allclose(a, b)


DETERMINISTIC = [c for c in CASES if c[0] not in SAMPLING_METHODS]


@pytest.mark.parametrize(
    ("method", "modality"),
    DETERMINISTIC,
    ids=[i for c, i in zip(CASES, IDS, strict=True) if c[0] not in SAMPLING_METHODS],
)
def test_deterministic_methods_give_each_sample_the_same_result_alone_or_in_a_batch(
    method, modality
):
    model = model_for(modality)
    x = inputs_for(modality, 3)
    together = run(model, x, method, modality, target=[0, 1, 2]).attributions
    for i in range(3):
        alone = run(model, x[i : i + 1], method, modality, target=i).attributions
        torch.testing.assert_close(alone[0], together[i], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("method", "modality"), CASES, ids=IDS)
def test_model_left_in_train_mode_stays_in_train_mode_and_dropout_does_not_randomize(
    method, modality
):
    model = model_for(modality, dropout=0.5)
    x = inputs_for(modality, 2)
    expected = run(model, x, method, modality).attributions  # model.net is in eval mode here
    model.net.train()
    first = run(model, x, method, modality).attributions
    second = run(model, x, method, modality).attributions
    assert model.net.training and all(m.training for m in model.net.modules())
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    ("method", "modality"),
    [c for c in CASES if c[1] == "image"],
    ids=[i for c, i in zip(CASES, IDS, strict=True) if c[1] == "image"],
)
def test_inplace_relu_model_works_and_keeps_its_inplace_flags(method, modality):
    model = model_for(modality)
    relus = [m for m in model.net.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(m.inplace for m in relus)
    exp = run(model, inputs_for(modality, 2), method, modality)
    assert torch.isfinite(exp.attributions).all()
    assert all(m.inplace for m in relus)


BATCHING = ["integrated_gradients", "smoothgrad", "gradient_shap", "deep_shap", "kernel_shap"]


@pytest.mark.parametrize(
    ("method", "modality"),
    [c for c in CASES if c[0] in BATCHING],
    ids=[i for c, i in zip(CASES, IDS, strict=True) if c[0] in BATCHING],
)
def test_tiny_memory_budget_gives_the_same_attributions_as_the_default(method, modality):
    model = model_for(modality)
    x = inputs_for(modality, 2)
    default = run(model, x, method, modality)
    floor = minimum_budget(lambda b: run(model, x, method, modality, memory_budget=b))
    tiny = run(model, x, method, modality, memory_budget=floor)  # one row per chunk
    assert tiny.manifest["memory_budget"] == floor
    torch.testing.assert_close(tiny.attributions, default.attributions, rtol=1e-5, atol=1e-7)


def test_noisy_gradient_shap_does_not_depend_on_the_memory_budget():
    model = model_for("tabular")
    x = inputs_for("tabular", 3)
    params = {"stdev": 0.2}
    default = run(model, x, "gradient_shap", "tabular", **params)
    floor = minimum_budget(
        lambda b: run(model, x, "gradient_shap", "tabular", memory_budget=b, **params)
    )
    tiny = run(model, x, "gradient_shap", "tabular", memory_budget=floor, **params)
    torch.testing.assert_close(tiny.attributions, default.attributions, rtol=1e-5, atol=1e-7)


def test_methods_do_not_touch_the_global_random_state():
    models = {
        modality: model_for(modality) for modality in ("image", "tabular")
    }  # layer init draws globally
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    for method, modality in CASES:
        run(
            models[modality],
            inputs_for(modality, 1),
            method,
            modality,
            **({"seed": 5} if method in SAMPLING_METHODS else {}),
        )
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
