"""What a training run is: its settings, device, model, files and identity."""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
from dataclasses import dataclass

import torch

from corpora import dataset_format
from corpora.errors import DataError
from corpora.prepared import PreparedDataset
from models import CrossModalModel, build_model
from models.model import per_dataset
from models.registry import method_entry
from pcmebench.files import atomic_write, code_version  # noqa: F401 - re-exported: the stages import them from here
from pcmebench.logs import log_to_stderr
from pcmebench.tensorfiles import read_safetensors


def use_threads(threads: int | None) -> None:
    """Let torch use ``threads`` CPU threads (at most the machine's); None leaves torch's default."""
    if threads:
        torch.set_num_threads(min(threads, os.cpu_count() or threads))


def add_stage_arguments(parser: argparse.ArgumentParser, settings_help: str) -> None:
    """The options every settings-driven stage (pretrain, train, evaluate) takes: --settings and --threads."""
    parser.add_argument("--settings", required=True, help=settings_help)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def parse_stage_arguments(parser: argparse.ArgumentParser, argv=None) -> tuple[argparse.Namespace, dict]:
    """Parse a stage's command line; log to stderr, set torch's threads, and read --settings (JSON)."""
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        settings = json.loads(args.settings)
    except json.JSONDecodeError as error:
        parser.error(f"--settings is not valid JSON ({error})")
    use_threads(args.threads)
    return args, settings


def resolve_device(name: str) -> torch.device:
    """auto -> CUDA when available, else CPU; cuda without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    """How a run computes on its device: bf16 autocast or plain fp32, and the images' memory format.

    From the training settings ``precision`` (auto: bf16 on CUDA, fp32 on the CPU; bf16; fp32) and
    ``memory_format`` (auto: channels_last on CUDA, contiguous on the CPU; channels_last;
    contiguous). Explicit values hold on any device, so the CPU runs the GPU's paths in tests.
    """

    device: torch.device
    bf16: bool
    channels_last: bool

    @classmethod
    def for_run(cls, training: dict, device: torch.device) -> Precision:
        cuda = device.type == "cuda"
        bf16 = training["precision"] == "bf16" or (training["precision"] == "auto" and cuda)
        channels_last = training["memory_format"] == "channels_last" or (training["memory_format"] == "auto" and cuda)
        return cls(device, bf16, channels_last)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the run's device, or nothing; the methods' losses run in fp32 either way."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def describe(self) -> str:
        return f"{'bf16 autocast' if self.bf16 else 'fp32'}, {'channels_last' if self.channels_last else 'contiguous'}"


def merge_config(base: dict, update: dict) -> dict:
    """``update`` merged into a copy of ``base`` key by key (nested mappings merge, other values
    replace), by Snakemake's own merge of a --configfile over the workflow's config; neither input changes."""
    from snakemake.utils import update_config

    merged = copy.deepcopy(base)
    update_config(merged, update)
    return merged


def settings_hash(settings: dict) -> str:
    """A short hash of the settings that define a run (device excluded: it does not change the recipe)."""
    recipe = {k: v for k, v in settings.items() if k != "device"}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_backbone(encoder: torch.nn.Module, path) -> None:
    """Load a pretrained backbone (safetensors: no pickle) into ``encoder``; every weight must match."""
    state, _ = read_safetensors(path, "pretrained backbone", "rerun the pretrain rule")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as error:
        raise DataError(path, "pretrained backbone", f"does not fit this image encoder: {error}") from None


def method_setting(settings: dict, name: str):
    """One of the run's method settings (its entry's default where the settings lack it), for its dataset."""
    complete = method_entry(settings["method"]).complete(settings["method_settings"])
    return per_dataset(complete[name], settings["dataset"], dataset_format(settings["dataset"]))


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
        pretrained=pretrained and data["training"]["pretrained"],
        batch_positives=data["training"]["batch_positives"],
    )
