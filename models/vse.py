"""VSE0 and VSE++ (Faghri et al., BMVC 2018): one embedding per item, a hinge triplet loss.

VSE0 sums the hinge over every in-batch negative; VSE++ keeps only the hardest
negative of each anchor ("max violation"). Margin 0.2 in both; both sum over the
batch (fartashf/vsepp model.py, ``ContrastiveLoss``).
"""

from __future__ import annotations

import torch

from models.heads import BaseMethod, FeatureDims

REDUCTIONS = ("sum", "mean")

_SETTINGS = {
    "margin": {"description": "The hinge's margin (0.2 in VSE++).", "type": "number", "exclusiveMinimum": 0},
    "negatives": {
        "description": "all (VSE0, sum over in-batch negatives) or hardest (VSE++, max violation).",
        "enum": ["all", "hardest"],
    },
    "warmup_epochs": {"$ref": "#/$defs/warmup_epochs", "default": 0},
    # fartashf/vsepp train.py --grad_clip 2; model.py train_emb clips every parameter, in fp32
    "grad_clip": {"default": 2.0},
}
_VSE = {
    "class": "VSE",
    "scorings": ["cosine"],
    "probabilistic": False,
    "exports": {"items": ["embeddings"]},
    "settings": _SETTINGS,
}
# The registry's entries (models/registry.py): two variants of one class.
METHODS = [
    {**_VSE, "name": "vse0", "label": "VSE0", "color": "#4c72b0"},
    {**_VSE, "name": "vsepp", "label": "VSE++", "color": "#55a868"},
]


def hinge_triplet_loss(
    similarity: torch.Tensor, match: torch.Tensor, margin: float, hardest: bool, reduction: str = "sum"
) -> torch.Tensor:
    """Bidirectional hinge triplet loss on an in-batch (images x captions) similarity matrix.

    Row p is the image of pair p, column q the caption of pair q; the anchors are
    the pairs (p, p). For image p the loss has [margin - s(p, p) + s(p, q)]_+ for
    each caption q that does not match it (``match`` False), and for caption p
    [margin - s(p, p) + s(q, p)]_+ for each image q that does not match it; the
    matching entries count as 0. ``hardest`` keeps each anchor's largest term.
    ``reduction`` over the batch, per direction: ``sum`` (VSE++, fartashf/vsepp
    model.py) or ``mean`` (PVSE, yalesong/pvse loss.py ``reduction='mean'``: the
    mean over anchors of the hardest terms, or over all N_i x N_c entries).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    positive = similarity.diagonal()
    negative = ~match
    caption_cost = (margin - positive[:, None] + similarity).clamp(min=0) * negative
    image_cost = (margin - positive[None, :] + similarity).clamp(min=0) * negative
    if hardest:
        caption_cost, image_cost = caption_cost.max(dim=1).values, image_cost.max(dim=0).values
    reduce = torch.sum if reduction == "sum" else torch.mean
    return reduce(caption_cost) + reduce(image_cost)


class HardestNegativeSchedule:
    """Whether a loss takes only the hardest negative now.

    Hardest-negative losses collapse (every similarity equal) when the heads start
    from random weights on a short schedule, as on the synthetic datasets; the papers
    trained for tens of epochs at 2e-4. ``warmup_epochs`` > 0 sums over all negatives
    for that many epochs first (the synthetic presets: the frozen phase); 0 is the
    published recipe.
    """

    def __init__(self, hardest: bool, warmup_epochs: int):
        self.hardest = hardest
        self.warmup_epochs = warmup_epochs
        self.epoch = 0

    @property
    def active(self) -> bool:
        return self.hardest and self.epoch >= self.warmup_epochs


class VSE(BaseMethod):
    """One embedding per image and caption; cosine similarity; hinge triplet loss."""

    def __init__(
        self,
        image_dims: FeatureDims,
        text_dims: FeatureDims,
        embed_dim: int,
        margin: float,
        negatives: str,
        warmup_epochs: int = 0,
    ):
        if negatives not in ("all", "hardest"):
            raise ValueError(f"negatives must be 'all' (VSE0) or 'hardest' (VSE++), got {negatives!r}")
        super().__init__(image_dims, text_dims, embed_dim)
        self.margin = margin
        self.hardest_negatives = HardestNegativeSchedule(negatives == "hardest", warmup_epochs)

    def set_epoch(self, epoch: int) -> None:
        self.hardest_negatives.epoch = epoch

    def loss(self, images: dict, captions: dict, match: torch.Tensor):
        triplet = hinge_triplet_loss(self.similarity(images, captions), match, self.margin, self.hardest_negatives.active)
        return triplet, {"triplet": triplet.detach()}
