"""What a run's test embeddings are ranked and summarised by: every scoring and every uncertainty statistic, one entry each.

A scoring turns the two modalities' exported tensors into one (N_i, N_c) score matrix, higher =
closer: image-to-text ranks its rows, text-to-image its columns. Its entry names the per-item
tensors it reads (exported items, saved per modality as ``image_<item>`` and ``caption_<item>``)
and the method's learned scalars, which a method listing the scoring must export (the registry
checks, ``models/registry.py``), and the function that computes the matrix. An uncertainty
statistic maps a probabilistic method's (N, D) log σ to one value per query.

A new scoring or statistic is one entry here. The registry reads these tables while the workflow
plans, without torch, so this module imports none: a scoring's function imports torch (and the
method files' torch code) when it runs, in the evaluation (``pcmebench.scoring.score_matrix``, under
``torch.no_grad``); a statistic computes with tensor methods only. Every scoring runs in blocks of
images, so memory stays bounded at COCO 5K size (5,000 x 25,000), in fp32: bf16 products change
top-10 rankings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

BLOCK_BYTES = 128 * 2**20  # size of one block of the score matrix's intermediate products


def _rows_per_block(bytes_per_row: int, block_bytes: int) -> int:
    return max(1, block_bytes // max(1, bytes_per_row))


def max_cosine_scores(image_embeddings, caption_embeddings, block_bytes: int = BLOCK_BYTES):
    """(N_i, K, D) and (N_c, K, D) -> (N_i, N_c): the largest of the K x K cosines (K = 1: the cosine)."""
    import torch
    import torch.nn.functional as F

    from models.pvse import max_cosine

    with torch.no_grad():
        images = F.normalize(image_embeddings, dim=-1)
        captions = F.normalize(caption_embeddings, dim=-1)
        k_i, k_c = images.shape[1], captions.shape[1]
        rows = _rows_per_block(4 * k_i * k_c * captions.shape[0], block_bytes)
        out = torch.empty((images.shape[0], captions.shape[0]), device=images.device, dtype=torch.float32)
        for start in range(0, images.shape[0], rows):
            out[start : start + rows] = max_cosine(images[start : start + rows], captions)
    return out


def csd_scores(image_mu, image_log_sigma, caption_mu, caption_log_sigma, block_bytes: int = BLOCK_BYTES):
    """(N_i, D) and (N_c, D) Gaussians -> (N_i, N_c) minus PCME++'s closed-form sampled distance.

    CSD = ||mu_i - mu_c||^2 + sum_d sigma_i^2 + sum_d sigma_c^2 (Chun, "Improved
    probabilistic image-text representations", ICLR 2024): the expected squared
    distance of two samples, lower = closer; the score is -CSD.
    """
    import torch

    with torch.no_grad():
        image_spread = image_mu.pow(2).sum(1) + (2 * image_log_sigma).exp().sum(1)
        caption_spread = caption_mu.pow(2).sum(1) + (2 * caption_log_sigma).exp().sum(1)
        rows = _rows_per_block(4 * caption_mu.shape[0], block_bytes)
        out = torch.empty((image_mu.shape[0], caption_mu.shape[0]), device=image_mu.device, dtype=torch.float32)
        for start in range(0, image_mu.shape[0], rows):
            block = slice(start, start + rows)
            # -CSD = 2 mu_i.mu_c - (|mu_i|^2 + sum sigma_i^2) - (|mu_c|^2 + sum sigma_c^2)
            torch.addmm(-caption_spread[None, :], image_mu[block], caption_mu.T, alpha=2, out=out[block])
            out[block] -= image_spread[block, None]
    return out


def sample_dot_scores(image_samples, caption_samples):
    """(N_i, J, D) and (N_c, J, D) samples -> (N_i, N_c) sum over the J x J sample pairs of z_i . z_c.

    The sum of every sample pair's inner product is the inner product of the two sample sums.
    """
    return image_samples.detach().sum(dim=1) @ caption_samples.detach().sum(dim=1).T


def _cosine(images: dict, captions: dict, learned: dict):
    if images["embeddings"].shape[1] != 1 or captions["embeddings"].shape[1] != 1:
        raise ValueError("needs one embedding per item, found K > 1; use 'max-cosine'")
    return max_cosine_scores(images["embeddings"], captions["embeddings"])


def _match_probability(images: dict, captions: dict, learned: dict):
    from models.pcme import match_probability

    return match_probability(images["samples"], captions["samples"], learned["a"], learned["b"])


@dataclass(frozen=True)
class Scoring:
    """One scoring: ``compute(images, captions, learned)`` -> (N_i, N_c) scores, from each modality's
    dict of the ``items`` it reads ((N, ...) fp32 tensors on one device) and the ``learned`` scalars
    (0-dim tensors). A ValueError it raises says what the embeddings lack (the caller adds which file)."""

    description: str  # what it ranks by, and whose it is
    items: tuple[str, ...]
    learned: tuple[str, ...]
    compute: Callable


# Every scoring; a method lists those it reports, its own first.
SCORINGS = {
    "cosine": Scoring(
        "the cosine of the two embeddings (VSE0, VSE++)",
        ("embeddings",),
        (),
        _cosine,
    ),
    "max-cosine": Scoring(
        "the largest of the K x K cosines (PVSE, Song & Soleymani 2019)",
        ("embeddings",),
        (),
        lambda images, captions, learned: max_cosine_scores(images["embeddings"], captions["embeddings"]),
    ),
    "match-prob": Scoring(
        "PCME's match probability (Chun et al. 2021): the mean over the J x J sample pairs of sigmoid(-a ||z_i - z_c|| + b), "
        "with the learned a and b (models.pcme.match_probability; the official COCO evaluation, evaluate_recall_coco.py)",
        ("samples",),
        ("a", "b"),
        _match_probability,
    ),
    "sample-dot": Scoring(
        "the sum of the J x J sample inner products: the official CUB evaluation of PCME (evaluate_cub.py with the "
        "shipped config/cub/pcme_cub.yaml, eval_method: matmul)",
        ("samples",),
        (),
        lambda images, captions, learned: sample_dot_scores(images["samples"], captions["samples"]),
    ),
    "mu": Scoring(
        'the cosine of the means ("mu only" in the PCME paper)',
        ("mu",),
        (),
        lambda images, captions, learned: max_cosine_scores(images["mu"][:, None], captions["mu"][:, None]),
    ),
    "csd": Scoring(
        "minus PCME++'s closed-form sampled distance ||mu_i - mu_c||^2 + sum sigma_i^2 + sum sigma_c^2 (Chun, ICLR 2024; "
        "naver-ai/pcmepp evaluation.py compute_csd_sims)",
        ("mu", "log_sigma"),
        (),
        lambda images, captions, learned: csd_scores(images["mu"], images["log_sigma"], captions["mu"], captions["log_sigma"]),
    ),
    "precomputed": Scoring(
        "a score matrix computed elsewhere (an external model's, pcmebench.external): image_scores holds each image's "
        "scores against every caption, caption_scores the same matrix transposed",
        ("scores",),
        (),
        lambda images, captions, learned: images["scores"],
    ),
}


@dataclass(frozen=True)
class UncertaintyStatistic:
    """A per-query uncertainty statistic of a Gaussian embedding: ``compute`` maps (N, D) log σ (a
    float64 tensor) to N values with tensor methods only, so this module needs no torch."""

    label: str  # figures' axes and legends
    description: str  # the report's legend
    compute: Callable


# Every uncertainty statistic; a method lists those it reports (its own first).
UNCERTAINTY_STATISTICS = {
    "mean_log_sigma": UncertaintyStatistic(
        "u = mean log σ",
        "u, the mean over dimensions of log σ (the log of σ's geometric mean)",
        lambda log_sigma: log_sigma.mean(1),
    ),
    "sum_sigma_sq": UncertaintyStatistic(
        "Σσ² (sum of σ²)",
        "Σσ², the sum over dimensions of σ² (the covariance's trace; PCME++ bins by it)",
        lambda log_sigma: (2 * log_sigma).exp().sum(1),
    ),
}
