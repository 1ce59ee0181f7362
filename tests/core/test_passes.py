"""Every pass counted once (issue 18): ex.explain runs the forwards a method needs and no
other; the scores come from the method's own passes where it ran them on the inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import explainer as ex
from explainer.passes import KnownOutputs


class Counted(nn.Module):
    """A small MLP that counts the rows of its forwards, with and without autograd."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        self.rows = {"grad": 0, "no_grad": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows["grad" if torch.is_grad_enabled() else "no_grad"] += len(x)
        return self.net(x)

    def reset(self) -> dict[str, int]:
        out = dict(self.rows)
        self.rows.update(grad=0, no_grad=0)
        return out


@pytest.fixture
def counted():
    torch.manual_seed(0)
    net = Counted()
    model = ex.wrap(net, modality="tabular")
    x, bg = torch.randn(4, 6), torch.randn(3, 6)
    ex.explain(model, x, "deep_shap", background=bg, progress=False)  # cost probes, cached
    e = ex.explain(model, x, "saliency", progress=False)
    ex.evaluate(e, model, metrics=["infidelity"], n_perturb=1, progress=False)  # forward cost
    net.reset()
    return net, model, x, bg


# (method, params, forward+backward rows, forward-only rows) on 4 samples, 3 background rows
CASES = [
    ("saliency", {}, 4, 0),
    ("gradient_x_input", {}, 4, 0),
    # path points; f(x) and f(baseline) for the gap (f(x) also gives the scores)
    ("integrated_gradients", {"n_steps": 8}, 32, 8),
    # noisy points; f(x) (gap and scores), f(background)
    ("gradient_shap", {"n_samples": 5}, 20, 7),
    # DeepLIFT's pairs: a pass with autograd per pair, after a reference pass (no autograd)
    # on each background row once; f(x) and f(background) come from them
    ("deep_shap", {}, 12, 3),
    # noisy copies; then the scores
    ("smoothgrad", {"n_samples": 3}, 12, 4),
]


@pytest.mark.parametrize(("method", "params", "grad_rows", "forward_rows"), CASES)
def test_a_call_on_given_targets_runs_only_the_passes_its_method_needs(
    counted, method, params, grad_rows, forward_rows
):
    net, model, x, bg = counted
    if method in ("gradient_shap", "deep_shap"):
        params = {**params, "background": bg}
    e = ex.explain(model, x, method, target=1, progress=False, **params)
    assert net.reset() == {"grad": grad_rows, "no_grad": forward_rows}
    with torch.no_grad():
        assert torch.allclose(e.scores, net.net(x).softmax(1), atol=1e-6)


def test_the_predicted_class_costs_one_forward_that_the_method_reuses(counted):
    net, model, x, _ = counted
    e = ex.explain(model, x, "integrated_gradients", n_steps=8, progress=False)
    # the forward that finds the predicted class is IG's f(x): 4 + f(baseline) 4
    assert net.reset() == {"grad": 32, "no_grad": 8}
    with torch.no_grad():
        assert e.targets.tolist() == net.net(x).argmax(1).tolist()
    ex.explain(model, x, "saliency", progress=False)
    assert net.reset() == {"grad": 4, "no_grad": 4}


def test_a_model_never_run_is_run_once_before_its_targets_are_checked():
    net = Counted()
    model = ex.wrap(net, modality="tabular")
    with pytest.raises(ex.InputError, match="class index in \\[0, 3\\)"):
        ex.explain(model, torch.randn(2, 6), "saliency", target=3, progress=False)
    assert net.reset()["no_grad"] == 2  # the forward that found 3 columns; no gradient pass


class _Model:
    """Anything a weak reference can point to stands for a model here."""


def test_known_outputs_are_never_returned_for_other_rows_or_a_changed_input():
    known, model, other = KnownOutputs(), _Model(), _Model()
    x = torch.randn(5, 2)
    out = torch.randn(5, 3)
    known.put(model, x, out)
    assert known.get(model, x[:]) is not None  # the same rows through another view
    assert known.get(other, x) is None  # another model (other network or arguments)
    assert known.get(model, x[1:]) is None
    assert known.get(model, x.clone()) is None  # equal values, other rows
    assert known.get(model, x.double()) is None
    x.mul_(2)  # an in-place change bumps the version counter
    assert known.get(model, x) is None


def test_a_freed_input_leaves_no_entry_a_new_tensor_could_match():
    known, model = KnownOutputs(), _Model()
    x = torch.randn(64, 8)
    known.put(model, x, torch.zeros(64, 2))
    del x
    y = torch.randn(64, 8)  # may reuse the freed block's address
    assert known.get(model, y) is None


def test_nested_evaluating_sets_the_flags_once_and_the_outermost_restores_them():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(), nn.ReLU(inplace=True))
    model = ex.wrap(net, modality="tabular")
    with pytest.raises(RuntimeError, match="inside"):
        with model.evaluating():
            with model.evaluating():
                assert not net.training and not net[2].inplace
            assert not net.training  # the inner exit leaves the outer call's state
            assert not net[0].weight.requires_grad
            raise RuntimeError("inside")
    assert net.training and net[2].inplace and net[0].weight.requires_grad
    with model.evaluating():  # and a later call sets them again
        assert not net.training
    assert net.training


def test_evaluate_computes_what_does_not_depend_on_the_method_once(counted):
    """The random-order curves and infidelity's perturbed forwards are the same for every
    method explaining the same inputs: a second method adds only its own curves."""
    net, model, x, _ = counted
    a = ex.explain(model, x, "saliency", target=1, progress=False)
    b = ex.explain(model, x.clone(), "gradient_x_input", target=1, progress=False)
    options = dict(metrics=["faithfulness", "infidelity"], steps=4, n_perturb=3, progress=False)
    net.reset()
    one = ex.evaluate(a, model, **options)
    alone = net.reset()["no_grad"]
    both = ex.evaluate([a, b], model, **options)
    together = net.reset()["no_grad"]
    curve = len(x) * (4 + 1)
    # deletion, insertion, lerf (by the method) + 2 random curves + f(x) and 3 perturbations
    assert alone == 5 * curve + len(x) + 3 * len(x)
    assert together == alone + 3 * curve
    # and the shared parts give each method the numbers it would get alone
    for metric in ("deletion_random_auc", "infidelity", "deletion_auc"):
        assert one.values("saliency", metric).tolist() == both.values("saliency", metric).tolist()


class CountedCNN(nn.Module):
    """A small CNN that counts the rows of its forwards, with and without autograd."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.rows = {"grad": 0, "no_grad": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows["grad" if torch.is_grad_enabled() else "no_grad"] += len(x)
        return self.head(self.features(x))


def test_grad_cam_runs_one_forward_whose_outputs_give_the_scores_and_finds_its_layer_once():
    torch.manual_seed(0)
    net = CountedCNN()
    model = ex.wrap(net, modality="image")
    x = torch.rand(4, 3, 8, 8)
    first = ex.explain(model, x, "grad_cam", target=1, progress=False)
    assert first.params["layer"] == "features"
    # the first call traces one sample to find the default layer (and measures its cost)
    net.rows.update(grad=0, no_grad=0)
    again = ex.explain(model, x, "grad_cam", target=1, progress=False)
    assert net.rows == {"grad": 4, "no_grad": 0}
    assert torch.equal(again.attributions, first.attributions)
    with torch.no_grad():
        assert torch.allclose(again.scores, net(x).softmax(1), atol=1e-6)
    # a network whose modules changed is traced again
    net.features[1] = nn.Tanh()
    net.rows.update(grad=0, no_grad=0)
    assert ex.explain(model, x, "grad_cam", target=1, progress=False).params["layer"] == (
        "features"
    )
    assert net.rows["grad"] + net.rows["no_grad"] == 5


def test_the_walk_finds_what_the_module_iterators_find_with_shared_and_missing_members():
    from explainer.evaluating import walk

    shared = nn.Linear(4, 4, bias=False)  # a missing bias, and one module reached twice
    net = nn.Sequential(shared, nn.BatchNorm1d(4), shared, nn.Linear(4, 4))
    net[3].weight = shared.weight  # tied weights: one parameter under two names
    net.register_buffer("scale", torch.ones(1), persistent=False)
    found = walk(net)
    assert found.modules == list(net.modules())
    assert [(n, id(p)) for n, p in found.parameters] == [
        (n, id(p)) for n, p in net.named_parameters()
    ]
    assert [(n, id(b)) for n, b in found.buffers] == [(n, id(b)) for n, b in net.named_buffers()]


def test_a_module_that_overrides_train_is_put_in_eval_mode_through_it():
    calls = []

    class Frozen(nn.Module):  # keeps its batch norm in eval mode, as fine-tuning code does
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.norm = nn.Linear(3, 3), nn.BatchNorm1d(3)

        def train(self, mode: bool = True) -> Frozen:
            calls.append(mode)
            super().train(mode)
            self.norm.eval()
            return self

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.lin(x))

    net = Frozen().train()
    calls.clear()
    with ex.wrap(net, modality="tabular").evaluating():
        assert calls == [False] and not net.training and not net.norm.training
    assert net.training and not net.norm.training  # the flags it had, restored
    plain = nn.Sequential(nn.Linear(3, 3), nn.Dropout())
    with ex.wrap(plain, modality="tabular").evaluating():
        assert not plain.training and not plain[1].training
    assert plain.training and plain[1].training
