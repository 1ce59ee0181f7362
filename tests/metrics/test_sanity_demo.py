"""The randomization sanity check on the trained demo CNN (Adebayo et al. 2018)."""

from __future__ import annotations

import numpy as np
import torch

import explainer as ex
from explainer.demo import CLASS_NAMES, load_demo_cnn, make_shapes
from explainer.metrics.sanity import parameterized_layers, randomization_similarity


def test_saliency_of_trained_cnn_differs_from_fully_randomized_cnn():
    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    data = make_shapes(6, split="test", seed=11)
    exp = ex.explain(model, data.images, "saliency", progress=False)

    def saliency(m, x, t):
        return ex.explain(m, x, "saliency", target=t, progress=False).attributions

    steps = randomization_similarity(
        model, data.images, exp.targets, exp.attributions, saliency, signed=False, max_steps=None
    )
    assert len(steps) == len(parameterized_layers(model.net))
    assert np.mean(steps[-1]["spearman"]) < 0.5  # fully randomized: a different map
    assert np.mean(steps[0]["spearman"]) > np.mean(
        steps[-1]["spearman"]
    )  # similarity falls as layers go
    assert all(
        torch.equal(before[k], v) for k, v in model.net.state_dict().items()
    )  # original untouched


def test_evaluate_on_demo_reports_watermark_attention_for_watermarked_images():
    from explainer.demo import watermark_masks

    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES)
    data = make_shapes(6, split="test", seed=12, watermark=True)
    exp = ex.explain(model, data.images, "integrated_gradients", n_steps=16, progress=False)
    scores = ex.evaluate(
        exp,
        model,
        metrics=["localization"],
        masks={"watermark": watermark_masks(data.labels)},
        progress=False,
    )
    mass = scores.values("integrated_gradients", "relevance_mass", "watermark")
    area = scores.values("integrated_gradients", "mask_fraction", "watermark")
    assert mass.mean() > 3 * area.mean()  # the shortcut draws far more evidence than its area
