"""PCME++ (Chun, "Improved probabilistic image-text representations", ICLR 2024).

Each item is a Gaussian N(mu, diag(sigma^2)), as in PCME, but the match probability of an
image and a caption needs no sampling: it is sigmoid(-a CSD + b) of the closed-form sampled
distance CSD = ||mu_i - mu_c||^2 + sum_d (sigma_i^2 + sigma_c^2), the expected squared distance
of two samples. The objective is naver-ai/pcmepp's ``ClosedFormSampledDistanceLoss``
(pcmepp/criterions/pcmepp.py):

    L = 2 BCE(targets) + beta (VIB_image + VIB_caption) + alpha (BCE_i2t(pseudo) + BCE_t2i(pseudo))

BCE: binary cross-entropy with logits over every in-batch pair, mean-reduced (twice: i2t and
t2i are the same pairs); pseudo: the targets with every pair that outscores a row's positive
relabelled a positive (pseudo-positives); VIB: the KL to N(0, I) of each modality. The
training targets are built by the trainer (pcmepp/engine.py ``forward_step``): in-batch
duplicates of an image are positives, and images are mixed (mixup or cutmix per element, a
quarter of the batch, pcmepp/augmentation.py) with soft targets; with mixing off, the targets
are label-smoothed. That step changes the images, so it is the method's ``training_targets``
hook (models/__init__.py), kept here beside the loss it feeds.

Heads: mu from the shared ``EmbeddingHead`` (L2-normalised, as PCME++'s mean, img_encoder.py
``EncoderImageAggr``: l2norm unless no_imgnorm, false in configs/pcmepp.yaml), the uncertainty
from PCME's sigma heads (models/pcme.py), whose output is read as PCME++ reads its ``std``: a
log *variance* (criterions/pcmepp.py lines 92 and 55 add exp(std) as sigma^2). The exported
``log_sigma`` is std / 2, so the suite's ``csd`` scoring and its statistics see the same sigma^2.

Sigmoid convention: the standard one (BCEWithLogitsLoss in the original), so a and b are the
original's ``negative_scale`` and ``shift`` as they are (no factor 2, unlike PCME). They are
gradient-clipped with every other parameter: the original is a Lightning module whose
``gradient_clip_val`` clips all the optimiser's parameters, the criterion's included.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.heads import BaseMethod, FeatureDims
from models.pcme import TextUncertaintyHead, UncertaintyHead

# A modality's VIB term above this is dropped (criterions/pcmepp.py ``kl_divergence``, lines 56-59).
VIB_EXPLOSION = 1e4

_SMOOTHNESS_ALPHA = {
    "description": "alpha, the pseudo-positive losses' weight (0.1; 0 = no pseudo-positives).",
    "$ref": "#/$defs/per_dataset_number",
    "default": 0.1,
}
_MIX_BATCH_RATIO = {
    "description": "Expected fraction of a batch's images that are mixed (0.25; 0 = no mixing, label smoothing).",
    "type": "number",
    "minimum": 0,
    "maximum": 1,
    "default": 0.25,
}
# Its settings, each a JSON-schema fragment with the official default (configs/pcmepp.yaml).
_SETTINGS = {
    # configs/pcmepp.yaml train.grad_clip 2 with precision 32-true: Lightning clips every
    # parameter the optimiser holds, in fp32, a and b included (parameters_to_clip).
    "grad_clip": {"default": 2.0},
    "init_negative_scale": {
        "description": "Initial a of sigmoid(-a CSD + b), standard sigmoid (configs/pcmepp.yaml: 5).",
        "$ref": "#/$defs/per_dataset_number",
        "default": 5.0,
    },
    "init_shift": {
        "description": "Initial b of sigmoid(-a CSD + b) (configs/pcmepp.yaml: 5).",
        "$ref": "#/$defs/per_dataset_number",
        "default": 5.0,
    },
    "vib_beta": {
        "description": "beta, the VIB weight (1e-4; 0 = off).",
        "$ref": "#/$defs/per_dataset_number",
        "default": 1e-4,
    },
    "smoothness_alpha": _SMOOTHNESS_ALPHA,
    "mixup_alpha": {
        "description": "Beta(alpha, alpha) of mixup's lambda (2; 0 = no mixup).",
        "type": "number",
        "minimum": 0,
        "default": 2.0,
    },
    "cutmix_alpha": {
        "description": "Beta(alpha, alpha) of cutmix's lambda (2; 0 = no cutmix).",
        "type": "number",
        "minimum": 0,
        "default": 2.0,
    },
    "mixup_switch_prob": {
        "description": "With both on, the probability that a mixed element is cut-mixed rather than mixed up (0.5).",
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 0.5,
    },
    "mix_batch_ratio": _MIX_BATCH_RATIO,
    "mixup_smoothing": {
        "description": "Label smoothing of the mixed targets (1e-4).",
        "type": "number",
        "minimum": 0,
        "maximum": 0.5,
        "default": 1e-4,
    },
    "label_smoothing": {
        "description": "Label smoothing of the targets when nothing is mixed (1e-4).",
        "type": "number",
        "minimum": 0,
        "maximum": 0.5,
        "default": 1e-4,
    },
    "mixup_off_epoch": {
        "description": (
            "First (0-based) epoch without mixing; null = mixing in every epoch (the original's 30 exceeds its 25 epochs)."
        ),
        "type": ["integer", "null"],
        "minimum": 0,
        "default": None,
    },
    # the sigma heads' output bias holds log sigma^2 = 2 x this (PCME++'s std is a log variance)
    "init_log_sigma": {"$ref": "#/$defs/init_log_sigma", "default": None},
}
# The registry's entries (models/registry.py): PCME++ and its two ablations, each one of the
# paper's additions turned off by default (docs/sigma-study.md).
_PCMEPP = {
    "name": "pcmepp",
    "label": "PCME++",
    "color": "#da8bc3",
    "class": "PCMEPP",
    # csd: naver-ai/pcmepp evaluation.py ``compute_csd_sims`` (eval_by_csd in configs/pcmepp.yaml)
    "scorings": ["csd", "mu"],
    "probabilistic": True,
    "exports": {"items": ["mu", "log_sigma"]},
    "uncertainty": {"sigma": "log_sigma", "statistics": ["sum_sigma_sq", "mean_log_sigma"]},
    "note": (
        "PCME++'s own row ranks by minus the closed-form sampled distance (the official evaluation, "
        "compute_csd_sims); PCME++ (mu) ranks by the cosine of the means alone."
    ),
    "settings": _SETTINGS,
}
METHODS = [
    _PCMEPP,
    {
        **_PCMEPP,
        "name": "pcmepp-no-pp",
        "label": "PCME++ w/o PP",
        "color": "#937860",
        "note": "",
        "settings": {**_SETTINGS, "smoothness_alpha": {**_SMOOTHNESS_ALPHA, "default": 0.0}},
    },
    {
        **_PCMEPP,
        "name": "pcmepp-no-mix",
        "label": "PCME++ w/o mixing",
        "color": "#ccb974",
        "note": "",
        "settings": {**_SETTINGS, "mix_batch_ratio": {**_MIX_BATCH_RATIO, "default": 0.0}},
    },
]


# --- the objective (criterions/pcmepp.py) ---------------------------------------------------------


def closed_form_sampled_distance(image_mu, image_log_variance, caption_mu, caption_log_variance) -> torch.Tensor:
    """(N_i, D) and (N_c, D) Gaussians (log variances) -> (N_i, N_c) CSD.

    ||mu_i - mu_c||^2 + sum_d (sigma_i^2 + sigma_c^2), the squared distance from the
    differences as criterions/pcmepp.py ``_compute_closed_form_loss`` (lines 91-93).
    """
    squared = (image_mu[:, None, :] - caption_mu[None, :, :]).pow(2).sum(-1)
    spread = image_log_variance.exp().sum(-1)[:, None] + caption_log_variance.exp().sum(-1)[None, :]
    return squared + spread


def pseudo_positive_targets(targets: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise pseudo-positives: (relabelled targets, number of pseudo-positives).

    criterions/pcmepp.py ``_recompute_matched`` (lines 62-77): in each row, the largest
    target and its column; every pair whose logit is at least the logit there takes that
    largest target (the column itself included). The count leaves out one pair per row.
    """
    top, column = targets.max(dim=1)
    logits = logits.detach()
    pseudo = logits >= logits.gather(1, column[:, None])
    relabelled = torch.where(pseudo, top[:, None].expand_as(targets), targets)
    return relabelled, (pseudo.sum() - len(column)).float()


def vib_term(mu: torch.Tensor, log_variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One modality's VIB: -1/2 mean(1 + s - mu^2 - e^s) over items and dims, s the log variance.

    criterions/pcmepp.py ``kl_divergence`` (lines 54-60); a term above 1e4 is replaced by 0
    there (with a warning). Here the test runs on the device, with no host sync: the
    returned flag (1.0 where dropped) goes to the training log as ``vib_skipped``.
    """
    kl = -0.5 * (1 + log_variance - mu.pow(2) - log_variance.exp()).mean()
    exploded = kl > VIB_EXPLOSION
    return torch.where(exploded, torch.zeros_like(kl), kl), exploded.float()


# --- the training targets (engine.py forward_step, augmentation.py Mixup) ------------------------


class Mixing(NamedTuple):
    """One batch's mixing draws (elem mode): for each element i, what it takes from element B-1-i.

    ``lam`` (B,) float32: the fraction of element i's own image kept (1 = not mixed; cutmix rows
    corrected to the area kept); ``cutmix`` (B,) bool: a box pasted rather than a blend;
    ``boxes`` (B, 4) int64: the box rows y0:y1, columns x0:x1 (used on cutmix rows only).
    """

    lam: torch.Tensor
    cutmix: torch.Tensor
    boxes: torch.Tensor


def _beta(alpha: float, count: int) -> torch.Tensor:
    concentration = torch.tensor(float(alpha))
    return torch.distributions.Beta(concentration, concentration).sample((count,))


def draw_mixing(
    batch_size: int, height: int, width: int, mixup_alpha: float, cutmix_alpha: float, switch_prob: float, mix_ratio: float
) -> Mixing:
    """The mixing of a batch, drawn on the CPU from torch's global generator.

    augmentation.py ``Mixup._params_per_elem`` (lines 130-155, prob 1): per element, cutmix
    with ``switch_prob`` when both are on, lambda ~ Beta(alpha, alpha) of the chosen kind, and
    mixed at all with ``mix_ratio`` (there only when both kinds are on, lines 140-146; here
    whichever are on); cutmix boxes as ``rand_bbox`` (lines 37-58): side
    int(size sqrt(1 - lambda)), centre uniform over the image, clipped to it, lambda then
    corrected to the area kept (``cutmix_bbox_and_lam``, correct_lam, lines 84-94).
    """
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cutmix = torch.rand(batch_size) < switch_prob
        lam = torch.where(cutmix, _beta(cutmix_alpha, batch_size), _beta(mixup_alpha, batch_size))
    elif mixup_alpha > 0:
        cutmix = torch.zeros(batch_size, dtype=torch.bool)
        lam = _beta(mixup_alpha, batch_size)
    elif cutmix_alpha > 0:
        cutmix = torch.ones(batch_size, dtype=torch.bool)
        lam = _beta(cutmix_alpha, batch_size)
    else:
        raise ValueError("mixing needs mixup_alpha > 0 or cutmix_alpha > 0")
    if mix_ratio < 1:
        lam = torch.where(torch.rand(batch_size) < mix_ratio, lam, torch.ones_like(lam))
    lam = lam.float()
    centre_y = torch.randint(0, height, (batch_size,))
    centre_x = torch.randint(0, width, (batch_size,))
    side = (1 - lam).sqrt()
    half_h = (height * side).floor().long() // 2
    half_w = (width * side).floor().long() // 2
    boxes = torch.stack(
        [
            (centre_y - half_h).clamp(0, height),
            (centre_y + half_h).clamp(0, height),
            (centre_x - half_w).clamp(0, width),
            (centre_x + half_w).clamp(0, width),
        ],
        dim=1,
    )
    cutmix = cutmix & (lam != 1)
    area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).double()
    lam = torch.where(cutmix, (1 - area / (height * width)).float(), lam)
    return Mixing(lam, cutmix & (lam != 1), boxes)  # a box clipped to nothing leaves the element as it was


def mix_images(images: torch.Tensor, mixing: Mixing) -> torch.Tensor:
    """Element i of ``images`` mixed with element B-1-i of the original batch (augmentation.py
    ``Mixup._mix_elem``, lines 175-190): lam x_i + (1 - lam) x_j, or x_j's box pasted into x_i.

    In the images' dtype, device and memory format; unmixed elements are left as they are.
    """
    batch, _, height, width = images.shape
    device = images.device
    partner = images.flip(0)
    lam = mixing.lam.to(device=device, dtype=images.dtype).view(-1, 1, 1, 1)
    blend = (mixing.lam != 1) & ~mixing.cutmix
    out = torch.where(blend.to(device).view(-1, 1, 1, 1), images * lam + partner * (1 - lam), images)
    rows = torch.arange(height)[None, :]
    columns = torch.arange(width)[None, :]
    y0, y1, x0, x1 = mixing.boxes.unbind(1)
    inside = ((rows >= y0[:, None]) & (rows < y1[:, None]))[:, :, None] & ((columns >= x0[:, None]) & (columns < x1[:, None]))[
        :, None, :
    ]
    paste = (inside & mixing.cutmix.view(-1, 1, 1)).to(device).view(batch, 1, height, width)
    out = torch.where(paste, partner, out)
    if images.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def mixup_targets(lam: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(B, B) soft targets of a mixed batch: lam one-hot(i) + (1 - lam) one-hot(B-1-i), each one-hot
    label-smoothed (1 - s on, s off) (augmentation.py ``mixup_target``, lines 18-34)."""
    batch = len(lam)
    own = torch.full((batch, batch), float(smoothing))
    own.fill_diagonal_(1.0 - smoothing)
    lam = lam.float()[:, None]
    return own * lam + own.flip(0) * (1.0 - lam)


def smoothed_targets(match: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(1 - s) match + s (1 - match) (engine.py ``forward_step``, lines 154-158)."""
    match = match.float()
    return (1 - smoothing) * match + smoothing * (1 - match)


# --- the method ----------------------------------------------------------------------------------


class PCMEPP(BaseMethod):
    """Gaussian embeddings scored by their closed-form sampled distance; BCE, pseudo-positives, VIB, mixing."""

    def __init__(
        self,
        image_dims: FeatureDims,
        text_dims: FeatureDims,
        embed_dim: int,
        init_negative_scale: float = 5.0,
        init_shift: float = 5.0,
        vib_beta: float = 1e-4,
        smoothness_alpha: float = 0.1,
        mixup_alpha: float = 2.0,
        cutmix_alpha: float = 2.0,
        mixup_switch_prob: float = 0.5,
        mix_batch_ratio: float = 0.25,
        mixup_smoothing: float = 1e-4,
        label_smoothing: float = 1e-4,
        mixup_off_epoch: int | None = None,
        init_log_sigma: float | None = None,
    ):
        super().__init__(image_dims, text_dims, embed_dim)
        # the sigma heads' output is a log variance: log sigma starts at init_log_sigma
        init_log_variance = None if init_log_sigma is None else 2 * init_log_sigma
        self.image_sigma = UncertaintyHead(image_dims, embed_dim, init_log_variance)
        self.caption_sigma = TextUncertaintyHead(text_dims, embed_dim, init_log_variance)
        # criterions/pcmepp.py lines 24-31: a and b of sigmoid(-a CSD + b)
        self.negative_scale = nn.Parameter(torch.tensor(float(init_negative_scale)))
        self.shift = nn.Parameter(torch.tensor(float(init_shift)))
        self.vib_beta = vib_beta
        self.smoothness_alpha = smoothness_alpha
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.mixup_switch_prob = mixup_switch_prob
        self.mix_batch_ratio = mix_batch_ratio
        self.mixup_smoothing = mixup_smoothing
        self.label_smoothing = label_smoothing
        self.mixup_off_epoch = mixup_off_epoch
        self.epoch = 0

    @property
    def a(self) -> torch.Tensor:
        return self.negative_scale

    @property
    def b(self) -> torch.Tensor:
        return self.shift

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def mixing(self) -> bool:
        """Whether this epoch mixes images (engine.py ``on_train_epoch_start``, lines 256-275).

        Unlike there, ``mix_batch_ratio`` 0 means no mixer at all (label smoothing, whole odd
        batches) and ``mixup_off_epoch`` 0 means no mixing from the start (a falsy 0 never stops it there).
        """
        on = (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_batch_ratio > 0
        return on and (self.mixup_off_epoch is None or self.epoch < self.mixup_off_epoch)

    def embed(self, modality: str, global_feature, local, mask) -> dict:
        """mu (the shared head's embedding) and log sigma: half the sigma head's output, a log variance."""
        sigma_head = self.image_sigma if modality == "image" else self.caption_sigma
        mu = self.head(modality)(global_feature, local, mask)[0][:, 0]
        log_variance = sigma_head(global_feature, local, mask)
        return {"mu": mu, "log_sigma": log_variance / 2}

    def similarity(self, images: dict, captions: dict) -> torch.Tensor:
        """Minus the closed-form sampled distance (evaluation.py ``compute_csd_sims``)."""
        return -closed_form_sampled_distance(images["mu"], 2 * images["log_sigma"], captions["mu"], 2 * captions["log_sigma"])

    def training_targets(self, images: torch.Tensor, image_ids: torch.Tensor, match: torch.Tensor):
        """The training batch's images and (B', B') float targets (engine.py ``forward_step``, lines 127-158).

        Pairs showing the same image are positives besides ``match`` (lines 130-140). With
        mixing on, an odd batch drops its last pair (lines 143-149), the images are mixed and
        the targets are the mixed ones, which replace the duplicates' (lines 152-153);
        otherwise the targets are ``match`` label-smoothed.
        """
        match = match | (image_ids[:, None] == image_ids[None, :])
        batch = len(images)
        if not self.mixing or batch < 2:
            return images, smoothed_targets(match, self.label_smoothing)
        batch -= batch % 2
        images = images[:batch]
        mixing = draw_mixing(
            batch,
            images.shape[-2],
            images.shape[-1],
            self.mixup_alpha,
            self.cutmix_alpha,
            self.mixup_switch_prob,
            self.mix_batch_ratio,
        )
        return mix_images(images, mixing), mixup_targets(mixing.lam, self.mixup_smoothing).to(match.device)

    def loss(self, images: dict, captions: dict, match: torch.Tensor):
        """criterions/pcmepp.py ``ClosedFormSampledDistanceLoss.forward`` (lines 114-150).

        ``match``: the float targets of ``training_targets``, or a bool match matrix (no hook).
        """
        targets = match.float()
        image_log_variance, caption_log_variance = 2 * images["log_sigma"], 2 * captions["log_sigma"]
        distance = closed_form_sampled_distance(images["mu"], image_log_variance, captions["mu"], caption_log_variance)
        logits = -self.negative_scale * distance + self.shift
        match_loss = F.binary_cross_entropy_with_logits(logits, targets)
        total = 2 * match_loss  # i2t and t2i are the same pairs (line 132)
        zero = torch.zeros((), device=logits.device)
        vib, vib_skipped = zero, zero
        if self.vib_beta:
            image_vib, image_skipped = vib_term(images["mu"], image_log_variance)
            caption_vib, caption_skipped = vib_term(captions["mu"], caption_log_variance)
            vib, vib_skipped = image_vib + caption_vib, image_skipped + caption_skipped
            total = total + self.vib_beta * vib
        pseudo_loss, pseudo_count = zero, zero
        if self.smoothness_alpha:  # lines 143-148: i2t on the rows, t2i on the transposed targets
            i2t_targets, i2t_count = pseudo_positive_targets(targets, logits)
            t2i_targets, t2i_count = pseudo_positive_targets(targets.T, logits.T)
            pseudo_loss = F.binary_cross_entropy_with_logits(logits, i2t_targets) + F.binary_cross_entropy_with_logits(
                logits.T, t2i_targets
            )
            pseudo_count = i2t_count + t2i_count
            total = total + self.smoothness_alpha * pseudo_loss
        stats = {
            "match_loss": match_loss.detach(),
            "pseudo_loss": pseudo_loss.detach(),
            "pseudo_positives": pseudo_count.detach(),
            "vib": vib.detach(),
            "vib_skipped": vib_skipped.detach(),
            "a": self.a.detach(),
            "b": self.b.detach(),
            "image_log_sigma": images["log_sigma"].detach().mean(),
            "caption_log_sigma": captions["log_sigma"].detach().mean(),
        }
        return total, stats
