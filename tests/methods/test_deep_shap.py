"""deep_shap is our own DeepLIFT (rescale rule): additive on every network built from
standard layers, equal to shap's DeepExplainer where shap is right, and never silent where
no rule applies.

Additivity, per sample: |sum(phi) - (f(x) - mean_b f(b))| <= 1e-4 * max(1, |f(x) - E f(b)|).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attribution_helpers import assert_same_state, model_state
from torch import nn

import explainer as ex

TOL = 1e-4


def deep_shap(net, x, bg, target=0, modality="tabular"):
    model = ex.wrap(net.eval(), modality=modality)
    return ex.explain(model, x, "deep_shap", target=target, background=bg, progress=False)


def additivity_gap(net, x, bg, target=0, modality="tabular"):
    """The worst relative gap of deep_shap over the samples, and the explanation."""
    exp = deep_shap(net, x, bg, target, modality)
    with torch.no_grad():
        change = net(x)[:, target] - net(bg)[:, target].mean()
    gap = exp.attributions.reshape(len(x), -1).sum(1) - change
    return float((gap.abs() / change.abs().clamp_min(1.0)).max()), exp


class PoolThenActivation(nn.Module):
    """The issue's network: max pooling feeds an activation directly."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.pool, self.act = nn.MaxPool1d(2), act

    def forward(self, x):
        return self.act(self.pool(x.unsqueeze(1))).squeeze(1)


@pytest.mark.parametrize(
    ("act", "expected"),
    [(nn.ReLU(), [3.0, 0.0]), (nn.Tanh(), [np.tanh(3.0) - np.tanh(-2.0), 0.0])],
    ids=["relu", "tanh"],
)
def test_deep_shap_is_additive_when_a_pooling_module_feeds_an_activation(act, expected):
    # f(x) - f(b) = act(3) - act(-2): both maxima sit at feature 0, so all of it goes there
    # (the engine we replaced returned [[5, 0]] for ReLU and 0.049 for Tanh).
    exp = deep_shap(
        PoolThenActivation(act), torch.tensor([[3.0, -1.0]]), torch.tensor([[-2.0, -5.0]])
    )
    assert exp.attributions[0].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh], ids=["relu", "tanh"])
def test_deep_shap_is_additive_on_conv_maxpool_activation_networks(act):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.MaxPool2d(2), act(), nn.Conv2d(6, 6, 3), nn.MaxPool2d(2, 1), act(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 3),
    )  # fmt: skip
    gap, _ = additivity_gap(net, torch.randn(4, 3, 12, 12), torch.randn(6, 3, 12, 12), 1, "image")
    assert gap <= TOL


ACTIVATIONS = [nn.GELU, nn.SELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus, nn.Sigmoid, nn.Mish]


@pytest.mark.parametrize("act", ACTIVATIONS, ids=[a.__name__ for a in ACTIVATIONS])
def test_deep_shap_gives_gelu_selu_silu_the_rescale_rule_not_the_gradient(act):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), act(), nn.Linear(16, 2))
    gap, exp = additivity_gap(net, torch.randn(5, 4), torch.randn(7, 4))
    assert gap <= TOL
    assert exp.params["rules"]["rules"] == {"rescale": 1}
    assert exp.params["rules"]["uncovered"] == {}


class Block(nn.Module):
    """A torchvision-style residual block: one ReLU module called twice."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def resnet_style(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), Block(8), Block(8),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip
    for m in net.modules():  # non-trivial running statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_deep_shap_is_additive_on_a_resnet_style_network_with_a_reused_relu():
    net = resnet_style()
    before = model_state(net)
    gap, exp = additivity_gap(net, torch.randn(3, 3, 16, 16), torch.randn(4, 3, 16, 16), 2, "image")
    assert gap <= TOL
    assert exp.params["rules"]["rules"]["rescale"] == 4  # one module, called twice per block
    assert_same_state(before, model_state(net))


class Functional(nn.Module):
    """Activations called as functions, a norm, a softmax-weighted mix and a product of two
    activations (a gate): no module hook could see these."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.norm = nn.Linear(6, 8), nn.Linear(6, 8), nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.gelu(self.a(x)) * torch.sigmoid(self.b(x))  # a gated unit
        h = self.norm(h + torch.tanh(h).pow(2))
        h = h * torch.softmax(h, dim=-1)
        return self.head(F.relu(h) - 0.5 * h.clamp(max=0.1))


def test_deep_shap_is_additive_through_functional_activations_norms_and_products():
    torch.manual_seed(0)
    gap, exp = additivity_gap(Functional(), torch.randn(5, 6), torch.randn(6, 6), 1)
    assert gap <= TOL
    path = exp.params["rules"]["path_mean"]
    assert {"layer_norm", "softmax"} <= set(path) and exp.params["rules"]["uncovered"] == {}


def test_deep_shap_of_a_linear_model_is_the_input_minus_the_background_mean_times_w():
    torch.manual_seed(0)
    net = nn.Linear(5, 2)
    x, bg = torch.randn(3, 5), torch.randn(8, 5)
    exp = deep_shap(net, x, bg, target=1)
    torch.testing.assert_close(exp.attributions, (x - bg.mean(0)) * net.weight[1].detach())


# --- shap's DeepExplainer as the oracle, on shap's own test networks -------------------


class ShapMnistNet(nn.Module):
    """shap's test_pytorch_mnist_cnn network (its final Softmax left out: shap gives softmax
    the elementwise rescale rule, which ignores that each output depends on every logit;
    we explain logits, as the DeepLIFT paper advises)."""

    def __init__(self, act) -> None:
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 10, kernel_size=5), nn.MaxPool2d(2), act(),
            nn.Conv2d(10, 20, kernel_size=5), nn.Dropout(), nn.MaxPool2d(2), act(),
        )  # fmt: skip
        self.fc_layers = nn.Sequential(nn.Linear(320, 50), act(), nn.Dropout(), nn.Linear(50, 10))

    def forward(self, x):
        return self.fc_layers(self.conv_layers(x).view(-1, 320))


class ShapSingleOutput(nn.Module):
    """shap's test_pytorch_single_output network: conv1d, max pooling, leaky ReLU."""

    def __init__(self, n: int = 12) -> None:
        super().__init__()
        self.linear, self.conv1d = nn.Linear(n // 2, 2), nn.Conv1d(1, 1, 1)
        self.leaky_relu = nn.LeakyReLU()
        self.maxpool1, self.maxpool2 = nn.MaxPool1d(2), nn.MaxPool1d(2)

    def forward(self, x):
        x = self.maxpool1(self.conv1d(x.unsqueeze(1))).squeeze(1)
        return self.maxpool2(self.linear(self.leaky_relu(x)).unsqueeze(1)).squeeze(1)


def dense(act) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), act(), nn.Linear(16, 16), act(), nn.Linear(16, 3))


SHAP_NETS = {
    **{f"mnist_cnn_{a.__name__}": (lambda a=a: ShapMnistNet(a), (1, 28, 28)) for a in (nn.ReLU, nn.SELU, nn.GELU)},
    **{f"dense_{a.__name__}": (lambda a=a: dense(a), (8,)) for a in (nn.ReLU, nn.SELU, nn.GELU)},
    "single_output": (ShapSingleOutput, (12,)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SHAP_NETS))
def test_deep_shap_matches_shaps_deep_explainer_on_shaps_test_networks(name):
    shap = pytest.importorskip("shap")
    build, shape = SHAP_NETS[name]
    torch.manual_seed(0)
    net = build().eval()
    x, bg = torch.randn(3, *shape), torch.randn(10, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(shap.DeepExplainer(net, bg).shap_values(x, check_additivity=False))
    modality = "image" if len(shape) == 3 else "tabular"
    ours = deep_shap(net, x, bg, target=0, modality=modality).attributions.numpy()
    scale = max(float(np.abs(theirs[..., 0]).max()), 1e-3)
    assert np.abs(ours - theirs[..., 0]).max() <= TOL * scale
    gap, _ = additivity_gap(net, x, bg, 0, modality)
    assert gap <= TOL


# --- real architectures nobody here wrote ----------------------------------------------


def hf_logits(kind: str) -> nn.Module:
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "resnet":
        config = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                 layer_type="basic", num_labels=3)  # fmt: skip
        hf = tf.ResNetForImageClassification(config)
    elif kind == "vit":
        config = tf.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=32, num_labels=3)  # fmt: skip
        hf = tf.ViTForImageClassification(config)
    else:
        config = tf.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
        hf = tf.ConvNextForImageClassification(config)

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, pixels):
            return self.hf(pixel_values=pixels).logits

    return Logits().eval()


@pytest.mark.parametrize("kind", ["resnet", "vit", "convnext"])
def test_deep_shap_is_additive_on_huggingface_vision_models(kind):
    net = hf_logits(kind)
    before = model_state(net)
    gap, exp = additivity_gap(net, torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32), 0, "image")
    assert gap <= TOL
    assert exp.params["rules"]["uncovered"] == {}
    assert_same_state(before, model_state(net))


# --- never silent -----------------------------------------------------------------------


class TopValue(nn.Module):
    """torch.max over a dimension returns (values, indices): no rule covers it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)

    def forward(self, x):
        return self.lin(x).reshape(-1, 2, 3).max(dim=1).values


def test_deep_shap_names_an_operation_no_rule_covers():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"no DeepLIFT rule covers max \(1x\)"):
        exp = deep_shap(TopValue(), torch.randn(3, 4), torch.randn(4, 4))
    assert exp.params["rules"]["uncovered"] == {"max": 1}


class Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        return torch.tanh(h) if bool(x.sum() > 0) else h


def test_deep_shap_refuses_a_forward_whose_operations_depend_on_the_input_values():
    net = Branches().eval()
    before = model_state(net)
    with pytest.raises(ex.ModelError, match="same operations on the inputs and on the references"):
        deep_shap(net, torch.ones(1, 3), -torch.ones(2, 3))
    assert_same_state(before, model_state(net))
    assert torch._C._len_torch_function_stack() == 0  # the tracing mode is gone


class PerFeature(nn.Module):
    """f(x) = sum_i g_i(x_i): each feature through its own nonlinear chain (an additive game,
    where DeepLIFT with one reference is the Shapley value)."""

    def __init__(self, m: int = 4) -> None:
        super().__init__()
        self.inner = nn.Conv1d(m, 8 * m, 1, groups=m)  # per-feature hidden units
        self.outer = nn.Conv1d(8 * m, m, 1, groups=m)

    def forward(self, x):
        h = self.outer(torch.tanh(F.gelu(self.inner(x.unsqueeze(-1))))).squeeze(-1)
        return torch.stack([h.sum(1), -h.sum(1)], 1)


def exact_shapley(f, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Shapley values of the game v(S) = f(x on S, b elsewhere), by enumeration."""
    from itertools import combinations
    from math import factorial

    m = len(x)
    phi = torch.zeros(m, dtype=torch.float64)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = factorial(size) * factorial(m - size - 1) / factorial(m)
            for subset in combinations(others, size):
                z = b.clone()
                z[list(subset)] = x[list(subset)]
                with_i = z.clone()
                with_i[i] = x[i]
                phi[i] += weight * float(f(with_i[None]) - f(z[None]))
    return phi


def test_deep_shap_equals_exact_shapley_values_on_an_additive_network():
    torch.manual_seed(0)
    net = PerFeature().eval()
    x, b = torch.randn(4) * 2, torch.randn(4)
    exp = deep_shap(net, x[None], b[None])

    def f(z):
        with torch.no_grad():
            return net(z)[0, 0].double()

    torch.testing.assert_close(
        exp.attributions[0].double(), exact_shapley(f, x, b), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("how", ["script", "trace"])
def test_deep_shap_on_a_torchscript_model_is_a_model_error_naming_the_methods_that_work(how):
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).eval()
    x = torch.randn(2, 4)
    compiled = torch.jit.script(net) if how == "script" else torch.jit.trace(net, x)
    with pytest.raises(ex.ModelError, match="integrated_gradients, gradient_shap or kernel_shap"):
        deep_shap(compiled, x, torch.randn(3, 4))
    assert torch._C._len_torch_function_stack() == 0


def test_deep_shap_takes_an_output_built_with_zeros_like_as_a_constant():
    class Quadratic(torch.nn.Module):  # class 0's logit is zeros_like(class 1's)
        def forward(self, x):
            z = (x @ torch.linspace(-1.0, 1.0, 8)) ** 2
            return torch.stack([torch.zeros_like(z), z], 1)

    x, bg = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), torch.ones(1, 8)
    model = ex.wrap(Quadratic(), modality="tabular", task="classification")
    exp = ex.explain(model, x, "deep_shap", target=1, background=bg, progress=False)
    change = (x @ torch.linspace(-1.0, 1.0, 8)) ** 2 - (bg @ torch.linspace(-1.0, 1.0, 8)) ** 2
    torch.testing.assert_close(exp.attributions.sum(1), change, atol=1e-5, rtol=1e-5)


class FeaturesFirst(nn.Module):
    """Moves the batch off the first dimension before a nonlinearity ((B, F) -> (F, B)):
    what the reference pass records is not one row per reference."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x).t()).t())


@pytest.mark.parametrize("make", [lambda: FeaturesFirst(), lambda: nn.Sequential(
    nn.Linear(5, 16), nn.ReLU(), nn.Unflatten(1, (1, 16)), nn.MaxPool1d(2), nn.Flatten(),
    nn.Linear(8, 2))], ids=["batch_moved", "relu_maxpool"])  # fmt: skip
def test_the_references_run_once_each_and_give_what_every_pairs_reference_gives(make):
    # DeepSHAP pairs every background row with every input: the reference pass runs on the
    # distinct references and its records are expanded to the pairs (or, for a network whose
    # records are not one row per reference, run again with every pair's reference)
    from explainer.methods._deeplift.engine import deeplift

    torch.manual_seed(0)
    net = make().eval()
    x, bg = torch.randn(3, 5), torch.randn(2, 5)
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    pairs_x, target = x.repeat(2, 1), torch.tensor([1, 0, 1, 1, 0, 1])
    seen = []
    hook = net.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    with torch.no_grad():
        once = deeplift(net, pairs_x, bg, target, reference_index=index)
        hook.remove()
        every = deeplift(net, pairs_x, bg[index], target)
    torch.testing.assert_close(once.attributions, every.attributions, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(once.all_reference_outputs, every.all_reference_outputs)
    batch_moved = isinstance(net, FeaturesFirst)
    assert seen == ([2, 6, 6, 6] if batch_moved else [2, 6])  # the references' rows first
    gap = once.attributions.sum(1) - (once.outputs - once.reference_outputs)
    assert gap.abs().max() < 1e-5


def _dense_maxpool_multipliers(a, a0, y, y0, index, index0, g):
    """The max-pool rule written out densely: every share added at its arg-max position,
    then divided by a - a0 there (zero where a ≈ a0)."""
    top = torch.maximum(y, y0)
    share = torch.zeros_like(a).flatten(-2)
    share.scatter_add_(-1, index.flatten(-2), (g * (top - y0)).flatten(-2))
    share.scatter_add_(-1, index0.flatten(-2), (g * (y - top)).flatten(-2))
    share = share.reshape(a.shape)
    delta = a - a0
    close = delta.abs() < 1e-7
    return torch.where(close, torch.zeros_like(share), share / torch.where(close, 1.0, delta))


@pytest.mark.parametrize("equal_rows", [False, True])
def test_the_max_pool_rule_divides_each_share_where_it_lands(equal_rows):
    from explainer.methods._deeplift.rules import MaxPool

    torch.manual_seed(0)
    a = torch.randn(4, 3, 9, 9, dtype=torch.float64)
    a0 = torch.randn_like(a)
    if equal_rows:
        a0[:, :, :4] = a[:, :, :4]  # a ≈ a0 at some arg-max positions
    y, index = F.max_pool2d_with_indices(a, 3, 2, 1)
    y0, index0 = F.max_pool2d_with_indices(a0, 3, 2, 1)
    g = torch.randn_like(y)
    leaf = a.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(MaxPool.apply(leaf, y, a0, y0, index, index0, 2), leaf, g)
    expected = _dense_maxpool_multipliers(a, a0, y, y0, index, index0, g)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_rescale_rule_takes_the_gradient_on_the_close_values_only(channels_last):
    from explainer.methods._deeplift.rules import Rescale

    torch.manual_seed(1)
    a = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    a0 = a + torch.randn_like(a)
    a0[1, :, 2:] = a[1, :, 2:]  # the rescale ratio is 0/0 there: the gradient is used
    if channels_last:
        a, a0 = a.to(memory_format=torch.channels_last), a0.to(memory_format=torch.channels_last)
    g = torch.randn_like(a)
    results = []
    for alone in (True, False):  # the close values alone, or the whole activation's vjp
        leaf = a.clone().requires_grad_(True)
        y = Rescale.apply(leaf, a0, F.gelu(a0), F.gelu, alone)
        results.append(torch.autograd.grad(y, leaf, g)[0])
    torch.testing.assert_close(results[0], results[1])  # (vectorised kernels round apart)
    close = (a - a0).abs() < 1e-6
    slope = torch.autograd.functional.vjp(F.gelu, a, g)[1]
    torch.testing.assert_close(results[0][close], slope[close])
