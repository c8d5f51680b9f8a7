"""The cluster path: profiles/slurm, the check that jobs fit the cluster, and runs through sbatch on a real SLURM.

The runs need a single-node SLURM started here (tests/slurm_cluster.py; Debian's slurm-wlm and
munge, installed by .ci/run as root) and skip with the reason where it cannot start. One run of
the smoke DAG through SLURM, for two of its methods (``THROUGH_SLURM``), serves three tests: it
builds every results file, its metrics equal the local run's (the session's `built`, shared with
tests/test_workflow.py), and one training job in it, cancelled with scancel after its first
checkpoint, is resubmitted and resumes. Killing a job inside the DAG that is compared with the
uninterrupted local run proves both without a third run of the smoke DAG.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yte

from pcmebench.cluster import (
    SETTINGS,
    ClusterFitError,
    Node,
    Request,
    check_requests,
    parse_gpus,
    parse_minutes,
    parse_sinfo,
    targets,
)
from tests.conftest import REPO, SMOKE, SMOKE_RESULTS, copy_workflow, preset, runs_of, snakemake, tail
from tests.slurm_cluster import missing_requirements, start_cluster

pytestmark = pytest.mark.slow  # runs Snakemake through SLURM

SMOKE_CONFIG = preset(SMOKE[1])  # the preset the tests submit

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
# The profile's documented settings for a small cluster: one node of 2 CPUs (this machine's).
SMALL_CLUSTER = {"PCME_SLURM_CPUS": "1", "PCME_SLURM_MEM_MB": "4000"}
# The README's submission command, run on the smoke preset.
SUBMIT = ("all", "--workflow-profile", "profiles/slurm", *SMOKE)
# Tests only: the first status check 2 s after a submission or a finished job (the plugin's 40 s
# spares a busy cluster's controller; here it would add minutes of waiting).
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "2")
# Tests only: two of the smoke preset's methods, one point and one probabilistic (the cancelled
# one), on one of its datasets, go through SLURM. The cluster path depends on neither, and the whole
# preset through sbatch took most of the test suite's time.
THROUGH_SLURM = ("vse0", "pcme")
DATASET = "synthetic-coco"
SUBSET = ("--config", "methods=[" + ",".join(f'"{m}"' for m in THROUGH_SLURM) + "]", f'datasets=["{DATASET}"]')
KILLED = {"dataset": DATASET, "method": "pcme", "seed": 0}  # 7 epochs on the smoke preset
MULTICORE_RULES = ("prepare", "pretrain", "train", "embed", "evaluate", "evaluate_external", "export_run", "export_external")

needs_plugin = pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason="needs snakemake-executor-plugin-slurm (the test and slurm extras)",
)


def profile(environment: dict[str, str], monkeypatch) -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (a YTE template) in this environment."""
    for name in SETTINGS.values():
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with PROFILE.open() as stream:
        return yte.process_yaml(stream, require_use_yte=True)


def clean_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any PCME_SLURM_* setting of the developer's, plus ``settings``."""
    return {k: v for k, v in os.environ.items() if k not in SETTINGS.values()} | settings


# --- the check that jobs fit (no SLURM needed) ----------------------------------------------------


def test_slurm_time_limits_in_minutes():
    assert parse_minutes("infinite") == math.inf and parse_minutes("UNLIMITED") == math.inf
    assert parse_minutes("30") == 30 and parse_minutes("30:30") == 30.5
    assert parse_minutes("2:00:00") == 120
    assert parse_minutes("1-00:00:00") == 1440 and parse_minutes("2-12") == 3600 and parse_minutes("1-01:30") == 1530


def test_gpus_of_a_node():
    assert parse_gpus("(null)") == 0
    assert parse_gpus("gpu:4") == 4 and parse_gpus("gpu:a100:8(S:0-1)") == 8
    assert parse_gpus("gpu:v100:2,shard:8,gpu:t4:1") == 3


SINFO = """\
cpu01|cpu*|64|256000|(null)|2-00:00:00
cpu02|cpu*|32|128000|(null)|2-00:00:00
gpu01|gpu|32|512000|gpu:a100:4(S:0-1)|1-00:00:00
"""


def request(rule="train", cpus=8, mem_mb=64000, gpus=1, minutes=1440.0, partition="gpu") -> Request:
    return Request(rule, "dataset=coco, method=pcme, seed=0", cpus, mem_mb, gpus, minutes, partition)


def test_sinfo_lines_become_partitions():
    partitions = parse_sinfo(SINFO)
    assert sorted(partitions) == ["cpu", "gpu"]
    assert partitions["cpu"].default and not partitions["gpu"].default
    assert partitions["cpu"].nodes[1] == Node("cpu02", 32, 128000, 0)
    assert partitions["gpu"].max_minutes == 1440 and partitions["gpu"].nodes[0].gpus == 4


def test_jobs_that_fit_pass():
    partitions = parse_sinfo(SINFO)
    check_requests([request(), request("evaluate", gpus=0, partition=None), request("embed", minutes=120)], partitions)


@pytest.mark.parametrize(
    ("ask", "names"),
    [
        ({"cpus": 48}, ["48 CPUs", "lower PCME_SLURM_CPUS to at most 32"]),
        ({"mem_mb": 600000}, ["600000 MB", "PCME_SLURM_MEM_MB", "at most 512000 MB"]),
        ({"minutes": 2880}, ["2880 min", "a limit of 1440 min", "lower PCME_SLURM_MINUTES to at most 1440"]),
        ({"partition": None}, ["1 GPU and", "partition cpu", "set PCME_SLURM_GPU_PARTITION to a partition with GPU nodes"]),
        ({"partition": "a100"}, ["partition 'a100' does not exist (partitions: cpu, gpu)", "PCME_SLURM_GPU_PARTITION"]),
    ],
)
def test_an_oversized_job_is_named_with_the_setting_to_change(ask, names):
    with pytest.raises(ClusterFitError) as error:
        check_requests([request(**ask), request(**ask) if "cpus" in ask else request()], parse_sinfo(SINFO))
    message = str(error.value)
    assert "rule train" in message and "dataset=coco, method=pcme, seed=0" in message
    assert ("2 jobs" if "cpus" in ask else "1 job,") in message
    assert "profiles/slurm/config.yaml" in message and "set-threads / set-resources of train" in message
    for name in names:
        assert name in message


def test_where_jobs_go_is_said_once():
    partitions = parse_sinfo(SINFO)
    line = targets([request(), request("evaluate", gpus=0, partition=None)], partitions)
    assert line.startswith("SLURM: no account given (PCME_SLURM_ACCOUNT)")
    assert "train -> partition gpu" in line and "evaluate -> partition cpu (the cluster's default)" in line
    given = Request("train", "", 1, 1, 0, 1.0, "gpu", account="lab42")
    assert targets([given], partitions).startswith("SLURM: account lab42;")


# --- the profile ------------------------------------------------------------------------------------


def test_profile_defaults_fit_a_typical_gpu_node(monkeypatch):
    settings = profile({}, monkeypatch)
    assert settings["executor"] == "slurm" and settings["slurm-status-command"] == "squeue"
    assert settings["slurm-keep-successful-logs"] is True and settings["slurm-delete-logfiles-older-than"] == 0
    assert settings["retries"] >= 1
    assert all(settings["set-threads"][rule] == 8 for rule in MULTICORE_RULES)
    train = settings["set-resources"]["train"]
    assert (train["mem_mb"], train["runtime"]) == (64000, 1440) and "slurm_partition" not in train
    assert settings["set-resources"]["evaluate"]["mem_mb"] == 64000
    assert settings["set-resources"]["embed"]["mem_mb"] == 32000
    assert "slurm_account" not in settings["default-resources"] and "slurm_partition" not in settings["default-resources"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("slurm", "test"):
        assert any(requirement.startswith("snakemake-executor-plugin-slurm") for requirement in extras[extra]), extra


def test_every_rule_that_claims_cores_is_sized_by_the_profile(monkeypatch):
    """A rule whose threads follow --cores (core_claim) would ask SLURM for the profile's `cores`."""
    claiming = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        rule = None
        for line in path.read_text().splitlines():
            if line.startswith("rule "):
                rule = line.split()[1].rstrip(":")
            elif line.strip() == "threads: core_claim":
                claiming.add(rule)
    assert claiming == set(MULTICORE_RULES)
    assert set(profile({}, monkeypatch)["set-threads"]) == claiming


def test_profile_sizes_come_from_one_place(monkeypatch):
    settings = profile(
        {
            "PCME_SLURM_CPUS": "4", "PCME_SLURM_MEM_MB": "20000", "PCME_SLURM_MINUTES": "240",
            "PCME_SLURM_ACCOUNT": "lab42", "PCME_SLURM_PARTITION": "cpu", "PCME_SLURM_GPU_PARTITION": "gpu-a100",
        },
        monkeypatch,
    )  # fmt: skip
    assert all(settings["set-threads"][rule] == 4 for rule in MULTICORE_RULES)
    assert settings["default-resources"] == {"mem_mb": 5000, "runtime": 60, "slurm_partition": "cpu", "slurm_account": "lab42"}
    resources = settings["set-resources"]
    assert resources["train"] == {"mem_mb": 20000, "runtime": 240, "slurm_partition": "gpu-a100"}
    assert resources["embed"]["slurm_partition"] == "gpu-a100" and "slurm_partition" not in resources["evaluate"]
    assert max(r.get("runtime", 0) for r in resources.values()) == 240  # no stage above the training limit
    assert resources["prepare"]["mem_mb"] == 10000


def test_readme_shows_the_commands_the_tests_run():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## On a cluster (SLURM)") :]
    section = section[: section.index("\n## ", 3)]
    assert "snakemake " + " ".join(SUBMIT).replace("config/smoke.yaml", "config/paper.yaml") in section
    assert " ".join(f"{k}={v}" for k, v in SMALL_CLUSTER.items()) in section
    assert "--cores 4 download" in section and " -n" in section
    assert "squeue" in section and ".snakemake/slurm_logs/" in section


# --- on a real SLURM --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A single-node SLURM for this module's tests; skips where its daemons are missing."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


@dataclass
class SlurmRun:
    root: Path
    output: str
    returncode: int
    cancelled_job: str
    seconds: float


def run_dir(root: Path, dataset: str, method: str, seed: int) -> Path:
    return root / "work-smoke" / "runs" / dataset / method / f"seed{seed}"


def cancel_after_first_checkpoint(cluster, root: Path, process: subprocess.Popen, timeout: float) -> str:
    """scancel the KILLED run's training job once its checkpoint.pt appears (one epoch done); its SLURM job id."""
    checkpoint = run_dir(root, **KILLED) / "checkpoint.pt"
    comment = f"rule_train_wildcards_{KILLED['dataset']}_{KILLED['method']}_{KILLED['seed']}"  # the plugin's --comment
    deadline = time.monotonic() + timeout
    while not checkpoint.exists():
        assert process.poll() is None, (
            "the workflow ended before the training to cancel wrote its first checkpoint:\n"
            + (root / "snakemake.out").read_text()[-4000:]
        )
        assert time.monotonic() < deadline, "no checkpoint of the training to cancel in time"
        time.sleep(0.2)
    queue = cluster.run("squeue", "--noheader", "--format=%i|%k").stdout
    jobs = [line.split("|", 1)[0] for line in queue.splitlines() if line.split("|", 1)[1].strip() == comment]
    assert len(jobs) == 1, queue
    cluster.run("scancel", jobs[0])
    return jobs[0]


@pytest.fixture(scope="module")
def through_slurm(cluster, tmp_path_factory) -> SlurmRun:
    """The smoke DAG of two methods (THROUGH_SLURM) submitted through profiles/slurm with the small-cluster
    settings; one training cancelled mid-way."""
    root = copy_workflow(tmp_path_factory.mktemp("slurm-smoke"))
    env = clean_environment(**SMALL_CLUSTER) | {k: v for k, v in cluster.env.items() if k in ("SLURM_CONF", "PATH")}
    began = time.monotonic()
    with (root / "snakemake.out").open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "snakemake", *SUBMIT, *FAST_STATUS, *SUBSET],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            cancelled = cancel_after_first_checkpoint(cluster, root, process, timeout=1800)
            returncode = process.wait(timeout=2400)
        finally:
            if process.poll() is None:
                process.kill()
    output = (root / "snakemake.out").read_text()
    return SlurmRun(root, output, returncode, cancelled, time.monotonic() - began)


def result_files(root: Path) -> set[str]:
    """The results' files but the report, and no other dataset's figures than the one through SLURM."""
    files = (p.relative_to(root) for p in (root / SMOKE_RESULTS).rglob("*") if p.is_file() and "report" not in p.parts)
    return {str(p) for p in files if p.parent.name == DATASET or "plots" not in p.parts}


@needs_plugin
def test_smoke_dag_through_sbatch_builds_every_results_file(through_slurm, built, cluster):
    run = through_slurm
    assert run.returncode == 0, run.output[-6000:] + cluster.logs()
    print(f"smoke DAG through SLURM: {run.seconds:.0f} s")
    assert result_files(run.root) == result_files(built)
    # every job but `all` went through sbatch (plus the cancelled training's second submission)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", run.output)
    planned = int(re.search(r"^total\s+(\d+)$", run.output, re.MULTILINE)[1]) - 1
    assert len(submitted) == planned + 1
    # each job's SLURM log is kept where the plugin said, next to its rule's own log
    for _, log in submitted:
        assert Path(log).is_file() and Path(log).is_relative_to(run.root / ".snakemake" / "slurm_logs"), log
    assert len(list((run.root / ".snakemake" / "slurm_logs").rglob("*.log"))) == len(submitted)
    for stage in ("train", "embed", "evaluate"):
        assert (run_dir(run.root, DATASET, "vse0", 0) / f"{stage}.log").is_file()
    # the account and partition said once, at the start
    assert run.output.count("SLURM: no account given (PCME_SLURM_ACCOUNT)") == 1
    assert "-> partition debug (the cluster's default)" in run.output


@needs_plugin
def test_metrics_through_slurm_equal_the_local_run(through_slurm, built):
    assert through_slurm.returncode == 0
    key = ["dataset", "method", "seed", "protocol", "scoring", "direction", "metric"]
    local = pd.read_csv(built / SMOKE_RESULTS / "metrics.csv")
    local = local[local["method"].isin(THROUGH_SLURM) & (local["dataset"] == DATASET)].sort_values(key, ignore_index=True)
    remote = pd.read_csv(through_slurm.root / SMOKE_RESULTS / "metrics.csv").sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(remote, local, check_exact=True)


@needs_plugin
def test_cancelled_training_is_resubmitted_and_resumes_from_its_checkpoint(through_slurm, built, cluster):
    run = through_slurm
    assert run.returncode == 0
    killed = run_dir(run.root, **KILLED)
    # the plugin's log folder: rule_train/<wildcards>/<SLURM job id>.log
    slurm_logs = run.root / ".snakemake" / "slurm_logs" / "rule_train" / "_".join(str(v) for v in KILLED.values())
    attempts = sorted(slurm_logs.glob("*.log"), key=lambda p: int(p.stem))  # by job id: 9 before 19
    assert [p.stem for p in attempts][:1] == [run.cancelled_job] and len(attempts) == 2, attempts
    assert "CANCELLED" in attempts[0].read_text()
    assert f"SLURM-job '{run.cancelled_job}' failed, SLURM status is: 'CANCELLED'" in run.output
    # the second attempt's log: it resumed after the epochs the cancelled one had finished, and did not redo them
    log = (killed / "train.log").read_text()
    assert re.search(r"resuming from \S+checkpoint\.pt after epoch \d+", log), log[-2000:]
    epochs_logged = [int(n) for n in re.findall(r"epoch (\d+): \{", log)]
    total = len(pd.read_csv(run_dir(built, **KILLED) / "train_log.csv"))
    assert epochs_logged == list(range(epochs_logged[0], total + 1)) and epochs_logged[0] >= 2
    # and it ends as the uninterrupted local run did
    curve, reference = (pd.read_csv(run_dir(root, **KILLED) / "train_log.csv") for root in (run.root, built))
    losses = [c for c in reference.columns if c not in ("wall_seconds", "samples_per_second")]
    pd.testing.assert_frame_equal(curve[losses], reference[losses], check_exact=True)
    metrics = [pd.read_csv(run_dir(root, **KILLED) / "metrics.csv") for root in (run.root, built)]
    pd.testing.assert_frame_equal(metrics[0], metrics[1], check_exact=True)


@needs_plugin
def test_an_oversized_job_is_refused_before_anything_is_submitted(cluster, tmp_path):
    root = copy_workflow(tmp_path)
    slurm = {k: v for k, v in cluster.env.items() if k in ("SLURM_CONF", "PATH")}
    # the profile's defaults (8 CPUs, 64 GB a job) on a node of 2 CPUs, as a new user first tries it:
    # the dry run (no onstart) names the oversized rule as the run does
    node = cluster.run("sinfo", "--noheader", "--format=%c|%m").stdout.split("|")
    runs = runs_of(SMOKE_CONFIG)
    for dry in (("-n",), ()):
        result = snakemake(root, *SUBMIT, *dry, *FAST_STATUS, env=clean_environment() | slurm, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "These jobs would pend for ever on this cluster, so nothing was submitted" in output, tail(result)
        assert re.search(
            rf"rule train \({runs} jobs, e\.g\. dataset=\S+, method=\S+, seed=0\) asks for 8 CPUs, 64000 MB, 0 GPUs", output
        ), tail(result)
        assert f"lower PCME_SLURM_CPUS to at most {node[0]}" in output and "PCME_SLURM_MEM_MB" in output
    assert "has been submitted" not in output and not cluster.run("squeue", "--noheader", "--states=PENDING").stdout.strip()
    # a GPU job on a cluster without GPUs: the setting named is the GPU partition
    result = snakemake(root, *SUBMIT, "--config", "device=cuda", env=clean_environment(**SMALL_CLUSTER) | slurm, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "has been submitted" not in output
    assert re.search(rf"rule train \({runs} jobs.*asks for 1 CPU, 4000 MB, 1 GPU and", output), tail(result)
    assert "set PCME_SLURM_GPU_PARTITION to a partition with GPU nodes" in output
