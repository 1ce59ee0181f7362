"""Feature groups for perturbation methods: superpixels (scikit-image SLIC) or a caller's mask."""

from __future__ import annotations

import numpy as np
import torch
from skimage.segmentation import slic

from ..errors import InputError, describe

__all__ = ["superpixels", "grid_segments", "expand_feature_mask", "relabel", "group_adjacency"]


def superpixels(
    image: torch.Tensor, n_segments: int = 16, compactness: float = 10.0
) -> torch.Tensor:
    """SLIC superpixels of one (C, H, W) image -> (H, W) long labels 0..K-1.

    The image is rescaled to [0, 1] first so ``compactness`` means the same for any input
    normalization. Where SLIC finds fewer than two segments (it merges pure noise into one),
    a regular grid of about ``n_segments`` cells is used instead.
    """
    arr = image.detach().cpu().double().permute(1, 2, 0).numpy()
    lo, hi = arr.min(), arr.max()
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    labels = slic(
        arr,
        n_segments=n_segments,
        compactness=compactness,
        start_label=0,
        channel_axis=-1,
        convert2lab=arr.shape[-1] == 3,
        enforce_connectivity=True,
    )
    if labels.max() == labels.min():
        return grid_segments(arr.shape[0], arr.shape[1], n_segments)
    return relabel(torch.from_numpy(labels.astype(np.int64)))


def grid_segments(height: int, width: int, n_segments: int) -> torch.Tensor:
    """(H, W) labels of a regular grid of about ``n_segments`` near-square cells."""
    rows = max(1, min(height, round((n_segments * height / width) ** 0.5)))
    cols = max(1, min(width, round(n_segments / rows)))
    r = torch.arange(height)[:, None] * rows // height
    c = torch.arange(width)[None, :] * cols // width
    return relabel(r * cols + c)


def group_adjacency(groups: torch.Tensor, spatial_dims: int = 2) -> np.ndarray:
    """(M, M) bool: groups that touch along one of the last ``spatial_dims`` axes (or share an
    element position across the leading axes, e.g. two channel groups of one pixel)."""
    g = (
        groups.reshape(-1, *groups.shape[-spatial_dims:])
        if groups.ndim > spatial_dims
        else groups[None]
    )
    m = int(groups.max()) + 1
    adjacency = np.zeros((m, m), dtype=bool)
    pairs = [(g[:, :-1], g[:, 1:]), (g[:, :, :-1], g[:, :, 1:])] if spatial_dims == 2 else []
    pairs.append((g[:-1], g[1:]))
    for a, b in pairs:
        a, b = a.reshape(-1).cpu().numpy(), b.reshape(-1).cpu().numpy()
        adjacency[a, b] = adjacency[b, a] = True
    np.fill_diagonal(adjacency, False)
    return adjacency


def relabel(labels: torch.Tensor) -> torch.Tensor:
    """Map arbitrary group ids to 0..K-1 (in order of the sorted ids)."""
    _, inverse = torch.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape)


def expand_feature_mask(feature_mask: object, inputs: torch.Tensor) -> torch.Tensor:
    """A caller's feature mask -> (N, *sample_shape) long group ids, relabelled per sample.

    Accepted shapes: the inputs' shape, one sample's shape, or its trailing dimensions
    (e.g. (H, W) for images, shared by all channels), or (N, H, W) for images.
    """
    mask = torch.as_tensor(
        np.asarray(feature_mask) if not isinstance(feature_mask, torch.Tensor) else feature_mask
    )
    if mask.is_floating_point() or mask.dtype == torch.bool:
        raise InputError(
            describe(
                "`feature_mask`",
                "integer group ids",
                f"dtype {mask.dtype}",
                "Pass an integer tensor where equal ids form one feature.",
            )
        )
    if mask.numel() and int(mask.min()) < 0:
        raise InputError(
            describe(
                "`feature_mask`",
                "non-negative integer group ids (0..K-1)",
                f"{int((mask < 0).sum())} negative id(s), e.g. {int(mask.min())}",
                "Number the features 0, 1, ..., K-1.",
            )
        )
    shape = tuple(inputs.shape)
    if inputs.ndim == 4 and mask.ndim == 3 and tuple(mask.shape) == (shape[0], *shape[2:]):
        mask = mask[:, None]
    try:
        full = mask.to(inputs.device).long().expand(shape)
    except RuntimeError as err:
        raise InputError(
            describe(
                "`feature_mask`",
                f"a shape broadcastable to the inputs {shape}, e.g. (H, W)",
                f"shape {tuple(mask.shape)}",
                "Give one group id per pixel or feature.",
            )
        ) from err
    return torch.stack([relabel(m) for m in full])
