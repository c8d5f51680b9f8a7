"""Score matrices and uncertainty statistics of a run's test embeddings, as the evaluation reads them.

One (images x captions) matrix per scoring, higher = closer: image-to-text ranks its rows,
text-to-image its columns (the transpose). The scorings and the statistics are the tables of
``models/scorings.py`` (one entry each: what it reads and how it computes); which ones a method
reports, its own first, is its registry entry's (``models/registry.py``): the embeddings'
``Analysis``. The embeddings file is the one ``pcmebench.embed`` writes: what it holds is the
entry's ``exports``; an external model's file (``pcmebench.external``) brings its own analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.registry import Method, RegistryError, method_entry
from models.scorings import SCORINGS, UNCERTAINTY_STATISTICS
from pcmebench.tensorfiles import metadata_json, read_safetensors

MODALITIES = ("image", "caption")
ID_KEYS = ("image_ids", "caption_ids", "caption_image_index")


@dataclass(frozen=True)
class Analysis:
    """What the evaluation computes from a file's tensors: its scorings (its own first) and, where it
    holds log σ (``sigma``, an item), the uncertainty statistics (their own first)."""

    scorings: tuple[str, ...]
    sigma: str | None = None
    statistics: tuple[str, ...] = ()

    @property
    def own_scoring(self) -> str:
        return self.scorings[0]

    @property
    def probabilistic(self) -> bool:
        return self.sigma is not None

    @property
    def uncertainty_statistic(self) -> str | None:
        """The statistic the σ figures plot (the first), or None without log σ."""
        return self.statistics[0] if self.statistics else None

    @classmethod
    def of(cls, method: Method) -> Analysis:
        """A registered method's: its entry's scorings, log σ item and statistics."""
        return cls(method.scorings, method.sigma, method.statistics)


@dataclass
class Embeddings:
    """A run's test embeddings: ids in the split's row order and the method's tensors (fp32, CPU)."""

    path: Path
    image_ids: np.ndarray
    caption_ids: np.ndarray
    caption_image_index: np.ndarray
    tensors: dict[str, torch.Tensor]
    settings: dict
    analysis: Analysis | None = None  # load_embeddings: the method's; an external file's: the user's

    @property
    def method(self) -> Method:
        """The registry entry of the method that wrote the file."""
        return method_entry(self.settings["method"])

    @property
    def is_probabilistic(self) -> bool:
        return self.analysis.probabilistic


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
    ids = (ids["image_ids"], ids["caption_ids"], ids["caption_image_index"])
    return Embeddings(path, *ids, tensors, settings, Analysis.of(method))


def scorings_for(method: str) -> tuple[str, ...]:
    """A registered method's scorings, its own first."""
    return method_entry(method).scorings


def tensors_read(scoring: str) -> list[str]:
    """The names of the tensors one scoring reads from an embeddings file: each item per modality, then the learned scalars."""
    entry = SCORINGS[scoring]
    return [f"{m}_{item}" for item in entry.items for m in MODALITIES] + list(entry.learned)


def score_matrix(embeddings: Embeddings, scoring: str, device: torch.device | str = "cpu") -> np.ndarray:
    """The (N_i, N_c) float32 score matrix of one scoring, computed on ``device``, returned on the CPU."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; allowed: {', '.join(SCORINGS)}")
    entry = SCORINGS[scoring]
    reads = tensors_read(scoring)
    lacking = [k for k in reads if k not in embeddings.tensors]
    if lacking:
        raise ValueError(f"{embeddings.path}: scoring {scoring!r} reads {lacking}, which these embeddings do not hold")
    images, captions = ({item: embeddings.tensors[f"{m}_{item}"].to(device) for item in entry.items} for m in MODALITIES)
    learned = {name: embeddings.tensors[name].to(device).reshape(()) for name in entry.learned}
    try:
        with torch.no_grad():
            scores = entry.compute(images, captions, learned)
    except ValueError as error:
        raise ValueError(f"{embeddings.path}: scoring {scoring!r} {error}") from None
    scores = scores.float().cpu().numpy()
    if not np.isfinite(scores).all():
        raise ValueError(f"{embeddings.path}: scoring {scoring!r} produced non-finite scores")
    return scores


def uncertainty_statistics(embeddings: Embeddings) -> dict[str, dict[str, np.ndarray]]:
    """Per-query uncertainty statistics of a probabilistic method's embeddings, by name and direction:
    the statistics of its analysis (``models.scorings.UNCERTAINTY_STATISTICS``; a method's: its registry
    entry's), from the log σ it holds, in float64. i2t queries are images, t2i queries captions.
    """
    analysis = embeddings.analysis
    log_sigma = {
        "i2t": embeddings.tensors[f"image_{analysis.sigma}"].double(),
        "t2i": embeddings.tensors[f"caption_{analysis.sigma}"].double(),
    }
    return {
        name: {d: UNCERTAINTY_STATISTICS[name].compute(v).numpy() for d, v in log_sigma.items()} for name in analysis.statistics
    }
