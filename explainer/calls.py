"""How one ``ex.explain`` call runs: what the inputs become (one tensor of rows), which model
runs them, and how a batch is split into method calls that keep forward arguments aligned.

* :func:`prepare`: a tensor stays as it is; several inputs (a tuple, or a dict by argument
  name) are packed into one row per sample (:mod:`explainer.inputs`); a text model's ids
  (or strings) become its input embeddings, run by an :class:`~explainer.text.EmbeddingInput`
  with the ids and the attention mask as per-sample forward arguments (:mod:`explainer.text`).
* :func:`aligned_calls`: one method call for the batch, or one per sample when a forward
  argument holds a row per sample.
* :func:`merged`: the per-sample results as one.
* :meth:`Call.params_for`: a text model's references (its reference token's embeddings) as
  the baselines / background of the methods that take them, when none are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from ._checks import as_input_parts, as_inputs, check_names, per_input
from .errors import InputError, describe
from .explanation import Explanation
from .inputs import ForwardArgs, InputLayout
from .model import Model
from .registry import MethodInfo, MethodResult
from .text import (
    EmbeddingInput,
    TextBatch,
    as_text_batch,
    embedding_layer,
    per_token,
    text_forward_args,
    token_groups,
    word_groups,
)

__all__ = [
    "Call",
    "prepare",
    "aligned_calls",
    "merged",
    "feature_names_of",
    "as_text_explanation",
    "TextScoring",
    "text_scoring",
    "spread_tokens",
]

# Parameters that hold a method's reference inputs: a text model gives them its reference
# token's embeddings when the caller does not (captum's vocabulary: IG's baselines, the
# SHAP family's background).
REFERENCE_PARAMETERS = ("baselines", "background")


@dataclass(frozen=True)
class Call:
    """The rows an explain call runs and the model that runs them.

    Attributes:
        x: (N, ...) rows: the inputs, packed inputs, or a text batch's packed embeddings.
        model: the model methods are given (with a layout and forward arguments when the
            inputs are several, text, or come with forward arguments).
        text: the text batch (ids, mask, embeddings, references, tokens), for a text model.
    """

    x: torch.Tensor
    model: Model
    text: TextBatch | None = None
    layer: str | None = None  # a text model's embedding layer

    def params_for(
        self, info: MethodInfo, params: Mapping[str, Any], rows: slice
    ) -> dict[str, Any]:
        """``params`` for the call on ``rows``: for a text model, the reference embeddings
        of those rows as the method's baselines / background when not given, and
        ``feature_mask="words"`` (kernel SHAP over words) as the rows' word groups."""
        if self.text is None:
            return dict(params)
        out = dict(params)
        reference = self.text.reference[rows].reshape(rows.stop - rows.start, -1)
        for name in REFERENCE_PARAMETERS:
            if name in info.defaults and out.get(name) is None:
                out[name] = reference
        if isinstance(out.get("feature_mask"), str):
            if out["feature_mask"] not in ("words", "tokens"):
                raise InputError(
                    describe(
                        "`feature_mask`",
                        '"words" or "tokens" for a text model (or integer ids per token)',
                        repr(out["feature_mask"]),
                        'Pass feature_mask="words" to group subword pieces into words.',
                    )
                )
            by = word_groups if out["feature_mask"] == "words" else token_groups
            groups = by(self.text.tokens[rows], self.text.fixed[rows])  # (n, L)
            out["feature_mask"] = (groups[..., None],)  # one group per word, all its values
        return out


def prepare(model: Model, inputs: Any, forward_args: Any, keep: Any = None) -> Call:
    """The validated rows and the model that runs them (see the module docstring);
    ``keep``: a text model's tokens kept in every reference ((N, L) bool)."""
    if model.modality == "text":
        return _text_call(model, inputs, forward_args, keep)
    layout = None
    if isinstance(inputs, tuple | Mapping):
        layout, x = as_input_parts(model, inputs)
    else:
        x = as_inputs(model, inputs)
    fargs = ForwardArgs.of(forward_args, x.shape[0], model.device, model.dtype)
    if layout is None and not fargs:
        return Call(x, model)
    return Call(x, model.calling(layout, fargs))


def _text_call(model: Model, inputs: Any, forward_args: Any, keep: Any = None) -> Call:
    """A text model's call: its embeddings as the one (tokens, dim) input, the ids and the
    mask (and the caller's own forward arguments, by keyword) as per-sample arguments;
    ``keep``: (N, L) bool, tokens kept in every reference besides the special ones."""
    given = forward_args if isinstance(forward_args, Mapping) or forward_args is None else None
    if forward_args is not None and given is None:
        raise InputError(
            describe(
                "`forward_args`",
                "a dict of keyword arguments for a text model (the ids go first)",
                type(forward_args).__name__,
                "Pass forward_args={'attention_mask': mask, 'token_type_ids': types}.",
            )
        )
    layer = embedding_layer(model.net, model.embedding)
    mask = (given or {}).get("attention_mask")
    batch = as_text_batch(
        model.net, layer, model.tokenizer, inputs, mask, model.reference_token, model.device, keep
    )
    n, length = batch.ids.shape
    embeddings = batch.embeddings.to(model.dtype)
    layout = InputLayout(shapes=(tuple(embeddings.shape[1:]),), names=("embeddings",))
    fargs = ForwardArgs.of(text_forward_args(batch, given), n, model.device, model.dtype)
    # methods see the packed embeddings as rows (a model with a layout is tabular to them)
    runner = model.with_network(EmbeddingInput(model.net, layer)).calling(layout, fargs)
    return Call(layout.pack([embeddings]), runner, batch, layer)


def aligned_calls(model: Model, n: int, row_aligned: bool = False) -> list[tuple[Model, slice]]:
    """The method calls that explain ``n`` samples: one call for the batch; one per sample
    when a forward argument holds a row per sample, with the model bound to that sample's
    row, so every row a method builds (path points, coalitions, noisy copies) is given the
    arguments of the sample it belongs to. A ``row_aligned`` method (see
    :func:`~explainer.registry.register_method`) builds no rows: one call for the batch."""
    if row_aligned or not model.forward_args.per_sample:
        return [(model, slice(0, n))]
    return [
        (model.calling(model.layout, model.forward_args.sample(i)), slice(i, i + 1))
        for i in range(n)
    ]


def merged(results: list[MethodResult]) -> MethodResult:
    """One result from the per-sample results of :func:`aligned_calls`: attributions and
    per-sample extras concatenated; an extra that is the same for every sample (or not per
    sample) kept once, the parameters of the first call."""
    if len(results) == 1:
        return results[0]
    extras: dict[str, Any] = {}
    for key, first in results[0].extras.items():
        values = [r.extras.get(key) for r in results]
        if all(isinstance(v, torch.Tensor) and v.ndim and len(v) == 1 for v in values):
            if len({tuple(v.shape[1:]) for v in values}) == 1:
                extras[key] = torch.cat(values)
                continue
        extras[key] = first if all(_same(v, first) for v in values) else values
    attributions = torch.cat([r.attributions for r in results])
    return MethodResult(attributions, extras=extras, params=results[0].params)


def _same(a: Any, b: Any) -> bool:
    """Whether two extras are equal (tensors by value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    try:
        return bool(a == b)
    except Exception:  # values without a truth value of ==
        return False


def feature_names_of(model: Model, feature_names: Any, x: torch.Tensor) -> Any:
    """Checked column names: of a tabular batch, or per input for several inputs (a tuple
    with None for inputs that are not tabular; kept in the manifest)."""
    layout = model.layout
    if layout is None:
        if model.modality != "tabular":
            return None
        return check_names(feature_names, "feature_names", x.shape[1])
    if feature_names is None:
        return None
    entries = per_input(layout, feature_names, "feature_names")
    if entries is None:
        raise InputError(
            describe(
                "`feature_names`",
                "one entry per input (a tuple, None for inputs that are not tabular)",
                type(feature_names).__name__,
                f"Pass feature_names=(None, ['age', 'bmi', ...]) for inputs {layout.names}.",
            )
        )
    out = []
    for k, (names, shape, kind) in enumerate(
        zip(entries, layout.shapes, layout.kinds, strict=True)
    ):
        if names is not None and kind != "tabular":
            raise InputError(
                describe(
                    f"`feature_names[{k}]`",
                    f"None for the {kind} input {layout.names[k]}",
                    "names",
                    "Give column names only for (N, features) inputs.",
                )
            )
        checked = check_names(names, f"feature_names[{k}]", shape[0]) if names is not None else None
        out.append(list(checked) if checked else None)
    return out


def as_text_explanation(exp: Explanation, call: Call, info: MethodInfo) -> Explanation:
    """The explanation of a text call, per token: attributions (N, L) summed over the
    embedding dimension (of absolute values for unsigned maps, e.g. saliency's), the ids as
    inputs, the tokens, the mask and the embedding attributions in extras; the manifest says
    how (``manifest["text"]``)."""
    batch = call.text
    n, length = batch.ids.shape
    embedding = exp.attributions.reshape(n, length, -1)
    absolute = not info.draws_signed(exp.params)
    manifest = dict(exp.manifest)
    manifest["input_shape"] = [n, length]
    manifest["text"] = {
        "embedding_layer": call.layer,
        "embedding_dim": int(embedding.shape[-1]),
        "reduction": (
            "sum of |attribution| over the embedding dimension"
            if absolute
            else "sum over the embedding dimension"
        ),
        "reference_token": repr(call.model.reference_token),
        "kept": "special tokens and padding are kept in every reference",
    }
    params = dict(exp.params)
    for name in REFERENCE_PARAMETERS:  # given by the text call, not by the caller
        if name in params and exp.call_params.get(name) is None:
            params[name] = f"the reference token's embeddings ({call.model.reference_token!r})"
    return replace(
        exp,
        params=params,
        attributions=per_token(embedding, absolute),
        inputs=batch.ids.cpu(),
        modality="text",
        extras={
            **exp.extras,
            "attention_mask": batch.mask.cpu(),
            "embedding_attributions": embedding,
        },
        manifest=manifest,
        forward_args=None,
        tokens=batch.tokens,
    )


def spread_tokens(per_token: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-token attributions (N, L) spread evenly over each token's ``dim`` embedding
    values, packed (N, L * dim): a token-level map in the embedding space, as a CAM is
    spread over an image's channels (summing a token's values gives it back)."""
    n, length = per_token.shape
    return (per_token / dim)[..., None].expand(n, length, dim).reshape(n, -1)


@dataclass(frozen=True)
class TextScoring:
    """What trust scores need to score a text explanation: its embeddings' explanation
    (packed rows; the per-token attributions spread over the embedding values, so that
    every metric compares token-level maps, also for a store, which keeps only those, and
    re-runs are reduced the same way), the model that runs embeddings, and the
    removal of tokens: per-token relevance (N, L) (special tokens and padding at -inf, never
    removed), the token each embedding value belongs to (N, L * dim), and the reference
    embeddings a removed token takes (N, L * dim)."""

    exp: Explanation
    model: Model
    token_scores: torch.Tensor
    token_ids: torch.Tensor
    reference: torch.Tensor
    groups: torch.Tensor | None = None  # kernel SHAP's words (feature_mask="words"), (N, L)


def text_scoring(exp: Explanation, model: Model) -> TextScoring:
    """The :class:`TextScoring` of a text explanation, for ``model`` (the wrapped text model
    the explanation was computed with)."""
    call = _text_call(model, exp.inputs, {"attention_mask": exp.extras["attention_mask"]})
    batch = call.text
    n, length = batch.ids.shape
    dim = batch.embeddings.shape[-1]
    packed = replace(
        exp,
        attributions=spread_tokens(exp.attributions, dim),
        inputs=call.x.detach().cpu(),
        modality="tabular",
        manifest={**exp.manifest, "inputs": call.model.layout.record()},
        tokens=None,
    )
    scores = torch.where(batch.fixed.cpu(), float("-inf"), exp.attributions.double())
    token_ids = torch.arange(length).repeat_interleave(dim).expand(n, -1)
    reference = batch.reference.reshape(n, -1).to(call.x.dtype)
    mask = exp.call_params.get("feature_mask")
    by = {"words": word_groups, "tokens": token_groups}.get(mask) if isinstance(mask, str) else None
    groups = None if by is None else by(batch.tokens, batch.fixed)
    return TextScoring(packed, call.model, scores, token_ids, reference, groups)
