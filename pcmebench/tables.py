"""The result tables: every table's columns, one reader, one run-record reader and one error (torch-free).

``pcmebench.evaluate`` writes the per-run tables into every run folder, ``pcmebench.aggregate``
gathers them into ``results/``, and the plots and the report read them back: all take the
columns from here. results/README.md documents them (tests/test_tables.py checks that it lists
exactly these columns).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.registry import Method, external_method, registered
from pcmebench.files import atomic_write

# --- per run (work/runs/<dataset>/<method>/seed<seed>/) ----------------------------------------
RUN_COLUMNS = ["dataset", "method", "seed"]
METRICS_COLUMNS = [*RUN_COLUMNS, "protocol", "scoring", "direction", "metric", "value"]
PER_QUERY_COLUMNS = ["protocol", "scoring", "direction", "query", "metric", "value", "weight"]
QUERIES_COLUMNS = ["direction", "query", "u", "sum_sigma_sq", "true_matches"]
UNCERTAINTY_COLUMNS = [
    *RUN_COLUMNS, "protocol", "scoring", "direction", "uncertainty", "bin", "u_low", "u_high", "queries", "metric", "value",
]  # fmt: skip
UNCERTAINTY_SUMMARY_COLUMNS = [*RUN_COLUMNS, "protocol", "scoring", "direction", "uncertainty", "statistic", "value"]
TRAIN_LOG_COLUMNS = ["epoch", "phase", "loss"]  # what the figures read; train.py writes more
# run.json's keys that runs.csv reports.
RUN_RECORD_KEYS = [
    "dataset", "method", "seed", "device", "epochs", "wall_seconds", "samples_per_second", "parameters",
    "trainable_parameters", "final_loss", "config_hash", "code_version",
]  # fmt: skip

# An external model's evaluation folder (work/external/<dataset>/<name>/seed<seed>/) holds external.json:
# what the model is and which file gave its numbers, in place of a training run's run.json.
EXTERNAL_RECORD = "external.json"
EXTERNAL_COLUMNS = [*RUN_COLUMNS, "label", "color", "scorings", "statistics", "file", "sha256"]

# --- results/ ------------------------------------------------------------------------------------
SUMMARY_KEYS = ["dataset", "method", "protocol", "scoring", "direction", "metric"]
SUMMARY_COLUMNS = [*SUMMARY_KEYS, "mean", "std", "n", "ci_low", "ci_high"]
PAPER_COLUMNS = ["dataset", "method", "protocol", "direction", "metric", "value", "recipe", "source"]

# Every table of results/ with its columns, in the order results/README.md documents them.
RESULT_TABLES = {
    "metrics.csv": METRICS_COLUMNS,
    "summary.csv": SUMMARY_COLUMNS,
    "uncertainty.csv": UNCERTAINTY_COLUMNS,
    "uncertainty_summary.csv": UNCERTAINTY_SUMMARY_COLUMNS,
    "runs.csv": RUN_RECORD_KEYS,
    "external.csv": EXTERNAL_COLUMNS,
    "paper.csv": PAPER_COLUMNS,
}
# Every file of a run folder that evaluation writes, with its columns (the per-run tables).
RUN_TABLES = {
    "metrics.csv": METRICS_COLUMNS,
    "per_query.parquet": PER_QUERY_COLUMNS,
    "queries.parquet": QUERIES_COLUMNS,
    "uncertainty.csv": UNCERTAINTY_COLUMNS,
    "uncertainty_summary.csv": UNCERTAINTY_SUMMARY_COLUMNS,
}


class ResultsError(ValueError):
    """A results table or run file that is missing or does not match its columns; the message names the file."""


def read_table(path: str | Path, columns: list[str], exact: bool = False) -> pd.DataFrame:
    """A CSV or Parquet table holding ``columns``, returned in that order.

    ``exact``: the file must have these columns and no others (aggregation checks what evaluation
    wrote); otherwise extra columns are allowed (a reader of the tables) and dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: file is missing")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as error:
        raise ResultsError(f"{path}: cannot be read as a table ({error})") from error
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns] if exact else []
    if missing or extra:
        found = ", ".join(map(str, frame.columns)) or "none"
        what = "; ".join(
            part
            for part in (missing and f"missing column(s) {', '.join(missing)}", extra and f"unexpected {', '.join(extra)}")
            if part
        )
        raise ResultsError(f"{path}: {what}; it has {found}, expected {', '.join(columns)}")
    return frame[list(columns)]


def read_run_record(path: str | Path, keys: list[str] = RUN_RECORD_KEYS) -> dict:
    """A run's ``run.json``, which must hold ``keys`` (every other key is kept)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: file is missing (the training of this run did not finish)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON ({error})") from error
    missing = [key for key in keys if key not in record]
    if missing:
        raise ResultsError(f"{path}: missing key(s) {', '.join(missing)}")
    return record


def record_path(run_dir: str | Path) -> Path:
    """A run folder's record: its run.json, or an external model's external.json where there is no run.json."""
    run_dir = Path(run_dir)
    external = (run_dir / EXTERNAL_RECORD).is_file() and not (run_dir / "run.json").exists()
    return run_dir / (EXTERNAL_RECORD if external else "run.json")


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as CSV atomically, so a reader never sees half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: frame.to_csv(temporary, index=False))


def weighted_means(per_query: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Each group's metric value from per-query rows: sum(weight x value) / sum(weight).

    Weights are 1, except on 1K, where a query of a fold weighs 1 / that fold's evaluated queries:
    the value is the mean of the five folds' means, as the original computes 1K
    (naver-ai/pcme evaluate_pmrp_coco.py; the same as the pooled mean where folds have as many
    queries, which R@K's do).
    """
    weighted = per_query.assign(_wv=per_query["value"] * per_query["weight"])
    sums = weighted.groupby(keys, sort=False)[["_wv", "weight"]].sum()
    return (sums["_wv"] / sums["weight"]).rename("value").reset_index()


# --- rows of the tables, by method (the registry, or external.csv, says each one's label, scorings and kind) ----

_EXTERNAL: dict[str, Method] = {}  # the external models of the results being read (declare_external)


def external_methods(table: pd.DataFrame) -> dict[str, Method]:
    """The external models of an external.csv table (its rows per dataset and seed), by name, in its order."""
    rows = table.drop_duplicates("method")
    split = lambda text: tuple(str(text).split()) if isinstance(text, str) else ()  # space-separated names; NaN: none
    return {
        row.method: external_method(row.method, row.label, row.color, split(row.scorings), split(row.statistics))
        for row in rows.itertuples()
    }


def declare_external(methods: dict[str, Method]) -> None:
    """Let the helpers below, and the figures and the page, know these external models too."""
    _EXTERNAL.clear()
    _EXTERNAL.update(methods)


def entries() -> dict[str, Method]:
    """Every method the results may hold: the registered ones, then the declared external models."""
    return registered() | _EXTERNAL


def probabilistic_methods(methods) -> list[str]:
    """Those of ``methods`` marked probabilistic (they have σ figures), in their order."""
    return [m for m in methods if m in entries() and entries()[m].probabilistic]


def trained_methods(methods) -> list[str]:
    """Those of ``methods`` trained by this suite (not external models), in their order."""
    return [m for m in methods if not entries()[m].external]


def known_methods(methods) -> list[str]:
    """``methods``, each declared by a file in models/ or an external model (else a ResultsError naming those that are not)."""
    unknown, known = ", ".join(sorted(set(methods) - set(entries()))), ", ".join(entries())
    if unknown:
        raise ResultsError(
            f"unknown method(s) {unknown}: no file in models/ declares them, nor is one an external model of "
            f"external.csv; known: {known}"
        )
    return list(methods)


def label(method: str, scoring: str | None = None) -> str:
    """A method's label, marked when it is an external model; with another scoring than its own, the scoring in brackets."""
    entry = entries()[method]
    text = f"{entry.label} (external)" if entry.external else entry.label
    return text if scoring in (None, entry.primary_scoring) else f"{text} ({scoring})"


def select(table: pd.DataFrame, **values) -> pd.DataFrame:
    """The rows of ``table`` whose columns hold these values (a list: any of its items)."""
    keep = np.ones(len(table), dtype=bool)
    for column, value in values.items():
        keep &= (table[column].isin(value) if isinstance(value, list) else table[column] == value).to_numpy()
    return table[keep]


def is_own_scoring(rows: pd.DataFrame) -> pd.Series:
    """Whether each row is of its method's own (primary) scoring."""
    return rows["scoring"] == rows["method"].map(lambda m: entries()[m].primary_scoring)


def scoring_series(rows: pd.DataFrame, methods) -> list[tuple[str, str]]:
    """(method, scoring): each method's own scoring, then its other scorings that have rows."""
    present = set(zip(rows["method"], rows["scoring"], strict=True))
    return [(m, s) for m in methods for i, s in enumerate(entries()[m].scorings) if i == 0 or (m, s) in present]
