"""Small generated datasets shared by the tests; copy one before changing it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corpora.prepared import prepare_dataset
from corpora.synthetic import write_synthetic_coco, write_synthetic_cub

REPO = Path(__file__).resolve().parents[1]
TINY_COCO = {"seed": 3, "image_size": 48, "images": {"train": 12, "restval": 4, "dev": 4, "test": 10}, "captions_per_image": 5}
SMOKE = ("--configfile", "config/smoke.yaml")
TINY_CUB = {"seed": 3, "image_size": 48, "classes": 6, "test_classes": 2, "images_per_class": 3, "captions_per_image": 10}


@pytest.fixture(scope="session")
def tiny_coco_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated") / "synthetic-coco"
    write_synthetic_coco(root, **TINY_COCO)
    return root


@pytest.fixture(scope="session")
def tiny_cub_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated") / "synthetic-cub"
    write_synthetic_cub(root, **TINY_CUB)
    return root


@pytest.fixture
def tiny_coco(tiny_coco_source, tmp_path) -> Path:
    """A private copy that a test may damage."""
    return Path(shutil.copytree(tiny_coco_source, tmp_path / "synthetic-coco"))


@pytest.fixture
def tiny_cub(tiny_cub_source, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_cub_source, tmp_path / "synthetic-cub"))


@pytest.fixture(scope="module")
def prepared(tiny_coco_source, tmp_path_factory) -> Path:
    """The tiny COCO-format source, prepared (8-d random word vectors)."""
    out = tmp_path_factory.mktemp("prepared") / "synthetic-coco"
    prepare_dataset("coco", tiny_coco_source, out, train_splits=["train", "restval"], word_dim=8)
    return out


@pytest.fixture(scope="module")
def prepared_cub(tiny_cub_source, tmp_path_factory) -> Path:
    """The tiny CUB-format source, prepared (8-d random word vectors)."""
    out = tmp_path_factory.mktemp("prepared") / "synthetic-cub"
    prepare_dataset("cub", tiny_cub_source, out, train_splits=["train"], word_dim=8)
    return out


PACKAGES = ("corpora", "metrics", "models", "pcmebench")


def copy_workflow(root: Path) -> Path:
    """A copy of the workflow files in a temporary working directory."""
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    return root


def copy_packages(root: Path) -> Path:
    """A copy of the Python packages beside a copied workflow, which its jobs then import (the
    workflow's folder comes first on their path): a test may change them there."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def preset(*configfiles: str, root: Path = REPO) -> dict:
    """config/config.yaml with each of ``configfiles`` merged over it key by key, as Snakemake merges --configfile."""
    from pcmebench.runs import merge_config

    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    for name in configfiles:
        config = merge_config(config, yaml.safe_load((root / name).read_text()))
    return config


def runs_of(config: dict) -> int:
    """How many training runs a config plans: every dataset x method x seed."""
    return len(config["datasets"]) * len(config["methods"]) * len(config["seeds"])


# Where the smoke preset's tables, figures and report go (its results_dir).
SMOKE_RESULTS = Path(preset(SMOKE[1])["results_dir"])


def snakemake(cwd: Path, *args: str, timeout: int = 1200, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout, env=env
    )


def tail(result: subprocess.CompletedProcess, chars: int = 3000) -> str:
    return result.stdout[-chars:] + result.stderr[-chars:]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The smoke preset's whole DAG and report, built locally in one Snakemake call; shared by the
    workflow tests and, as the reference of the runs through SLURM, by tests/test_slurm.py."""
    root = copy_workflow(tmp_path_factory.mktemp("smoke"))
    # Single-threaded jobs, two at a time: their start-ups (imports) overlap; nothing checked here depends on it.
    threads = ("--set-threads", "train=1", "embed=1", "evaluate=1")
    result = snakemake(root, "all", "report", "--cores", "2", *threads, *SMOKE)
    assert result.returncode == 0, tail(result)
    return root
