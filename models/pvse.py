"""PVSE (Song & Soleymani, CVPR 2019): K embeddings per item from K attention heads.

Similarity is the best of the K x K cosines; the loss is the multiple-instance
triplet loss with the hardest negative (margin 0.1), a diversity regulariser
(weight 0.1) that keeps the K embeddings of one item apart, and an MMD term
(weight 0.01) that pulls the image and text embedding distributions together.
As in yalesong/pvse loss.py (``PVSELoss``, ``reduction='mean'``): the triplet term
is a mean over anchors (VSE++ sums), and the diversity and MMD terms apply only
when K > 1, so PVSE K=1 is the MIL triplet term alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.heads import BaseMethod, FeatureDims
from models.vse import HardestNegativeSchedule, hinge_triplet_loss

_SETTINGS = {
    "margin": {"description": "The MIL triplet loss's margin (0.1 in PVSE).", "type": "number", "exclusiveMinimum": 0},
    "diversity_weight": {"description": "Weight of the diversity term (0.1).", "type": "number", "minimum": 0},
    "mmd_weight": {"description": "Weight of the MMD term (0.01).", "type": "number", "minimum": 0},
    "warmup_epochs": {"$ref": "#/$defs/warmup_epochs", "default": 0},
    # yalesong/pvse option.py --grad_clip 2; train.py clips model.parameters(), in fp32
    "grad_clip": {"default": 2.0},
}
_EMBEDDINGS = {"description": "K, embeddings per item (attention heads).", "type": "integer", "minimum": 1, "maximum": 8}
_PVSE = {"class": "PVSE", "scorings": ["max-cosine"], "probabilistic": False, "exports": {"items": ["embeddings"]}}
# The registry's entries (models/registry.py): PVSE with K = 1 and K = 2.
METHODS = [
    {**_PVSE, "name": "pvse-k1", "label": "PVSE K=1", "color": "#dd8452",
     "settings": {**_SETTINGS, "embeddings": {**_EMBEDDINGS, "default": 1}}},
    {**_PVSE, "name": "pvse-k2", "label": "PVSE K=2", "color": "#c44e52",
     "settings": {**_SETTINGS, "embeddings": {**_EMBEDDINGS, "default": 2}}},
]  # fmt: skip


def max_cosine(image_embeddings: torch.Tensor, caption_embeddings: torch.Tensor) -> torch.Tensor:
    """(N_i, K, D) and (N_c, K, D) unit vectors -> (N_i, N_c): the largest of the K x K cosines."""
    k = image_embeddings.shape[1]
    flat = image_embeddings.flatten(0, 1) @ caption_embeddings.flatten(0, 1).T
    return flat.unflatten(0, (-1, k)).unflatten(2, (-1, k)).amax(dim=(1, 3))


def diversity_loss(residuals: torch.Tensor) -> torch.Tensor:
    """Mean over items of ||R R^T - I||_F / K^2, R the item's K L2-normalised residuals."""
    r = F.normalize(residuals, dim=-1)
    k = r.shape[1]
    gram = r @ r.transpose(1, 2) - torch.eye(k, device=r.device, dtype=r.dtype)
    return (gram.flatten(1).norm(dim=1) / k**2).mean()


def mmd_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Maximum mean discrepancy between samples x and y with PVSE's kernel exp(-0.5 ||a - b||).

    The kernel takes the plain (not squared) Euclidean distance, as PVSE's code does.
    """

    def kernel(a, b):
        return torch.exp(-0.5 * torch.cdist(a, b))

    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


class PVSE(BaseMethod):
    """K embeddings per image and caption; max-of-K x K cosine; MIL triplet + diversity + MMD."""

    def __init__(
        self,
        image_dims: FeatureDims,
        text_dims: FeatureDims,
        embed_dim: int,
        embeddings: int,
        margin: float,
        diversity_weight: float,
        mmd_weight: float,
        warmup_epochs: int = 0,
    ):
        super().__init__(image_dims, text_dims, embed_dim, heads=embeddings)
        self.embeddings = embeddings
        self.margin = margin
        self.hardest_negatives = HardestNegativeSchedule(True, warmup_epochs)
        self.diversity_weight = diversity_weight
        self.mmd_weight = mmd_weight

    def embed(self, modality: str, global_feature, local, mask) -> dict:
        """The K embeddings and, for the diversity term, their K residuals before the sum."""
        embeddings, residuals = self.head(modality)(global_feature, local, mask)
        return {"embeddings": embeddings, "residuals": residuals}

    def similarity(self, images: dict, captions: dict) -> torch.Tensor:
        return max_cosine(images["embeddings"], captions["embeddings"])

    def set_epoch(self, epoch: int) -> None:
        self.hardest_negatives.epoch = epoch

    def loss(self, images: dict, captions: dict, match: torch.Tensor):
        similarity = self.similarity(images, captions)
        triplet = hinge_triplet_loss(similarity, match, self.margin, self.hardest_negatives.active, reduction="mean")
        stats = {"triplet": triplet.detach()}
        if self.embeddings == 1:  # one embedding: nothing to diversify, and PVSE adds no MMD either
            return triplet, stats
        diversity = diversity_loss(images["residuals"]) + diversity_loss(captions["residuals"])
        mmd = mmd_loss(images["embeddings"].flatten(0, 1), captions["embeddings"].flatten(0, 1))
        total = triplet + self.diversity_weight * diversity + self.mmd_weight * mmd
        return total, {**stats, "diversity": diversity.detach(), "mmd": mmd.detach()}
