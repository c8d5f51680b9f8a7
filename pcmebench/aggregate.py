"""Gather every run's evaluation into the tidy tables of ``results/`` (documented in results/README.md).

    python -m pcmebench.aggregate --runs work/runs/coco/pcme/seed0 work/runs/coco/pcme/seed1 ... \
        --results results [--published workflow/resources/published_numbers.csv] [--bootstrap 1000] [--seed 0]

Reads, from every run folder, ``metrics.csv``, ``per_query.parquet``, ``uncertainty.csv``,
``uncertainty_summary.csv`` and ``run.json`` (written by ``pcmebench.evaluate`` and
``pcmebench.train``), or, from an external model's folder, ``external.json`` in place of
``run.json`` (``pcmebench.external``), and writes, each file atomically:

- ``metrics.csv``, ``uncertainty.csv``, ``uncertainty_summary.csv``: the runs' tables, concatenated;
- ``summary.csv``: per (dataset, method, protocol, scoring, direction, metric) the mean and
  standard deviation over seeds, the number of seeds and a 95% bootstrap confidence interval
  (see :func:`bootstrap_intervals`);
- ``runs.csv``: one row per training run, from ``run.json``;
- ``external.csv``: one row per external model's file (dataset, model, seed), from ``external.json``;
- ``paper.csv``: the published numbers of ``--published``, validated, each with its source.

A missing file or a table whose columns differ from the expected schema stops the run with an
error naming the file.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.bootstrap import percentile_interval, resample_counts, series_replicates
from pcmebench.logs import log_to_stderr
from pcmebench.tables import (
    EXTERNAL_COLUMNS,
    EXTERNAL_RECORD,
    PAPER_COLUMNS,
    PER_QUERY_COLUMNS,
    RESULT_TABLES,
    RUN_RECORD_KEYS,
    RUN_TABLES,
    SUMMARY_COLUMNS,
    SUMMARY_KEYS,
    ResultsError,
    read_run_record,
    read_table,
    record_path,
    weighted_means,
    write_csv,
)
from pcmebench.vocabulary import BOTH, RSUM, RSUM_PARTS, rsum

log = logging.getLogger("pcmebench.aggregate")

# The per-run tables results/ holds concatenated; with per_query.parquet, the tables this stage reads
# (queries.parquet is the plots'); with the training's record, the files it needs of a run folder.
CONCATENATED = ("metrics.csv", "uncertainty.csv", "uncertainty_summary.csv")
AGGREGATED_TABLES = (*CONCATENATED, "per_query.parquet")
RUN_FILES = (*AGGREGATED_TABLES, "run.json")
# Replicates are drawn in blocks so that a block's (replicates x queries) count matrix stays small.
BLOCK_ELEMENTS = 4_000_000


# --- reading ---------------------------------------------------------------------------------


def load_run(run_dir: Path) -> dict[str, pd.DataFrame | dict]:
    """Every file of one run folder, checked against its columns and against the run's identity.

    Returns {"record": run.json's RUN_RECORD_KEYS} (an external model's folder: {"external":
    external.json's EXTERNAL_COLUMNS}) and, by file name, each of AGGREGATED_TABLES.
    """
    run_dir = Path(run_dir)
    record_file = record_path(run_dir)
    external = record_file.name == EXTERNAL_RECORD
    expected = (*AGGREGATED_TABLES, EXTERNAL_RECORD) if external else RUN_FILES
    missing = [name for name in expected if not (run_dir / name).is_file()]
    if missing:
        raise ResultsError(
            f"{run_dir}: missing {', '.join(missing)}; the run's training (run.json) or evaluation (the tables) "
            "did not finish: run the workflow again for it"
        )
    kind, keys = ("external", EXTERNAL_COLUMNS) if external else ("record", RUN_RECORD_KEYS)
    record = read_run_record(record_file, keys)
    run = {kind: {key: record[key] for key in keys}}
    run.update({name: read_table(run_dir / name, RUN_TABLES[name], exact=True) for name in AGGREGATED_TABLES})
    identity = (record["dataset"], record["method"], int(record["seed"]))
    for name in CONCATENATED:
        frame = run[name]
        found = set(zip(frame["dataset"], frame["method"], frame["seed"].astype(int), strict=True))
        if found - {identity}:
            raise ResultsError(
                f"{run_dir / name}: rows for {sorted(found - {identity})} in the folder of run {identity} ({record_file.name})"
            )
    check_unique_rows(run["metrics.csv"], run["per_query.parquet"], run_dir)
    check_per_query_means(run["metrics.csv"], run["per_query.parquet"], run_dir / "per_query.parquet")
    return run


def check_unique_rows(metrics: pd.DataFrame, per_query: pd.DataFrame, run_dir: Path) -> None:
    """metrics.csv has rows, each metric once; per_query.parquet has each query once per metric."""
    if metrics.empty:
        raise ResultsError(f"{run_dir / 'metrics.csv'}: no rows")
    duplicated = metrics.duplicated(SUMMARY_KEYS)
    if duplicated.any():
        raise ResultsError(f"{run_dir / 'metrics.csv'}: repeated rows for {metrics[duplicated][SUMMARY_KEYS].values[0].tolist()}")
    repeated = per_query.duplicated(["protocol", "scoring", "direction", "metric", "query"])
    if repeated.any():
        row = per_query[repeated].iloc[0]
        raise ResultsError(
            f"{run_dir / 'per_query.parquet'}: query {row['query']} twice in {row[PER_QUERY_COLUMNS[:3]].tolist()} {row['metric']}"
        )


def check_per_query_means(metrics: pd.DataFrame, per_query: pd.DataFrame, path: Path, tolerance: float = 1e-3) -> None:
    """The (weighted) mean of each per-query group must be its metrics.csv value (else the intervals would be about another number)."""
    group = ["protocol", "scoring", "direction", "metric"]
    means = weighted_means(per_query, group).rename(columns={"value": "per_query_mean"})
    joined = means.merge(metrics[[*group, "value"]], on=group, how="left")
    unknown = joined["value"].isna()
    if unknown.any():
        raise ResultsError(
            f"{path}: per-query rows for {joined[unknown][group].values[0].tolist()}, a metric absent from metrics.csv"
        )
    off = (joined["per_query_mean"] - joined["value"]).abs() > tolerance
    if off.any():
        row = joined[off].iloc[0]
        raise ResultsError(
            f"{path}: the per-query mean of {row[group].tolist()} is {row['per_query_mean']:.6g}, "
            f"but metrics.csv says {row['value']:.6g}"
        )


def published_numbers(path: Path) -> pd.DataFrame:
    """The published numbers file, each row with a numeric value in percent, its recipe and a non-empty source.

    ``recipe``: the code whose training recipe produced the number (naver-ai/pcme, whose recipe
    config/paper.yaml follows, or e.g. yalesong/pvse: PVSE's own code and recipe, not a target
    for this suite's shared-stack runs).
    """
    frame = read_table(path, PAPER_COLUMNS, exact=True)
    values = pd.to_numeric(frame["value"], errors="coerce")
    blank = {c: frame[c].astype("string").fillna("").str.strip().eq("") for c in ("recipe", "source")}
    bad = values.isna() | (values < 0) | (values > 100) | blank["recipe"] | blank["source"]
    if bad.any():
        raise ResultsError(f"{path}: row {int(bad.idxmax()) + 2} needs a value in [0, 100], a recipe and a source")
    duplicated = frame.duplicated(["dataset", "method", "protocol", "direction", "metric"])
    if duplicated.any():
        raise ResultsError(f"{path}: row {int(duplicated.idxmax()) + 2} repeats the number of an earlier row")
    return frame.assign(value=values)


# --- statistics ------------------------------------------------------------------------------


def bootstrap_intervals(per_query: pd.DataFrame, replicates: int = 1000, seed: int = 0) -> pd.DataFrame:
    """95% bootstrap intervals over queries of the seed-averaged metrics, as columns ``ci_low``, ``ci_high`` by SUMMARY_KEYS.

    ``per_query`` holds the runs' per-query rows with their dataset, method and seed. Seeds of a
    dataset share its test set, so one resample of query indices serves every seed; it is drawn per
    (dataset, protocol, direction) from ``seed`` and a hash of that key, so every method and metric
    of a dataset sees the same resamples (paired comparisons) and the result does not depend on
    which runs are aggregated together. A replicate's statistic is the mean over seeds of each
    seed's weighted mean over the resampled queries (the rows' ``weight``: on 1K the mean of fold
    means), the same statistic as the reported mean. RSUM sums the
    replicates of R@1, R@5 and R@10 of both directions, whose queries are resampled independently.
    """
    rows = []
    replicate_store: dict[tuple, np.ndarray] = {}  # (dataset, method, protocol, scoring, direction, metric) -> (B, seeds)
    for (dataset, protocol, direction), block in per_query.groupby(["dataset", "protocol", "direction"], sort=True):
        queries = np.sort(block["query"].unique())
        position = np.searchsorted(queries, block["query"].to_numpy())
        series = block.groupby(["method", "scoring", "metric", "seed"], sort=True).ngroup().to_numpy()
        labels = block.groupby(["method", "scoring", "metric", "seed"], sort=True).size().index
        values = np.full((len(labels), len(queries)), np.nan)
        values[series, position] = block["value"].to_numpy(dtype=np.float64)
        weights = np.zeros((len(labels), len(queries)))
        weights[series, position] = block["weight"].to_numpy(dtype=np.float64)
        rng = np.random.default_rng([seed, zlib.crc32(f"{dataset}|{protocol}|{direction}".encode())])
        step = max(1, BLOCK_ELEMENTS // len(queries))
        draws = np.concatenate(
            [
                series_replicates(values, resample_counts(rng, len(queries), min(step, replicates - start)), weights)
                for start in range(0, replicates, step)
            ]
        )
        by_metric: dict[tuple, list[int]] = {}
        for column, (method, scoring, metric, _seed) in enumerate(labels):
            by_metric.setdefault((dataset, method, protocol, scoring, direction, metric), []).append(column)
        for key, columns in by_metric.items():
            replicate_store[key] = draws[:, columns]
    for key, seed_draws in replicate_store.items():
        rows.append((*key, *percentile_interval(seed_mean(seed_draws))))
    rsum_keys = {(d, m, p, s) for (d, m, p, s, _direction, _metric) in replicate_store}
    for dataset, method, protocol, scoring in sorted(rsum_keys):
        parts = {part: replicate_store.get((dataset, method, protocol, scoring, *part)) for part in RSUM_PARTS}
        shapes = {None if part is None else part.shape for part in parts.values()}
        total = rsum(parts) if len(shapes) == 1 else None  # every part, over the same seeds
        if total is not None:
            rows.append((dataset, method, protocol, scoring, BOTH, RSUM, *percentile_interval(seed_mean(total))))
    return pd.DataFrame(rows, columns=[*SUMMARY_KEYS, "ci_low", "ci_high"])


def seed_mean(seed_draws: np.ndarray) -> np.ndarray:
    """Mean over seeds (columns) of each replicate, ignoring seeds whose replicate is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmean(seed_draws, axis=1)


def summarize(metrics: pd.DataFrame, per_query: pd.DataFrame, replicates: int = 1000, seed: int = 0) -> pd.DataFrame:
    """summary.csv: mean, sample std (ddof 1; NaN for one seed) and number of seeds per SUMMARY_KEYS, with bootstrap intervals.

    A metric without per-query rows (none but RSUM, which is rebuilt from R@K) gets a NaN interval.
    """
    grouped = metrics.groupby(SUMMARY_KEYS, sort=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    if replicates > 0 and not per_query.empty:
        summary = summary.merge(bootstrap_intervals(per_query, replicates, seed), on=SUMMARY_KEYS, how="left")
    else:
        summary = summary.assign(ci_low=math.nan, ci_high=math.nan)
    return summary[SUMMARY_COLUMNS]


# --- writing ---------------------------------------------------------------------------------


def concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Row-wise concatenation that keeps the header when every table is empty."""
    filled = [frame for frame in frames if not frame.empty]
    return pd.concat(filled, ignore_index=True)[columns] if filled else pd.DataFrame(columns=columns)


def aggregate(
    runs: list[Path], results: Path, published: Path | None = None, replicates: int = 1000, seed: int = 0
) -> dict[str, Path]:
    """Read every run folder and write the result tables; returns {file name: path}."""
    if not runs:
        raise ResultsError("no run folders given")
    loaded = [load_run(Path(run)) for run in runs]
    records = [run.get("record") or run["external"] for run in loaded]
    identities = [(record["dataset"], record["method"], int(record["seed"])) for record in records]
    repeated = {identity for identity in identities if identities.count(identity) > 1}
    if repeated:
        raise ResultsError(f"the same run twice among --runs: {sorted(repeated)}")
    per_query = concat(
        [run["per_query.parquet"].assign(dataset=d, method=m, seed=s) for run, (d, m, s) in zip(loaded, identities, strict=True)],
        [*PER_QUERY_COLUMNS, "dataset", "method", "seed"],
    )
    tables = {
        name: concat([run[name] for run in loaded], RESULT_TABLES[name]) for name in AGGREGATED_TABLES if name in RESULT_TABLES
    }
    tables["summary.csv"] = summarize(tables["metrics.csv"], per_query, replicates, seed)
    tables["runs.csv"] = pd.DataFrame([run["record"] for run in loaded if "record" in run], columns=RESULT_TABLES["runs.csv"])
    tables["external.csv"] = pd.DataFrame([run["external"] for run in loaded if "external" in run], columns=EXTERNAL_COLUMNS)
    tables["paper.csv"] = published_numbers(published) if published is not None else pd.DataFrame(columns=PAPER_COLUMNS)
    written = {}
    for name in RESULT_TABLES:
        written[name] = Path(results) / name
        write_csv(tables[name], written[name])
        log.info("wrote %s (%d rows)", written[name], len(tables[name]))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        nargs="+",
        type=Path,
        required=True,
        help="run folders (work/runs/<dataset>/<method>/seed<seed>) and external models' (work/external/<dataset>/<name>/seed<seed>)",
    )
    parser.add_argument("--results", type=Path, required=True, help="folder for the result tables")
    parser.add_argument(
        "--published", type=Path, help="CSV of published numbers, with the columns of paper.csv (results/README.md)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        aggregate(args.runs, args.results, args.published, args.bootstrap, args.seed)
    except ResultsError as error:
        log.error("%s", error)
        print(f"aggregate: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
