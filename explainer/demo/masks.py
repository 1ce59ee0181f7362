"""Ground-truth regions of the demo: where each class's watermark patch sits."""

from __future__ import annotations

import torch

from .shapes import IMAGE_SIZE, watermark_box

__all__ = ["watermark_masks"]


def watermark_masks(labels: torch.Tensor) -> torch.Tensor:
    """(N, 64, 64) bool masks of the watermark patch of each label's class.

    The patch position is class-specific, so this is where a model that learned the
    shortcut looks, whether or not the image actually carries the watermark.
    """
    masks = torch.zeros(len(labels), IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)
    for i, label in enumerate(labels.tolist()):
        masks[i][watermark_box(int(label))] = True
    return masks
