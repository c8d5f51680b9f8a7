"""The Snakemake workflow: the planned DAG, the data stage run for real, and its messages."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture
def workflow(tmp_path) -> Path:
    """A copy of the workflow files in a temporary working directory."""
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    return tmp_path


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=600
    )


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE) if m[1] != "total"}


def test_dry_run_lays_out_the_whole_default_dag(workflow):
    result = snakemake(workflow, "-n", "all")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {
        "synthesize": 2, "prepare": 2, "train": 10, "embed": 10, "evaluate": 10, "aggregate": 1, "all": 1,
    }


def test_command_line_overrides_narrow_the_dag(workflow):
    result = snakemake(workflow, "-n", "all", "--config", 'datasets=["synthetic-coco"]', 'methods=["pcme"]', "seeds=[0,1]")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert (counts["synthesize"], counts["train"], counts["evaluate"]) == (1, 2, 2)


def test_data_stage_runs_for_real_and_then_has_nothing_to_do(workflow):
    result = snakemake(workflow, "--cores", "2", "data", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr
    for name, splits in (("synthetic-coco", {"train", "restval", "dev", "test"}), ("synthetic-cub", {"train", "test"})):
        meta = json.loads((workflow / "work-smoke" / "prepared" / name / "meta.json").read_text())
        assert set(meta["splits"]) == splits
        assert (workflow / "data-smoke" / name / "GENERATOR.json").is_file()
        assert (workflow / "work-smoke" / "logs" / "prepare" / f"{name}.log").read_text().strip()
    coco = json.loads((workflow / "work-smoke" / "prepared" / "synthetic-coco" / "meta.json").read_text())
    assert coco["splits"]["test"] == {"images": 1000, "captions": 5000}
    again = snakemake(workflow, "--cores", "2", "data", "--configfile", "config/smoke.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_missing_real_data_says_how_to_get_it(workflow, tmp_path):
    result = snakemake(workflow, "-n", "all", "--configfile", "config/paper.yaml", "--config", f"data_root={tmp_path / 'empty'}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the real dataset is not under" in output and "captions_train2014.json" in output
    assert "cocodataset.org" in output and "README" in output


def test_paper_dag_plans_over_data_in_the_real_layouts(workflow, tmp_path):
    from corpora.coco import CocoLayout
    from corpora.cub import CubLayout

    root = tmp_path / "real"
    for layout in (CocoLayout(root / "coco"), CubLayout(root / "cub")):
        for path in layout.required_files():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    result = snakemake(workflow, "-n", "all", "--configfile", "config/paper.yaml", "--config", f"data_root={root}")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert (counts["prepare"], counts["train"], counts["evaluate"]) == (2, 30, 30)
    assert "synthesize" not in counts


def test_dataset_without_settings_is_named(workflow):
    config = workflow / "config" / "config.yaml"
    text = config.read_text()
    start = text.index("  synthetic-cub:\n")
    end = text.index("  coco:\n")
    config.write_text(text[:start] + text[end:])
    result = snakemake(workflow, "-n", "all")
    assert result.returncode != 0
    assert "datasets lists 'synthetic-cub' but dataset_settings has no entry for it" in result.stdout + result.stderr


def test_train_and_embed_run_through_the_workflow(workflow):
    run = "work-smoke/runs/synthetic-cub/pvse-k2/seed0"
    result = snakemake(workflow, "--cores", "2", f"{run}/embeddings_test.safetensors", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((workflow / run / "run.json").read_text())
    assert (record["dataset"], record["method"], record["seed"], record["epochs"]) == ("synthetic-cub", "pvse-k2", 0, 1)
    assert "epoch 1" in (workflow / run / "train.log").read_text()
    assert (workflow / run / "train.benchmark.tsv").is_file()
