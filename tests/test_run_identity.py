"""Nothing stale: a run resumes only its own checkpoint, a forced rerun trains again, weights meet
only the prepared data they were trained on; files are byte-stable, relocatable and readable by
the user's group; a killed job leaves no trainer behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pcmebench.train as trainer
from corpora.errors import DataError
from corpora.prepared import PreparedDataset, prepare_dataset
from pcmebench.embed import export
from pcmebench.train import CHECKPOINT, train
from tests.conftest import REPO, copy_packages, copy_workflow
from tests.test_training import tiny_settings

pytestmark = pytest.mark.slow  # trains, and runs Snakemake

# A workflow run small enough to train twice in a test: synthetic-coco without the pretrain stage.
TINY_WORKFLOW = {
    "datasets": ["synthetic-coco"],
    "methods": ["pcme"],
    "seeds": [0],
    "dataset_settings": {
        "synthetic-coco": {
            "generator": {"seed": 0, "image_size": 32, "images": {"train": 40, "restval": 8, "dev": 8, "test": 16}},
            "embed_dim": 16,
            "word_dim": 8,
            "training": {"frozen_epochs": 1, "finetune_epochs": 1, "input_size": 32, "batch_size": 16, "pretrained": False},
        }
    },
}
WEIGHTS = "work/runs/synthetic-coco/pcme/seed0/model.safetensors"


def copy_project(root: Path) -> Path:
    """The workflow and the code it runs, copied: the copy's jobs import the copy's packages."""
    copy_packages(copy_workflow(root))
    (root / "tiny.yaml").write_text(json.dumps(TINY_WORKFLOW))
    return root


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", *args, "--cores", "1", "--configfile", "tiny.yaml"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=900)


# --- resume only the run's own checkpoint --------------------------------------------------------


def test_a_finished_run_removes_its_checkpoint(prepared, tmp_path):
    train(prepared, tmp_path, tiny_settings("vse0", epochs=1), threads=1)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / CHECKPOINT).exists()


def test_a_checkpoint_of_other_code_is_not_resumed_and_the_log_says_why(prepared, tmp_path, monkeypatch, caplog):
    settings = tiny_settings("vse0", epochs=2)
    assert train(prepared, tmp_path, settings, threads=1, stop_after_epoch=1) is None
    monkeypatch.setattr(trainer, "code_digest", lambda: "edited-code")
    with caplog.at_level("INFO", logger="pcmebench.train"):
        train(prepared, tmp_path, settings, threads=1)
    assert f"starting afresh: {tmp_path / CHECKPOINT} was written by another run (other code:" in caplog.text
    assert "edited-code now" in caplog.text
    assert [row.split(",")[0] for row in (tmp_path / "train_log.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_a_checkpoint_of_other_prepared_data_is_not_resumed(tiny_coco_source, tmp_path, caplog):
    """Re-preparing with another vocabulary used to crash the resume with a bare size mismatch."""
    first, second = tmp_path / "first", tmp_path / "second"
    prepare_dataset("coco", tiny_coco_source, first, train_splits=["train", "restval"], word_dim=8)
    prepare_dataset("coco", tiny_coco_source, second, train_splits=["train", "restval"], word_dim=8, min_word_count=3)
    assert len(PreparedDataset(first).vocab) != len(PreparedDataset(second).vocab)
    settings = tiny_settings("pcme", epochs=2)
    train(first, tmp_path / "run", settings, threads=1, stop_after_epoch=1)
    with caplog.at_level("INFO", logger="pcmebench.train"):
        record = train(second, tmp_path / "run", settings, threads=1)
    assert "other prepared data" in caplog.text
    assert record["prepared_data_sha256"] == PreparedDataset(second).content_sha256


def test_weights_meet_only_the_prepared_data_they_were_trained_on(tiny_coco_source, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    prepare_dataset("coco", tiny_coco_source, first, train_splits=["train", "restval"], word_dim=8)
    prepare_dataset("coco", tiny_coco_source, second, train_splits=["train", "restval"], word_dim=8, min_word_count=3)
    train(first, tmp_path / "run", tiny_settings("vse0", epochs=1), threads=1)
    with pytest.raises(
        DataError, match=r"model.safetensors: a run's weights: trained on other prepared data .*rerun the train rule"
    ):
        export(second, tmp_path / "run" / "model.safetensors", tmp_path / "embeddings.safetensors")


def test_a_forced_rerun_after_a_code_edit_trains_again(tmp_path):
    """The finding: after editing models/pcme.py, `snakemake -f model.safetensors` returned the old
    weights in seconds (the finished run's checkpoint was resumed at its last epoch)."""
    project = copy_project(tmp_path)
    first = snakemake(project, WEIGHTS)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (project / WEIGHTS).read_bytes()
    with (project / "models" / "pcme.py").open("a") as source:  # an edit of the loss
        source.write(
            textwrap.dedent(
                """
                _published_loss = PCME.loss


                def _edited_loss(self, images, captions, match):
                    total, stats = _published_loss(self, images, captions, match)
                    return total + 0.5 * next(iter(images.values())).sum(), stats


                PCME.loss = _edited_loss
                """
            )
        )
    again = snakemake(project, "-f", WEIGHTS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (project / WEIGHTS).read_bytes() != before
    log = (project / "work/runs/synthetic-coco/pcme/seed0/train.log").read_text()
    assert "resuming" not in log and "epoch 2:" in log


# --- byte-stable, relocatable, the user's umask -------------------------------------------------


def run_python(code: str, cwd: Path, umask: int = 0o022) -> None:
    subprocess.run(
        [sys.executable, "-c", f"import os; os.umask({umask}); " + code],
        cwd=cwd,
        check=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_the_same_recipe_gives_the_same_bytes_in_every_process(prepared, tmp_path):
    recipe = {"pretraining": {"seed": 7, "images": 64, "epochs": 1, "lr": 3e-3, "batch_size": 32}, "image_size": 48, "input_size": 32, "flip": False}  # fmt: skip
    settings = tiny_settings("pcme", epochs=1)
    for attempt in ("a", "b"):  # safetensors ordered its metadata differently in each process
        run_python(
            "from pcmebench.pretrain import pretrain; from pcmebench.train import train; "
            f"pretrain('synthetic-coco', {recipe!r}, 'backbone-{attempt}.safetensors', threads=1); "
            f"train({str(prepared)!r}, 'run-{attempt}', {settings!r}, threads=1, backbone='backbone-{attempt}.safetensors')",
            tmp_path,
        )
    assert (tmp_path / "backbone-a.safetensors").read_bytes() == (tmp_path / "backbone-b.safetensors").read_bytes()
    assert (tmp_path / "run-a/model.safetensors").read_bytes() == (tmp_path / "run-b/model.safetensors").read_bytes()
    records = [json.loads((tmp_path / f"run-{a}/run.json").read_text()) for a in "ab"]
    assert records[0]["config_hash"] == records[1]["config_hash"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_users_umask(prepared, tmp_path, umask, mode):
    settings = tiny_settings("vse0", epochs=1)
    run_python(
        f"from pcmebench.train import train; from pcmebench.embed import export; "
        f"train({str(prepared)!r}, 'run', {settings!r}, threads=1); "
        f"export({str(prepared)!r}, 'run/model.safetensors', 'run/embeddings.safetensors')",
        tmp_path,
        umask,
    )
    for name in ("model.safetensors", "embeddings.safetensors", "run.json", "train_log.csv"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == mode, name


def test_a_prepared_project_moved_as_a_whole_reads_its_own_images(tiny_coco_source, tmp_path):
    old = tmp_path / "old-place"
    shutil.copytree(tiny_coco_source, old / "data" / "synthetic-coco")
    prepare_dataset("coco", old / "data" / "synthetic-coco", old / "work" / "prepared" / "synthetic-coco", ["train"], word_dim=8)
    meta = json.loads((old / "work" / "prepared" / "synthetic-coco" / "meta.json").read_text())
    assert meta["raw_root"] == "../../../data/synthetic-coco"
    new = tmp_path / "new-place"
    old.rename(new)
    split = PreparedDataset(new / "work" / "prepared" / "synthetic-coco").split("test")
    assert split.raw_root.resolve() == (new / "data" / "synthetic-coco").resolve()
    assert split.image(0).size == (48, 48)


# --- a killed job leaves no trainer behind -------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def trainers_in(folder: Path) -> list[int]:
    """Processes running pcmebench.train with ``folder`` as their working directory."""
    found = []
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            here = Path(os.readlink(f"/proc/{pid}/cwd")) == folder
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if here and "-m pcmebench.train" in command_line(pid):
            found.append(pid)
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_killing_a_job_stops_its_trainer(tmp_path):
    """The finding: killing a job's shell wrapper (as a scheduler's time limit may) left the trainer
    running, and it later wrote complete outputs. With `exec` the job's process is the trainer."""
    project = copy_project(tmp_path)
    slow = json.loads((project / "tiny.yaml").read_text())
    slow["dataset_settings"]["synthetic-coco"]["training"]["finetune_epochs"] = 200
    (project / "tiny.yaml").write_text(json.dumps(slow))
    log = open(tmp_path / "snakemake.log", "w")  # noqa: SIM115 - closed below
    job_runner = subprocess.Popen(
        [sys.executable, "-m", "snakemake", WEIGHTS, "--cores", "1", "--configfile", "tiny.yaml"],
        cwd=project,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        job = None
        while job is None and time.monotonic() < deadline and job_runner.poll() is None:
            job = next((pid for pid in children(job_runner.pid) if "pcmebench.train" in command_line(pid)), None)
            time.sleep(0.5)
        assert job is not None, (tmp_path / "snakemake.log").read_text()[-3000:]
        os.kill(job, signal.SIGKILL)  # the job's own process, whatever it is
        job_runner.wait(timeout=120)
        time.sleep(1)
        assert trainers_in(project) == []
        assert job_runner.returncode != 0
        assert not (project / WEIGHTS).exists()
    finally:
        if job_runner.poll() is None:
            job_runner.kill()
        log.close()
        for pid in trainers_in(project):
            os.kill(pid, signal.SIGKILL)
