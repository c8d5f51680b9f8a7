"""Score matrices of a run's test embeddings: one (images x captions) matrix per scoring, higher = closer.

One matrix serves both directions: image-to-text ranks its rows, text-to-image
its columns (the transpose). Every scoring runs in blocks of images, so memory
stays bounded at COCO 5K size (5,000 x 25,000), on CUDA when asked for, in fp32:
bf16 products change top-10 rankings (measured for issue 4), so no reduced
precision is used.

Which scorings a method has, its own first, and which tensors each scoring reads: its registry
entry (``models/registry.py``, ``SCORINGS``). The scorings:

- ``cosine`` (VSE0, VSE++): cosine of the two embeddings.
- ``max-cosine`` (PVSE, Song & Soleymani 2019): the largest of the K x K cosines.
- Gaussian embeddings (PCME, Chun et al. 2021) four ways: ``match-prob``, the match probability,
  mean over the J x J sample pairs of sigmoid(-a ||z_i - z_c|| + b) on the
  stored samples with the learned a and b (``models.pcme.match_probability``;
  the official COCO evaluation, evaluate_recall_coco.py); ``sample-dot``, the sum
  of the J x J sample inner products, the official CUB evaluation (evaluate_cub.py
  with the shipped config/cub/pcme_cub.yaml, ``eval_method: matmul``); ``mu``, the cosine of the means ("mu only" in the
  PCME paper); ``csd``, the closed-form sampled distance of PCME++ (Chun, ICLR
  2024) ||mu_i - mu_c||^2 + sum sigma_i^2 + sum sigma_c^2, lower = closer, so its
  negative is the score.

The embeddings file is the one ``pcmebench.embed`` writes: what it holds is the method's entry's
``exports``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.pcme import match_probability
from models.pvse import max_cosine
from models.registry import SCORINGS, UNCERTAINTY_STATISTICS, Method, RegistryError, method_entry
from pcmebench.tensorfiles import metadata_json, read_safetensors

MODALITIES = ("image", "caption")
ID_KEYS = ("image_ids", "caption_ids", "caption_image_index")
BLOCK_BYTES = 128 * 2**20  # size of one block of the score matrix's intermediate products


@dataclass
class Embeddings:
    """A run's test embeddings: ids in the split's row order and the method's tensors (fp32, CPU)."""

    path: Path
    image_ids: np.ndarray
    caption_ids: np.ndarray
    caption_image_index: np.ndarray
    tensors: dict[str, torch.Tensor]
    settings: dict

    @property
    def method(self) -> Method:
        """The registry entry of the method that wrote the file."""
        return method_entry(self.settings["method"])

    @property
    def is_probabilistic(self) -> bool:
        return self.method.probabilistic


def load_embeddings(path: str | Path) -> Embeddings:
    """Read an embeddings file; a missing key or inconsistent shape raises ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: embeddings file not found; run the embed rule")
    fix = "rerun the embed rule for this run"
    tensors, metadata = read_safetensors(path, "embeddings", fix)
    settings = metadata_json(path, metadata, "settings", fix) if "settings" in metadata else {}
    if "method" not in settings:
        raise ValueError(f"{path}: not an embeddings file of pcmebench.embed; no method in its settings metadata; {fix}")
    try:
        method = method_entry(settings["method"])
    except RegistryError as error:
        raise ValueError(f"{path}: {error}") from None
    exported = [*method.exported("image"), *method.exported("caption"), *method.learned]
    missing = [k for k in (*ID_KEYS, *exported) if k not in tensors]
    if missing:
        raise ValueError(f"{path}: not an embeddings file of pcmebench.embed for {method.name}; missing {missing}")
    ids = {k: tensors.pop(k).numpy().astype(np.int64) for k in ID_KEYS}
    n_images, n_captions = len(ids["image_ids"]), len(ids["caption_ids"])
    if len(ids["caption_image_index"]) != n_captions:
        raise ValueError(f"{path}: {len(ids['caption_image_index'])} caption_image_index entries for {n_captions} caption ids")
    for key, value in tensors.items():
        if key in method.learned:
            continue
        expected = n_images if key.startswith("image_") else n_captions
        if value.shape[0] != expected:
            raise ValueError(f"{path}: {key} has {value.shape[0]} rows, expected {expected}")
        if not torch.isfinite(value).all():
            raise ValueError(f"{path}: {key} holds NaN or infinite values")
    tensors = {k: v.float() for k, v in tensors.items()}
    return Embeddings(path, ids["image_ids"], ids["caption_ids"], ids["caption_image_index"], tensors, settings)


def scorings_for(method: str) -> tuple[str, ...]:
    """A registered method's scorings, its own first."""
    return method_entry(method).scorings


def _rows_per_block(bytes_per_row: int, block_bytes: int) -> int:
    return max(1, block_bytes // max(1, bytes_per_row))


@torch.no_grad()
def max_cosine_scores(image_embeddings, caption_embeddings, block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """(N_i, K, D) and (N_c, K, D) -> (N_i, N_c): the largest of the K x K cosines (K = 1: the cosine)."""
    images = F.normalize(image_embeddings, dim=-1)
    captions = F.normalize(caption_embeddings, dim=-1)
    k_i, k_c = images.shape[1], captions.shape[1]
    rows = _rows_per_block(4 * k_i * k_c * captions.shape[0], block_bytes)
    out = torch.empty((images.shape[0], captions.shape[0]), device=images.device, dtype=torch.float32)
    for start in range(0, images.shape[0], rows):
        out[start : start + rows] = max_cosine(images[start : start + rows], captions)
    return out


@torch.no_grad()
def csd_scores(image_mu, image_log_sigma, caption_mu, caption_log_sigma, block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """(N_i, D) and (N_c, D) Gaussians -> (N_i, N_c) minus PCME++'s closed-form sampled distance.

    CSD = ||mu_i - mu_c||^2 + sum_d sigma_i^2 + sum_d sigma_c^2 (Chun, "Improved
    probabilistic image-text representations", ICLR 2024): the expected squared
    distance of two samples, lower = closer; the score is -CSD.
    """
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


@torch.no_grad()
def sample_dot_scores(image_samples, caption_samples) -> torch.Tensor:
    """(N_i, J, D) and (N_c, J, D) samples -> (N_i, N_c) sum over the J x J sample pairs of z_i . z_c.

    The sum of every sample pair's inner product is the inner product of the two sample sums.
    """
    return image_samples.sum(dim=1) @ caption_samples.sum(dim=1).T


def score_matrix(embeddings: Embeddings, scoring: str, device: torch.device | str = "cpu") -> np.ndarray:
    """The (N_i, N_c) float32 score matrix of one scoring, computed on ``device``, returned on the CPU."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; allowed: {', '.join(SCORINGS)}")
    reads = [f"{m}_{item}" for item in SCORINGS[scoring]["items"] for m in MODALITIES] + list(SCORINGS[scoring]["learned"])
    lacking = [k for k in reads if k not in embeddings.tensors]
    if lacking:
        raise ValueError(f"{embeddings.path}: scoring {scoring!r} reads {lacking}, which these embeddings do not hold")
    on = {k: v.to(device) for k, v in embeddings.tensors.items()}
    if scoring in ("cosine", "max-cosine"):
        if scoring == "cosine" and (on["image_embeddings"].shape[1] != 1 or on["caption_embeddings"].shape[1] != 1):
            raise ValueError(f"{embeddings.path}: scoring 'cosine' needs one embedding per item, found K > 1; use 'max-cosine'")
        scores = max_cosine_scores(on["image_embeddings"], on["caption_embeddings"])
    elif scoring == "mu":
        scores = max_cosine_scores(on["image_mu"][:, None], on["caption_mu"][:, None])
    elif scoring == "csd":
        scores = csd_scores(on["image_mu"], on["image_log_sigma"], on["caption_mu"], on["caption_log_sigma"])
    elif scoring == "sample-dot":
        scores = sample_dot_scores(on["image_samples"], on["caption_samples"])
    else:  # match-prob
        scores = match_probability(on["image_samples"], on["caption_samples"], on["a"].reshape(()), on["b"].reshape(()))
    scores = scores.float().cpu().numpy()
    if not np.isfinite(scores).all():
        raise ValueError(f"{embeddings.path}: scoring {scoring!r} produced non-finite scores")
    return scores


def uncertainty_statistics(embeddings: Embeddings) -> dict[str, dict[str, np.ndarray]]:
    """Per-query uncertainty statistics of a probabilistic method's embeddings, by name and direction:
    the statistics its registry entry lists, from the log σ it exports.

    ``mean_log_sigma`` (u): the mean over dimensions of log sigma, the log of sigma's
    geometric mean; ``sum_sigma_sq``: the sum over dimensions of sigma^2, the trace of
    the covariance, which PCME++ (Chun, ICLR 2024) bins by. i2t queries are images,
    t2i queries captions.
    """
    method = embeddings.method
    log_sigma = {
        "i2t": embeddings.tensors[f"image_{method.sigma}"].double(),
        "t2i": embeddings.tensors[f"caption_{method.sigma}"].double(),
    }
    return {
        name: {d: UNCERTAINTY_STATISTICS[name].compute(v).numpy() for d, v in log_sigma.items()} for name in method.statistics
    }
