"""Trust scores read CAM maps like any map: they are positive, low resolution and
upsampled, and every metric (deletion/insertion, infidelity, robustness, randomization,
ROAD, localization, agreement) gives finite values for them."""

from __future__ import annotations

import numpy as np
import torch
from attribution_helpers import inputs_for, model_for

import explainer as ex


def test_every_trust_metric_scores_grad_cam_and_score_cam():
    model = model_for("image", seed=1)
    x = inputs_for("image", 3)
    exps = ex.explain_many(
        model, x, ["grad_cam", "score_cam", "saliency"], target=0, progress=False
    )
    masks = {"centre": torch.zeros(3, 16, 16, dtype=torch.bool)}
    masks["centre"][:, 4:12, 4:12] = True
    scores = ex.evaluate(exps, model, metrics="all", masks=masks, progress=False)
    for method in ("grad_cam", "score_cam"):
        for metric in ("deletion_gain", "insertion_gain", "infidelity", "max_sensitivity",
                       "randomization_spearman", "road_gain", "agreement"):  # fmt: skip
            values = scores.values(method, metric)
            assert len(values) == 3 and np.isfinite(values).all(), (method, metric, values)
        assert len(scores.values(method, "relevance_mass", mask="centre")) == 3
    # the sanity check re-runs the CAM on randomized copies, layer by layer, by the layer's name
    assert scores.randomization["grad_cam"] and all(
        step["layer"] for step in scores.randomization["grad_cam"]
    )
