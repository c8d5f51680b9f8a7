"""The embedding head every method shares, the attention pooling it is built on, and the base class of a method.

The head and the pooling follow PVSE's PIE-Net (yalesong/pvse model.py,
``MultiHeadSelfAttention`` and ``PIENet``), which PCME reuses unchanged (naver-ai/pcme
models/pie_model.py): the attention's hidden width is half its input width, its weights and
the residual Linear start Xavier-uniform with a zero bias.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class FeatureDims(NamedTuple):
    """What an encoder hands the heads: widths of its global and local features.

    ``global_is_joint``: the global feature is already D-dimensional and enters the
    head without a Linear (the text GRU's output in PVSE and PCME; the image's
    pooled CNN feature goes through a Linear first).
    """

    global_dim: int
    local_dim: int
    global_is_joint: bool = False


class AttentionPool(nn.Module):
    """K-head self-attention pooling of PVSE (Song & Soleymani 2019): softmax(W2 tanh(W1 x)) over positions."""

    def __init__(self, in_dim: int, heads: int):
        super().__init__()
        hidden_dim = max(1, in_dim // 2)  # d_in / 2, as pvse model.py and pcme models/*_encoder.py build it
        self.w1 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, heads, bias=False)
        nn.init.xavier_uniform_(self.w1.weight)
        nn.init.xavier_uniform_(self.w2.weight)

    def forward(self, local: torch.Tensor, mask: torch.Tensor):
        """(B, N, C) features and (B, N) mask -> pooled (B, K, C) and weights (B, K, N)."""
        scores = self.w2(torch.tanh(self.w1(local))).transpose(1, 2)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(dim=-1)
        return weights @ local, weights


def residual_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A Linear started Xavier-uniform with a zero bias (PIE-Net's ``fc``)."""
    linear = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class EmbeddingHead(nn.Module):
    """Global feature (through a Linear to D unless already D-dim) plus a residual from attention-pooled local features.

    out_k = LayerNorm(g + sigmoid(W_l pool_k(local))), L2-normalised, with g = W_g global
    (images) or the global feature itself (text); K attention heads give K embeddings
    (PVSE), one head the usual single embedding.
    """

    def __init__(self, features: FeatureDims, embed_dim: int, heads: int = 1):
        super().__init__()
        if features.global_is_joint and features.global_dim != embed_dim:
            raise ValueError(f"a global feature used as it is must be {embed_dim}-dim, got {features.global_dim}")
        self.global_fc = nn.Identity() if features.global_is_joint else nn.Linear(features.global_dim, embed_dim)
        self.attention = AttentionPool(features.local_dim, heads)
        self.local_fc = residual_linear(features.local_dim, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, global_feature, local, mask):
        """-> embeddings (B, K, D), L2-normalised, and the residuals (B, K, D) before the sum."""
        pooled, _ = self.attention(local, mask)
        residual = torch.sigmoid(self.local_fc(pooled))
        out = self.norm(self.global_fc(global_feature)[:, None, :] + residual)
        return F.normalize(out, dim=-1), residual


class BaseMethod(nn.Module, abc.ABC):
    """A method on the shared stack (``models/__init__.py`` describes the interface).

    It holds one ``EmbeddingHead`` per modality, ``image_head`` then ``caption_head`` (built
    first, so every method draws their initial weights alike), with ``heads`` (K) embeddings
    per item; ``embed`` exports them as ``embeddings`` (B, K, D), and ``similarity`` is the cosine
    of the first (K = 1). A method defines its ``loss`` and overrides what it does otherwise:
    ``embed`` (what one modality's features become), ``similarity``, and the optional hooks.
    """

    def __init__(self, image_dims: FeatureDims, text_dims: FeatureDims, embed_dim: int, heads: int = 1):
        super().__init__()
        self.image_head = EmbeddingHead(image_dims, embed_dim, heads)
        self.caption_head = EmbeddingHead(text_dims, embed_dim, heads)

    def head(self, modality: str) -> EmbeddingHead:
        """The embedding head of ``image`` or ``caption``."""
        return self.image_head if modality == "image" else self.caption_head

    def embed(self, modality: str, global_feature, local, mask) -> dict:
        """One modality's encoder features -> its dict of (B, ...) tensors (``image`` or ``caption``)."""
        return {"embeddings": self.head(modality)(global_feature, local, mask)[0]}

    def embed_images(self, global_feature, local, mask) -> dict:
        return self.embed("image", global_feature, local, mask)

    def embed_captions(self, global_feature, local, mask) -> dict:
        return self.embed("caption", global_feature, local, mask)

    def similarity(self, images: dict, captions: dict) -> torch.Tensor:
        """(N_i, N_c) cosines of the items' unit embeddings (the first of each)."""
        return images["embeddings"][:, 0] @ captions["embeddings"][:, 0].T

    @abc.abstractmethod
    def loss(self, images: dict, captions: dict, match: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The batch's scalar loss and a dict of detached scalars for the training log."""
