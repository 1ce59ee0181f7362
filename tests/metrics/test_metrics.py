"""Trust metrics: known answers, oracles (captum), determinism, and the model left untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import nn

import explainer as ex
from explainer import evaluate
from explainer.metrics.faithfulness import (
    auc,
    feature_scores,
    fill_reference,
    infidelity,
    perturbation_curves,
)
from explainer.metrics.localization import pointing_game, relevance_mass
from explainer.metrics.robustness import max_sensitivity
from explainer.metrics.sanity import randomization_similarity


def linear_model(n_features: int = 10, seed: int = 0) -> tuple[ex.Model, nn.Linear]:
    torch.manual_seed(seed)
    net = nn.Linear(n_features, 2)
    with torch.no_grad():
        net.weight.mul_(3.0)
    return ex.wrap(net, modality="tabular", class_names=["neg", "pos"]), net


def gains(model, x, t, attributions, fill="zeros", seed=0):
    ref = fill_reference(x, fill)
    scores, ids = feature_scores(attributions)
    gen = torch.Generator().manual_seed(seed)
    with model.evaluating():
        curve = {
            (mode, order): auc(
                perturbation_curves(model, x, t, scores, ids, ref, mode, order, 10, gen)
            )
            for mode in ("deletion", "insertion")
            for order in ("morf", "random")
        }
    return (curve["deletion", "random"] - curve["deletion", "morf"]).mean().item(), (
        curve["insertion", "morf"] - curve["insertion", "random"]
    ).mean().item()


def test_perfect_linear_attribution_beats_random_ordering_and_random_attribution_does_not():
    model, net = linear_model()
    x = torch.randn(256, 10, generator=torch.Generator().manual_seed(0))
    t = torch.ones(256, dtype=torch.long)
    w = (net.weight[1] - net.weight[0]).detach()
    perfect = x * w  # exact contributions to the logit margin with a zero reference
    d_perfect, i_perfect = gains(model, x, t, perfect)
    d_random, i_random = gains(
        model, x, t, torch.randn(256, 10, generator=torch.Generator().manual_seed(1))
    )
    assert d_perfect > 0.05 and i_perfect > 0.05
    assert (
        abs(d_random) < 0.02 and abs(i_random) < 0.02
    )  # random attribution: no better than chance
    assert d_perfect > d_random + 0.1


def test_curves_start_at_the_input_and_end_at_the_reference():
    model, _ = linear_model()
    x = torch.randn(5, 10)
    t = torch.zeros(5, dtype=torch.long)
    ref = fill_reference(x, "zeros")
    scores, ids = feature_scores(torch.randn(5, 10))
    with model.evaluating():
        d = perturbation_curves(model, x, t, scores, ids, ref, "deletion", "morf", 5)
        p_x, p_ref = model.predict(x)[:, 0], model.predict(ref)[:, 0]
    assert torch.allclose(d[:, 0], p_x.double(), atol=1e-6) and torch.allclose(
        d[:, -1], p_ref.double(), atol=1e-6
    )


def test_superpixel_deletion_removes_whole_segments():
    model = ex.wrap(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)))
    x = torch.rand(1, 3, 4, 4)
    segments = torch.zeros(1, 4, 4, dtype=torch.long)
    segments[0, :, 2:] = 1
    attr = torch.zeros_like(x)
    attr[..., 2:] = 1.0  # segment 1 most relevant
    scores, ids = feature_scores(attr, segments)
    assert scores.shape == (1, 2) and scores[0, 1] > scores[0, 0]
    ref = torch.zeros_like(x)
    with model.evaluating():
        half = perturbation_curves(
            model, x, torch.tensor([0]), scores, ids, ref, "deletion", "morf", 2
        )
        x_half = x.clone()
        x_half[..., 2:] = 0
        expected = model.predict(x_half)[0, 0].item()
    assert half[0, 1].item() == pytest.approx(expected, abs=1e-6)


def test_infidelity_matches_captum_with_the_same_perturbations():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    model = ex.wrap(net, modality="tabular")
    x = torch.randn(4, 6)
    t = torch.tensor([0, 1, 2, 1])
    attr = ex.explain(model, x, "integrated_gradients", target=t, progress=False).attributions
    p = 5
    noise_captum = (
        torch.randn(4 * p, 6, generator=torch.Generator().manual_seed(3)) * 0.1
    )  # sample-major order

    def perturb(inputs):
        return noise_captum, inputs - noise_captum

    theirs = captum_infidelity(
        net, perturb, x, attr, target=t, n_perturb_samples=p, max_examples_per_batch=4 * p
    )
    ours_noise = noise_captum.reshape(4, p, 6).transpose(0, 1)  # ours is perturbation-major
    with model.evaluating():
        ours = infidelity(model, x, t, attr, noise=ours_noise)
    assert torch.allclose(ours.float(), theirs.float(), rtol=1e-4, atol=1e-7)


def test_max_sensitivity_matches_captum_with_the_same_perturbations():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    model = ex.wrap(net, modality="tabular")
    x = torch.randn(3, 6)
    t = torch.tensor([0, 1, 2])
    p = 4
    noise_captum = (torch.rand(3 * p, 6, generator=torch.Generator().manual_seed(5)) * 2 - 1) * 0.05

    def explain_fn(inputs, target):
        as_tuple = isinstance(inputs, tuple)  # captum passes (and expects back) a tuple once
        attr = ex.explain(
            model,
            inputs[0] if as_tuple else inputs,
            "saliency",
            target=target,
            absolute=False,
            progress=False,
        ).attributions
        return (attr,) if as_tuple else attr

    theirs = captum_sensitivity_max(
        explain_fn,
        x,
        perturb_func=lambda inputs, perturb_radius: (
            tuple(i + noise_captum for i in inputs)
            if isinstance(inputs, tuple)
            else inputs + noise_captum
        ),
        n_perturb_samples=p,
        max_examples_per_batch=3 * p,
        target=t,
    )
    ours = max_sensitivity(
        explain_fn, x, t, explain_fn(x, t), noise=noise_captum.reshape(3, p, 6).transpose(0, 1)
    )
    assert torch.allclose(ours.float(), theirs.float(), rtol=1e-4)


def test_relevance_mass_and_pointing_game_known_answers():
    attr = torch.zeros(2, 1, 4, 4)
    attr[0, 0, 0, 0] = 3.0
    attr[0, 0, 3, 3] = 1.0
    attr[1, 0, 2, 2] = 2.0
    attr[1, 0, 0, 0] = -5.0  # negative evidence is not counted
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True
    assert relevance_mass(attr, masks).tolist() == [0.75, 0.0]
    assert pointing_game(attr, masks).tolist() == [1.0, 0.0]
    assert pointing_game(attr, masks, tolerance=1).tolist() == [1.0, 1.0]


def test_map_that_ignores_the_model_fails_the_randomization_check():
    model, _ = linear_model()
    x = torch.randn(8, 10)
    t = torch.zeros(8, dtype=torch.long)
    steps = randomization_similarity(model, x, t, x.clone(), lambda m, xs, ts: xs.clone())
    assert all(np.allclose(s["spearman"], 1.0) for s in steps)


def test_linear_model_ig_passes_every_check():
    model, _ = linear_model()
    x = torch.randn(48, 10)
    exp = ex.explain(
        model, x, "integrated_gradients", target="predicted", n_steps=8, progress=False
    )
    scores = evaluate(exp, model, progress=False, seed=0, fill="zeros")
    verdicts = {v.check: v.passed for v in scores.verdicts()}
    assert verdicts and all(verdicts.values()), scores.verdicts()


def test_evaluate_is_deterministic_and_never_changes_the_model():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 3)
    )
    net.train()
    before = copy.deepcopy(net.state_dict())
    model = ex.wrap(net)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 12), torch.linspace(0, 1, 12), indexing="ij")
    images = torch.stack(
        [torch.stack([yy * (i + 1) / 4, xx, (yy + xx) / 2]) for i in range(4)]
    ).clamp(0, 1)
    exps = ex.explain_many(
        model,
        images,
        {"saliency": {}, "gradient_shap": {"background": images[:2], "n_samples": 8}},
        progress=False,
    )
    masks = torch.zeros(4, 12, 12, dtype=torch.bool)
    masks[:, 3:9, 3:9] = True
    a = evaluate(exps, model, masks=masks, seed=3, progress=False, n_segments=9)
    b = evaluate(exps, model, masks=masks, seed=3, progress=False, n_segments=9)
    assert a.rows == b.rows and len(a.rows) > 0
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    metrics = {r["metric"] for r in a.rows}
    assert {
        "deletion_gain",
        "insertion_gain",
        "infidelity",
        "max_sensitivity",
        "randomization_spearman",
        "relevance_mass",
        "pointing_game",
        "agreement",
    } <= metrics


def test_evaluate_refuses_another_model():
    model, _ = linear_model(seed=0)
    other, _ = linear_model(seed=1)
    exp = ex.explain(model, torch.randn(2, 10), "saliency", progress=False)
    with pytest.raises(ex.InputError, match="fingerprint"):
        evaluate(exp, other, progress=False)


def test_report_shows_trust_section_with_verdicts(tmp_path):
    model, _ = linear_model()
    exp = ex.explain(model, torch.randn(16, 10), "integrated_gradients", n_steps=8, progress=False)
    scores = evaluate(exp, model, progress=False, fill="zeros")
    html = ex.report(exp, path=tmp_path / "t.html", scores=scores).read_text()
    assert "passes the randomization sanity check" in html
    assert "faster than a random order" in html and "95% CI" in html
    none_html = ex.report(exp, path=tmp_path / "n.html").read_text()
    assert "No trust scores were computed" in none_html and "passes" not in none_html
