"""The main job on the embedded default: explain the demo models, score the explanations,
and write one report."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..api import explain_many
from ..dataset.evaluation import evaluate
from ..metrics.findings import Findings, findings
from ..model import wrap
from ..reporting.html import report
from . import CLASS_NAMES, load_demo_cnn, load_tabular_data, load_tabular_mlp, make_shapes
from .masks import watermark_masks
from .text import SHORTCUT, TEXT_CLASSES, WordTokenizer, load_text_model, make_reviews

__all__ = ["run_demo", "IMAGE_METHODS", "tabular_methods"]

IMAGE_METHODS = {
    "saliency": {},
    "integrated_gradients": {"n_steps": 64, "baselines": "zeros"},
    "kernel_shap": {"n_samples": 256, "n_segments": 24, "fill": "mean", "seed": 0},
    "grad_cam": {},  # the last spatial block (8 x 8 for 64 px inputs), upsampled
}


def tabular_methods(background: torch.Tensor) -> dict[str, dict]:
    """Tabular methods; the SHAP reference is a sample of training rows."""
    return {
        "kernel_shap": {"background": background, "n_samples": 256, "seed": 0},
        "integrated_gradients": {"n_steps": 64, "baselines": background.mean(0, keepdim=True)},
    }


def run_demo(
    out: str | Path = "reports/demo.html",
    n_images: int = 8,
    progress: bool = True,
    trust: bool = True,
) -> tuple[Path, float]:
    """Explain demo images (half clean, half carrying the watermark shortcut) with saliency,
    integrated gradients, kernel SHAP and Grad-CAM, movie reviews (half carrying a shortcut
    word) with integrated gradients and kernel SHAP, and breast-cancer rows with kernel SHAP and IG;
    score them (``trust=True``) and write one self-contained report.

    Uses the shipped weights (never retrains). Returns the report path and the seconds taken.
    """
    start = time.perf_counter()
    n_marked = n_images // 2
    cnn, image_exps, labels, object_masks = _explain_images(n_images - n_marked, n_marked, progress)
    mlp, tab_exps, tab_labels = _explain_rows(progress)
    lm, text_exps, text_labels, shares = _explain_reviews(progress)
    found = {
        "Synthetic shapes (DemoCNN)": _image_findings(cnn, progress),
        "Movie reviews (TinyTransformer)": _text_findings(lm, progress),
    }
    scores = None
    if trust:
        masks = {"object": object_masks, "watermark": watermark_masks(labels)}
        scores = [
            evaluate(image_exps, cnn, masks=masks, seed=0, progress=progress),
            evaluate(
                tab_exps,
                mlp,
                metrics=["faithfulness", "randomization", "completeness", "agreement"],
                seed=0,
                progress=progress,
            ),
            evaluate(
                text_exps,
                lm,
                metrics=["faithfulness", "completeness", "agreement"],
                seed=0,
                progress=progress,
            ),
        ]
    on_shortcut = ", ".join(
        f"{m} puts {s:.0%} of its |attribution| on it" for m, s in shares.items()
    )
    path = report(
        image_exps + tab_exps + text_exps,
        path=out,
        title="explainer demo",
        scores=scores,
        labels=[labels.tolist(), tab_labels.tolist(), text_labels.tolist()],
        findings=found,
        section_titles=[
            f"Synthetic shapes: {n_images - n_marked} clean test images, then {n_marked} with the "
            "watermark shortcut added",
            "Breast cancer (tabular)",
            f"Movie reviews (text): 4 clean test reviews, then 4 negative ones carrying the "
            f"shortcut word '{SHORTCUT}' that 90% of the positive training reviews had: "
            f"{on_shortcut}",
        ],
    )
    return path, time.perf_counter() - start


def _explain_images(n_clean: int, n_marked: int, progress: bool):
    """The demo CNN, its explanations of ``n_clean`` clean then ``n_marked`` watermarked
    test images, their labels and object masks."""
    clean = make_shapes(n_clean, split="test", seed=1, watermark=False)
    marked = make_shapes(max(n_marked, 1), split="test", seed=2, watermark=True)
    images = torch.cat([clean.images, marked.images[:n_marked]])
    labels = torch.cat([clean.labels, marked.labels[:n_marked]])
    object_masks = torch.cat([clean.masks, marked.masks[:n_marked]])
    cnn = wrap(
        load_demo_cnn(),
        class_names=CLASS_NAMES,
        modality="image",
        name="DemoCNN (synthetic shapes)",
    )
    exps = explain_many(cnn, images, IMAGE_METHODS, target="predicted", progress=progress)
    return cnn, exps, labels, object_masks


def _image_findings(cnn, progress: bool) -> Findings:
    """What the demo CNN relies on, found without the watermark masks: 48 training-split
    images (most carry their class's watermark, as the model was trained) explained with
    gradient x input, the effects measured on 64 watermarked test copies."""
    data = make_shapes(48, split="train", seed=3)
    exp = explain_many(cnn, data.images, ["gradient_x_input"], target=data.labels, progress=False)
    held = make_shapes(64, split="test", seed=4, watermark=True)
    return findings(exp, cnn, (held.images, held.labels), progress=progress)


def _text_findings(lm, progress: bool) -> Findings:
    """What the text demo's transformer relies on: 32 training reviews explained with
    integrated gradients (tolerance 0.01), effects measured on the test reviews that carry
    the shortcut word (the test split puts it in negative reviews only)."""
    reviews = make_reviews(32, split="train", seed=0)
    exp = explain_many(
        lm,
        list(reviews.texts),
        {"integrated_gradients": {"tolerance": 0.01}},
        target=reviews.labels,
        progress=False,
    )
    test = make_reviews(400, split="test")
    carrying = [t for t, marked in zip(test.texts, test.marked.tolist(), strict=True) if marked]
    return findings(exp, lm, (carrying, test.labels[test.marked]), progress=progress)


def _explain_rows(progress: bool):
    """The demo MLP, its explanations of 16 breast-cancer test rows, and their labels."""
    tab = load_tabular_data()
    mlp = wrap(
        load_tabular_mlp(),
        class_names=tab.class_names,
        modality="tabular",
        name="TabularMLP (breast cancer)",
    )
    rows = tab.x_test[:16]
    exps = explain_many(
        mlp,
        rows,
        tabular_methods(tab.x_train[:25]),
        target="predicted",
        progress=progress,
        feature_names=tab.feature_names,
    )
    return mlp, exps, tab.y_test[: len(rows)]


TEXT_METHODS = {
    "integrated_gradients": {"tolerance": 0.01},
    "kernel_shap": {"n_samples": 256},  # at least 2^tokens for these reviews: exact
}


def _explain_reviews(progress: bool):
    """The text demo's transformer, its explanations of 4 clean test reviews then 4 negative
    ones carrying the shortcut word, their labels, and the share of each method's
    |attribution| that falls on the shortcut word in the marked reviews."""
    reviews = make_reviews(400, split="test")
    marked = [i for i in range(200, 400) if bool(reviews.marked[i])][:4]
    rows = [*range(4), *marked]
    texts = [reviews.texts[i] for i in rows]
    model = wrap(
        load_text_model(),
        modality="text",
        tokenizer=WordTokenizer(),
        class_names=TEXT_CLASSES,
        name="TinyTransformer (movie reviews)",
    )
    exps = explain_many(model, texts, TEXT_METHODS, target="predicted", progress=progress)
    shares = {}
    for e in exps:
        on = torch.tensor([[t == SHORTCUT for t in row] for row in e.tokens[4:]])
        weight = e.attributions[4:].abs()
        shares[e.method] = float((weight * on).sum() / weight.sum().clamp_min(1e-12))
    return model, exps, reviews.labels[rows], shares
