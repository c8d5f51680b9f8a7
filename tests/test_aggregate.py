"""The aggregate stage: result tables, bootstrap intervals, published numbers and bad run folders."""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metrics.bootstrap import resample_counts, series_replicates
from pcmebench import aggregate as agg
from pcmebench import tables
from pcmebench.tables import SUMMARY_KEYS, ResultsError
from tests.conftest import REPO

PUBLISHED = REPO / "workflow" / "resources" / "published_numbers.csv"
RECALLS = ("R@1", "R@5", "R@10")


def write_run(
    root: Path, dataset: str, method: str, seed: int, images: int = 40, captions: int = 200, skill: float = 0.5
) -> Path:
    """A run folder as pcmebench.train and pcmebench.evaluate leave it, with random per-query values.

    R@K are 0/100 per query (R@1 <= R@5 <= R@10), R-P continuous; on t2i every fifth caption has no
    R-P row (excluded query), as real evaluations exclude queries without positives.
    """
    rng = np.random.default_rng([seed, len(method), len(dataset)])
    run = root / dataset / method / f"seed{seed}"
    run.mkdir(parents=True)
    per_query = []
    for direction, queries in (("i2t", images), ("t2i", captions)):
        first_rank = rng.geometric(skill, size=queries)
        for k, name in zip((1, 5, 10), RECALLS, strict=True):
            per_query += [("1K", "cosine", direction, q, name, 100.0 * (first_rank[q] <= k)) for q in range(queries)]
        per_query += [
            ("1K", "cosine", direction, q, "R-P", float(rng.uniform(0, 100)))
            for q in range(queries)
            if direction == "i2t" or q % 5
        ]
    per_query = pd.DataFrame(per_query, columns=tables.PER_QUERY_COLUMNS[:-1]).assign(weight=1.0)
    means = per_query.groupby(["protocol", "scoring", "direction", "metric"], sort=False)["value"].mean().reset_index()
    rsum = means[means["metric"].isin(RECALLS)]["value"].sum()
    metrics = pd.concat(
        [means, pd.DataFrame([{"protocol": "1K", "scoring": "cosine", "direction": "both", "metric": "RSUM", "value": rsum}])],
        ignore_index=True,
    ).assign(dataset=dataset, method=method, seed=seed)[tables.METRICS_COLUMNS]
    metrics.to_csv(run / "metrics.csv", index=False)
    per_query.to_parquet(run / "per_query.parquet")
    identity = {"dataset": dataset, "method": method, "seed": seed}
    uncertainty = pd.DataFrame(
        [
            {**identity, "protocol": "1K", "scoring": "cosine", "direction": "i2t", "uncertainty": "mean_log_sigma", "bin": b,
             "u_low": b, "u_high": b + 1, "queries": 4, "metric": "R@1", "value": 50.0}
            for b in range(10 if method == "pcme" else 0)
        ],
        columns=tables.UNCERTAINTY_COLUMNS,
    )  # fmt: skip
    uncertainty.to_csv(run / "uncertainty.csv", index=False)
    summary = pd.DataFrame(
        [{**identity, "protocol": "1K", "scoring": "cosine", "direction": "i2t", "uncertainty": "score_margin",
          "statistic": "auroc_margin", "value": 0.6}],
        columns=tables.UNCERTAINTY_SUMMARY_COLUMNS,
    )  # fmt: skip
    summary.to_csv(run / "uncertainty_summary.csv", index=False)
    record = {
        **identity, "epochs": 3, "device": "cpu", "wall_seconds": 12.5, "samples_per_second": 800.0, "parameters": 1234,
        "trainable_parameters": 1200, "final_loss": 0.25, "config_hash": f"hash{seed}", "code_version": "abc123",
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps(record))
    return run


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [write_run(tmp_path / "runs", "synthetic-coco", method, seed) for method in ("vse0", "pcme") for seed in (0, 1, 2)]


def test_writes_every_table_with_its_schema(runs, tmp_path):
    written = agg.aggregate(runs, tmp_path / "results", PUBLISHED, replicates=200)
    assert set(written) == set(tables.RESULT_TABLES)
    frames = {name: pd.read_csv(path) for name, path in written.items()}
    assert list(frames["metrics.csv"].columns) == tables.METRICS_COLUMNS
    assert list(frames["summary.csv"].columns) == tables.SUMMARY_COLUMNS
    assert list(frames["uncertainty.csv"].columns) == tables.UNCERTAINTY_COLUMNS
    assert list(frames["uncertainty_summary.csv"].columns) == tables.UNCERTAINTY_SUMMARY_COLUMNS
    assert list(frames["runs.csv"].columns) == tables.RUN_RECORD_KEYS
    assert list(frames["paper.csv"].columns) == tables.PAPER_COLUMNS
    # every run's rows, once
    assert len(frames["metrics.csv"]) == 6 * 9
    assert sorted(frames["runs.csv"]["seed"]) == [0, 0, 1, 1, 2, 2]
    assert set(frames["runs.csv"]["config_hash"]) == {"hash0", "hash1", "hash2"}
    assert len(frames["uncertainty.csv"]) == 3 * 10  # PCME only
    assert len(frames["uncertainty_summary.csv"]) == 6
    # no temporary file left beside the tables
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(tables.RESULT_TABLES)


def test_summary_is_mean_std_and_count_over_seeds(runs, tmp_path):
    written = agg.aggregate(runs, tmp_path / "results", replicates=0)
    metrics = pd.read_csv(written["metrics.csv"])
    summary = pd.read_csv(written["summary.csv"]).set_index(SUMMARY_KEYS)
    values = metrics.query("method == 'pcme' and direction == 't2i' and metric == 'R-P'")["value"]
    row = summary.loc[("synthetic-coco", "pcme", "1K", "cosine", "t2i", "R-P")]
    assert row["mean"] == pytest.approx(values.mean())
    assert row["std"] == pytest.approx(values.std(ddof=1))
    assert row["n"] == 3
    assert len(summary) == 2 * 9
    assert summary[["ci_low", "ci_high"]].isna().all().all()  # --bootstrap 0: no intervals


def test_intervals_match_a_loop_over_the_same_resamples(tmp_path):
    """The vectorised bootstrap equals the plain definition, with excluded queries and two seeds."""
    runs = [write_run(tmp_path / "runs", "synthetic-cub", "vse0", seed, images=30, captions=60) for seed in (0, 1)]
    per_query = pd.concat(
        [
            pd.read_parquet(run / "per_query.parquet").assign(dataset="synthetic-cub", method="vse0", seed=s)
            for s, run in enumerate(runs)
        ]
    )
    intervals = agg.bootstrap_intervals(per_query, replicates=300, seed=7).set_index(SUMMARY_KEYS)
    rng = np.random.default_rng([7, zlib.crc32(b"synthetic-cub|1K|t2i")])
    counts = resample_counts(rng, 60, 300)
    statistic = []
    for row in counts:
        seed_means = []
        for seed in (0, 1):
            rows = per_query[(per_query["seed"] == seed) & (per_query["direction"] == "t2i") & (per_query["metric"] == "R-P")]
            weights = row[rows["query"].to_numpy()]
            seed_means.append((weights * rows["value"].to_numpy()).sum() / weights.sum())
        statistic.append(np.mean(seed_means))
    expected = np.percentile(statistic, [2.5, 97.5])
    got = intervals.loc[("synthetic-cub", "vse0", "1K", "cosine", "t2i", "R-P")]
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(tuple(expected))


def test_interval_width_is_the_binomial_one_and_covers_the_mean(tmp_path):
    """One seed, R@1 a coin flip per query: the 95% interval spans about 2 x 1.96 x sqrt(p(1-p)/Q)."""
    run = write_run(tmp_path / "runs", "synthetic-coco", "vsepp", 0, images=400, captions=400, skill=0.5)
    written = agg.aggregate([run], tmp_path / "results", replicates=1000)
    summary = pd.read_csv(written["summary.csv"]).set_index(SUMMARY_KEYS)
    row = summary.loc[("synthetic-coco", "vsepp", "1K", "cosine", "i2t", "R@1")]
    p = row["mean"] / 100
    expected_width = 100 * 2 * 1.96 * math.sqrt(p * (1 - p) / 400)
    assert row["ci_high"] - row["ci_low"] == pytest.approx(expected_width, rel=0.2)
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert math.isnan(row["std"]) and row["n"] == 1


def test_rsum_interval_combines_both_directions(runs, tmp_path):
    summary = pd.read_csv(agg.aggregate(runs, tmp_path / "results", replicates=300)["summary.csv"]).set_index(SUMMARY_KEYS)
    rsum = summary.loc[("synthetic-coco", "pcme", "1K", "cosine", "both", "RSUM")]
    r1 = summary.loc[("synthetic-coco", "pcme", "1K", "cosine", "t2i", "R@1")]
    assert rsum["ci_low"] < rsum["mean"] < rsum["ci_high"]
    assert rsum["ci_high"] - rsum["ci_low"] > r1["ci_high"] - r1["ci_low"]
    assert summary[["ci_low", "ci_high"]].notna().all().all()


def test_intervals_are_deterministic_and_follow_the_seed(runs, tmp_path):
    first = pd.read_csv(agg.aggregate(runs, tmp_path / "a", replicates=200, seed=0)["summary.csv"])
    again = pd.read_csv(agg.aggregate(list(reversed(runs)), tmp_path / "b", replicates=200, seed=0)["summary.csv"])
    other = pd.read_csv(agg.aggregate(runs, tmp_path / "c", replicates=200, seed=1)["summary.csv"])
    key = SUMMARY_KEYS
    pd.testing.assert_frame_equal(first.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True))
    assert not np.allclose(first["ci_low"], other["ci_low"])


def test_metric_without_per_query_rows_gets_no_interval(runs, tmp_path):
    metrics = pd.read_csv(runs[0] / "metrics.csv")
    extra = metrics.iloc[:1].assign(protocol="5K", metric="CxC R@1", value=42.0)
    pd.concat([metrics, extra]).to_csv(runs[0] / "metrics.csv", index=False)
    summary = pd.read_csv(agg.aggregate(runs, tmp_path / "results", replicates=100)["summary.csv"]).set_index(SUMMARY_KEYS)
    row = summary.loc[("synthetic-coco", "vse0", "5K", "cosine", "i2t", "CxC R@1")]
    assert row["mean"] == 42.0 and row["n"] == 1
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])


@pytest.mark.parametrize("name", agg.RUN_FILES)
def test_missing_run_file_is_named(runs, tmp_path, name):
    (runs[1] / name).unlink()
    with pytest.raises(ResultsError, match=re.escape(f"{runs[1]}: missing {name}")):
        agg.aggregate(runs, tmp_path / "results")
    assert not (tmp_path / "results" / "summary.csv").exists()


def test_table_with_other_columns_is_named(runs, tmp_path):
    path = runs[2] / "uncertainty_summary.csv"
    pd.read_csv(path).rename(columns={"statistic": "stat"}).to_csv(path, index=False)
    with pytest.raises(ResultsError, match=re.escape(f"{path}: missing column(s) statistic; unexpected stat")):
        agg.aggregate(runs, tmp_path / "results")


def test_per_query_rows_that_disagree_with_metrics_are_named(runs, tmp_path):
    path = runs[0] / "metrics.csv"
    metrics = pd.read_csv(path)
    metrics.loc[metrics["metric"] == "R-P", "value"] += 1.0
    metrics.to_csv(path, index=False)
    with pytest.raises(ResultsError, match=re.escape(f"{runs[0] / 'per_query.parquet'}: the per-query mean")):
        agg.aggregate(runs, tmp_path / "results")


def test_rows_of_another_run_are_named(runs, tmp_path):
    path = runs[0] / "metrics.csv"
    pd.read_csv(path).assign(seed=5).to_csv(path, index=False)
    with pytest.raises(ResultsError, match=re.escape(f"{path}: rows for")):
        agg.aggregate(runs, tmp_path / "results")


def test_record_without_a_key_is_named(runs, tmp_path):
    path = runs[0] / "run.json"
    record = json.loads(path.read_text())
    del record["wall_seconds"]
    path.write_text(json.dumps(record))
    with pytest.raises(ResultsError, match=re.escape(f"{path}: missing key(s) wall_seconds")):
        agg.aggregate(runs, tmp_path / "results")


def test_command_line_reports_the_error_and_fails(runs, tmp_path, capsys):
    (runs[0] / "per_query.parquet").unlink()
    assert agg.main(["--runs", *map(str, runs), "--results", str(tmp_path / "results")]) == 1
    assert "per_query.parquet" in capsys.readouterr().err
    (runs[0] / "per_query.parquet").touch()
    assert agg.main(["--runs", *map(str, runs), "--results", str(tmp_path / "results")]) == 1
    assert "cannot be read as a table" in capsys.readouterr().err


def test_published_numbers_are_the_verified_ones_with_sources():
    paper = agg.published_numbers(PUBLISHED).set_index(["dataset", "method", "protocol", "direction", "metric"])
    value = paper["value"]
    # PCME README (naver-ai/pcme), COCO table
    assert value[("coco", "pcme", "1K", "i2t", "PMRP")] == 45.0
    assert value[("coco", "pcme", "1K", "t2i", "R@1")] == 54.6
    assert value[("coco", "pvse-k1", "ECCV", "t2i", "ECCV mAP@R")] == 44.6
    assert value[("coco", "pvse-k2", "ECCV", "t2i", "ECCV mAP@R")] == 53.8
    # PVSE README (yalesong/pvse), COCO 1K and 5K
    assert value[("coco", "pvse-k2", "1K", "i2t", "R@10")] == 96.64
    assert value[("coco", "pvse-k2", "5K", "t2i", "R@1")] == 32.42
    assert value[("coco", "pvse-k1", "5K", "i2t", "R@1")] == 41.72
    assert value[("coco", "pvse-k1", "1K", "i2t", "R@1")] == 66.72  # since the commit that added --legacy
    assert paper["source"].str.contains(r"https://github\.com/(?:naver-ai/pcme|yalesong/pvse)/blob/[0-9a-f]{40}/README\.md").all()
    # PVSE's numbers come from PVSE's own code and recipe, not from the recipe the shared stack follows
    assert (
        paper["recipe"] == paper.index.get_level_values("method").map({"pcme": "naver-ai/pcme"}).fillna("yalesong/pvse")
    ).all()
    assert set(paper.index.get_level_values("metric")) <= {"R@1", "R@5", "R@10", "PMRP", "ECCV mAP@R"}


def test_bad_published_numbers_are_named(tmp_path):
    path = tmp_path / "published.csv"
    path.write_text("dataset,method,protocol,direction,metric,value,recipe,source\ncoco,pcme,1K,i2t,R@1,68.8,naver-ai/pcme,\n")
    with pytest.raises(ResultsError, match=re.escape(f"{path}: row 2 needs a value in [0, 100], a recipe and a source")):
        agg.published_numbers(path)


def test_bootstrap_replicates_of_1k_resample_the_mean_of_fold_means():
    """1K rows weigh 1 / their fold's queries: the unresampled replicate is the mean of the fold means,
    and a resample weighs each drawn query by its count and its fold weight."""
    values = np.array([[100.0, 0.0, 100.0, 100.0, 0.0, np.nan]])  # fold A: queries 0-1; fold B: 2-4; 5 excluded
    weights = np.array([[1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 0.0]])
    unresampled = series_replicates(values, np.ones((1, 6)), weights)
    assert unresampled[0, 0] == pytest.approx((50.0 + 200 / 3) / 2)
    counts = np.array([[2.0, 0.0, 1.0, 0.0, 3.0, 0.0]])
    expected = (2 * 0.5 * 100 + 1 / 3 * 100) / (2 * 0.5 + 1 / 3 + 3 * 1 / 3)
    assert series_replicates(values, counts, weights)[0, 0] == pytest.approx(expected)
    assert series_replicates(values, counts)[0, 0] == pytest.approx(300 / 6)  # no weights: the plain mean
