"""Faithfulness: deletion/insertion curves (Petsiuk et al. 2018, RISE) and infidelity (Yeh et al. 2019).

Deletion removes features most-relevant-first (MoRF) and tracks the target's score
(``Model.to_scores``: the class probability, a multilabel model's sigmoid, a regression's
predicted value itself):
a faithful map makes it fall fast (low AUC). Insertion starts from the fill and restores
features most-relevant-first: a faithful map makes it rise fast (high AUC). The same curves
with least-relevant-first order (LeRF) and with random orders (the reference) tell whether
an attribution beats chance: ``deletion_gain = AUC_random - AUC_MoRF`` and
``insertion_gain = AUC_MoRF - AUC_random``, both > 0 when better than random.

Features are pixels (all channels together) or superpixels (``segments``); removed
features take the ``fill`` value: "blur" (default: removes shape and texture, keeps no
sharp edges that create new evidence), "mean" (per-channel mean) or "zeros". All
perturbed inputs are batched under the memory budget; nothing loops over pixels in Python.
"""

from __future__ import annotations

import torch

from .._runtime import ChunkRequest, Runtime, Tuning, chunk_size, chunks
from ..methods.references import gaussian_blur
from ..model import Model

__all__ = [
    "fill_reference",
    "feature_scores",
    "perturbation_curves",
    "auc",
    "infidelity",
    "infidelity_noise",
    "perturbed_outputs",
    "infidelity_of",
]

FILLS = ("blur", "mean", "zeros")


def fill_reference(inputs: torch.Tensor, fill: str = "blur") -> torch.Tensor:
    """What a removed feature is replaced by, shaped like ``inputs``."""
    if fill == "zeros":
        return torch.zeros_like(inputs)
    if inputs.ndim != 4:  # tabular: the batch mean of each column
        return inputs.mean(0, keepdim=True).expand_as(inputs)
    if fill == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    return gaussian_blur(inputs, sigma=max(inputs.shape[2:]) / 8)


def feature_scores(
    attributions: torch.Tensor, segments: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature relevance and the feature id of every spatial position.

    Images: features are pixels (channels summed) or, with ``segments`` (N, H, W), superpixels
    (relevance = sum over the segment). Tabular: one feature per column.

    Returns:
        ``scores`` (N, F) and ``ids`` (N, H, W) or (N, F) long, with F the (max) feature count;
        padded features get -inf so they are removed last and never first.
    """
    if attributions.ndim == 2:
        n, f = attributions.shape
        return attributions.double(), torch.arange(f).expand(n, f)
    maps = attributions.sum(1).double()  # (N, H, W)
    n = len(maps)
    if segments is None:
        ids = torch.arange(maps[0].numel()).reshape(maps.shape[1:]).expand_as(maps)
        return maps.reshape(n, -1), ids
    ids = segments.long()
    n_feat = int(ids.max()) + 1
    scores = torch.full((n, n_feat), float("-inf"), dtype=torch.float64)
    for i in range(n):  # a handful of segments per image: a scatter per sample is cheap
        present = torch.unique(ids[i])
        scores[i, present] = torch.zeros(len(present), dtype=torch.float64).index_add_(
            0, torch.searchsorted(present, ids[i].reshape(-1)), maps[i].reshape(-1)
        )
    return scores, ids


def _orders(scores: torch.Tensor, order: str, generator: torch.Generator | None) -> torch.Tensor:
    """Feature ranks (N, F): position of each feature in the removal order."""
    if order == "random":
        noise = torch.rand(scores.shape, generator=generator, dtype=torch.float64)
        key = torch.where(torch.isinf(scores), torch.full_like(noise, -1.0), noise)  # padding last
        perm = torch.argsort(key, dim=1, descending=True)
    else:
        key = scores if order == "morf" else torch.where(torch.isinf(scores), scores, -scores)
        perm = torch.argsort(key, dim=1, descending=True, stable=True)
    return torch.argsort(perm, dim=1)  # rank of each feature


@torch.no_grad()
def perturbation_curves(
    model: Model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    scores: torch.Tensor,
    ids: torch.Tensor,
    reference: torch.Tensor,
    mode: str = "deletion",
    order: str = "morf",
    steps: int = 20,
    generator: torch.Generator | None = None,
    runtime: Runtime = Runtime(),
) -> torch.Tensor:
    """Target score (probability; the value for a regression) after removing (deletion) or
    restoring (insertion) a growing share of features in the given order.

    Args:
        scores: (N, F) feature relevance; ids: feature id of each position (N, ...spatial).
        reference: fill values shaped like ``inputs``.
        mode: "deletion" or "insertion"; order: "morf", "lerf" or "random".
        steps: the curve has ``steps + 1`` points at fractions 0, 1/steps, ..., 1.

    Returns:
        (N, steps + 1) scores of each sample's target (class probabilities, or values).
    """
    n = len(inputs)
    n_real = (~torch.isinf(scores)).sum(1)  # (N,) features present per sample
    rank = torch.gather(_orders(scores, order, generator), 1, ids.reshape(n, -1)).reshape(ids.shape)
    fractions = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    # Position is "changed" at step k when its feature is among the first ceil(k/steps * F_i).
    cut = torch.ceil(fractions[None] * n_real[:, None].double()).long()  # (N, steps+1)
    rows_total = n * (steps + 1)
    size = chunk_size(model, inputs[0], runtime, ChunkRequest(backward=False))
    out = torch.empty(rows_total, dtype=torch.float64)
    tuning = Tuning.of(model, "forward", inputs[0], runtime)
    for part in chunks(rows_total, size, tuning):  # row r is step r // N of sample r % N
        r = torch.arange(part.start, part.stop)
        step, sample = r // n, r % n
        changed = rank[sample] < cut[sample, step].view(
            -1, *([1] * (rank.ndim - 1))
        )  # (rows, ...spatial)
        if inputs.ndim == 4:
            changed = changed[:, None]
        removed = changed if mode == "deletion" else ~changed
        x = torch.where(removed, reference[sample], inputs[sample])
        probs = model.to_scores(model.forward(x.to(inputs.device)))
        out[part] = (
            probs.gather(1, targets[sample].to(probs.device)[:, None]).squeeze(1).double().cpu()
        )
    return out.reshape(steps + 1, n).T


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under (N, K) curves over [0, 1] by the trapezoid rule -> (N,)."""
    k = curves.shape[1] - 1
    return (curves[:, :-1] + curves[:, 1:]).sum(1) / (2 * k)


@torch.no_grad()
def infidelity(
    model: Model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    attributions: torch.Tensor,
    n_perturb: int = 32,
    stdev: float = 0.1,
    generator: torch.Generator | None = None,
    runtime: Runtime = Runtime(),
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Infidelity (Yeh et al. 2019): E_I[(I . attr - (f(x) - f(x - I)))^2], I ~ N(0, stdev^2).

    Same definition as captum's ``infidelity`` with ``normalize=False`` on the target
    output (logit or probability, as the network returns it). Lower is better; the value
    scales with the output's units, so compare methods on the same model only.

    Args:
        noise: optional fixed perturbations (n_perturb, N, ...) (for oracle tests).

    Returns:
        (N,) infidelity per sample.
    """
    if noise is None:
        noise = infidelity_noise(inputs, n_perturb, stdev, generator)
    return infidelity_of(attributions, perturbed_outputs(model, inputs, targets, noise, runtime))


def infidelity_noise(
    inputs: torch.Tensor, n_perturb: int, stdev: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Infidelity's perturbations (n_perturb, N, ...), N(0, stdev^2), on the inputs' device."""
    noise = torch.randn((n_perturb, *inputs.shape), generator=generator, dtype=inputs.dtype)
    return (noise * stdev).to(inputs.device)


@torch.no_grad()
def perturbed_outputs(
    model: Model, inputs: torch.Tensor, targets: torch.Tensor, noise: torch.Tensor, runtime: Runtime
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What infidelity needs of the model, whatever the attributions: the perturbations
    (P, N, ...), f(x) (N,) and f(x - I) (P, N) of the target; computed once for every
    method that explains the same inputs (``ex.evaluate`` shares them)."""
    n = len(inputs)
    noise = noise.to(inputs.device)
    f_x = model.forward(inputs).gather(1, targets[:, None].to(inputs.device)).squeeze(1)
    flat = (inputs[None] - noise).reshape(-1, *inputs.shape[1:])  # (P * N, ...)
    tgt = targets.to(inputs.device).repeat(len(noise))
    size = chunk_size(model, inputs[0], runtime, ChunkRequest(backward=False))
    f_pert = torch.empty(len(flat), dtype=inputs.dtype, device=inputs.device)
    for part in chunks(len(flat), size, Tuning.of(model, "forward", inputs[0], runtime)):
        f_pert[part] = model.forward(flat[part]).gather(1, tgt[part, None]).squeeze(1)
    return noise, f_x, f_pert.reshape(len(noise), n)


def infidelity_of(
    attributions: torch.Tensor, perturbed: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Infidelity (N,) of ``attributions`` from :func:`perturbed_outputs`."""
    noise, f_x, f_pert = perturbed
    dot = (noise * attributions[None].to(noise.device)).reshape(len(noise), len(f_x), -1).sum(2)
    return ((dot - (f_x[None] - f_pert)) ** 2).mean(0).double().cpu()
