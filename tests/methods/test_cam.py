"""The CAM family against analytic truths, the formulas of their papers computed by hand,
captum's LayerGradCam, and real architectures from ``transformers``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attribution_helpers import assert_same_state, make_images, model_state
from torch import nn

import explainer as ex

CAMS = ["grad_cam", "hires_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "eigen_cam", "score_cam"]


class GapLinear(nn.Module):
    """conv -> ReLU -> global average pooling -> linear: the network of Zhou et al.'s CAM."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


class DeepHead(nn.Module):
    """conv -> ReLU -> conv -> tanh -> flatten -> linear: gradients that vary in space."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Tanh())
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mix(self.features(x)).flatten(1))


def activations_and_gradients(net, layer, x, target):
    """A and dy/dA at ``layer`` by plain autograd, for the formulas written out below."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    x = x.clone().requires_grad_(True)
    y = net(x)[:, target].sum()
    handle.remove()
    (g,) = torch.autograd.grad(y, store["a"])
    return store["a"].detach().double(), g.double()


def test_grad_cam_is_zhous_class_activation_map_for_gap_then_linear():
    net = GapLinear().eval()
    x = make_images(4, seed=2, shape=(3, 6, 6))
    for c in range(3):
        exp = ex.explain(ex.wrap(net), x, "grad_cam", target=c, progress=False)
        with torch.no_grad():
            a = net.features(x)
        cam = torch.einsum("k,nkhw->nhw", net.fc.weight[c].detach(), a).clamp_min(0)
        # Grad-CAM averages the gradient over the 6 x 6 positions: CAM / (h * w)
        torch.testing.assert_close(exp.extras["cam"] * 36, cam, atol=1e-5, rtol=1e-5)
        assert exp.params["layer"] == "features"


def test_hires_cam_is_gradient_times_activation_summed_over_channels():
    net = DeepHead().eval()
    x = make_images(3, seed=4, shape=(3, 6, 6))
    exp = ex.explain(ex.wrap(net), x, "hires_cam", target=1, layer="features", progress=False)
    a, g = activations_and_gradients(net, net.features, x, 1)
    torch.testing.assert_close(
        exp.extras["cam"].double(), (g * a).sum(1).clamp_min(0), atol=1e-6, rtol=1e-5
    )


def test_grad_cam_pp_xgrad_cam_and_layer_cam_follow_their_papers_formulas_by_hand():
    net = DeepHead().eval()
    x = make_images(2, seed=5, shape=(3, 6, 6))
    a, g = activations_and_gradients(net, net.features, x, 0)
    an, gn = a.numpy(), g.numpy()
    n, k = an.shape[:2]
    pp, xg, lc = np.zeros((n, 6, 6)), np.zeros((n, 6, 6)), np.zeros((n, 6, 6))
    for i in range(n):
        for c in range(k):
            A, G = an[i, c], gn[i, c]
            # Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential score)
            alpha = np.zeros_like(G)
            for (r, s), gv in np.ndenumerate(G):
                if gv != 0:
                    alpha[r, s] = gv**2 / (2 * gv**2 + A.sum() * gv**3)
            pp[i] += (np.maximum(G, 0) * alpha).sum() * A
            # XGrad-CAM (Fu et al. 2020): sum(G * A) / sum(A)
            xg[i] += ((G * A).sum() / A.sum() if A.sum() != 0 else 0.0) * A
            # LayerCAM (Jiang et al. 2021): ReLU(G) * A per position
            lc[i] += np.maximum(G, 0) * A
    for method, truth in (("grad_cam_pp", pp), ("xgrad_cam", xg), ("layer_cam", lc)):
        exp = ex.explain(ex.wrap(net), x, method, target=0, layer="features", progress=False)
        np.testing.assert_allclose(
            exp.extras["cam"].numpy(), np.maximum(truth, 0), atol=1e-6, rtol=1e-4
        )


def test_score_cam_follows_the_papers_recipe_by_hand():
    net = DeepHead().eval()
    x = make_images(2, seed=6, shape=(3, 6, 6))
    exp = ex.explain(ex.wrap(net), x, "score_cam", target=1, layer="features", progress=False)
    with torch.no_grad():
        a = net.features(x)
        truth = torch.zeros(2, 6, 6)
        for i in range(2):
            for c in range(a.shape[1]):
                up = F.interpolate(
                    a[i : i + 1, c : c + 1], size=(6, 6), mode="bilinear", align_corners=False
                )[0, 0]
                h = (
                    (up - up.min()) / (up.max() - up.min())
                    if up.max() > up.min()
                    else torch.zeros_like(up)
                )
                weight = net(x[i : i + 1] * h).softmax(1)[0, 1]  # the class probability
                truth[i] += weight * a[i, c]
    torch.testing.assert_close(exp.extras["cam"], truth.clamp_min(0), atol=1e-6, rtol=1e-5)
    assert exp.extras["channel_scores"].shape == (2, 4)


def test_eigen_cam_is_the_first_principal_component_of_the_activations():
    net = DeepHead().eval()
    x = make_images(2, seed=7, shape=(3, 6, 6))
    exp = ex.explain(ex.wrap(net), x, "eigen_cam", layer="features", progress=False)
    with torch.no_grad():
        a = net.features(x).double().numpy()
    for i in range(2):
        flat = a[i].reshape(4, 36).T
        centred = flat - flat.mean(0)
        v = np.linalg.svd(centred, full_matrices=False)[2][0]
        p = centred @ v
        if np.corrcoef(p, flat.sum(1))[0, 1] < 0:
            p = -p
        np.testing.assert_allclose(
            exp.extras["cam"][i].numpy().ravel(), np.maximum(p, 0), atol=1e-5
        )


def test_grad_cam_equals_captums_layer_grad_cam_and_its_upsampling():
    captum = pytest.importorskip("captum.attr")
    net = DeepHead().eval()
    x = make_images(3, seed=8, shape=(3, 6, 6))
    x = F.interpolate(x, size=(12, 12))  # upsampled maps: the layer is 6 x 6 after a stride?
    net2 = nn.Sequential(nn.AvgPool2d(2), net).eval()
    exp = ex.explain(ex.wrap(net2), x, "grad_cam", target=1, layer="1.features", progress=False)
    theirs = captum.LayerGradCam(net2, net2[1].features).attribute(
        x, target=1, relu_attributions=True
    )
    torch.testing.assert_close(exp.extras["cam"], theirs[:, 0].detach(), atol=1e-5, rtol=1e-5)
    up = captum.LayerAttribution.interpolate(theirs, (12, 12), interpolate_mode="bilinear")
    torch.testing.assert_close(exp.attributions.sum(1), up[:, 0].detach(), atol=1e-5, rtol=1e-5)


def test_a_batch_gives_each_sample_its_own_map():
    net = DeepHead().eval()
    x = make_images(4, seed=9, shape=(3, 6, 6))
    for method in CAMS:
        batch = ex.explain(ex.wrap(net), x, method, target=0, layer="features", progress=False)
        alone = ex.explain(ex.wrap(net), x[2:3], method, target=0, layer="features", progress=False)
        torch.testing.assert_close(
            batch.attributions[2:3], alone.attributions, atol=1e-6, rtol=1e-5
        )


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        ("featurez", "dotted name"),
        (nn.Conv2d(3, 3, 1), "not one of its modules"),
        (3, "dotted module name"),
    ],
    ids=["typo", "foreign module", "number"],
)
def test_a_bad_layer_gets_a_clear_error(layer, match):
    with pytest.raises(ex.InputError, match=match):
        ex.explain(
            ex.wrap(DeepHead()),
            make_images(1, shape=(3, 6, 6)),
            "grad_cam",
            layer=layer,
            progress=False,
        )


def test_a_layer_given_as_a_module_is_recorded_by_name_and_rerun_by_name():
    net = DeepHead()
    model = ex.wrap(net)
    exp = ex.explain(model, make_images(2, shape=(3, 6, 6)), "grad_cam", target=0,
                     layer=net.features, progress=False)  # fmt: skip
    assert exp.params["layer"] == "features" and exp.call_params["layer"] == "features"
    scores = ex.evaluate(exp, model, metrics=["randomization"], progress=False)
    assert len(scores.values("grad_cam", "randomization_spearman")) == 2


def test_cams_refuse_tabular_models_and_torchscript_clearly():
    with pytest.raises(ex.InputError, match="for tabular models"):
        ex.explain(
            ex.wrap(nn.Linear(3, 2), modality="tabular"),
            torch.ones(1, 3),
            "grad_cam",
            progress=False,
        )
    scripted = torch.jit.script(DeepHead().eval())
    with pytest.raises(ex.ModelError, match="TorchScript"):
        ex.explain(ex.wrap(scripted), make_images(1, shape=(3, 6, 6)), "grad_cam", progress=False)


def test_layers_lists_modules_and_marks_the_default():
    table = ex.layers(DeepHead(), make_images(1, shape=(3, 6, 6)))
    default = table.default
    assert (
        default.name == "mix" and default.shape == (1, 4, 6, 6) and default.candidate == "spatial"
    )
    assert "→ mix" in repr(table) and "(default)" in table._repr_html_()


transformers = pytest.importorskip("transformers")


def hf_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "resnet":
        config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                           layer_type="basic", num_labels=3)  # fmt: skip
        return transformers.ResNetForImageClassification(config).eval()
    if kind == "convnext":
        config = transformers.ConvNextConfig(
            num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3
        )
        return transformers.ConvNextForImageClassification(config).eval()
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=32, num_labels=3)  # fmt: skip
    return transformers.ViTForImageClassification(config).eval()


@pytest.mark.parametrize("kind", ["resnet", "convnext", "vit"])
@pytest.mark.parametrize("method", CAMS)
def test_every_cam_runs_on_huggingface_models_with_the_default_layer(kind, method):
    net = hf_model(kind)
    before = model_state(net)
    x = make_images(2, seed=3, shape=(3, 32, 32))
    exp = ex.explain(ex.wrap(net), x, method, progress=False)
    assert exp.attributions.shape == x.shape and torch.isfinite(exp.attributions).all()
    expected = {"resnet": "resnet.encoder.stages.1", "convnext": "convnext.encoder.stages.1"}
    assert exp.params["layer"] == expected.get(kind, exp.params["layer"])
    if kind == "vit":  # the first LayerNorm of the last block, on the 4 x 4 patch grid
        assert exp.params["layer"].endswith("1.layernorm_before")
        assert exp.extras["cam"].shape == (2, 4, 4)
    assert_same_state(before, model_state(net))


class PatchHead(nn.Module):
    """A ViT whose class scores read one patch token only: all the evidence is in that patch."""

    def __init__(self, patch: int) -> None:
        super().__init__()
        self.vit = hf_model("vit").vit
        self.patch = patch
        self.register_buffer("read", torch.linspace(-1.0, 1.0, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        token = self.vit(x).last_hidden_state[:, 1 + self.patch]  # after the class token
        s = token @ self.read
        return torch.stack([s, -s], 1)


@pytest.mark.parametrize("patch", [0, 6, 13])
def test_the_vit_grid_puts_a_patchs_evidence_on_that_patch(patch):
    net = PatchHead(patch).eval()
    x = make_images(2, seed=11, shape=(3, 32, 32))
    for method in ("hires_cam", "layer_cam"):
        exp = ex.explain(ex.wrap(net), x, method, layer="vit.layernorm", progress=False)
        flat = exp.extras["cam"].reshape(2, 16)  # the 4 x 4 patches, row-major
        others = torch.cat([flat[:, :patch], flat[:, patch + 1 :]], 1)
        assert (others == 0).all()  # nothing anywhere else
        if method == "hires_cam":  # gradient x activation at the patch is the logit itself
            logits = net(x).detach()
            torch.testing.assert_close(flat[:, patch], logits.max(1).values, atol=1e-5, rtol=1e-5)
            r, c = divmod(patch, 4)
            inside = exp.attributions.sum(1)[:, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8]
            assert (inside.sum((1, 2)) / exp.attributions.sum((1, 2, 3)) > 0.5).all()


def test_attention_rollout_multiplies_the_residual_mixed_attentions_of_a_vit():
    net = hf_model("vit")
    before = model_state(net)
    x = make_images(2, seed=12, shape=(3, 32, 32))
    exp = ex.explain(ex.wrap(net), x, "attention_rollout", progress=False)
    assert net.config._attn_implementation == "sdpa"  # switched to eager for the call only
    assert_same_state(before, model_state(net))
    net.set_attn_implementation("eager")
    with torch.no_grad():
        weights = net(x, output_attentions=True).attentions
    net.set_attn_implementation("sdpa")
    r = None
    for w in weights:  # Abnar & Zuidema 2020, eq. in section 3, written out
        a = 0.5 * w.mean(1) + 0.5 * torch.eye(17)
        a = a / a.sum(-1, keepdim=True)
        r = a if r is None else a @ r
    torch.testing.assert_close(exp.extras["rollout"], r[:, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        exp.extras["cam"], r[:, 0, 1:].reshape(2, 4, 4), atol=1e-6, rtol=1e-5
    )


def test_attention_rollout_on_given_targets_runs_one_forward_whose_scores_it_records():
    net = hf_model("vit")
    x = make_images(3, seed=13, shape=(3, 32, 32))
    rows = []
    net.register_forward_pre_hook(lambda _, args: rows.append(len(args[0])))
    model = ex.wrap(net)
    ex.explain(model, x, "attention_rollout", target=0, progress=False)  # cost probes, cached
    rows.clear()
    exp = ex.explain(model, x, "attention_rollout", target=[0, 1, 0], progress=False)
    assert rows == [3]  # the weights' forward gives the scores too
    with torch.no_grad():
        expected = net(x).logits.softmax(1)
    torch.testing.assert_close(exp.scores, expected, atol=1e-5, rtol=1e-4)


def test_attention_rollout_on_a_model_without_attention_weights_says_what_to_do():
    with pytest.raises(ex.ModelError, match="attentions=lambda"):
        ex.explain(ex.wrap(hf_model("resnet")), make_images(1, shape=(3, 32, 32)), "attention_rollout",
                   progress=False)  # fmt: skip
