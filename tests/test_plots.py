"""Figures from results tables: every planned file is written, missing data is said, bad tables are named.

The tables are generated here with the documented columns (results/README.md and the per-run
files of the evaluation stage), for two datasets x every registered method x two seeds, so these
tests do not need a trained model.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.registry import probabilistic, registered
from pcmebench.plots import figure_files, figure_names, main, plot_retrieval, save, write_figures
from pcmebench.tables import (
    EXTERNAL_COLUMNS,
    METRICS_COLUMNS,
    PAPER_COLUMNS,
    RUN_RECORD_KEYS,
    SUMMARY_COLUMNS,
    UNCERTAINTY_COLUMNS,
    UNCERTAINTY_SUMMARY_COLUMNS,
    ResultsError,
    read_table,
)

DATASETS = ("coco", "synthetic-cub")
REGISTRY = registered()
METHODS = tuple(REGISTRY)
PROBABILISTIC = tuple(probabilistic())
POINT = tuple(m for m in METHODS if m not in PROBABILISTIC)
SEEDS = (0, 1)
SCORINGS = {name: m.scorings for name, m in REGISTRY.items()}
PRIMARY_SCORING = {name: m.primary_scoring for name, m in REGISTRY.items()}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Published numbers the fake paper.csv carries (PCME README, COCO 1K) for the report's tests.
PAPER_ROWS = [
    ("coco", "pcme", "1K", "i2t", "R@1", 68.8, "naver-ai/pcme", "PCME README (naver-ai/pcme), COCO 1K"),
    ("coco", "pcme", "1K", "i2t", "PMRP", 45.0, "naver-ai/pcme", "PCME README (naver-ai/pcme), COCO 1K"),
    ("coco", "pvse-k2", "1K", "i2t", "R@1", 69.24, "yalesong/pvse", "https://github.com/yalesong/pvse"),
    ("coco", "pvse-k2", "5K", "t2i", "R@10", 74.96, "yalesong/pvse", "https://github.com/yalesong/pvse"),
]


def protocol_metrics(dataset: str) -> dict[str, tuple[str, ...]]:
    retrieval = ("R@1", "R@5", "R@10", "R-P", "mAP@R", "PMRP")
    if "coco" in dataset:
        protocols = {"1K": retrieval, "5K": retrieval, "ECCV": ("ECCV mAP@R", "ECCV R-P", "ECCV R@1")}
    else:
        protocols = {"CUB": retrieval}
    if dataset.startswith("synthetic"):
        protocols["full"] = ("full mAP@R", "full R-P", "full R@1")
    return protocols


def fake_metrics(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for dataset, method, seed in itertools.product(DATASETS, METHODS, SEEDS):
        for scoring in SCORINGS[method]:
            run = {"dataset": dataset, "method": method, "seed": seed, "scoring": scoring}
            for protocol, metrics in protocol_metrics(dataset).items():
                for direction, metric in itertools.product(("i2t", "t2i"), metrics):
                    value = {"R@1": 55, "R@5": 82, "R@10": 90}.get(metric, 40) + METHODS.index(method) + rng.normal(0, 1)
                    rows.append({**run, "protocol": protocol, "direction": direction, "metric": metric, "value": value})
                if "R@1" in metrics:
                    rows.append(
                        {**run, "protocol": protocol, "direction": "both", "metric": "RSUM", "value": 450 + rng.normal(0, 5)}
                    )
    return pd.DataFrame(rows, columns=METRICS_COLUMNS)


def fake_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    keys = ["dataset", "method", "protocol", "scoring", "direction", "metric"]
    summary = metrics.groupby(keys, sort=False)["value"].agg(mean="mean", std="std", n="count").reset_index()
    summary["ci_low"] = summary["mean"] - 1.5
    summary["ci_high"] = summary["mean"] + 1.5
    return summary[SUMMARY_COLUMNS]


def fake_queries(rng: np.random.Generator, dataset: str, method: str) -> pd.DataFrame:
    """i2t rows are image queries, t2i caption queries; u only for probabilistic methods, true_matches only on synthetic data."""
    frames = []
    for direction, count in (("i2t", 60), ("t2i", 300)):
        synthetic = dataset.startswith("synthetic")
        matches = rng.integers(1, 40, count).astype(float) if synthetic else np.full(count, np.nan)
        u = np.full(count, np.nan)
        if method in PROBABILISTIC:
            u = -3 + 0.2 * np.log(matches) + rng.normal(0, 0.1, count) if synthetic else rng.normal(-3, 0.2, count)
        frames.append(
            pd.DataFrame(
                {
                    "direction": direction,
                    "query": np.arange(count),
                    "u": u,
                    "sum_sigma_sq": np.exp(2 * u),
                    "true_matches": matches,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fake_uncertainty(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bins (probabilistic methods only) and statistics (the margin for every method) at the primary protocol, and
    "full" on synthetic data."""
    bins, statistics = [], []
    for dataset, method, seed, direction in itertools.product(DATASETS, METHODS, SEEDS, ("i2t", "t2i")):
        protocols = ["1K" if "coco" in dataset else "CUB"] + (["full"] if dataset.startswith("synthetic") else [])
        for protocol in protocols:
            key = {"dataset": dataset, "method": method, "seed": seed, "protocol": protocol, "direction": direction}
            margin = {"scoring": PRIMARY_SCORING[method], "uncertainty": "score_margin", "statistic": "auroc_margin"}
            statistics.append({**key, **margin, "value": rng.uniform(0.6, 0.7)})
            if method not in PROBABILISTIC:
                continue
            for uncertainty in REGISTRY[method].statistics:
                pcme = {**key, "scoring": PRIMARY_SCORING[method], "uncertainty": uncertainty}
                for statistic in ("auroc_u", "spearman_u_rank", "pearson_bin_r1"):
                    statistics.append({**pcme, "statistic": statistic, "value": rng.uniform(0.5, 0.8)})
                for b, (metric, top) in itertools.product(range(10), (("R@1", 80), ("PMRP", 50))):
                    bounds = {"u_low": -3.5 + 0.1 * b, "u_high": -3.4 + 0.1 * b, "queries": 30}
                    bins.append({**pcme, "bin": b, **bounds, "metric": metric, "value": top - 3 * b})
                if protocol == "full":
                    statistics.append({**pcme, "statistic": "spearman_u_log_matches", "value": 0.6})
                    statistics.append({**pcme, "statistic": "spearman_u_log_matches_ci_low", "value": 0.55})
                    statistics.append({**pcme, "statistic": "spearman_u_log_matches_ci_high", "value": 0.65})
                    statistics.append({**pcme, "statistic": "partial_spearman_u_log_matches", "value": 0.2})
                    statistics.append({**pcme, "statistic": "within_length_spearman_u_log_matches", "value": 0.1})
    return pd.DataFrame(bins, columns=UNCERTAINTY_COLUMNS), pd.DataFrame(statistics, columns=UNCERTAINTY_SUMMARY_COLUMNS)


def fake_train_log(epochs: int, method: str) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame(
        {
            "epoch": epoch,
            "phase": ["frozen" if e <= 1 else "finetune" for e in epoch],
            "lr": 2e-3,
            "loss": (5.0 if method == "vse0" else 0.5) / epoch,
            "wall_seconds": 10.0,
            "samples_per_second": 250.0,
        }
    )


def write_fake_results(root: Path, seed: int = 0) -> tuple[Path, list[Path]]:
    """``root/results`` with every aggregate table and ``root/runs/<dataset>/<method>/seed<seed>`` run folders."""
    rng = np.random.default_rng(seed)
    results = root / "results"
    results.mkdir(parents=True)
    metrics = fake_metrics(rng)
    metrics.to_csv(results / "metrics.csv", index=False)
    fake_summary(metrics).to_csv(results / "summary.csv", index=False)
    bins, statistics = fake_uncertainty(rng)
    bins.to_csv(results / "uncertainty.csv", index=False)
    statistics.to_csv(results / "uncertainty_summary.csv", index=False)
    pd.DataFrame(PAPER_ROWS, columns=PAPER_COLUMNS).to_csv(results / "paper.csv", index=False)
    run_dirs, records = [], []
    for dataset in DATASETS:
        for method in METHODS:
            for run_seed in SEEDS:
                run_dir = root / "runs" / dataset / method / f"seed{run_seed}"
                run_dir.mkdir(parents=True)
                record = {
                    "dataset": dataset, "method": method, "seed": run_seed, "device": "cpu", "epochs": 3,
                    "wall_seconds": 30.0 + run_seed, "samples_per_second": 250.0, "parameters": 1_234_567,
                    "trainable_parameters": 1_000_000, "final_loss": 0.1234, "config_hash": f"{METHODS.index(method):016x}",
                    "code_version": "abc123",
                }  # fmt: skip
                (run_dir / "run.json").write_text(json.dumps(record))
                fake_queries(rng, dataset, method).to_parquet(run_dir / "queries.parquet")
                fake_train_log(3, method).to_csv(run_dir / "train_log.csv", index=False)
                run_dirs.append(run_dir)
                records.append(record)
    pd.DataFrame(records, columns=RUN_RECORD_KEYS).to_csv(results / "runs.csv", index=False)
    pd.DataFrame(columns=EXTERNAL_COLUMNS).to_csv(results / "external.csv", index=False)  # no external model
    return results, run_dirs


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> tuple[Path, list[Path]]:
    return write_fake_results(tmp_path_factory.mktemp("fake"))


@pytest.fixture(scope="module")
def plotted(fake, tmp_path_factory) -> Path:
    results, run_dirs = fake
    out = tmp_path_factory.mktemp("plots")
    write_figures(results, run_dirs, out, list(DATASETS), list(METHODS))
    return out


def test_figure_list_follows_the_config():
    assert figure_names("synthetic-cub", METHODS) == [
        "retrieval", "auroc", "uncertainty_bins", "sigma_histogram", "sigma_multiplicity", "sigma_comparison",
        "training_curves",
    ]  # fmt: skip
    for name in ("sigma_multiplicity", "sigma_comparison"):
        assert name not in figure_names("coco", METHODS)  # real data: true multiplicity unknown
    assert figure_names("coco", POINT) == ["retrieval", "auroc", "training_curves"]
    files = figure_files("out", ["coco"], POINT[:1])
    assert files == [f"out/coco/{n}.{e}" for n in ("retrieval", "auroc", "training_curves") for e in ("png", "pdf")]


def test_every_planned_figure_is_written_as_png_and_pdf(plotted):
    planned = sorted(figure_files(plotted, list(DATASETS), list(METHODS)))
    written = sorted(str(p) for p in plotted.rglob("*") if p.is_file())
    assert written == planned
    for path in map(Path, planned):
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE if path.suffix == ".png" else b"%PDF-"), path
        assert len(data) > 5000, path  # a drawn figure, not an empty canvas


def test_same_inputs_give_the_same_bytes(fake, tmp_path):
    """No dates or versions in the files: rerunning the stage on the same tables changes nothing."""
    summary = read_table(fake[0] / "summary.csv", SUMMARY_COLUMNS)
    first = save(plot_retrieval(summary, "coco", list(METHODS)), tmp_path / "first", "coco", "retrieval")
    second = save(plot_retrieval(summary, "coco", list(METHODS)), tmp_path / "second", "coco", "retrieval")
    assert [p.suffix for p in first] == [".png", ".pdf"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_retrieval_shows_the_metrics_the_dataset_has(fake):
    """CUB formats have no PMRP (no instance labels): no empty slot for it."""
    summary = read_table(fake[0] / "summary.csv", SUMMARY_COLUMNS)
    figure = plot_retrieval(summary[summary["metric"] != "PMRP"], "synthetic-cub", list(METHODS))
    assert [[t.get_text() for t in axes.get_xticklabels()] for axes in figure.axes] == [["R@1", "R@5", "R@10"]] * 2
    assert [t.get_text() for t in plot_retrieval(summary, "coco", list(METHODS)).axes[0].get_xticklabels()][-1] == "PMRP"


def test_missing_rows_still_give_the_planned_files_and_are_logged(fake, tmp_path, caplog):
    results, run_dirs = fake
    empty = tmp_path / "results"
    empty.mkdir()
    for name in ("summary.csv", "uncertainty.csv", "uncertainty_summary.csv", "external.csv"):
        pd.read_csv(results / name).head(0).to_csv(empty / name, index=False)  # header only
    method = PROBABILISTIC[0]
    method_runs = [d for d in run_dirs if method in d.parts]
    with caplog.at_level("WARNING", logger="pcmebench.plots"):
        written = write_figures(empty, method_runs[:1], tmp_path / "plots", ["synthetic-cub"], [method])
    assert sorted(map(str, written)) == sorted(figure_files(tmp_path / "plots", ["synthetic-cub"], [method]))
    assert all(p.stat().st_size > 0 for p in written)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "summary.csv has no CUB i2t rows" in messages
    assert f"uncertainty.csv has no {method} CUB/full t2i bins" in messages
    assert f"no finite u of {method} images" in messages  # method_runs[:1] is coco's: no synthetic-cub queries


def test_a_table_without_a_column_names_file_and_column(fake, tmp_path):
    results, run_dirs = fake
    broken = tmp_path / "results"
    broken.mkdir()
    for name in ("summary.csv", "uncertainty.csv", "uncertainty_summary.csv", "external.csv"):
        (broken / name).write_bytes((results / name).read_bytes())
    pd.read_csv(results / "summary.csv").drop(columns="ci_high").to_csv(broken / "summary.csv", index=False)
    with pytest.raises(ResultsError, match=r"summary\.csv: missing column\(s\) ci_high"):
        write_figures(broken, run_dirs[:1], tmp_path / "plots")
    with pytest.raises(SystemExit, match=r"summary\.csv: missing column\(s\) ci_high"):
        main(["--results", str(broken), "--runs", str(run_dirs[0]), "--out", str(tmp_path / "plots")])


def test_a_run_without_queries_is_named(fake, tmp_path):
    results, run_dirs = fake
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_bytes((run_dirs[0] / "run.json").read_bytes())
    (run / "train_log.csv").write_bytes((run_dirs[0] / "train_log.csv").read_bytes())
    with pytest.raises(ResultsError, match=rf"{run / 'queries.parquet'}: file is missing"):
        write_figures(results, [run], tmp_path / "plots")


def register_twin(monkeypatch) -> str:
    """Register a twin of the first probabilistic method as "twin" (label "Twin") in the registry, for
    this test only; the first method's name."""
    first = PROBABILISTIC[0]
    twin = dataclasses.replace(REGISTRY[first], name="twin", label="Twin", color="#000000")
    monkeypatch.setitem(registered(), "twin", twin)
    return first


def test_every_probabilistic_method_gets_its_own_sigma_panels(fake, tmp_path, monkeypatch):
    """A second probabilistic method (here a twin of the first, registered under another name) gets
    its own row of σ panels, its own σ bar, with its own statistic and scoring: nothing is tied to
    one method's name."""
    from pcmebench import plots
    from pcmebench.tables import probabilistic_methods

    first = register_twin(monkeypatch)
    results, run_dirs = fake
    tables = {name: pd.read_csv(results / name) for name in ("summary.csv", "uncertainty.csv", "uncertainty_summary.csv")}
    tables = {name: pd.concat([t, t[t["method"] == first].assign(method="twin")]) for name, t in tables.items()}
    methods = [first, "twin"]
    assert probabilistic_methods(["vse0", *methods]) == methods
    bins = plots.plot_uncertainty_bins(tables["uncertainty.csv"], "synthetic-cub", methods)
    assert [sub._suptitle.get_text() for sub in bins.subfigs] == [REGISTRY[first].label, "Twin"]
    assert all(axes.lines for sub in bins.subfigs for axes in sub.axes)  # both rows drawn, no "no data" panel
    auroc = plots.plot_auroc(tables["uncertainty_summary.csv"], "synthetic-cub", methods)
    labels = [tick.get_text() for tick in auroc.axes[0].get_xticklabels()]
    assert labels == [f"{REGISTRY[first].label}\nmargin", "Twin\nmargin", f"{REGISTRY[first].label}\nσ", "Twin\nσ"]
    queries, _ = plots.load_runs(run_dirs)
    queries = pd.concat([queries, queries[queries["method"] == first].assign(method="twin")])
    histogram = plots.plot_sigma_histogram(queries, "synthetic-cub", methods)
    assert len(histogram.subfigs) == 2 and all(axes.patches for sub in histogram.subfigs for axes in sub.axes)
