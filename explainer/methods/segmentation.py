"""Feature groups for perturbation methods: superpixels (scikit-image SLIC) or a caller's mask."""

from __future__ import annotations

import numpy as np
import torch
from skimage.segmentation import slic

from ..errors import InputError, describe

__all__ = ["superpixels", "expand_feature_mask", "relabel"]


def superpixels(image: torch.Tensor, n_segments: int = 16, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels of one (C, H, W) image -> (H, W) long labels 0..K-1.

    The image is rescaled to [0, 1] first so ``compactness`` means the same for any input
    normalization.
    """
    arr = image.detach().cpu().double().permute(1, 2, 0).numpy()
    lo, hi = arr.min(), arr.max()
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    labels = slic(arr, n_segments=n_segments, compactness=compactness, start_label=0,
                  channel_axis=-1, convert2lab=arr.shape[-1] == 3, enforce_connectivity=True)
    return relabel(torch.from_numpy(labels.astype(np.int64)))


def relabel(labels: torch.Tensor) -> torch.Tensor:
    """Map arbitrary group ids to 0..K-1 (in order of the sorted ids)."""
    _, inverse = torch.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape)


def expand_feature_mask(feature_mask: object, inputs: torch.Tensor) -> torch.Tensor:
    """A caller's feature mask -> (N, *sample_shape) long group ids, relabelled per sample.

    Accepted shapes: the inputs' shape, one sample's shape, or its trailing dimensions
    (e.g. (H, W) for images, shared by all channels), or (N, H, W) for images.
    """
    mask = torch.as_tensor(np.asarray(feature_mask) if not isinstance(feature_mask, torch.Tensor) else feature_mask)
    if mask.is_floating_point() or mask.dtype == torch.bool:
        raise InputError(describe("`feature_mask`", "integer group ids", f"dtype {mask.dtype}",
                                  "Pass an integer tensor where equal ids form one feature."))
    shape = tuple(inputs.shape)
    if inputs.ndim == 4 and mask.ndim == 3 and tuple(mask.shape) == (shape[0], *shape[2:]):
        mask = mask[:, None]
    try:
        full = mask.to(inputs.device).long().expand(shape)
    except RuntimeError as err:
        raise InputError(describe("`feature_mask`", f"a shape broadcastable to the inputs {shape}, e.g. (H, W)",
                                  f"shape {tuple(mask.shape)}", "Give one group id per pixel or feature.")) from err
    return torch.stack([relabel(m) for m in full])
