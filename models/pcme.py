"""PCME (Chun et al., CVPR 2021): each item is a Gaussian N(mu, diag(sigma^2)) in the joint space.

mu comes from the shared embedding head; log sigma from a second head with its
own attention branch over the same local features. Training draws J samples
z = mu + eps * sigma per item; the match probability of an image and a caption is
the mean over the J x J sample pairs of sigmoid(-a ||z_i - z_c|| + b), with a and
b learned. The loss is the soft contrastive loss (-log p for matches, -log(1 - p)
for non-matches, over every in-batch pair), plus beta * KL(N(mu, sigma^2) || N(0, I))
and lambda * the uniformity loss of Wang & Isola (2020, t = 2) over the L2-normalised samples.

Sigmoid convention: the standard sigmoid 1 / (1 + e^-x). The official code's
"sigmoid" is e^x / (e^x + e^-x) = sigmoid(2x), so its initial a = b = 15 (COCO)
and 5 (CUB) are a = b = 30 and 10 here (``init_scale``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.heads import AttentionPool, EmbeddingHead


class UncertaintyHead(nn.Module):
    """log sigma (D-dim, unconstrained) = W_g g + W_l pool(local), with its own attention branch.

    ``init_log_sigma``: where log sigma starts (the output biases; None keeps PyTorch's
    default initialisation, as the official code does). With the default, sigma starts near 1
    per dimension, noise of norm sqrt(D) around a unit-norm mu: on a schedule of a few hundred
    steps (the synthetic datasets) the soft contrastive loss then settles at the trivial answer,
    every pair at the in-batch match rate, before mu learns anything.
    """

    def __init__(self, global_dim: int, local_dim: int, embed_dim: int, init_log_sigma: float | None = None):
        super().__init__()
        self.global_fc = nn.Linear(global_dim, embed_dim)
        self.attention = AttentionPool(local_dim, embed_dim // 2, heads=1)
        self.local_fc = nn.Linear(local_dim, embed_dim)
        if init_log_sigma is not None:
            nn.init.constant_(self.global_fc.bias, init_log_sigma)
            nn.init.zeros_(self.local_fc.bias)

    def forward(self, global_feature, local, mask):
        pooled, _ = self.attention(local, mask)
        return self.global_fc(global_feature) + self.local_fc(pooled[:, 0])


def sample_embeddings(mu: torch.Tensor, log_sigma: torch.Tensor, samples: int, generator: torch.Generator | None = None):
    """(B, D) mean and log sigma -> (B, J, D) samples mu + eps * sigma (reparameterised)."""
    eps = torch.randn((mu.shape[0], samples, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    return mu[:, None, :] + eps * log_sigma.exp()[:, None, :]


def _log_mean_exp(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    count = math.prod(x.shape[d] for d in dims)
    return torch.logsumexp(x, dim=dims) - math.log(count)


def soft_contrastive_loss(image_samples, caption_samples, match, a, b) -> torch.Tensor:
    """Mean over every (image, caption) pair of -log p (match) or -log(1 - p) (non-match).

    p = mean over the J x J sample pairs of sigmoid(-a d + b), computed in log
    space for stability. The pairs of the batch serve both directions at once:
    image-to-caption and caption-to-image terms are the same pairs.
    """
    j = image_samples.shape[1]
    distance = torch.cdist(image_samples.flatten(0, 1), caption_samples.flatten(0, 1))
    logits = (-a * distance + b).unflatten(0, (-1, j)).unflatten(2, (-1, j))  # (N_i, J, N_c, J)
    log_p = _log_mean_exp(F.logsigmoid(logits), (1, 3))
    log_not_p = _log_mean_exp(F.logsigmoid(-logits), (1, 3))
    return -torch.where(match, log_p, log_not_p).mean()


def kl_to_standard_normal(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Mean over items of KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum(sigma^2 + mu^2 - 1 - 2 log sigma)."""
    return 0.5 * ((2 * log_sigma).exp() + mu**2 - 1 - 2 * log_sigma).sum(dim=1).mean()


def uniformity_loss(points: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log of the mean over distinct pairs of exp(-t ||x - y||^2), x, y L2-normalised (Wang & Isola 2020).

    The normalisation is part of the definition: on raw samples the loss has no
    lower bound, and minimising it would inflate sigma without limit.
    """
    squared = torch.pdist(F.normalize(points.flatten(0, -2), dim=-1)).pow(2)
    return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())


@torch.no_grad()
def match_probability(image_samples, caption_samples, a, b, chunk_bytes: int = 256 * 2**20) -> torch.Tensor:
    """(N_i, J, D) and (N_c, J, D) samples -> (N_i, N_c) mean over J x J of sigmoid(-a d + b).

    An evaluation function (no gradient). Distances come from matrix products
    (||x||^2 + ||y||^2 - 2 x.y) over blocks of images, so memory stays near
    ``chunk_bytes`` (one block's J x J distances) whatever N_i and N_c, and the work
    runs on the tensors' device in their dtype. Captions are laid out sample-major
    so each block's J x J pairs sum as contiguous rows, and the elementwise steps
    run in place, the logits b - a d in one fused pass (benchmarks/bench_match_probability.py).
    """
    n_c, j = caption_samples.shape[:2]
    captions = caption_samples.transpose(0, 1).flatten(0, 1)  # (J * N_c, D), row s * N_c + c
    caption_norms = captions.pow(2).sum(dim=1)
    rows = max(1, chunk_bytes // (captions.element_size() * j * j * n_c))
    scale = float(a)  # one number: the logits b - a d below take one fused pass
    offset = torch.as_tensor(b, device=captions.device, dtype=captions.dtype).reshape(())
    out = torch.empty((image_samples.shape[0], n_c), device=image_samples.device, dtype=image_samples.dtype)
    for start in range(0, image_samples.shape[0], rows):
        block = image_samples[start : start + rows].flatten(0, 1)  # (R * J, D), row r * J + s
        logits = torch.addmm(caption_norms[None, :], block, captions.T, alpha=-2)
        logits.add_(block.pow(2).sum(dim=1)[:, None]).clamp_(min=0).sqrt_()
        torch.sub(offset, logits, alpha=scale, out=logits).sigmoid_()
        out[start : start + rows] = logits.view(-1, j * j, n_c).sum(dim=1).div_(j * j)
    return out


class PCME(nn.Module):
    """Gaussian embeddings: mu and sigma heads per modality, learned a and b, soft contrastive loss."""

    def __init__(
        self,
        image_dims: tuple[int, int],
        text_dims: tuple[int, int],
        embed_dim: int,
        samples: int,
        init_scale: float,
        kl_weight: float,
        uniformity_weight: float,
        init_log_sigma: float | None = None,
    ):
        super().__init__()
        self.image_head = EmbeddingHead(*image_dims, embed_dim)
        self.caption_head = EmbeddingHead(*text_dims, embed_dim)
        self.image_sigma = UncertaintyHead(*image_dims, embed_dim, init_log_sigma)
        self.caption_sigma = UncertaintyHead(*text_dims, embed_dim, init_log_sigma)
        self.a = nn.Parameter(torch.tensor(float(init_scale)))
        self.b = nn.Parameter(torch.tensor(float(init_scale)))
        self.samples = samples
        self.kl_weight = kl_weight
        self.uniformity_weight = uniformity_weight

    def _embed(self, head, sigma_head, global_feature, local, mask) -> dict:
        mu = head(global_feature, local, mask)[0][:, 0]
        log_sigma = sigma_head(global_feature, local, mask)
        return {"mu": mu, "log_sigma": log_sigma, "samples": sample_embeddings(mu, log_sigma, self.samples)}

    def embed_images(self, global_feature, local, mask) -> dict:
        return self._embed(self.image_head, self.image_sigma, global_feature, local, mask)

    def embed_captions(self, global_feature, local, mask) -> dict:
        return self._embed(self.caption_head, self.caption_sigma, global_feature, local, mask)

    def similarity(self, images: dict, captions: dict) -> torch.Tensor:
        return match_probability(images["samples"], captions["samples"], self.a, self.b)

    def loss(self, images: dict, captions: dict, match: torch.Tensor):
        contrastive = soft_contrastive_loss(images["samples"], captions["samples"], match, self.a, self.b)
        kl = kl_to_standard_normal(images["mu"], images["log_sigma"]) + kl_to_standard_normal(
            captions["mu"], captions["log_sigma"]
        )
        uniformity = (
            uniformity_loss(torch.cat([images["samples"], captions["samples"]]))
            if self.uniformity_weight
            else torch.zeros((), device=contrastive.device)
        )
        total = contrastive + self.kl_weight * kl + self.uniformity_weight * uniformity
        stats = {
            "contrastive": contrastive.detach(),
            "kl": kl.detach(),
            "uniformity": uniformity.detach(),
            "a": self.a.detach(),
            "b": self.b.detach(),
            "image_log_sigma": images["log_sigma"].detach().mean(),
            "caption_log_sigma": captions["log_sigma"].detach().mean(),
        }
        return total, stats
