"""What a training run is: its settings, device, model, files and identity."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import torch

from corpora import dataset_format
from corpora.prepared import PreparedDataset
from models import CrossModalModel, build_model


def resolve_device(name: str) -> torch.device:
    """auto -> CUDA when available, else CPU; cuda without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(name)


def settings_hash(settings: dict) -> str:
    """A short hash of the settings that define a run (device excluded: it does not change the recipe)."""
    recipe = {k: v for k, v in settings.items() if k != "device"}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    """The git commit of this checkout (with -dirty), or the installed package version."""
    here = Path(__file__).resolve().parent
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"pcme-bench {version('pcme-bench')}"


def model_for(settings: dict, prepared: PreparedDataset, pretrained: bool = True) -> CrossModalModel:
    """The model a run's settings describe, with word vectors from the prepared dataset."""
    data = settings["dataset_settings"]
    return build_model(
        settings["method"],
        settings["method_settings"],
        settings["dataset"],
        dataset_format(settings["dataset"]),
        embed_dim=data["embed_dim"],
        image_encoder=data["image_encoder"],
        word_vectors=torch.from_numpy(prepared.word_vectors()),
        freeze_words=prepared.meta["word_vectors_file"] is not None,
        pretrained=pretrained and data["training"]["pretrained"],
    )


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary path)``, then move the result over ``path`` in one step."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
