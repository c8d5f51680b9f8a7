"""PCME (Chun et al., CVPR 2021): each item is a Gaussian N(mu, diag(sigma^2)) in the joint space.

mu comes from the shared embedding head; log sigma from a second head with its
own attention branch over the same local features. Training draws J samples
z = mu + eps * sigma per item; the match probability of an image and a caption is
the mean over the J x J sample pairs of sigmoid(-a ||z_i - z_c|| + b), with a and
b learned. The objective is naver-ai/pcme's (criterions/probemb.py,
``MCSoftContrastiveLoss``):

    L = NLL(i2t) + NLL(t2i) + lambda * U + beta * (KL_image + KL_caption)

NLL: the soft contrastive loss -log p (matches) or -log(1 - p) (non-matches)
summed over every in-batch (image, caption) pair, once per direction (the same
pairs, so twice the sum); the distance is sqrt(||z_i - z_c||^2 + 1e-6).
``kl_form`` and ``uniformity_form`` choose the regularisers' form: the official
code's (the paper preset) or a corrected one (see ``kl_divergence`` and
``uniformity_loss``); ``reduction: mean`` divides the whole objective by the
number of contrastive terms (2 N_i N_c), keeping beta and lambda's weight.

Sigmoid convention: the standard sigmoid 1 / (1 + e^-x). The official code's
"sigmoid" is e^x / (e^x + e^-x) = sigmoid(2x), so its initial a = b = 15 (COCO)
and 5 (CUB) are a = b = 30 and 10 here (``init_scale``). The learned parameters
are the official ones (``negative_scale`` = a / 2, ``shift`` = b / 2): Adam's step
does not scale with the gradient, so a parameter in standard units would move
half as far per step as the original's a and b did.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from models.encoders import last_position, run_gru
from models.heads import AttentionPool, BaseMethod, FeatureDims, residual_linear

KL_FORMS = ("log-variance", "log-sigma")
UNIFORMITY_FORMS = ("raw-subsampled", "normalised")
REDUCTIONS = ("sum", "mean")
# The official uniformity keeps pdist small: at most 16,384 pairs' worth of points,
# i.e. 128 points drawn with replacement (criterions/probemb.py ``uniform_loss``).
UNIFORMITY_MAX_POINTS = 128
# Inside the square root of every training distance (criterions/probemb.py ``batchwise_cdist``).
DISTANCE_EPS = 1e-6

# The registry's entry (models/registry.py).
METHODS = [
    {
        "name": "pcme",
        "label": "PCME",
        "color": "#8172b3",
        "class": "PCME",
        "scorings": ["match-prob", "sample-dot", "mu", "csd"],
        "probabilistic": True,
        # mu, log sigma and J samples per item (the samples drawn again at export from a fixed
        # seed: draw_samples), and the learned a and b that match-prob scores with
        "exports": {"items": ["mu", "log_sigma", "samples"], "drawn": "samples", "learned": ["a", "b"]},
        "uncertainty": {"sigma": "log_sigma", "statistics": ["mean_log_sigma", "sum_sigma_sq"]},
        "note": (
            "PCME's own row ranks by match probability, the official COCO evaluation (evaluate_recall_coco.py); PCME "
            "(sample-dot), the sum of the J x J sample inner products, is what the official evaluate_cub.py runs with "
            "the shipped CUB config (eval_method matmul)."
        ),
        "settings": {
            # None: what the official runs effectively did. engine/trainer.py clips
            # self.model.parameters() at 2 after amp.scale_loss, but with use_fp16 (apex O2) those are
            # the fp16 model copies, whose gradients apex has already copied, unscaled, into the fp32
            # master copies the optimiser steps (apex amp/_process_optimizer.py,
            # post_backward_with_master_weights); a and b sit in the criterion, never clipped. Only
            # the backbone's BatchNorm weights (fp32 under O2) felt it: docs/deviations.md.
            "grad_clip": {"default": None},
            "samples": {"description": "Samples J per embedding (7 in the paper).", "type": "integer", "minimum": 1},
            "init_scale": {
                "description": "Initial a = b of sigmoid(-a d + b), standard sigmoid (the official 15/5 are 30/10 here).",
                "$ref": "#/$defs/per_dataset_number",
            },
            "kl_weight": {"description": "beta (1e-5 COCO, 1e-3 CUB).", "$ref": "#/$defs/per_dataset_number"},
            "uniformity_weight": {"description": "lambda (0 COCO, 10 CUB).", "$ref": "#/$defs/per_dataset_number"},
            "init_log_sigma": {"$ref": "#/$defs/init_log_sigma", "default": None},
            "kl_form": {
                "description": (
                    "log-variance (the official code: -1/2 sum(1 + s - mean_z^2 - e^s), the log-sigma output s read as "
                    "a log variance, mean_z the samples' mean) or log-sigma (the KL of N(mu, e^(2s)) that sampling "
                    "uses). Summed over items and dimensions."
                ),
                "enum": ["log-variance", "log-sigma"],
                "default": "log-variance",
            },
            "uniformity_form": {
                "description": (
                    "raw-subsampled (the official code: the raw samples, at most 128 drawn with replacement; unbounded "
                    "below) or normalised (every sample, L2-normalised, as Wang & Isola define it)."
                ),
                "enum": ["raw-subsampled", "normalised"],
                "default": "raw-subsampled",
            },
            "reduction": {
                "description": (
                    "sum (the official objective: every pair, both directions, KL summed) or mean (the same objective "
                    "divided by its number of contrastive terms, 2 x batch^2; weights unchanged)."
                ),
                "enum": ["sum", "mean"],
                "default": "sum",
            },
        },
    }
]


class UncertaintyHead(nn.Module):
    """Image log sigma (D-dim, unconstrained) = W_g g + W_l pool(local), with its own attention branch.

    As naver-ai/pcme models/uncertainty_module.py (``UncertaintyModuleImage``): the
    pooled-feature Linear keeps PyTorch's initialisation, the attention branch's
    Linear starts Xavier-uniform with a zero bias.

    ``init_log_sigma``: where log sigma starts (the output biases; None keeps the
    official initialisation). With it, sigma starts near 1 per dimension, noise of norm
    sqrt(D) around a unit-norm mu.
    """

    def __init__(self, features: FeatureDims, embed_dim: int, init_log_sigma: float | None = None):
        super().__init__()
        self.global_fc = nn.Linear(features.global_dim, embed_dim)
        self.attention = AttentionPool(features.local_dim, heads=1)
        self.local_fc = residual_linear(features.local_dim, embed_dim)
        if init_log_sigma is not None:
            nn.init.constant_(self.global_fc.bias, init_log_sigma)

    def forward(self, global_feature, local, mask):
        pooled, _ = self.attention(local, mask)
        return self.global_fc(global_feature) + self.local_fc(pooled[:, 0])


class TextUncertaintyHead(nn.Module):
    """Caption log sigma = W_l pool(word vectors) + the last output of its own bi-GRU over the word vectors.

    As naver-ai/pcme models/uncertainty_module.py (``UncertaintyModuleText``): the
    sigma branch does not share the caption encoder's GRU. ``init_log_sigma`` sets
    the attention branch's output bias (the GRU's output lies in (-1, 1)).
    """

    def __init__(self, features: FeatureDims, embed_dim: int, init_log_sigma: float | None = None):
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even for a bidirectional GRU, got {embed_dim}")
        self.attention = AttentionPool(features.local_dim, heads=1)
        self.local_fc = residual_linear(features.local_dim, embed_dim)
        self.gru = nn.GRU(features.local_dim, embed_dim // 2, batch_first=True, bidirectional=True)
        if init_log_sigma is not None:
            nn.init.constant_(self.local_fc.bias, init_log_sigma)

    def forward(self, global_feature, local, mask):
        pooled, _ = self.attention(local, mask)
        lengths = mask.sum(dim=1)
        return self.local_fc(pooled[:, 0]) + last_position(run_gru(self.gru, local, lengths), lengths)


def sample_embeddings(mu: torch.Tensor, log_sigma: torch.Tensor, samples: int, generator: torch.Generator | None = None):
    """(B, D) mean and log sigma -> (B, J, D) samples mu + eps * sigma (reparameterised)."""
    eps = torch.randn((mu.shape[0], samples, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    return mu[:, None, :] + eps * log_sigma.exp()[:, None, :]


def _log_mean_exp(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    count = math.prod(x.shape[d] for d in dims)
    return torch.logsumexp(x, dim=dims) - math.log(count)


def soft_contrastive_nll(image_samples, caption_samples, match, a, b) -> torch.Tensor:
    """(N_i, N_c) per-pair soft contrastive loss: -log p (``match``) or -log(1 - p) (non-match).

    p = mean over the J x J sample pairs of sigmoid(-a d + b), d = sqrt(||z_i - z_c||^2 + 1e-6)
    (criterions/probemb.py ``batchwise_cdist`` and ``soft_contrastive_nll``), in log space.
    """
    j_i, j_c = image_samples.shape[1], caption_samples.shape[1]
    x, y = image_samples.flatten(0, 1), caption_samples.flatten(0, 1)
    squared = (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2 * x @ y.T).clamp(min=0)
    distance = (squared + DISTANCE_EPS).sqrt()
    logits = (-a * distance + b).unflatten(0, (-1, j_i)).unflatten(2, (-1, j_c))  # (N_i, J, N_c, J)
    log_p = _log_mean_exp(F.logsigmoid(logits), (1, 3))
    log_not_p = _log_mean_exp(F.logsigmoid(-logits), (1, 3))
    return -torch.where(match, log_p, log_not_p)


def kl_divergence(mu: torch.Tensor, log_sigma: torch.Tensor, samples: torch.Tensor, form: str) -> torch.Tensor:
    """KL to N(0, I), summed over items and dimensions, in one of two forms.

    ``log-variance`` (the official code, criterions/probemb.py ``kl_divergence``):
    -1/2 sum(1 + s - mean_z^2 - e^s) with s the log-sigma output read as a log
    *variance* and mean_z the mean of the item's J samples, although sampling uses
    e^s as sigma; its minimum is at sigma = 1. ``log-sigma``: the KL of the Gaussian
    the samples come from, N(mu, e^(2s)): 1/2 sum(e^(2s) + mu^2 - 1 - 2s).
    """
    if form == "log-variance":
        return -0.5 * (1 + log_sigma - samples.mean(dim=1).pow(2) - log_sigma.exp()).sum()
    if form == "log-sigma":
        return 0.5 * ((2 * log_sigma).exp() + mu.pow(2) - 1 - 2 * log_sigma).sum()
    raise ValueError(f"kl_form must be one of {KL_FORMS}, got {form!r}")


def uniformity_loss(points: torch.Tensor, form: str, t: float = 2.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformity of Wang & Isola (2020): log of the mean over distinct pairs of exp(-t ||x - y||^2).

    ``raw-subsampled`` (the official code, criterions/probemb.py ``uniform_loss``): on
    the raw samples; when there are more than 128 points, on 128 of them drawn with
    replacement (a point drawn twice makes a pair at distance 0). On raw samples the
    loss has no lower bound: spreading the samples (a larger sigma, a longer mu)
    lowers it without limit. ``normalised``: on every point, L2-normalised first, as
    Wang & Isola define it, bounded below.
    """
    flat = points.flatten(0, -2)
    if form == "raw-subsampled":
        if len(flat) > UNIFORMITY_MAX_POINTS:
            drawn = torch.randint(len(flat), (UNIFORMITY_MAX_POINTS,), generator=generator)
            flat = flat[drawn.to(flat.device)]
    elif form == "normalised":
        flat = F.normalize(flat, dim=-1)
    else:
        raise ValueError(f"uniformity_form must be one of {UNIFORMITY_FORMS}, got {form!r}")
    squared = torch.pdist(flat).pow(2)
    return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())


@torch.no_grad()
def match_probability(
    image_samples, caption_samples, a, b, tile_bytes: int | None = None, tile_captions: int | None = None, workers=None
) -> torch.Tensor:
    """(N_i, J, D) and (N_c, J, D) samples -> (N_i, N_c) mean over J x J of sigmoid(-a d + b).

    An evaluation function (no gradient). Distances come from matrix products
    (||x||^2 + ||y||^2 - 2 x.y), one tile of images x captions at a time, so memory stays
    near ``tile_bytes`` (a tile's J x J distances) whatever N_i and N_c; the work runs on
    the tensors' device in their dtype. Within a tile the captions are laid out
    sample-major, so each J x J block sums as contiguous rows, and the elementwise steps
    run in place. On the CPU a tile is small (512 captions, 16 MB; one buffer per worker,
    never a fresh N_i J x N_c J result), and ``workers`` threads (default: torch's
    intra-op threads), each single-threaded (torch's thread count is 1 meanwhile, then
    restored), take tiles in turn: a core slowed by another process delays only its own
    tiles, not every step of every tile. On a GPU a tile is a 256 MB block of rows against
    every caption, one after another. Tiles of a multiple of 128 captions keep torch's
    J x J sums in the order of a row of every caption.
    (benchmarks/bench_match_probability.py measures both against the bare product.)
    """
    n_i, j = image_samples.shape[:2]
    n_c = caption_samples.shape[0]
    on_cpu = image_samples.device.type == "cpu"
    tile_captions = max(1, min(n_c, tile_captions or (512 if on_cpu else n_c)))
    tile_bytes = tile_bytes or (16 if on_cpu else 256) * 2**20
    tile_images = max(1, tile_bytes // (image_samples.element_size() * j * j * tile_captions))
    workers = (workers or torch.get_num_threads()) if on_cpu else 1
    images = image_samples.flatten(0, 1)  # (N_i * J, D), row r * J + s
    image_norms = images.pow(2).sum(dim=1)
    scale = float(a)  # one number: the logits b - a d below take one fused pass
    offset = torch.as_tensor(b, device=images.device, dtype=images.dtype).reshape(())
    out = torch.empty((n_i, n_c), device=images.device, dtype=images.dtype)
    tiles = iter([(c, r) for c in range(0, n_c, tile_captions) for r in range(0, n_i, tile_images)])
    caption_tiles, lock = {}, threading.Lock()

    def next_tile():
        with lock:
            c, r = next(tiles, (None, None))
            if c is not None and c not in caption_tiles:  # (J * n, D), row s * n + c, and its norms
                captions = caption_samples[c : c + tile_captions].transpose(0, 1).flatten(0, 1)
                caption_tiles[c] = captions, captions.pow(2).sum(dim=1)
            return r, c, caption_tiles.get(c)

    @torch.no_grad()  # grad mode is per thread
    def work():
        buffer = torch.empty(tile_images * j * j * tile_captions, device=images.device, dtype=images.dtype)
        while (tile := next_tile())[1] is not None:
            r, c, (captions, caption_norms) = tile
            rows, n = images[r * j : (r + tile_images) * j], len(captions) // j
            logits = buffer[: len(rows) * len(captions)].view(len(rows), len(captions))
            torch.addmm(caption_norms[None, :], rows, captions.T, alpha=-2, out=logits)
            logits.add_(image_norms[r * j : (r + tile_images) * j, None]).clamp_(min=0).sqrt_()
            torch.sub(offset, logits, alpha=scale, out=logits).sigmoid_()
            out[r : r + tile_images, c : c + n] = logits.view(-1, j * j, n).sum(dim=1).div_(j * j)

    run_on_threads(work, workers)
    return out


def run_on_threads(work, workers: int) -> None:
    """Run ``work`` once per worker thread, each single-threaded in torch (several threads per op would oversubscribe
    the cores); torch's thread count is restored afterwards, also after an error. One worker: in this thread, as is."""
    if workers == 1:
        return work()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(work) for _ in range(workers)]:
                done.result()
    finally:
        torch.set_num_threads(threads)


class PCME(BaseMethod):
    """Gaussian embeddings: mu and sigma heads per modality, learned a and b, soft contrastive loss."""

    def __init__(
        self,
        image_dims: FeatureDims,
        text_dims: FeatureDims,
        embed_dim: int,
        samples: int,
        init_scale: float,
        kl_weight: float,
        uniformity_weight: float,
        init_log_sigma: float | None = None,
        kl_form: str = "log-variance",
        uniformity_form: str = "raw-subsampled",
        reduction: str = "sum",
    ):
        for name, value, allowed in (
            ("kl_form", kl_form, KL_FORMS),
            ("uniformity_form", uniformity_form, UNIFORMITY_FORMS),
            ("reduction", reduction, REDUCTIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        super().__init__(image_dims, text_dims, embed_dim)
        self.image_sigma = UncertaintyHead(image_dims, embed_dim, init_log_sigma)
        self.caption_sigma = TextUncertaintyHead(text_dims, embed_dim, init_log_sigma)
        # The official criterion's parameters, in its sigmoid(2x) units (criterions/probemb.py,
        # ``negative_scale`` and ``shift``): a and b below are twice them.
        self.negative_scale = nn.Parameter(torch.tensor(float(init_scale) / 2))
        self.shift = nn.Parameter(torch.tensor(float(init_scale) / 2))
        self.samples = samples
        self.kl_weight = kl_weight
        self.uniformity_weight = uniformity_weight
        self.kl_form = kl_form
        self.uniformity_form = uniformity_form
        self.reduction = reduction

    @property
    def a(self) -> torch.Tensor:
        """a of sigmoid(-a d + b), standard sigmoid: twice the official ``negative_scale``."""
        return 2 * self.negative_scale

    @property
    def b(self) -> torch.Tensor:
        """b of sigmoid(-a d + b), standard sigmoid: twice the official ``shift``."""
        return 2 * self.shift

    def loss_parameters(self) -> list[nn.Parameter]:
        """The loss's own parameters (the official criterion's shift and negative scale): not clipped."""
        return [self.negative_scale, self.shift]

    def embed(self, modality: str, global_feature, local, mask) -> dict:
        """mu (the shared head's embedding), log sigma (the modality's sigma head) and J samples."""
        sigma_head = self.image_sigma if modality == "image" else self.caption_sigma
        mu = self.head(modality)(global_feature, local, mask)[0][:, 0]
        log_sigma = sigma_head(global_feature, local, mask)
        return {"mu": mu, "log_sigma": log_sigma, "samples": sample_embeddings(mu, log_sigma, self.samples)}

    def draw_samples(self, encoded: dict, generator: torch.Generator) -> torch.Tensor:
        """The J samples of exported embeddings, drawn from ``generator`` (the embed stage's fixed seed)."""
        return sample_embeddings(encoded["mu"], encoded["log_sigma"], self.samples, generator)

    def similarity(self, images: dict, captions: dict) -> torch.Tensor:
        return match_probability(images["samples"], captions["samples"], self.a, self.b)

    def loss(self, images: dict, captions: dict, match: torch.Tensor):
        nll = soft_contrastive_nll(images["samples"], captions["samples"], match, self.a, self.b)
        contrastive = 2 * nll.sum()  # i2t and t2i: the same pairs, each direction summed (probemb.py ``forward``)
        zero = torch.zeros((), device=nll.device)
        kl = (
            kl_divergence(images["mu"], images["log_sigma"], images["samples"], self.kl_form)
            + kl_divergence(captions["mu"], captions["log_sigma"], captions["samples"], self.kl_form)
            if self.kl_weight
            else zero
        )
        uniformity = (
            uniformity_loss(torch.cat([images["samples"], captions["samples"]]), self.uniformity_form)
            if self.uniformity_weight
            else zero
        )
        total = contrastive + self.kl_weight * kl + self.uniformity_weight * uniformity
        if self.reduction == "mean":
            total = total / (2 * nll.numel())
        stats = {
            "nll_per_pair": nll.detach().mean(),
            "kl": kl.detach(),
            "uniformity": uniformity.detach(),
            "a": self.a.detach(),
            "b": self.b.detach(),
            "image_log_sigma": images["log_sigma"].detach().mean(),
            "caption_log_sigma": captions["log_sigma"].detach().mean(),
        }
        return total, stats
