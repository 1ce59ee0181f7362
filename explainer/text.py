"""Text models: token ids in, token attributions out.

Token ids are integers: no gradient reaches them. Every method therefore explains the
network as a function of its *input embeddings* (the output of the embedding layer:
``get_input_embeddings()``, else the first ``nn.Embedding``, or a layer named on
``ex.wrap``), which :class:`EmbeddingInput` substitutes for the layer's output during the
forward, exactly as captum's ``LayerIntegratedGradients`` on the word embeddings does; the
ids still go in, so positions, token types and masks work as the model expects. The
embeddings of a batch are one input of shape (tokens, dim) (:mod:`explainer.inputs`), the
ids and the attention mask are per-sample forward arguments, so each sample is explained
on its own call and every row a method builds keeps its sample's ids.

"Absent" is the reference token (``reference_token``: "pad" by default, "mask", "unk" or an
id): a token is removed by giving it that token's embedding; special tokens ([CLS], [SEP])
and padding stay as they are in every reference, so they are never attributed.
Attributions are reduced per token by summing over the embedding dimension (signed
methods; for saliency's |gradient|, the sum of absolute values), and the reduction is
stated in the explanation's manifest.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InputError, ModelError, describe
from .hooks import LayerCapture, refuse_torchscript

__all__ = [
    "Tokenizer",
    "TextBatch",
    "EmbeddingInput",
    "embedding_layer",
    "as_text_batch",
    "REFERENCE_TOKENS",
    "word_groups",
    "token_groups",
]

REFERENCE_TOKENS = ("pad", "mask", "unk")


class Tokenizer:
    """What explainer needs of a tokenizer, from a HuggingFace tokenizer (duck-typed:
    called on a list of texts with padding, ``convert_ids_to_tokens``, special ids) or from
    a plain callable ``text -> list of ids`` (with an optional ``decode``).

    Example:
        >>> tok = Tokenizer(lambda text: [len(w) for w in text.split()])
        >>> batch = tok.encode(["a bb", "ccc"])
        >>> batch[0].tolist(), batch[1].tolist()
        ([[1, 2], [3, 0]], [[1, 1], [1, 0]])
        >>> tok.tokens([1, 2])
        ['1', '2']
    """

    def __init__(self, source: Any) -> None:
        if not callable(source) and not hasattr(source, "encode"):
            raise InputError(
                describe(
                    "`tokenizer`",
                    "a HuggingFace tokenizer or a callable text -> list of token ids",
                    type(source).__name__,
                    "Pass the tokenizer the model was trained with, e.g. "
                    "AutoTokenizer.from_pretrained(path), or lambda text: [ids...].",
                )
            )
        self.source = source
        self.hf = hasattr(source, "convert_ids_to_tokens") and callable(source)

    def _id(self, name: str) -> int | None:
        value = getattr(self.source, f"{name}_token_id", None)
        return int(value) if isinstance(value, int | np.integer) else None

    @property
    def pad_id(self) -> int:
        pad = self._id("pad")
        return 0 if pad is None else pad

    def token_id(self, name: str) -> int | None:
        """The id of "pad", "mask" or "unk" (None when the tokenizer has none)."""
        return self.pad_id if name == "pad" else self._id(name)

    @property
    def special_ids(self) -> set[int]:
        ids = getattr(self.source, "all_special_ids", None)
        return {int(i) for i in ids} if ids else set()

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask (N, L) of ``texts``, padded to the longest."""
        if self.hf:
            out = self.source(list(texts), padding=True, truncation=True, return_tensors="pt")
            ids = torch.as_tensor(out["input_ids"])
            mask = out.get("attention_mask")
            return ids, torch.ones_like(ids) if mask is None else torch.as_tensor(mask)
        encode = getattr(self.source, "encode", self.source)
        rows = [list(encode(t)) for t in texts]
        length = max((len(r) for r in rows), default=0)
        if length == 0:
            raise InputError(
                describe(
                    "`inputs`",
                    "texts with at least one token",
                    "only empty texts",
                    "Pass non-empty texts.",
                )
            )
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """The text of each token id (its id as text when the tokenizer cannot say)."""
        ids = [int(i) for i in ids]
        if self.hf:
            return [str(t) for t in self.source.convert_ids_to_tokens(ids)]
        decode = getattr(self.source, "decode", None)
        if decode is None:
            return [str(i) for i in ids]
        return [str(decode([i])) for i in ids]


def embedding_layer(net: nn.Module, layer: Any = None) -> str:
    """The dotted name of the input embedding layer: ``layer`` if given (a name or a
    module), else the module ``get_input_embeddings()`` returns, else the first
    ``nn.Embedding``.

    Raises:
        ModelError: no embedding layer can be found, or the network is TorchScript.
    """
    refuse_torchscript(net, "A text method")
    names = {m: n for n, m in net.named_modules()}
    if isinstance(layer, str):
        if layer not in dict(net.named_modules()):
            raise InputError(
                describe(
                    "`embedding`",
                    "the dotted name of the network's embedding layer",
                    repr(layer),
                    "List the layers with ex.layers(model, ids) and pass the embedding's name.",
                )
            )
        return layer
    if isinstance(layer, nn.Module) and layer in names:
        return names[layer]
    getter = getattr(net, "get_input_embeddings", None)
    found = getter() if callable(getter) else None
    if isinstance(found, nn.Module) and found in names:
        return names[found]
    for name, module in net.named_modules():
        if isinstance(module, nn.Embedding):
            return name
    raise ModelError(
        describe(
            "The text model's embedding layer",
            "get_input_embeddings() or an nn.Embedding module that turns ids into vectors",
            "none found",
            "Name it: ex.wrap(model, modality='text', embedding='encoder.embed').",
        )
    )


class EmbeddingInput(nn.Module):
    """The network as a function of its input embeddings: ``forward(embeddings, input_ids,
    **kwargs)`` runs it on the ids with the embedding layer's output replaced by
    ``embeddings`` (rows, L, dim), so gradients reach the embeddings and everything else
    (positions, token types, masks) is what the ids give."""

    def __init__(self, net: nn.Module, layer: str) -> None:
        super().__init__()
        self.net = net  # registered: parameters, eval mode and fingerprint are its
        self.layer = layer
        try:
            parameters = inspect.signature(net.forward).parameters
        except (TypeError, ValueError):
            parameters = {}
        self.takes_mask = "attention_mask" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )

    @property
    def cost_identity(self) -> tuple[nn.Module, tuple[str, str]]:
        """Whose measured costs these are (see ``explainer._runtime.measured_cost``): the
        network's, at this embedding layer; a new wrapper per call reuses them."""
        return self.net, ("embeddings", self.layer)

    def forward(self, embeddings: torch.Tensor, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        if not self.takes_mask:
            kwargs.pop("attention_mask", None)
        with LayerCapture(self.net, self.layer, replace=lambda _: embeddings, grad=False):
            return self.net(input_ids, **kwargs)


@dataclass(frozen=True)
class TextBatch:
    """A batch of texts as explainer runs it.

    Attributes:
        ids: token ids (N, L), long.
        mask: attention mask (N, L), 1 for tokens, 0 for padding.
        embeddings: the embedding layer's output on ``ids`` (N, L, dim).
        reference: the embeddings of the reference ids (N, L, dim): each token that is
            not special or padding replaced by the reference token.
        tokens: the text of each token, per sample.
        fixed: (N, L) bool, the tokens kept in every reference (special tokens, padding).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    embeddings: torch.Tensor
    reference: torch.Tensor
    tokens: tuple[tuple[str, ...], ...]
    fixed: torch.Tensor


def as_text_batch(
    net: nn.Module,
    layer: str,
    tokenizer: Tokenizer | None,
    inputs: Any,
    mask: Any,
    reference_token: Any,
    device: torch.device,
    keep: torch.Tensor | None = None,
) -> TextBatch:
    """Texts (a list of strings, with a tokenizer) or token ids (N, L) -> a :class:`TextBatch`.
    ``keep`` (N, L) bool: further tokens kept in every reference (never attributed), such
    as a continuation whose probability is explained.

    Raises:
        InputError: strings without a tokenizer, ids that are not integers (N, L), an
            unknown reference token, a mask of another shape.
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, Sequence) and inputs and all(isinstance(t, str) for t in inputs):
        if tokenizer is None:
            raise InputError(
                describe(
                    "`inputs`",
                    "token ids (N, L) for a text model wrapped without a tokenizer",
                    f"{len(inputs)} string(s)",
                    "Pass ex.wrap(model, modality='text', tokenizer=tok), or the ids.",
                )
            )
        ids, found_mask = tokenizer.encode(inputs)
        mask = found_mask if mask is None else mask
    else:
        ids = torch.as_tensor(
            np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs
        )
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.ndim != 2 or not ids.numel():
            raise InputError(
                describe(
                    "`inputs`",
                    "token ids: a non-empty integer tensor (N, L), or a list of strings with a tokenizer",
                    f"dtype {ids.dtype}, shape {tuple(ids.shape)}",
                    "Tokenize first (tokenizer(texts, padding=True, return_tensors='pt')['input_ids']), "
                    "or pass the strings with tokenizer= on ex.wrap.",
                )
            )
    ids = ids.long()
    if mask is None:
        # with a tokenizer, its pad id marks padding; without one, every position is a token
        pad = tokenizer.pad_id if tokenizer is not None else None
        mask = (ids != pad).long() if pad is not None else torch.ones_like(ids)
    mask = torch.as_tensor(mask).long()
    if tuple(mask.shape) != tuple(ids.shape):
        raise InputError(
            describe(
                "`attention_mask`",
                f"the shape of the token ids {tuple(ids.shape)}",
                f"{tuple(mask.shape)}",
                "Pass the mask the tokenizer returned with the ids.",
            )
        )
    ref_id = _reference_id(tokenizer, reference_token)
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in tokenizer.special_ids if tokenizer is not None else ():
        special |= ids == s
    fixed = special | (mask == 0)
    if keep is not None:
        fixed |= keep.to(fixed.device)
    ref_ids = torch.where(fixed, ids, torch.full_like(ids, ref_id))
    module = dict(net.named_modules())[layer]
    with torch.no_grad():
        embeddings = module(ids.to(device))
        reference = module(ref_ids.to(device))
    if not isinstance(embeddings, torch.Tensor) or embeddings.shape[:2] != ids.shape:
        raise ModelError(
            describe(
                f"The embedding layer {layer!r}",
                "a module mapping ids (N, L) to vectors (N, L, dim)",
                f"{type(embeddings).__name__} of shape {getattr(embeddings, 'shape', '?')}",
                "Name the word-embedding layer with ex.wrap(..., embedding='...').",
            )
        )
    tokens = tuple(
        tuple(tokenizer.tokens(row.tolist()) if tokenizer is not None else map(str, row.tolist()))
        for row in ids
    )
    return TextBatch(
        ids.to(device), mask.to(device), embeddings, reference, tokens, fixed.to(device)
    )


def _reference_id(tokenizer: Tokenizer | None, reference: Any) -> int:
    """The id that stands for an absent token."""
    if isinstance(reference, int | np.integer) and not isinstance(reference, bool):
        return int(reference)
    if reference in REFERENCE_TOKENS:
        found = (
            tokenizer.token_id(reference)
            if tokenizer is not None
            else (0 if reference == "pad" else None)
        )
        if found is not None:
            return found
    raise InputError(
        describe(
            "`reference_token`",
            f"one of {REFERENCE_TOKENS} that the tokenizer has, or a token id",
            repr(reference),
            'Pass reference_token="pad" (or the id of a neutral token) to ex.wrap.',
        )
    )


def per_token(attributions: torch.Tensor, absolute: bool) -> torch.Tensor:
    """(N, L, dim) embedding attributions -> (N, L) per token: the sum over dim (of
    absolute values when ``absolute``: saliency's unsigned maps)."""
    return (attributions.abs() if absolute else attributions).sum(-1)


def text_forward_args(batch: TextBatch, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The forward arguments of a text call: the ids and the mask, then the user's own."""
    out: dict[str, Any] = {"input_ids": batch.ids, "attention_mask": batch.mask}
    for key, value in (given or {}).items():
        if key in out:
            continue
        out[key] = value
    return out


Reduce = Callable[[torch.Tensor, bool], torch.Tensor]


def token_groups(tokens: Sequence[Sequence[str]], fixed: torch.Tensor) -> torch.Tensor:
    """(N, L) feature ids, one per token (kernel SHAP's default for text).

    Example:
        >>> token_groups([["[CLS]", "a", "b"]], torch.tensor([[True, False, False]])).tolist()
        [[0, 1, 2]]
    """
    n, length = fixed.shape
    return torch.arange(length, device=fixed.device).expand(n, length).clone()


def word_groups(tokens: Sequence[Sequence[str]], fixed: torch.Tensor) -> torch.Tensor:
    """(N, L) feature ids that put the subword pieces of a word in one group: WordPiece
    continuations ("##ing") join the previous token; with byte-level BPE or SentencePiece
    markers ("Ġ", "▁") a token starts a word only when it carries one. Special tokens and
    padding (``fixed``) are each a group of their own (they are never attributed).

    Example:
        >>> fixed = torch.tensor([[True, False, False, False, True]])
        >>> word_groups([["[CLS]", "play", "##ing", "well", "[SEP]"]], fixed).tolist()
        [[0, 1, 1, 2, 3]]
        >>> word_groups([["The", "Ġplay", "ing", "Ġwell"]], torch.zeros(1, 4, dtype=torch.bool)).tolist()
        [[0, 1, 1, 2]]
    """
    out = torch.zeros(fixed.shape, dtype=torch.long)
    for i, row in enumerate(tokens):
        marked = any(t.startswith(("Ġ", "▁")) for t in row)
        group = -1
        for j, t in enumerate(row):
            starts = (
                bool(fixed[i, j])
                or j == 0
                or bool(fixed[i, j - 1])
                or (t.startswith(("Ġ", "▁")) if marked else not t.startswith("##"))
            )
            group += 1 if starts else 0
            out[i, j] = group
    return out.to(fixed.device)
