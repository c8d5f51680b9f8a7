"""The Snakemake workflow: planned DAGs, the smoke DAG run end to end, reruns, profiles and its messages."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from models.registry import registered
from pcmebench import tables
from tests.conftest import REPO, SMOKE, SMOKE_RESULTS, copy_workflow, preset, runs_of, snakemake, tail
from tests.loopback import LoopbackServer
from tests.real_data import serve_real_data

pytestmark = pytest.mark.slow  # runs Snakemake

REGISTRY = registered()
SCORINGS = {name: list(m.scorings) for name, m in REGISTRY.items()}
DEFAULT = preset()
PAPER = preset("config/paper.yaml")
SMOKE_CONFIG = preset(SMOKE[1])
RECALLS = ["R@1", "R@5", "R@10"]
FULL = ["full R@1", "full R-P", "full mAP@R"]
# What applies to each synthetic dataset: {protocol: {direction: metrics}} (COCO format: 1K with
# PMRP; CUB format: class-level positives; both: the complete ground truth, protocol `full`).
APPLICABLE = {
    "synthetic-coco": {
        "1K": {"i2t": [*RECALLS, "PMRP", "PMRP@0", "PMRP@1", "PMRP@2"], "t2i": [*RECALLS, "PMRP", "PMRP@0", "PMRP@1", "PMRP@2"],
               "both": ["RSUM"]},
        "full": {"i2t": FULL, "t2i": FULL},
    },
    "synthetic-cub": {
        "CUB": {"i2t": [*RECALLS, "R-P", "mAP@R"], "t2i": [*RECALLS, "R-P", "mAP@R"]},
        "full": {"i2t": FULL, "t2i": FULL},
    },
}  # fmt: skip


@pytest.fixture
def workflow(tmp_path) -> Path:
    return copy_workflow(tmp_path)


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    table = table[: table.index("\n\n", table.index("total"))]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE) if m[1] != "total"}


def planned_jobs(output: str) -> list[dict]:
    """Each job of a dry run's printout: its rule, wildcards, threads and resources."""
    jobs = []
    for block in re.split(r"\n(?=rule \w+:|localrule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if not rule:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        jobs.append(
            {
                "rule": rule[1],
                "wildcards": dict(item.split("=", 1) for item in wildcards[1].split(", ")) if wildcards else {},
                "threads": int(threads[1]) if threads else 1,
                "resources": dict(item.split("=", 1) for item in resources[1].split(", ")) if resources else {},
            }
        )
    return jobs


# The placeholders' (empty) weight files are checked against the SHA-256 their sources give.
EMPTY_FILE_SHA256 = hashlib.sha256(b"").hexdigest()[:8]
PLACEHOLDER_WEIGHTS = 'sources={"imagenet": {"resnet50": {"sha256": "%s"}, "resnet152": {"sha256": "%s"}}}' % (
    (EMPTY_FILE_SHA256,) * 2
)


def place_real_layouts(root: Path, resources: Path | None = None) -> Path:
    """Placeholders where the real data's files and folders go under data_root ``root`` (COCO's and
    CUB's layouts, GloVe) and, given the workflow's ``resources`` folder, the ImageNet weights (empty
    files: plan with PLACEHOLDER_WEIGHTS): enough for the workflow to plan over them without a download."""
    from corpora.sources import IMAGENET_WEIGHTS, REAL_DATASETS, dataset_items, glove_path, weights_path

    items = [item for name in REAL_DATASETS for item in dataset_items(name, root / name, root)]
    files = [item.path for item in items if not item.folder] + [glove_path(root)]
    files += [weights_path(encoder, resources / "torch") for encoder in IMAGENET_WEIGHTS] if resources else []
    for item in items:
        if item.folder:
            item.path.mkdir(parents=True, exist_ok=True)
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return root


REAL_DATA_JOBS = {
    "download_archive": 5, "download_coco_file": 4, "download_cub_file": 3, "download_glove": 1, "download_imagenet_weights": 2,
    "extract_coco_train2014": 1, "extract_coco_val2014": 1, "extract_coco_annotations": 1, "extract_cub_images": 1,
    "extract_cub_captions": 1,
}  # fmt: skip


PER_RUN = ("train", "embed", "evaluate")
PAPER_JOBS = {"prepare": len(PAPER["datasets"])} | dict.fromkeys(PER_RUN, runs_of(PAPER)) | {
    "aggregate": 1, "plots": 1, "report": 1, "all": 1,
}  # fmt: skip


# --- planning ----------------------------------------------------------------------------------


def test_dry_run_lays_out_the_whole_default_dag(workflow):
    result = snakemake(workflow, "-n", "all")
    assert result.returncode == 0, result.stderr
    datasets = len(DEFAULT["datasets"])
    assert job_counts(result.stdout) == {
        "synthesize": datasets, "prepare": datasets, "pretrain": datasets, **dict.fromkeys(PER_RUN, runs_of(DEFAULT)),
        "aggregate": 1, "plots": 1, "all": 1,
    }  # fmt: skip


def test_command_line_overrides_narrow_the_dag(workflow):
    method = DEFAULT["methods"][-1]
    result = snakemake(workflow, "-n", "all", "--config", 'datasets=["synthetic-coco"]', f'methods=["{method}"]', "seeds=[0,1]")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert (counts["synthesize"], counts["train"], counts["evaluate"], counts["aggregate"]) == (1, 2, 2, 1)
    assert {job["wildcards"].get("method") for job in planned_jobs(result.stdout) if job["rule"] == "train"} == {method}


def test_nested_command_line_values_are_typed_by_the_schema(workflow):
    """--config reads nested values as text; numbers the schema asks for become numbers."""
    result = snakemake(
        workflow, "-n", "all", "--config", 'method_settings={"vsepp": {"margin": 0.25}}', 'bootstrap={"replicates": 10}'
    )
    assert result.returncode == 0, tail(result)
    assert "--bootstrap 10 " in result.stdout
    assert '"margin": 0.25' in result.stdout


def test_paper_dag_plans_over_data_in_the_real_layouts(workflow, tmp_path):
    root = place_real_layouts(tmp_path / "real", workflow / "resources")
    result = snakemake(
        workflow, "-n", "all", "report", "--configfile", "config/paper.yaml", "--config", f"data_root={root}", PLACEHOLDER_WEIGHTS
    )
    assert result.returncode == 0, tail(result)
    counts = job_counts(result.stdout)
    assert counts == PAPER_JOBS  # data in place: nothing to download
    jobs = planned_jobs(result.stdout)
    expected = {(d, m, str(s)) for d in PAPER["datasets"] for m in PAPER["methods"] for s in PAPER["seeds"]}
    for rule in ("train", "embed", "evaluate"):
        planned = {
            (j["wildcards"]["dataset"], j["wildcards"]["method"], j["wildcards"]["seed"]) for j in jobs if j["rule"] == rule
        }
        assert planned == expected, rule
    # device auto on real data: every training and embedding job asks for a GPU
    assert all(j["resources"].get("gpu") == "1" for j in jobs if j["rule"] in ("train", "embed"))


def test_paper_dag_plans_every_download_when_nothing_is_in_place(workflow, tmp_path):
    result = snakemake(
        workflow, "-n", "all", "report", "--configfile", "config/paper.yaml", "--config", f"data_root={tmp_path / 'empty'}"
    )
    assert result.returncode == 0, tail(result)
    assert job_counts(result.stdout) == REAL_DATA_JOBS | PAPER_JOBS
    jobs = planned_jobs(result.stdout)
    archives = {job["wildcards"]["archive"] for job in jobs if job["rule"] == "download_archive"}
    assert archives == {"train2014.zip", "val2014.zip", "annotations_trainval2014.zip", "CUB_200_2011.tgz", "cvpr2016_cub.tar.gz"}
    assert {job["wildcards"]["weights"] for job in jobs if job["rule"] == "download_imagenet_weights"} == {
        "resnet50-0676ba61.pth", "resnet152-394f9c45.pth",
    }  # fmt: skip


def test_download_target_fetches_the_real_data_once_and_prepare_reads_it(workflow, tmp_path):
    """The real DAG's data stage on stand-ins served from 127.0.0.1 (tests/real_data.py): the download
    target fetches, verifies and extracts everything; a second run makes no request; prepare reads
    the real layouts through the shared loaders."""
    server = LoopbackServer()
    try:
        real = serve_real_data(server, tmp_path / "served")
        data = tmp_path / "data"
        (workflow / "local-sources.yaml").write_text(yaml.safe_dump({"data_root": str(data), "sources": real.sources}))
        args = ("--configfile", "config/paper.yaml", "local-sources.yaml")
        result = snakemake(workflow, "--cores", "2", "download", "work/prepared/coco", "work/prepared/cub", *args)
        assert result.returncode == 0, tail(result)
        assert job_counts(result.stderr) == REAL_DATA_JOBS | {"prepare": 2, "download": 1}
        # archives are gone once extracted; the Drive file's SHA-256 is kept (no published checksum)
        assert sorted(p.name for p in (data / "downloads").iterdir()) == ["cvpr2016_cub.tar.gz.sha256"]
        assert (workflow / "resources" / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth").is_file()
        coco = json.loads((workflow / "work" / "prepared" / "coco" / "meta.json").read_text())
        cub = json.loads((workflow / "work" / "prepared" / "cub" / "meta.json").read_text())
        assert coco["splits"]["test"]["images"] == 10 and coco["label_width"] == 40 and coco["words_from_word_vectors_file"] > 0
        assert cub["splits"]["train"]["images"] == 4 * 3 - len(real.held_out)
        requests = len(server.requests)
        again = snakemake(workflow, "-n", "download", *args)
        assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
        plan = snakemake(workflow, "-n", "all", *args)
        assert plan.returncode == 0, tail(plan)
        assert not set(job_counts(plan.stdout)) & set(REAL_DATA_JOBS) and job_counts(plan.stdout)["train"] == runs_of(PAPER)
        assert len(server.requests) == requests
    finally:
        server.close()


@pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_slurm") is None, reason="needs the slurm extra")
def test_slurm_profile_plans_the_paper_dag(workflow, tmp_path):
    root = place_real_layouts(tmp_path / "real")
    paper = ("-n", "all", "report", "--configfile", "config/paper.yaml", "--config", f"data_root={root}")
    result = snakemake(workflow, "--workflow-profile", "profiles/slurm", *paper)
    assert result.returncode == 0, tail(result)
    assert job_counts(result.stdout)["train"] == runs_of(PAPER)
    for job in planned_jobs(result.stdout):
        if job["rule"] == "train":
            assert job["threads"] == 8
            assert (job["resources"]["gpu"], job["resources"]["mem_mb"], job["resources"]["runtime"]) == ("1", "64000", "1440")
    # the spelling plans too (threads then capped by profiles/default's cores, see docs/speed.md)
    assert snakemake(workflow, "--profile", "profiles/slurm", *paper).returncode == 0


# --- bad input ---------------------------------------------------------------------------------


def test_missing_real_data_names_every_file_with_its_address(workflow, tmp_path):
    """Downloads off: the plan stops, naming every missing file of both datasets with its address."""
    root = tmp_path / "empty"
    result = snakemake(
        workflow, "-n", "all", "--configfile", "config/paper.yaml", "--config", f"data_root={root}", 'sources={"download": false}'
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Real data is missing and downloads are off (sources.download: false)" in output
    assert "the README's section 'Real data'" in output and "## Real data" in (REPO / "README.md").read_text()
    expected = {
        f"{root}/coco/images/train2014/": "http://images.cocodataset.org/zips/train2014.zip",
        f"{root}/coco/annotations/instances_val2014.json": "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
        f"{root}/coco/annotations/coco_test_ids.npy": "MD5 61aa5bc32ade5a0dfa3dc907160a3b55",
        f"{root}/cub/images/": "CUB_200_2011.tgz?download=1",
        f"{root}/cub/text_c10/": "https://drive.google.com/uc?export=download&id=0B0ywwgffWnLLZW9uVHNjb2JmNlE",
        f"{root}/cub/seen_test_images.txt": "MD5 bf9e2982cb96bdaa95e5f2e31821b461",
        f"{root}/glove/glove.840B.300d.zip": "http://nlp.stanford.edu/data/glove.840B.300d.zip",
        "resources/torch/hub/checkpoints/resnet50-0676ba61.pth": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "resources/torch/hub/checkpoints/resnet152-394f9c45.pth": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    }
    lines = [line for line in output.splitlines() if "  (sources." in line]
    assert len(lines) == 21  # 10 of COCO, 9 of CUB, GloVe and two weight files
    for path, address in expected.items():
        assert any(line.strip().startswith(path + " ") and address in line for line in lines), path


def test_the_lists_of_real_data_fetch_the_annotations_and_split_files_not_the_images(workflow, tmp_path):
    result = snakemake(workflow, "-n", "lists", "--configfile", "config/paper.yaml", "--config", f"data_root={tmp_path}")
    assert result.returncode == 0, tail(result)
    fetched = [job["wildcards"]["archive"] for job in planned_jobs(result.stdout) if job["rule"] == "download_archive"]
    assert sorted(fetched) == ["CUB_200_2011.tgz", "annotations_trainval2014.zip", "cvpr2016_cub.tar.gz"]  # no COCO images
    assert job_counts(result.stdout) == {
        "download_archive": 3, "download_coco_file": 1, "download_cub_file": 1, "extract_coco_annotations": 1,
        "extract_cub_images": 1, "extract_cub_captions": 1, "split_lists": 2, "lists": 1,
    }  # fmt: skip


def test_a_damaged_archive_without_a_checksum_is_refused_moved_aside_and_never_the_reference(workflow, tmp_path):
    """Reed et al.'s captions (no published checksum) served with one byte flipped: the extraction
    refuses the archive whole, moves it aside and records no SHA-256; the rerun downloads the good
    copy, extracts it and records its digest."""
    server = LoopbackServer()
    try:
        real = serve_real_data(server, tmp_path / "served")
        path = "/drive/download?id=cub-captions&export=download&confirm=t"
        good = server.files[path][0]
        damaged = bytearray(good)
        damaged[len(good) // 2] ^= 0x55
        server.add(path, bytes(damaged))
        data = tmp_path / "data"
        (workflow / "local-sources.yaml").write_text(yaml.safe_dump({"data_root": str(data), "sources": real.sources}))
        args = ("--configfile", "config/paper.yaml", "local-sources.yaml")
        target = str(data / "cub" / "text_c10")
        result = snakemake(workflow, "--cores", "1", target, *args)
        assert result.returncode != 0
        log = (workflow / "work" / "logs" / "extract" / "cvpr2016_cub.tar.gz.log").read_text()
        assert "cvpr2016_cub.tar.gz: " in log and "the archive is refused whole" in log and "moved aside" in log
        downloads = data / "downloads"
        assert sorted(p.name for p in downloads.iterdir()) == ["cvpr2016_cub.tar.gz.rejected"]  # no .sha256 record
        assert not (data / "cub" / "text_c10").exists() and not list((data / "cub").glob(".*partial"))
        server.add(path, good)
        again = snakemake(workflow, "--cores", "1", target, *args)
        assert again.returncode == 0, tail(again)
        record = (downloads / "cvpr2016_cub.tar.gz.sha256").read_text().split()[0]
        assert record == hashlib.sha256(good).hexdigest()
        assert len(list((data / "cub" / "text_c10").rglob("*.txt"))) > 0
    finally:
        server.close()


def test_an_archive_in_place_is_extracted_without_downloads(workflow, tmp_path):
    root = place_real_layouts(tmp_path / "real", workflow / "resources")
    shutil.rmtree(root / "cub" / "text_c10")
    (root / "downloads").mkdir()
    (root / "downloads" / "cvpr2016_cub.tar.gz").touch()
    args = ("--configfile", "config/paper.yaml", "--config", f"data_root={root}", 'sources={"download": false}')
    result = snakemake(workflow, "-n", "all", *args, PLACEHOLDER_WEIGHTS)
    assert result.returncode == 0, tail(result)
    assert job_counts(result.stdout)["extract_cub_captions"] == 1 and "download_archive" not in job_counts(result.stdout)


def test_weights_placed_by_hand_are_verified_before_anything_runs(workflow, tmp_path):
    """A file in place is not downloaded, so torch.hub never checks it: the workflow does, as it is read."""
    root = place_real_layouts(tmp_path / "real", workflow / "resources")
    wrong = workflow / "resources" / "torch" / "hub" / "checkpoints" / "resnet152-394f9c45.pth"
    wrong.write_bytes(b"not torchvision's resnet152")
    for target in ("download", "all"):
        result = snakemake(workflow, "-n", target, "--configfile", "config/paper.yaml", "--config", f"data_root={root}")
        assert result.returncode != 0
        assert f"{wrong}: sources.imagenet.resnet152: SHA-256 is" in result.stdout + result.stderr, tail(result)
        assert "expected 394f9c45" in result.stdout + result.stderr and "delete it" in result.stdout + result.stderr


def test_dataset_without_settings_is_named(workflow):
    config = workflow / "config" / "config.yaml"
    text = config.read_text()
    start = text.index("  synthetic-cub:\n")
    end = text.index("  coco:\n")
    config.write_text(text[:start] + text[end:])
    result = snakemake(workflow, "-n", "all")
    assert result.returncode != 0
    assert "datasets lists 'synthetic-cub' but dataset_settings has no entry for it" in result.stdout + result.stderr


def test_a_pretrained_small_cnn_on_real_data_is_refused(workflow, tmp_path):
    root = place_real_layouts(tmp_path / "real")
    result = snakemake(
        workflow, "-n", "all", "--configfile", "config/paper.yaml",
        "--config", f"data_root={root}", 'dataset_settings={"cub": {"image_encoder": "small-cnn"}}',
    )  # fmt: skip
    assert result.returncode != 0
    assert "dataset_settings.cub: a pretrained small-cnn exists only for the synthetic datasets" in result.stdout + result.stderr


def test_value_outside_the_schema_is_named(workflow):
    result = snakemake(workflow, "-n", "all", "--config", 'bootstrap={"replicates": -5}')
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config: bootstrap.replicates: -5 is less than the minimum of 0" in output


def test_failing_job_names_its_log(workflow):
    """A word-vectors file that is not GloVe (here the environment file) fails the prepare job."""
    not_glove = workflow / "environment.yml"
    result = snakemake(
        workflow, "--cores", "2", "work-smoke/prepared/synthetic-cub", *SMOKE,
        "--config", f'dataset_settings={{"synthetic-cub": {{"word_vectors": "{not_glove}"}}}}',
    )  # fmt: skip
    output = result.stdout + result.stderr
    log = "work-smoke/logs/prepare/synthetic-cub.log"
    assert result.returncode != 0
    assert "Error in rule prepare" in output and log in output
    assert f"{not_glove}: line 1: expected a word and 64 numbers" in (workflow / log).read_text()


def test_a_missing_word_vectors_file_stops_the_plan(workflow):
    result = snakemake(
        workflow, "-n", "work-smoke/prepared/synthetic-cub", *SMOKE,
        "--config", 'dataset_settings={"synthetic-cub": {"word_vectors": "nowhere/glove.txt"}}',
    )  # fmt: skip
    assert result.returncode != 0
    assert "Missing input files for rule prepare" in result.stdout + result.stderr
    assert "data-smoke/nowhere/glove.txt" in result.stdout + result.stderr


# --- the smoke DAG, run once for real -----------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_config(built) -> dict:
    """config.yaml with smoke.yaml merged over it, key by key, as Snakemake merges --configfile."""
    return preset(SMOKE[1], root=built)


def test_every_result_table_has_its_schema(built):
    schemas = {
        "metrics.csv": tables.METRICS_COLUMNS, "summary.csv": tables.SUMMARY_COLUMNS, "uncertainty.csv": tables.UNCERTAINTY_COLUMNS,
        "uncertainty_summary.csv": tables.UNCERTAINTY_SUMMARY_COLUMNS, "runs.csv": tables.RUN_RECORD_KEYS,
        "external.csv": tables.EXTERNAL_COLUMNS, "paper.csv": tables.PAPER_COLUMNS,
    }  # fmt: skip
    assert sorted(path.name for path in (built / SMOKE_RESULTS).glob("*.csv")) == sorted(schemas)
    for name, columns in schemas.items():
        assert list(pd.read_csv(built / SMOKE_RESULTS / name).columns) == columns, name
    assert not (built / "results" / "summary.csv").exists()  # the default preset's folder is not the smoke preset's


def test_a_row_for_every_run_and_metric_that_applies(built, smoke_config):
    results = built / SMOKE_RESULTS
    metrics = pd.read_csv(results / "metrics.csv")
    runs = [(d, m, s) for d in smoke_config["datasets"] for m in smoke_config["methods"] for s in smoke_config["seeds"]]
    assert set(metrics.groupby(["dataset", "method", "seed"]).groups) == set(runs)
    assert not metrics.duplicated(["dataset", "method", "seed", "protocol", "scoring", "direction", "metric"]).any()
    found = set(metrics[["dataset", "method", "seed", "protocol", "scoring", "direction", "metric"]].itertuples(index=False))
    for dataset, method, seed in runs:
        for protocol, directions in APPLICABLE[dataset].items():
            for direction, names in directions.items():
                for scoring in SCORINGS[method]:
                    for name in names:
                        assert (dataset, method, seed, protocol, scoring, direction, name) in found
    rsum = metrics["metric"] == "RSUM"
    assert metrics[~rsum]["value"].between(0, 100).all() and metrics[rsum]["value"].between(0, 600).all()
    # summary: one row per key, one seed each, with an interval around every mean over queries
    summary = pd.read_csv(results / "summary.csv")
    assert len(summary) == len(metrics) and (summary["n"] == 1).all()
    assert ((summary["ci_low"] <= summary["mean"] + 1e-9) & (summary["mean"] <= summary["ci_high"] + 1e-9)).all()
    # runs.csv: one row per training run; uncertainty only for probabilistic methods, ten bins per analysis
    assert sorted(pd.read_csv(results / "runs.csv")[["dataset", "method", "seed"]].itertuples(index=False, name=None)) == sorted(
        runs
    )
    uncertainty = pd.read_csv(results / "uncertainty.csv")
    probabilistic = {m for m in smoke_config["methods"] if REGISTRY[m].probabilistic}
    assert set(uncertainty["method"]) == probabilistic
    assert (uncertainty.groupby(["dataset", "protocol", "direction", "metric"])["bin"].nunique() == 10).all()
    statistics = pd.read_csv(results / "uncertainty_summary.csv")
    margin = statistics[statistics["statistic"] == "auroc_margin"]
    assert set(margin.groupby(["dataset", "method"]).groups) == {(d, m) for d, m, _ in runs}
    for method in probabilistic:
        assert set(statistics[statistics["method"] == method]["statistic"]) >= {
            "auroc_u",
            "spearman_u_rank",
            "spearman_u_log_matches",
            "partial_spearman_u_log_matches",
            "within_length_spearman_u_log_matches",
        }


def test_retrieval_is_far_above_chance(built, smoke_config):
    """Each method's R@1 (its own scoring; PCME's match probability): the 95% interval's low end above twice chance.

    Chance R@1 is the share of the gallery that matches a query: 1 in the fold's images (one caption
    of five per image: 5 in 5x as many captions) on COCO 1K, one class of the test classes on CUB.
    Twice, not more: the smoke preset's 40 training bird classes leave unseen test birds near three
    times chance (about 31-47% against 10%); its COCO fold is at 25-60x chance. The default preset's
    numbers are in the README.
    """
    summary = pd.read_csv(built / SMOKE_RESULTS / "summary.csv")
    generators = {name: smoke_config["dataset_settings"][name]["generator"] for name in ("synthetic-coco", "synthetic-cub")}
    chance = {
        ("synthetic-coco", "1K"): 100 / min(1000, generators["synthetic-coco"]["images"]["test"]),
        ("synthetic-cub", "CUB"): 100 / generators["synthetic-cub"]["test_classes"],
    }
    failures = []
    for (dataset, protocol), level in chance.items():
        bound = 2 * level
        for method in smoke_config["methods"]:
            for direction in ("i2t", "t2i"):
                row = summary[
                    (summary["dataset"] == dataset) & (summary["method"] == method) & (summary["protocol"] == protocol)
                    & (summary["scoring"] == SCORINGS[method][0]) & (summary["direction"] == direction) & (summary["metric"] == "R@1")
                ]  # fmt: skip
                assert len(row) == 1
                if not row["ci_low"].iloc[0] > bound:
                    failures.append(f"{dataset} {method} {direction}: R@1 {row['mean'].iloc[0]:.2f} [{row['ci_low'].iloc[0]:.2f}, "
                                    f"{row['ci_high'].iloc[0]:.2f}], chance {level:.2f}, needs > {bound:.2f}")  # fmt: skip
    assert not failures, "\n".join(failures)


def test_report_embeds_every_plot(built):
    page = (built / SMOKE_RESULTS / "report" / "index.html").read_text()
    plots = sorted((built / SMOKE_RESULTS).rglob("*.png"))
    assert plots
    for plot in plots:
        assert f"data:image/png;base64,{base64.b64encode(plot.read_bytes()).decode()}" in page, plot
    # self-contained: nothing for the browser to fetch (links to sources are fine, they are not loaded)
    assert not re.search(r"""src=["']?(https?:)?//|<link[^>]+href=["']?(https?:)?//|url\(["']?(https?:)?//""", page)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine may have CUDA: device: cuda can run here")
def test_a_planning_error_on_a_finished_run_names_its_cause_and_deletes_nothing(built, tmp_path):
    """device: cuda on a machine without CUDA, a new work_dir beside a finished run: the workflow stops
    as it is read, with the cause, before any job is planned; every finished table and figure stays."""
    results = built / SMOKE_RESULTS
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    assert any(p.suffix == ".png" for p in before)
    result = snakemake(built, "--cores", "2", "all", *SMOKE, "--config", "device=cuda", f"work_dir={tmp_path / 'work'}")
    assert result.returncode != 0
    assert "config: device: cuda, but torch sees no CUDA device on this machine" in result.stdout + result.stderr
    assert "missing locally" not in result.stdout + result.stderr
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "work").exists()


def test_rerun_with_nothing_changed_does_nothing(built):
    result = snakemake(built, "-n", "all", "report", *SMOKE)
    assert result.returncode == 0, tail(result)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_method_reruns_only_its_jobs(built):
    result = snakemake(built, "-n", "all", "report", *SMOKE, "--config", 'method_settings={"vsepp": {"margin": 0.25}}')
    assert result.returncode == 0, tail(result)
    jobs = planned_jobs(result.stdout)
    per_run = [job for job in jobs if job["rule"] in ("train", "embed", "evaluate")]
    assert {job["wildcards"]["method"] for job in per_run} == {"vsepp"}
    runs = runs_of(SMOKE_CONFIG) // len(SMOKE_CONFIG["methods"])  # vsepp's
    assert job_counts(result.stdout) == dict.fromkeys(PER_RUN, runs) | {"aggregate": 1, "plots": 1, "report": 1, "all": 1}
    assert "Params have changed since last execution" in result.stdout


def test_storing_resized_images_prepares_that_dataset_again(built):
    override = 'dataset_settings={"synthetic-cub": {"training": {"stored_shorter_side": 48}}}'
    result = snakemake(built, "-n", "all", "report", *SMOKE, "--config", override)
    assert result.returncode == 0, tail(result)
    jobs = planned_jobs(result.stdout)
    assert [job["wildcards"]["dataset"] for job in jobs if job["rule"] == "prepare"] == ["synthetic-cub"]
    assert {job["wildcards"]["dataset"] for job in jobs if job["rule"] == "train"} == {"synthetic-cub"}


def test_every_stage_leaves_its_log_and_benchmark(built, smoke_config):
    work = built / "work-smoke"
    for name, splits in (("synthetic-coco", {"train", "restval", "dev", "test"}), ("synthetic-cub", {"train", "test"})):
        meta = json.loads((work / "prepared" / name / "meta.json").read_text())
        assert set(meta["splits"]) == splits
        assert (built / "data-smoke" / name / "GENERATOR.json").is_file()
        for stage in ("synthesize", "prepare", "pretrain"):
            assert (work / "logs" / stage / f"{name}.log").is_file()
            assert (work / "benchmarks" / stage / f"{name}.tsv").is_file()
    coco = json.loads((work / "prepared" / "synthetic-coco" / "meta.json").read_text())
    assert coco["splits"]["test"] == {"images": 1000, "captions": 5000}
    run = work / "runs" / "synthetic-cub" / "pvse-k2" / "seed0"
    record = json.loads((run / "run.json").read_text())
    schedule = smoke_config["dataset_settings"]["synthetic-cub"]["training"]
    epochs = schedule["frozen_epochs"] + schedule["finetune_epochs"]
    assert (record["dataset"], record["method"], record["seed"], record["epochs"]) == ("synthetic-cub", "pvse-k2", 0, epochs)
    assert f"epoch {epochs}" in (run / "train.log").read_text()
    for stage in ("train", "embed", "evaluate"):
        assert (run / f"{stage}.log").is_file() and (run / f"{stage}.benchmark.tsv").is_file()
    assert f"wrote {SMOKE_RESULTS}/summary.csv" in (work / "logs" / "aggregate.log").read_text()
    for stage in ("aggregate", "plots", "report"):
        assert (work / "logs" / f"{stage}.log").is_file()
        assert pd.read_csv(work / "benchmarks" / f"{stage}.tsv", sep="\t")["s"].iloc[0] > 0


# --- quality -------------------------------------------------------------------------------------


def test_lint_is_clean(workflow):
    result = snakemake(workflow, "--lint")
    assert result.returncode == 0, tail(result)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.mark.skipif(importlib.util.find_spec("snakefmt") is None, reason="needs snakefmt (the test extra)")
def test_snakefiles_are_formatted():
    """snakefmt --check over the Snakefile and every rule file, with pyproject.toml's settings."""
    files = ["Snakefile", *sorted(str(path.relative_to(REPO)) for path in (REPO / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *files], cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
