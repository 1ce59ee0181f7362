"""ROAD: remove and debias (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy
for Attribution Methods", ICML).

Deletion with a constant fill (:mod:`explainer.metrics.faithfulness`) leaks the removed
shape: the model can read *where* pixels were removed from the fill's sharp edges, so the
score measures the mask as much as the map. ROAD removes a fraction p of the pixels (most
relevant first, MoRF, or least relevant first, LeRF; relevance is the attribution map with
its channels summed) and replaces them by *noisy linear imputation*: each removed pixel is
the weighted mean of its 8 neighbours (1/6 for the 4 direct ones, 1/12 for the 4 diagonal
ones, renormalised at the borders), a sparse linear system solved once per image and mask
(all channels as right-hand sides), plus a little Gaussian noise on the imputed pixels
only. The curves are the target's score (``Model.to_scores``: the class probability, a
regression's value) at each fraction: a faithful map makes the MoRF curve fall fast and
keeps the LeRF curve high. ``ex.evaluate(..., metrics=["road"])`` reports their means over
the fractions (``road_morf``, ``road_lerf``) and ``road_gain = road_lerf - road_morf``.

Images only. The imputed images are batched under the memory budget; the system is built
with array operations over the 8 neighbour offsets, never a Python loop over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import splu

from .._checks import check_choice
from .._runtime import ChunkRequest, Runtime, chunk_size, chunks
from ..errors import InputError, describe
from ..model import Model

__all__ = [
    "ROAD_FRACTIONS",
    "ROAD_ORDERS",
    "noisy_linear_imputation",
    "removal_counts",
    "road_curves",
]

ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ROAD_ORDERS = ("morf", "lerf")
NOISE = 0.01  # the imputation noise's standard deviation, as a share of the inputs' range

# (row offset, column offset, weight): the 4 direct neighbours, then the 4 diagonal ones
_NEIGHBOURS = tuple((dy, dx, 1 / 6) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))) + tuple(
    (dy, dx, 1 / 12) for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1))
)


def noisy_linear_imputation(
    image: torch.Tensor,
    removed: torch.Tensor,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``image`` (C, H, W) with its ``removed`` (H, W) pixels imputed from their neighbours
    (the noisy linear imputation of ROAD, Rong et al. 2022).

    Every removed pixel equals the weighted mean of its in-image 8 neighbours (weights 1/6
    direct, 1/12 diagonal, divided by their sum), known pixels are fixed: one sparse,
    symmetric, diagonally dominant system per call, factorised once and solved for every
    channel. Gaussian noise of standard deviation ``noise_std`` (drawn from ``generator``)
    is then added to the imputed pixels only; known pixels are returned unchanged.

    Returns:
        A new tensor like ``image`` (same dtype and device).

    Raises:
        InputError: ``removed`` is not (H, W), or holds every pixel (nothing to impute from).

    Example:
        >>> ramp = torch.arange(25.0).reshape(1, 5, 5)  # 5 * row + column: linear
        >>> hole = torch.zeros(5, 5, dtype=torch.bool)
        >>> hole[1:4, 1:4] = True
        >>> out = noisy_linear_imputation(ramp, hole)
        >>> round(out[0, 2, 2].item(), 6), bool(torch.allclose(out, ramp))
        (12.0, True)
    """
    c, h, w = image.shape
    mask = torch.as_tensor(removed).detach().cpu().bool()
    if tuple(mask.shape) != (h, w) or bool(mask.all()):
        raise InputError(
            describe(
                "`removed`",
                f"an ({h}, {w}) boolean mask that keeps at least one pixel",
                f"shape {tuple(mask.shape)}" + (" removing every pixel" if mask.all() else ""),
                "Pass one mask per image, with a removed fraction below 1.",
            )
        )
    values = image.detach().cpu().double().numpy()
    ys, xs = np.nonzero(mask.numpy())
    if not len(ys):
        return image.clone()
    solution = _solve(values, ys, xs)  # (n, C)
    if noise_std > 0:
        noise = torch.randn((c, len(ys)), generator=generator, dtype=torch.float64) * noise_std
        solution = solution + noise.numpy().T
    out = values.copy()
    out[:, ys, xs] = solution.T
    return torch.from_numpy(out).to(dtype=image.dtype, device=image.device)


def _solve(values: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The removed pixels (``ys``, ``xs``) of ``values`` (C, H, W) solved from their known
    neighbours: (n, C). Row i reads sum_j w_ij x_i - sum_{j removed} w_ij x_j =
    sum_{j known} w_ij v_j over the in-image neighbours j (the mean, times its weights' sum)."""
    _, h, w = values.shape
    n = len(ys)
    index = np.full((h, w), -1, dtype=np.int64)
    index[ys, xs] = np.arange(n)
    diagonal = np.zeros(n)
    rhs = np.zeros((n, values.shape[0]))
    rows, cols, weights = [], [], []
    for dy, dx, weight in _NEIGHBOURS:  # 8 offsets, each over all removed pixels at once
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        i, ny, nx = np.nonzero(inside)[0], ny[inside], nx[inside]
        diagonal[i] += weight
        j = index[ny, nx]
        unknown = j >= 0
        rows.append(i[unknown])
        cols.append(j[unknown])
        weights.append(np.full(int(unknown.sum()), -weight))
        known = ~unknown  # each i at most once per offset: the sum below has no collisions
        rhs[i[known]] += weight * values[:, ny[known], nx[known]].T
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    weights.append(diagonal)
    system = sparse.csc_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    return splu(system).solve(rhs)


def removal_counts(fractions: Sequence[float], n_pixels: int) -> list[int]:
    """Pixels removed at each fraction: ``floor(p * n_pixels)``, below ``n_pixels`` for p < 1."""
    return [math.floor(p * n_pixels + 1e-9) for p in fractions]


@torch.no_grad()
def road_curves(
    model: Model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    attributions: torch.Tensor,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    order: str = "morf",
    generator: torch.Generator | None = None,
    runtime: Runtime = Runtime(),
    noise_std: float | None = None,
) -> torch.Tensor:
    """Target scores of images (N, C, H, W) whose ``fractions`` of most relevant (``order=
    "morf"``) or least relevant (``"lerf"``) pixels are removed and imputed
    (:func:`noisy_linear_imputation`).

    Args:
        attributions: (N, C, H, W); a pixel's relevance is the sum over its channels (ties
            are removed in pixel order).
        fractions: shares of the pixels to remove, each in [0, 1).
        noise_std: the imputation noise; None: ``NOISE`` (0.01) times the inputs' range.

    Returns:
        (N, len(fractions)) float64 scores of each sample's target (probabilities, or
        values), on the CPU. Noise is drawn sample by sample, fraction by fraction, so the
        result does not depend on the memory budget.
    """
    check_choice(order, "order", ROAD_ORDERS)
    n, _, h, w = inputs.shape
    k = len(fractions)
    relevance = attributions.detach().sum(1).reshape(n, -1).double().cpu()
    key = relevance if order == "morf" else -relevance
    rank = torch.argsort(torch.argsort(key, dim=1, descending=True, stable=True), dim=1)
    rank = rank.reshape(n, h, w)
    counts = removal_counts(fractions, h * w)
    if noise_std is None:
        noise_std = NOISE * float(inputs.max() - inputs.min())
    images = inputs.detach().cpu()
    request = ChunkRequest(
        extra_bytes_per_row=inputs[0].numel() * inputs.element_size(),  # the imputed row
        backward=False,
        what=f"ROAD on {n} image(s)",
    )
    size = chunk_size(model, inputs[0], runtime, request)
    out = torch.empty(n * k, dtype=torch.float64)
    for part in chunks(n * k, size):  # row r is fraction r % k of sample r // k
        sample = torch.arange(part.start, part.stop) // k
        x = torch.stack(
            [
                noisy_linear_imputation(
                    images[r // k], rank[r // k] < counts[r % k], noise_std, generator
                )
                for r in range(part.start, part.stop)
            ]
        )
        scores = model.to_scores(model.forward(x.to(device=inputs.device, dtype=inputs.dtype)))
        picked = scores.gather(1, targets[sample].to(scores.device)[:, None]).squeeze(1)
        out[part] = picked.double().cpu()
    return out.reshape(n, k)
