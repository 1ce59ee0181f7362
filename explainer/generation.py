"""Generative language models: which prompt tokens make a continuation likely.

``ex.explain_generation(lm, prompt, continuation)`` attributes the log-probability of each
continuation token (given the prompt and the continuation tokens before it), and of the
whole continuation, to the prompt's tokens: a prompt x continuation matrix (captum's
``LLMAttribution`` is the anchor). The network is a decoder-only language model (a
HuggingFace ``GPT2LMHeadModel`` or any model whose output has ``.logits`` (N, L, vocab));
the prompt and the continuation are run together, the continuation's tokens are kept in
every reference (only the prompt is attributed), and each column of the explained output is
``log softmax(logits[:, t - 1])[token_t]`` for a continuation token t, the last column their
sum. Every text method works: integrated gradients through the embeddings, the SHAP family,
kernel SHAP over prompt tokens (a perturbation method).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html import escape
from typing import Any

import torch

from ._checks import check_autograd_mode, check_bool, check_model
from ._runtime import Runtime, parse_bytes
from .api import explain_call
from .calls import prepare
from .errors import InputError, describe
from .explanation import Explanation
from .model import Model, wrap
from .viz.panels import readable_tokens

__all__ = ["explain_generation", "GenerationExplanation"]


class ContinuationLogProbs:
    """``select`` for a language model's output: the log-probability of each continuation
    token at its position, and their sum, (rows, C + 1)."""

    def __init__(self, continuation: torch.Tensor, start: int) -> None:
        self.continuation = continuation  # (C,) ids
        self.start = start  # the prompt's length: token t is predicted at position t - 1

    def __call__(self, out: Any) -> torch.Tensor:
        logits = getattr(out, "logits", out)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
            raise InputError(
                describe(
                    "The language model's output",
                    "logits (N, L, vocab) (a causal LM's .logits)",
                    f"{type(logits).__name__}",
                    "Explain a decoder-only language model such as GPT2LMHeadModel.",
                )
            )
        c = len(self.continuation)
        steps = logits[:, self.start - 1 : self.start - 1 + c].log_softmax(-1)  # (R, C, V)
        ids = self.continuation.to(logits.device)[None, :, None].expand(len(logits), c, 1)
        each = steps.gather(2, ids).squeeze(2)  # (R, C)
        return torch.cat([each, each.sum(1, keepdim=True)], 1)


@dataclass(frozen=True, eq=False)
class GenerationExplanation:
    """Attributions of a continuation's log-probabilities to the prompt's tokens.

    Attributes:
        method: the attribution method.
        prompt_tokens, continuation_tokens: the tokens, as the tokenizer gives them.
        matrix: (C, P) attribution of each prompt token to log p(continuation token c).
        total: (P,) attributions to the log-probability of the whole continuation.
        log_probs: (C,) log p of each continuation token given everything before it.
        relative_gaps: (C + 1,) completeness gaps (methods that have one), the total last.
        warnings: what to know before trusting the numbers (a completeness gap).
        explanations: the underlying explanation of each column (C + 1).
    """

    method: str
    prompt_tokens: tuple[str, ...]
    continuation_tokens: tuple[str, ...]
    matrix: torch.Tensor
    total: torch.Tensor
    log_probs: torch.Tensor
    relative_gaps: torch.Tensor | None
    warnings: tuple[str, ...] = ()
    explanations: tuple[Explanation, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return (
            f"GenerationExplanation(method={self.method!r}, prompt={len(self.prompt_tokens)} "
            f"tokens, continuation={len(self.continuation_tokens)} tokens)"
        )

    def _repr_html_(self) -> str:
        """The matrix as a table: a row per continuation token (and the total), a column
        per prompt token, each cell coloured by its attribution (red +, blue -, full colour
        at the row's largest |value|); every token escaped."""
        prompt = readable_tokens(self.prompt_tokens)
        head = "".join(f"<th>{escape(t)}</th>" for t in prompt)
        rows = []
        labels = [*readable_tokens(self.continuation_tokens), "total"]
        values = torch.cat([self.matrix, self.total[None]])
        logp = [*(f"{v:.3f}" for v in self.log_probs.tolist()), f"{self.log_probs.sum():.3f}"]
        for label, lp, row in zip(labels, logp, values, strict=True):
            scale = float(row.abs().max()) or 1.0
            cells = "".join(
                f'<td style="background: {_color(float(v), scale)}" title="{float(v):+.4g}">'
                f"{float(v):+.2g}</td>"
                for v in row
            )
            rows.append(f"<tr><th>{escape(label)}</th><td>{lp}</td>{cells}</tr>")
        notes = "".join(f"<p><b>warning</b> {escape(w)}</p>" for w in self.warnings)
        return (
            f"<div><p>{escape(self.method)}: attribution of each prompt token (columns) to the "
            "log-probability of each continuation token (rows)</p>"
            f"<table><tr><th>continuation</th><th>log p</th>{head}</tr>{''.join(rows)}</table>"
            f"{notes}</div>"
        )

    def plot(self, ax: Any = None) -> Any:
        """The matrix as a heatmap (matplotlib), tokens on the axes; returns the Axes
        (or the new Figure)."""
        from matplotlib.figure import Figure

        fig = None
        if ax is None:
            fig = Figure(
                figsize=(
                    0.6 * len(self.prompt_tokens) + 2,
                    0.4 * len(self.continuation_tokens) + 1.5,
                )
            )
            ax = fig.subplots()
        values = torch.cat([self.matrix, self.total[None]]).numpy()
        scale = float(abs(values).max()) or 1.0
        ax.imshow(values, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        ax.set_xticks(
            range(len(self.prompt_tokens)),
            [t.strip() for t in readable_tokens(self.prompt_tokens)],
            rotation=60,
            fontsize=8,
        )
        ax.set_yticks(
            range(len(values)),
            [*(t.strip() for t in readable_tokens(self.continuation_tokens)), "total"],
            fontsize=8,
        )
        ax.set_title(f"{self.method}: prompt → continuation log p", fontsize=9)
        return fig if fig is not None else ax


def _color(value: float, scale: float) -> str:
    alpha = min(abs(value) / scale, 1.0) * 0.85
    return f"rgba({'192, 57, 43' if value >= 0 else '44, 111, 187'}, {alpha:.3f})"


def _ids(model: Model, text: Any, name: str, specials: bool) -> torch.Tensor:
    """Token ids (L,) of a prompt or continuation: a string (with the model's tokenizer),
    or a sequence / 1-D tensor of ids."""
    if isinstance(text, str):
        if model.tokenizer is None:
            raise InputError(
                describe(
                    f"`{name}`",
                    "token ids, for a model wrapped without a tokenizer",
                    "a string",
                    "Pass ex.wrap(lm, modality='text', tokenizer=tok), or the ids.",
                )
            )
        source = model.tokenizer.source
        if model.tokenizer.hf:
            ids = source(text, add_special_tokens=specials)["input_ids"]
        else:
            ids = getattr(source, "encode", source)(text)
        out = torch.as_tensor(list(ids), dtype=torch.long)
    else:
        out = torch.as_tensor(text if isinstance(text, torch.Tensor) else list(text))
        if out.is_floating_point() or out.ndim != 1:
            out = torch.empty(0)
    if out.numel() == 0 or out.is_floating_point():
        raise InputError(
            describe(
                f"`{name}`",
                "a non-empty string or a 1-D sequence of token ids",
                repr(text)[:60],
                f"Pass the {name} as text, e.g. {name}='the cat sat'.",
            )
        )
    return out.long()


def explain_generation(
    model: Model | torch.nn.Module,
    prompt: Any,
    continuation: Any,
    method: str = "integrated_gradients",
    *,
    progress: bool = True,
    memory_budget: int | str | None = None,
    **params: Any,
) -> GenerationExplanation:
    """Attribute a continuation's log-probability, token by token, to the prompt's tokens.

    Args:
        model: a decoder-only language model wrapped with ``modality="text"`` (and a
            tokenizer to pass strings); its output has ``.logits`` (N, L, vocab).
        prompt: the prompt: a string or token ids.
        continuation: what follows it: a string (tokenized without special tokens) or ids.
        method: any method for text (``ex.list_methods()``); kernel SHAP removes prompt
            tokens (they become the reference token), the gradient methods go through the
            embeddings.
        **params: the method's options (e.g. ``n_steps``, ``tolerance``).

    Returns:
        A :class:`GenerationExplanation`: the (continuation x prompt) matrix, the totals,
        the log-probabilities, the completeness gaps.

    Raises:
        InputError: a model not wrapped for text, an empty prompt or continuation, strings
            without a tokenizer; and everything :func:`explainer.explain` raises.

    Example:
        >>> import torch, transformers, explainer as ex
        >>> torch.manual_seed(0) and None
        >>> lm = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        ...     vocab_size=20, n_embd=8, n_layer=1, n_head=2, n_positions=16)).eval()
        >>> g = ex.explain_generation(ex.wrap(lm, modality="text"), [3, 5, 7], [2, 9],
        ...                           "ig", n_steps=32, progress=False)
        >>> tuple(g.matrix.shape), tuple(g.total.shape)
        ((2, 3), (3,))
    """
    check_autograd_mode("ex.explain_generation")
    model = wrap(model)
    check_model(model)
    if model.modality != "text":
        raise InputError(
            describe(
                "`model`",
                "a language model wrapped with modality='text'",
                f"modality {model.modality!r}",
                "Wrap it with ex.wrap(lm, modality='text', tokenizer=tok).",
            )
        )
    start = time.perf_counter()
    p = _ids(model, prompt, "prompt", specials=True)
    c = _ids(model, continuation, "continuation", specials=False)
    ids = torch.cat([p, c])[None]
    names = [*(f"t{j}" for j in range(len(c))), "total"]
    scorer = wrap(
        model, select=ContinuationLogProbs(c, len(p)), task="regression", class_names=names
    )
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[0, len(p) :] = True  # the continuation is never attributed
    runtime = Runtime(
        progress=check_bool(progress, "progress"),
        memory_budget=0 if memory_budget is None else parse_bytes(memory_budget),
        device=str(model.device),
    )
    with scorer.evaluating():
        call = prepare(scorer, ids, {"attention_mask": torch.ones_like(ids)}, keep)
    exps = tuple(
        explain_call(scorer, call, method, j, runtime, None, params, start)
        for j in range(len(c) + 1)
    )
    rows = torch.stack([e.attributions[0, : len(p)] for e in exps])  # (C + 1, P)
    gaps = [e.extras.get("relative_gap") for e in exps]
    tokens = exps[0].tokens[0]
    return GenerationExplanation(
        method=exps[0].method,
        prompt_tokens=tokens[: len(p)],
        continuation_tokens=tokens[len(p) :],
        matrix=rows[:-1],
        total=rows[-1],
        log_probs=exps[0].scores[0, :-1],
        relative_gaps=None if gaps[0] is None else torch.cat(gaps),
        warnings=tuple(dict.fromkeys(w for e in exps for w in e.warnings)),
        explanations=exps,
    )
