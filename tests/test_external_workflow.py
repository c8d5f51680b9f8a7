"""External models in the workflow, end to end on the smoke preset: the lists, two models built here
(a random-weight torchvision CNN with a bag of words; the same with log σ, two seeds), every table,
figure and the report, and a changed file rerunning only its own evaluation."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from PIL import Image
from safetensors.torch import save_file

from pcmebench import lists, tables
from pcmebench.plots import figure_files
from tests.conftest import SMOKE, SMOKE_RESULTS, preset, runs_of, snakemake, tail
from tests.test_workflow import job_counts, planned_jobs

pytestmark = pytest.mark.slow  # runs Snakemake

SMOKE_CONFIG = preset(SMOKE[1])
DATASETS = SMOKE_CONFIG["datasets"]
DIM = 64
EXTERNAL = {
    "rand-cnn": {"label": "Random CNN + BoW", "scoring": "cosine"},
    "rand-gauss": {"label": "Random Gaussian", "scoring": ["csd", "mu"]},
}
SEEDS = {("rand-cnn", d): 1 for d in DATASETS} | {("rand-gauss", "synthetic-coco"): 2, ("rand-gauss", "synthetic-cub"): 1}


def image_features(root: Path, images: pd.DataFrame, seed: int) -> torch.Tensor:
    """A random-weight ResNet-18's pooled features of each image of the lists (no weights are fetched)."""
    torch.manual_seed(seed)
    network = torchvision.models.resnet18(weights=None, num_classes=DIM).eval()
    pixels = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(root / file).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
         for file in images["file"]]
    )  # fmt: skip
    with torch.no_grad():
        return torch.cat([network(block) for block in pixels.split(100)])


def bag_of_words(captions: pd.DataFrame, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each caption's mean random word vector, and its word count."""
    words = [re.findall(r"[a-z]+", text.lower()) for text in captions["text"]]
    vocabulary = {w: i for i, w in enumerate(sorted({w for ws in words for w in ws}))}
    vectors = torch.randn(len(vocabulary), DIM, generator=torch.Generator().manual_seed(seed))
    counts = torch.tensor([len(ws) for ws in words], dtype=torch.float32)
    return torch.stack([vectors[[vocabulary[w] for w in ws]].mean(0) for ws in words]), counts


def write_model(path: Path, lists_dir: Path, raw_root: Path, seed: int, sigma: bool) -> Path:
    """One model's file over the lists, rows shuffled (ids say which is which)."""
    images, captions = (pd.read_csv(lists_dir / f"{kind}.csv") for kind in ("images", "captions"))
    image, (caption, counts) = image_features(raw_root, images, seed), bag_of_words(captions, seed)
    rng = np.random.default_rng(seed)
    order = {"image": rng.permutation(len(images)), "caption": rng.permutation(len(captions))}
    tensors = {
        "image_ids": torch.from_numpy(images["image_id"].to_numpy(copy=True)),
        "caption_ids": torch.from_numpy(captions["caption_id"].to_numpy(copy=True)),
    }
    if sigma:
        head = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(seed)) / DIM
        tensors |= {"image_mu": image, "caption_mu": caption, "image_log_sigma": 0.1 * image @ head - 1,
                    "caption_log_sigma": -torch.log1p(counts)[:, None].expand(-1, DIM).contiguous()}  # fmt: skip
    else:
        tensors |= {"image_embeddings": image, "caption_embeddings": caption}
    tensors = {k: v[torch.from_numpy(order[k.split("_")[0]])].contiguous() for k, v in tensors.items()}
    if path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in tensors.items()})
    else:
        save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def with_external(built, tmp_path_factory) -> Path:
    """The built smoke tree, copied, with the lists, the two models' files and a config naming them, run again."""
    root = Path(shutil.copytree(built, tmp_path_factory.mktemp("external") / "smoke", symlinks=True))
    result = snakemake(root, "lists", "--cores", "2", *SMOKE)
    assert result.returncode == 0, tail(result)
    external = {name: {**entry, "files": {}} for name, entry in EXTERNAL.items()}
    for (name, dataset), seeds in SEEDS.items():
        lists_dir, raw = root / SMOKE_RESULTS / "lists" / dataset, root / SMOKE_CONFIG["data_root"] / dataset
        suffix = ".npz" if name == "rand-gauss" else ".safetensors"
        (root / "mine").mkdir(exist_ok=True)
        files = [
            write_model(root / "mine" / f"{name}-{dataset}-{seed}{suffix}", lists_dir, raw, seed, name == "rand-gauss")
            .relative_to(root).as_posix()
            for seed in range(seeds)
        ]  # fmt: skip
        external[name]["files"][dataset] = files[0] if seeds == 1 else files  # one file, or one per seed
    (root / "external.yaml").write_text(yaml.safe_dump({"external": external}))
    result = snakemake(root, "all", "report", "--cores", "2", *SMOKE, "external.yaml")
    assert result.returncode == 0, tail(result)
    (root / "plan.txt").write_text(result.stdout + result.stderr)
    return root


def test_the_lists_are_the_prepared_test_splits(with_external):
    for dataset in DATASETS:
        prepared = with_external / SMOKE_CONFIG["work_dir"] / "prepared" / dataset
        for kind, table in lists.split_lists(prepared).items():
            written = pd.read_csv(with_external / SMOKE_RESULTS / "lists" / dataset / f"{kind}.csv")
            pd.testing.assert_frame_equal(written, table.reset_index(drop=True), check_dtype=False)


def test_all_evaluates_the_files_and_trains_nothing_for_them(with_external):
    plan = (with_external / "plan.txt").read_text()
    counts = job_counts(plan)
    assert counts == {"evaluate_external": sum(SEEDS.values()), "aggregate": 1, "plots": 1, "report": 1, "all": 1}, counts


def test_every_table_holds_the_external_models_marked_and_without_training_rows(with_external):
    results = with_external / SMOKE_RESULTS
    read = {name: pd.read_csv(results / name) for name in ("metrics.csv", "summary.csv", "runs.csv", "external.csv")}
    assert not set(read["runs.csv"]["method"]) & set(EXTERNAL)
    record = read["external.csv"]
    assert list(record.columns) == tables.EXTERNAL_COLUMNS
    assert sorted(zip(record["method"], record["dataset"], record["seed"], strict=True)) == sorted(
        (name, dataset, seed) for (name, dataset), seeds in SEEDS.items() for seed in range(seeds)
    )
    assert record["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    for (name, dataset), seeds in SEEDS.items():
        metrics = tables.select(read["metrics.csv"], method=name, dataset=dataset)
        scorings = EXTERNAL[name]["scoring"]  # one name, or a list
        assert set(metrics["seed"]) == set(range(seeds))
        assert set(metrics["scoring"]) == ({scorings} if isinstance(scorings, str) else set(scorings))
        summary = tables.select(read["summary.csv"], method=name, dataset=dataset, metric="R@1")
        assert (summary["n"] == seeds).all() and summary["ci_low"].notna().all() and (summary["mean"] >= 0).all()


def test_the_trained_methods_numbers_are_those_without_external_models(built, with_external):
    for name in ("metrics.csv", "runs.csv", "uncertainty_summary.csv"):
        before, after = pd.read_csv(built / SMOKE_RESULTS / name), pd.read_csv(with_external / SMOKE_RESULTS / name)
        after = after[~after["method"].isin(list(EXTERNAL))].reset_index(drop=True)
        pd.testing.assert_frame_equal(after, before, check_exact=True, obj=name)


def test_the_sigma_analysis_runs_on_the_model_with_log_sigma_only(with_external):
    summary = pd.read_csv(with_external / SMOKE_RESULTS / "uncertainty_summary.csv")
    statistics = {m: set(tables.select(summary, method=m)["uncertainty"]) for m in EXTERNAL}
    assert statistics["rand-gauss"] == {"mean_log_sigma", "sum_sigma_sq", "score_margin"}
    assert statistics["rand-cnn"] == {"score_margin"}


def test_figures_and_report_show_the_external_models(with_external):
    config = yaml.safe_load((with_external / "external.yaml").read_text())
    methods = [*SMOKE_CONFIG["methods"], *config["external"]]
    known = tables.read_table(with_external / SMOKE_RESULTS / "external.csv", tables.EXTERNAL_COLUMNS)
    tables.declare_external(tables.external_methods(known))  # as the plots and report stages do
    for path in figure_files(with_external / SMOKE_RESULTS / "plots", DATASETS, methods):
        assert Path(path).is_file(), path
    page = (with_external / SMOKE_RESULTS / "report" / "index.html").read_text()
    for entry in EXTERNAL.values():
        assert f"{entry['label']} (external)" in page
    assert page.count("SHA-256") == sum(SEEDS.values())


def test_a_changed_file_reruns_only_its_evaluation_and_what_follows(with_external, tmp_path):
    root = Path(shutil.copytree(with_external, tmp_path / "changed", symlinks=True))
    changed = root / "mine" / "rand-gauss-synthetic-coco-1.npz"
    lists_dir = root / SMOKE_RESULTS / "lists" / "synthetic-coco"
    write_model(changed, lists_dir, root / SMOKE_CONFIG["data_root"] / "synthetic-coco", 7, sigma=True)
    result = snakemake(root, "-n", "all", "report", *SMOKE, "external.yaml")
    assert result.returncode == 0, tail(result)
    jobs = [job for job in planned_jobs(result.stdout) if job["rule"] == "evaluate_external"]
    assert [job["wildcards"] for job in jobs] == [{"dataset": "synthetic-coco", "external": "rand-gauss", "seed": "1"}]
    assert job_counts(result.stdout) == {"evaluate_external": 1, "aggregate": 1, "plots": 1, "report": 1, "all": 1}


def test_a_missing_file_and_a_method_s_name_stop_the_plan(with_external):
    config = yaml.safe_load((with_external / "external.yaml").read_text())
    config["external"]["pcme"] = config["external"].pop("rand-cnn")
    config["external"]["pcme"]["files"]["synthetic-cub"] = "mine/nowhere.safetensors"
    (with_external / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(with_external, "-n", "all", *SMOKE, "bad.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "external.pcme: 'pcme' is a method of models/" in output
    assert "external.pcme.files.synthetic-cub[0]: mine/nowhere.safetensors: file not found" in output


def test_export_writes_a_trained_runs_and_an_external_models_matrices_and_rankings(with_external, tmp_path):
    root = Path(shutil.copytree(with_external, tmp_path / "export", symlinks=True))
    targets = [SMOKE_RESULTS / "export" / "synthetic-cub" / name / "seed0" for name in ("vse0", "rand-gauss")]
    result = snakemake(root, *map(str, targets), "--cores", "2", *SMOKE, "external.yaml", "--config", "export={'enabled': True}")
    assert result.returncode == 0, tail(result)
    for target, scorings in zip(targets, (["cosine"], EXTERNAL["rand-gauss"]["scoring"]), strict=True):  # vse0's, rand-gauss's
        assert sorted(p.stem for p in (root / target / "scores").iterdir()) == sorted(scorings)
        rankings = pd.read_parquet(root / target / "rankings")
        assert set(rankings["scoring"]) == set(scorings) and set(rankings["direction"]) == {"i2t", "t2i"}
    plan = snakemake(root, "-n", "all", *SMOKE, "external.yaml", "--config", "export={'enabled': True}")
    counts = job_counts(plan.stdout)
    assert counts["export_external"] == sum(SEEDS.values()) - 1 and counts["export_run"] == runs_of(SMOKE_CONFIG) - 1
