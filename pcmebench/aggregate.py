"""Gather every run's evaluation into the tidy tables of ``results/`` (documented in results/README.md).

    python -m pcmebench.aggregate --runs work/runs/coco/pcme/seed0 work/runs/coco/pcme/seed1 ... \
        --results results [--published workflow/resources/published_numbers.csv] [--bootstrap 1000] [--seed 0]

Reads, from every run folder, ``metrics.csv``, ``per_query.parquet``, ``uncertainty.csv``,
``uncertainty_summary.csv`` and ``run.json`` (written by ``pcmebench.evaluate`` and
``pcmebench.train``) and writes, each file atomically:

- ``metrics.csv``, ``uncertainty.csv``, ``uncertainty_summary.csv``: the runs' tables, concatenated;
- ``summary.csv``: per (dataset, method, protocol, scoring, direction, metric) the mean and
  standard deviation over seeds, the number of seeds and a 95% bootstrap confidence interval
  (see :func:`bootstrap_intervals`);
- ``runs.csv``: one row per training run, from ``run.json``;
- ``paper.csv``: the published numbers of ``--published``, validated, each with its source.

A missing file or a table whose columns differ from the expected schema stops the run with an
error naming the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from pcmebench.files import atomic_write

# The per-run files' schemas (the interface between pcmebench.evaluate and this stage), re-exported.
from pcmebench.logs import log_to_stderr
from pcmebench.tables import (
    METRICS_COLUMNS,
    PER_QUERY_COLUMNS,
    UNCERTAINTY_COLUMNS,
    UNCERTAINTY_SUMMARY_COLUMNS,
    weighted_means,
)

log = logging.getLogger("pcmebench.aggregate")

RUN_RECORD_KEYS = [
    "dataset", "method", "seed", "device", "epochs", "wall_seconds", "samples_per_second", "parameters",
    "trainable_parameters", "final_loss", "config_hash", "code_version",
]  # fmt: skip
RUN_FILES = ("metrics.csv", "per_query.parquet", "uncertainty.csv", "uncertainty_summary.csv", "run.json")

# The tables this stage writes.
KEYS = ["dataset", "method", "protocol", "scoring", "direction", "metric"]
SUMMARY_COLUMNS = [*KEYS, "mean", "std", "n", "ci_low", "ci_high"]
PAPER_COLUMNS = ["dataset", "method", "protocol", "direction", "metric", "value", "recipe", "source"]
RESULT_FILES = ("metrics.csv", "summary.csv", "uncertainty.csv", "uncertainty_summary.csv", "runs.csv", "paper.csv")

# RSUM = R@1 + R@5 + R@10 of image-to-text plus the same of text-to-image (VSE++'s rsum).
RSUM_PARTS = [(direction, metric) for direction in ("i2t", "t2i") for metric in ("R@1", "R@5", "R@10")]
CONFIDENCE = 0.95
# Replicates are drawn in blocks so that a block's (replicates x queries) count matrix stays small.
BLOCK_ELEMENTS = 4_000_000


class AggregateError(ValueError):
    """A run's file is missing or does not match its schema; the message names the file."""


# --- reading ---------------------------------------------------------------------------------


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV or Parquet table whose columns must be exactly ``columns`` (in any order)."""
    path = Path(path)
    if not path.is_file():
        raise AggregateError(f"{path}: missing (the evaluation of this run did not write it)")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as error:
        raise AggregateError(f"{path}: cannot be read as a table ({error})") from error
    if sorted(frame.columns) != sorted(columns):
        raise AggregateError(f"{path}: columns {list(frame.columns)} do not match the expected {columns}")
    return frame[columns]


def read_record(path: Path) -> dict:
    """A run's ``run.json`` with every key that runs.csv reports."""
    path = Path(path)
    if not path.is_file():
        raise AggregateError(f"{path}: missing (the training of this run did not finish)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise AggregateError(f"{path}: not valid JSON ({error})") from error
    missing = [key for key in RUN_RECORD_KEYS if key not in record]
    if missing:
        raise AggregateError(f"{path}: lacks the keys {missing}")
    return {key: record[key] for key in RUN_RECORD_KEYS}


def load_run(run_dir: Path) -> dict[str, pd.DataFrame | dict]:
    """Every file of one run folder, checked against its schema and against the run's identity."""
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise AggregateError(f"{run_dir}: missing {', '.join(missing)}")
    record = read_record(run_dir / "run.json")
    run = {
        "record": record,
        "metrics": read_table(run_dir / "metrics.csv", METRICS_COLUMNS),
        "per_query": read_table(run_dir / "per_query.parquet", PER_QUERY_COLUMNS),
        "uncertainty": read_table(run_dir / "uncertainty.csv", UNCERTAINTY_COLUMNS),
        "uncertainty_summary": read_table(run_dir / "uncertainty_summary.csv", UNCERTAINTY_SUMMARY_COLUMNS),
    }
    identity = (record["dataset"], record["method"], int(record["seed"]))
    for name in ("metrics", "uncertainty", "uncertainty_summary"):
        frame = run[name]
        found = set(zip(frame["dataset"], frame["method"], frame["seed"].astype(int), strict=True))
        if found - {identity}:
            raise AggregateError(
                f"{run_dir / (name + '.csv')}: rows for {sorted(found - {identity})} in the folder of run {identity} (run.json)"
            )
    if run["metrics"].empty:
        raise AggregateError(f"{run_dir / 'metrics.csv'}: no rows")
    duplicated = run["metrics"].duplicated(KEYS)
    if duplicated.any():
        raise AggregateError(
            f"{run_dir / 'metrics.csv'}: repeated rows for {run['metrics'][duplicated][KEYS].values[0].tolist()}"
        )
    repeated = run["per_query"].duplicated(["protocol", "scoring", "direction", "metric", "query"])
    if repeated.any():
        row = run["per_query"][repeated].iloc[0]
        raise AggregateError(
            f"{run_dir / 'per_query.parquet'}: query {row['query']} twice in {row[PER_QUERY_COLUMNS[:3]].tolist()} {row['metric']}"
        )
    check_per_query_means(run["metrics"], run["per_query"], run_dir / "per_query.parquet")
    return run


def check_per_query_means(metrics: pd.DataFrame, per_query: pd.DataFrame, path: Path, tolerance: float = 1e-3) -> None:
    """The (weighted) mean of each per-query group must be its metrics.csv value (else the intervals would be about another number)."""
    group = ["protocol", "scoring", "direction", "metric"]
    means = weighted_means(per_query, group).rename(columns={"value": "per_query_mean"})
    joined = means.merge(metrics[[*group, "value"]], on=group, how="left")
    unknown = joined["value"].isna()
    if unknown.any():
        raise AggregateError(
            f"{path}: per-query rows for {joined[unknown][group].values[0].tolist()}, a metric absent from metrics.csv"
        )
    off = (joined["per_query_mean"] - joined["value"]).abs() > tolerance
    if off.any():
        row = joined[off].iloc[0]
        raise AggregateError(
            f"{path}: the per-query mean of {row[group].tolist()} is {row['per_query_mean']:.6g}, "
            f"but metrics.csv says {row['value']:.6g}"
        )


def published_numbers(path: Path) -> pd.DataFrame:
    """The published numbers file, each row with a numeric value in percent, its recipe and a non-empty source.

    ``recipe``: the code whose training recipe produced the number (naver-ai/pcme, whose recipe
    config/paper.yaml follows, or e.g. yalesong/pvse: PVSE's own code and recipe, not a target
    for this suite's shared-stack runs).
    """
    frame = read_table(path, PAPER_COLUMNS)
    values = pd.to_numeric(frame["value"], errors="coerce")
    blank = {c: frame[c].astype("string").fillna("").str.strip().eq("") for c in ("recipe", "source")}
    bad = values.isna() | (values < 0) | (values > 100) | blank["recipe"] | blank["source"]
    if bad.any():
        raise AggregateError(f"{path}: row {int(bad.idxmax()) + 2} needs a value in [0, 100], a recipe and a source")
    duplicated = frame.duplicated(["dataset", "method", "protocol", "direction", "metric"])
    if duplicated.any():
        raise AggregateError(f"{path}: row {int(duplicated.idxmax()) + 2} repeats the number of an earlier row")
    return frame.assign(value=values)


# --- statistics ------------------------------------------------------------------------------


def resample_counts(rng: np.random.Generator, queries: int, replicates: int) -> np.ndarray:
    """(replicates, queries) multiplicities of a bootstrap resample: each row draws ``queries`` of them with replacement."""
    return rng.multinomial(queries, np.full(queries, 1.0 / queries), size=replicates).astype(np.float64)


def series_replicates(values: np.ndarray, counts: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap replicates of the (weighted) mean of each row of ``values`` (series x queries, NaN = query not in the series).

    Replicate b of series s is sum_q c_bq w_sq v_sq / sum_q c_bq w_sq [v_sq defined]: the mean over the
    resampled queries that the series has (``weights`` w: 1 when None); NaN when the resample holds none
    of them. Returns (replicates, series).
    """
    present = ~np.isnan(values)
    weights = present.astype(np.float64) if weights is None else np.where(present, weights, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ np.where(present, values * weights, 0.0).T) / (counts @ weights.T)


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile bootstrap interval of a vector of replicates (NaN ones ignored; NaN when none)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(per_query: pd.DataFrame, replicates: int = 1000, seed: int = 0) -> pd.DataFrame:
    """95% bootstrap intervals over queries of the seed-averaged metrics, as columns ``ci_low``, ``ci_high`` by KEYS.

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
        parts = [replicate_store.get((dataset, method, protocol, scoring, direction, metric)) for direction, metric in RSUM_PARTS]
        if any(part is None for part in parts) or len({part.shape for part in parts}) != 1:
            continue
        rows.append((dataset, method, protocol, scoring, "both", "RSUM", *percentile_interval(seed_mean(sum(parts)))))
    return pd.DataFrame(rows, columns=[*KEYS, "ci_low", "ci_high"])


def seed_mean(seed_draws: np.ndarray) -> np.ndarray:
    """Mean over seeds (columns) of each replicate, ignoring seeds whose replicate is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmean(seed_draws, axis=1)


def summarize(metrics: pd.DataFrame, per_query: pd.DataFrame, replicates: int = 1000, seed: int = 0) -> pd.DataFrame:
    """summary.csv: mean, sample std (ddof 1; NaN for one seed) and number of seeds per KEYS, with bootstrap intervals.

    A metric without per-query rows (none but RSUM, which is rebuilt from R@K) gets a NaN interval.
    """
    grouped = metrics.groupby(KEYS, sort=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    if replicates > 0 and not per_query.empty:
        summary = summary.merge(bootstrap_intervals(per_query, replicates, seed), on=KEYS, how="left")
    else:
        summary = summary.assign(ci_low=math.nan, ci_high=math.nan)
    return summary[SUMMARY_COLUMNS]


# --- writing ---------------------------------------------------------------------------------


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV atomically, so a reader never sees half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: frame.to_csv(temporary, index=False))


def concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Row-wise concatenation that keeps the header when every table is empty."""
    filled = [frame for frame in frames if not frame.empty]
    return pd.concat(filled, ignore_index=True)[columns] if filled else pd.DataFrame(columns=columns)


def aggregate(
    runs: list[Path], results: Path, published: Path | None = None, replicates: int = 1000, seed: int = 0
) -> dict[str, Path]:
    """Read every run folder and write the result tables; returns {file name: path}."""
    if not runs:
        raise AggregateError("no run folders given")
    loaded = [load_run(Path(run)) for run in runs]
    identities = [(run["record"]["dataset"], run["record"]["method"], int(run["record"]["seed"])) for run in loaded]
    repeated = {identity for identity in identities if identities.count(identity) > 1}
    if repeated:
        raise AggregateError(f"the same run twice among --runs: {sorted(repeated)}")
    metrics = concat([run["metrics"] for run in loaded], METRICS_COLUMNS)
    per_query = concat(
        [run["per_query"].assign(dataset=d, method=m, seed=s) for run, (d, m, s) in zip(loaded, identities, strict=True)],
        [*PER_QUERY_COLUMNS, "dataset", "method", "seed"],
    )
    tables = {
        "metrics.csv": metrics,
        "summary.csv": summarize(metrics, per_query, replicates, seed),
        "uncertainty.csv": concat([run["uncertainty"] for run in loaded], UNCERTAINTY_COLUMNS),
        "uncertainty_summary.csv": concat([run["uncertainty_summary"] for run in loaded], UNCERTAINTY_SUMMARY_COLUMNS),
        "runs.csv": pd.DataFrame([run["record"] for run in loaded], columns=RUN_RECORD_KEYS),
        "paper.csv": published_numbers(published) if published is not None else pd.DataFrame(columns=PAPER_COLUMNS),
    }
    written = {}
    for name, frame in tables.items():
        written[name] = Path(results) / name
        write_csv(frame, written[name])
        log.info("wrote %s (%d rows)", written[name], len(frame))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", nargs="+", type=Path, required=True, help="run folders (work/runs/<dataset>/<method>/seed<seed>)"
    )
    parser.add_argument("--results", type=Path, required=True, help="folder for the result tables")
    parser.add_argument(
        "--published", type=Path, help="CSV of published numbers (dataset,method,protocol,direction,metric,value,source)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        aggregate(args.runs, args.results, args.published, args.bootstrap, args.seed)
    except AggregateError as error:
        log.error("%s", error)
        print(f"aggregate: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
