"""Embedded demo data and models: synthetic shapes with a watermark shortcut, tabular data,
and movie reviews with a shortcut word (:mod:`explainer.demo.text`)."""

from explainer.demo.cnn import DemoCNN, load_demo_cnn
from explainer.demo.masks import watermark_masks
from explainer.demo.shapes import CLASS_NAMES, ShapesData, make_shapes
from explainer.demo.tabular import TabularData, TabularMLP, load_tabular_data, load_tabular_mlp

__all__ = [
    "CLASS_NAMES",
    "DemoCNN",
    "ShapesData",
    "TabularData",
    "TabularMLP",
    "load_demo_cnn",
    "load_tabular_data",
    "load_tabular_mlp",
    "make_shapes",
    "watermark_masks",
]
