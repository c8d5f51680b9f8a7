"""The embedding head every method shares, and the attention pooling it is built on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionPool(nn.Module):
    """K-head self-attention pooling of PVSE (Song & Soleymani 2019): softmax(W2 tanh(W1 x)) over positions."""

    def __init__(self, in_dim: int, hidden_dim: int, heads: int):
        super().__init__()
        self.w1 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, heads, bias=False)

    def forward(self, local: torch.Tensor, mask: torch.Tensor):
        """(B, N, C) features and (B, N) mask -> pooled (B, K, C) and weights (B, K, N)."""
        scores = self.w2(torch.tanh(self.w1(local))).transpose(1, 2)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(dim=-1)
        return weights @ local, weights


class EmbeddingHead(nn.Module):
    """Global feature -> Linear to D, plus a residual from attention-pooled local features.

    out_k = LayerNorm(W_g g + sigmoid(W_l pool_k(local))), L2-normalised; K
    attention heads give K embeddings (PVSE), one head the usual single embedding.
    """

    def __init__(self, global_dim: int, local_dim: int, embed_dim: int, heads: int = 1):
        super().__init__()
        self.global_fc = nn.Linear(global_dim, embed_dim)
        self.attention = AttentionPool(local_dim, embed_dim // 2, heads)
        self.local_fc = nn.Linear(local_dim, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, global_feature, local, mask):
        """-> embeddings (B, K, D), L2-normalised, and the residuals (B, K, D) before the sum."""
        pooled, _ = self.attention(local, mask)
        residual = torch.sigmoid(self.local_fc(pooled))
        out = self.norm(self.global_fc(global_feature)[:, None, :] + residual)
        return F.normalize(out, dim=-1), residual
