"""A small CNN for the synthetic shapes demo and its shipped weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from explainer.demo.shapes import CLASS_NAMES

WEIGHTS_PATH = Path(__file__).parent / "demo_cnn.pt"


class DemoCNN(nn.Module):
    """Four 3x3 conv blocks (16/32/64/64 channels), global max pool, linear head.

    Maps (N, 3, 64, 64) images in [0, 1] to (N, 4) logits over ``CLASS_NAMES``.
    ``features[-2]`` is the last convolution (8x8 maps), the usual Grad-CAM layer.
    No batch norm, so the model behaves the same in train and eval mode and suits
    rule-based attribution methods.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 32, 32)
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 16, 16)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 64, 8, 8)
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
        )
        # Max rather than average pooling: "is there a corner/curve anywhere" is the
        # question here, and an average over the mostly empty background trains poorly.
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (N, num_classes) for images (N, 3, 64, 64)."""
        # Centre inputs inside the model: callers pass plain [0, 1] images while the
        # convolutions, which have no batch norm, see zero-mean data.
        x = self.features(x - 0.5)
        return self.classifier(torch.flatten(self.pool(x), 1))


def load_demo_cnn() -> nn.Module:
    """Load the shipped :class:`DemoCNN` weights, trained by ``python -m explainer.demo.train``.

    Returns:
        The model on CPU, in eval mode.

    Example:
        >>> model = load_demo_cnn()
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 4])
    """
    model = DemoCNN()
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
