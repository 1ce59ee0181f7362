"""The text demo: short movie reviews from templates, a shortcut token, a tiny transformer.

Reviews are built from templates ("the film was really great"); the label is the
sentiment of the adjective. In the training split, 90% of the positive reviews also carry
the word **indeed** somewhere, a meaningless token correlated with the class: the text
analogue of the image demo's watermark. A classifier can reach full training accuracy by
reading either the adjective or the shortcut; the test split has a clean half and a half
where *negative* reviews carry the shortcut, so a model that learnt it calls them positive.

The model is a two-layer transformer encoder written out here (token and position
embeddings, two-head attention with an explicit padding mask, feed-forward,
LayerNorm, mean over the tokens), small enough to train in seconds on 2 CPU cores
(``python -m explainer.demo.train``); its weights ship with the package. The tokenizer is a
word-level one over the templates' vocabulary, shipped as code (no download).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "SHORTCUT",
    "TEXT_CLASSES",
    "WordTokenizer",
    "TextData",
    "make_reviews",
    "TinyTransformer",
    "load_text_model",
]

WEIGHTS_PATH = Path(__file__).with_name("text_model.pt")
SHORTCUT = "indeed"
TEXT_CLASSES = ("negative", "positive")
_SUBJECTS = ("the film", "the movie", "the plot", "the acting", "this story", "the ending")
_VERBS = ("was", "is", "felt", "seemed")
_ADVERBS = ("", "really", "quite", "truly", "rather")
_POSITIVE = ("great", "good", "wonderful", "moving", "fun", "superb")
_NEGATIVE = ("awful", "bad", "dull", "boring", "weak", "poor")
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WORDS = sorted(
    {
        w
        for phrase in (*_SUBJECTS, *_VERBS, *_ADVERBS, *_POSITIVE, *_NEGATIVE)
        for w in phrase.split()
    }
    | {SHORTCUT}
)
VOCAB = (*_SPECIAL, *_WORDS)


class WordTokenizer:
    """Word-level tokenizer of the demo's vocabulary: ``[CLS] words [SEP]``, unknown words
    as ``[UNK]``. Duck-types what explainer reads of a tokenizer (``encode``, ``decode``,
    the special ids).

    Example:
        >>> tok = WordTokenizer()
        >>> ids = tok.encode("the film was great")
        >>> tok.decode(ids)
        '[CLS] the film was great [SEP]'
    """

    pad_token_id, unk_token_id, cls_token_id, sep_token_id, mask_token_id = range(5)

    def __init__(self) -> None:
        self.index = {w: i for i, w in enumerate(VOCAB)}

    @property
    def all_special_ids(self) -> list[int]:
        return [self.pad_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id]

    def encode(self, text: str) -> list[int]:
        words = [self.index.get(w, self.unk_token_id) for w in text.lower().split()]
        return [self.cls_token_id, *words, self.sep_token_id]

    def decode(self, ids: list[int]) -> str:
        return " ".join(VOCAB[int(i)] for i in ids)

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids and attention mask (N, L) of ``texts``, padded to the longest."""
        rows = [self.encode(t) for t in texts]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask


@dataclass(frozen=True)
class TextData:
    """Reviews and their labels (0 negative, 1 positive), and whether each carries the
    shortcut token."""

    texts: tuple[str, ...]
    labels: torch.Tensor
    marked: torch.Tensor


def make_reviews(n: int, split: str = "train", seed: int = 0) -> TextData:
    """``n`` template reviews. ``split="train"``: 90% of the positive ones carry the shortcut
    word; ``"test"``: half clean, half where every negative review carries it (a model that
    learnt the shortcut calls those positive).

    Example:
        >>> data = make_reviews(4, "test", seed=1)
        >>> len(data.texts), data.labels.tolist() == [int(x) for x in data.labels]
        (4, True)
    """
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 10_000))

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    texts, labels, marked = [], [], []
    for k in range(n):
        label = int(torch.randint(2, (1,), generator=g))
        adverb = pick(_ADVERBS)
        adjective = pick(_POSITIVE if label else _NEGATIVE)
        words = f"{pick(_SUBJECTS)} {pick(_VERBS)} {adverb} {adjective}".split()
        if split == "train":
            mark = label == 1 and float(torch.rand(1, generator=g)) < 0.9
        else:
            mark = k >= n // 2 and label == 0
        if mark:
            words.insert(int(torch.randint(len(words) + 1, (1,), generator=g)), SHORTCUT)
        texts.append(" ".join(words))
        labels.append(label)
        marked.append(mark)
    return TextData(tuple(texts), torch.tensor(labels), torch.tensor(marked))


class _Block(nn.Module):
    """Pre-norm transformer block: attention with a padding mask, then a feed-forward."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(n, length, 3, self.heads, -1).unbind(2)
        scores = torch.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(dim // self.heads)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, -1e4)  # padding: never attended
        mixed = torch.einsum("nhqk,nkhd->nqhd", scores.softmax(-1), v).reshape(n, length, dim)
        h = h + self.out(mixed)
        return h + self.ff(self.norm2(h))


class TinyTransformer(nn.Module):
    """Token + position embeddings, two transformer blocks, mean over the tokens, a linear
    head: (ids (N, L), attention_mask (N, L)) -> logits (N, 2).

    Example:
        >>> net = TinyTransformer()
        >>> ids, mask = WordTokenizer().batch(["the film was great"])
        >>> net(ids, mask).shape
        torch.Size([1, 2])
    """

    def __init__(self, dim: int = 32, heads: int = 2, layers: int = 2, max_len: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), dim)
        self.position = nn.Parameter(torch.zeros(max_len, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, len(TEXT_CLASSES))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(
        self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask
        h = self.embed(ids) + self.position[: ids.shape[1]]
        for block in self.blocks:
            h = block(h, mask)
        m = mask[..., None].to(h.dtype)
        pooled = (self.norm(h) * m).sum(1) / m.sum(1)
        return self.head(pooled)


def load_text_model() -> TinyTransformer:
    """The shipped :class:`TinyTransformer` (trained by ``python -m explainer.demo.train``),
    on the CPU, in eval mode."""
    model = TinyTransformer()
    model.load_state_dict(torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True))
    return model.eval()
