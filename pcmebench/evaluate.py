"""Evaluate one run's test embeddings: the retrieval metrics of every protocol and scoring, then the σ analysis.

    python -m pcmebench.evaluate --prepared work/prepared/synthetic-coco \
        --embeddings work/runs/synthetic-coco/pcme/seed0/embeddings_test.safetensors \
        --metrics RUN/metrics.csv --per-query RUN/per_query.parquet --queries RUN/queries.parquet \
        --uncertainty RUN/uncertainty.csv --uncertainty-summary RUN/uncertainty_summary.csv \
        --settings '{"dataset": "synthetic-coco", "method": "pcme", "seed": 0, ...}' [--threads N] [--device auto]

Pass 1, retrieval: every task of the dataset's protocols (``pcmebench.protocols``) on the score
matrix of every scoring of the method (``pcmebench.scoring``), measured per query by the
``metrics`` package: ``per_query.parquet``, and its means, ``metrics.csv`` (on 1K the mean of the
folds' means, as the original computes 1K; RSUM on 1K and 5K).

Pass 2, the σ analysis, on the per-query values of the method's own scoring: a probabilistic
method's queries in equal-count bins of each of its uncertainty statistics, with the statistics that
relate them to failure and, on synthetic data, to the true number of matches (``uncertainty.csv``,
``uncertainty_summary.csv``); the score-margin baseline for every method; each query's statistics
(``queries.parquet``).

Every file is written atomically; its columns are documented in results/README.md. Queries left out
of a metric and statistics that are undefined (e.g. no failure) are logged, not written.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from corpora import SYNTHETIC_FORMAT
from corpora.prepared import PreparedDataset
from metrics import (
    ExcludedQueriesWarning,
    auroc,
    partial_spearman,
    pearson,
    pmrp_per_query,
    retrieval_per_query,
    score_margin,
    spearman,
    spearman_interval,
    uncertainty_bins,
    within_strata_spearman,
)
from pcmebench.files import atomic_write
from pcmebench.protocols import PMRP_ZETAS, EvaluationSplit, RetrievalTask, protocol_tasks
from pcmebench.runs import add_stage_arguments, parse_stage_arguments, resolve_device
from pcmebench.scoring import Embeddings, load_embeddings, score_matrix, uncertainty_statistics
from pcmebench.tables import (
    METRICS_COLUMNS,
    PER_QUERY_COLUMNS,
    QUERIES_COLUMNS,
    RUN_COLUMNS,
    UNCERTAINTY_COLUMNS,
    UNCERTAINTY_SUMMARY_COLUMNS,
    weighted_means,
)
from pcmebench.vocabulary import (
    BOTH,
    DIRECTIONS,
    FULL_PROTOCOL,
    INTERVAL_ENDS,
    MARGIN,
    PCMEPP_PROTOCOLS,
    PCMEPP_STATISTIC,
    RSUM,
    RSUM_PROTOCOLS,
    UNCERTAINTY_PROTOCOLS,
    check_summary_statistic,
    rsum,
)

log = logging.getLogger("pcmebench.evaluate")

N_BINS = 10
SPEARMAN_REPLICATES = 1000  # bootstrap resamples of the queries for the interval of spearman_u_log_matches
MIN_STRATUM = 50  # queries of one length for its within-length Spearman to count
ANALYSED_PROTOCOLS = UNCERTAINTY_PROTOCOLS + PCMEPP_PROTOCOLS  # the protocols whose tasks the σ analysis reads


@dataclass
class Evaluation:
    """The five tables of one run."""

    metrics: pd.DataFrame
    per_query: pd.DataFrame
    queries: pd.DataFrame
    uncertainty: pd.DataFrame
    uncertainty_summary: pd.DataFrame


def check_alignment(embeddings: Embeddings, split: EvaluationSplit, prepared_dir) -> None:
    """The embeddings must list the split's images and captions in the split's order."""
    for kind, theirs, ours in (
        ("image_ids", embeddings.image_ids, split.image_ids),
        ("caption_ids", embeddings.caption_ids, split.caption_ids),
        ("caption_image_index", embeddings.caption_image_index, split.caption_image),
    ):
        if len(theirs) != len(ours):
            raise ValueError(
                f"{embeddings.path}: {len(theirs)} {kind} but the test split of {prepared_dir} has {len(ours)}; "
                "were the embeddings made from another prepared dataset?"
            )
        differ = np.flatnonzero(theirs != ours)
        if len(differ):
            row = int(differ[0])
            raise ValueError(
                f"{embeddings.path}: {kind}[{row}] is {theirs[row]} but row {row} of the test split of {prepared_dir} "
                f"is {ours[row]} ({len(differ)} rows differ); were the embeddings made from another prepared dataset?"
            )


def check_settings(settings: dict, embeddings: Embeddings) -> None:
    """--settings must name the run, and the dataset and method the embeddings were made for."""
    missing = [k for k in RUN_COLUMNS if k not in settings]
    if missing:
        raise ValueError(f"--settings lacks {missing}; it needs at least dataset, method and seed")
    for key in ("dataset", "method"):
        recorded = embeddings.settings.get(key)
        if recorded is not None and recorded != settings[key]:
            raise ValueError(f"{embeddings.path}: embeddings of {key} {recorded!r}, but the evaluation is for {settings[key]!r}")


# --- pass 1: retrieval, every scoring ----------------------------------------------------------


def _score_tasks(
    tasks: list[RetrievalTask], embeddings: Embeddings, scoring: str, device, margins: bool
) -> list[dict[str, np.ndarray]]:
    """Each task's per-query values on one scoring; with ``margins``, also each query's top-1 minus
    top-2 score margin (key MARGIN) on the tasks the σ analysis reads (it needs the scores)."""
    started = time.perf_counter()
    blocks = task_blocks(tasks, score_matrix(embeddings, scoring, device))
    scored = time.perf_counter()
    results = [{} for _ in tasks]
    for index, scores in blocks:
        results[index] = _per_query_values(tasks[index], scores)
        if margins and tasks[index].protocol in ANALYSED_PROTOCOLS:
            results[index][MARGIN] = score_margin(scores)
    log.info("%s: scores %.2f s, metrics %.2f s", scoring, scored - started, time.perf_counter() - scored)
    return results


def task_blocks(tasks: list[RetrievalTask], matrix: np.ndarray):
    """(index, the task's block) of each task: the i2t tasks first, from the (images, captions) ``matrix``; then
    the t2i tasks, from one (captions, images) copy that replaces it (rows gathered from it are contiguous where
    columns of the matrix would be strided, and torch's blocked copy transposes faster than numpy's)."""
    by_caption = None
    for index in sorted(range(len(tasks)), key=lambda i: tasks[i].direction != "i2t"):
        if tasks[index].direction != "i2t" and by_caption is None:
            by_caption, matrix = torch.from_numpy(matrix).T.contiguous().numpy(), None
        yield index, tasks[index].scores(matrix, by_caption)


def _per_query_values(task: RetrievalTask, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query values of the task's metrics (generic keys: R@K, R-P, mAP@R, first_rank, PMRP...)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExcludedQueriesWarning)
        values = retrieval_per_query(scores, task.positives, ks=task.ks)
        if task.pmrp_labels is not None:
            values.update(pmrp_per_query(scores, *task.pmrp_labels, zetas=PMRP_ZETAS))
    for warning in caught:
        log.warning("%s %s: %s", task.protocol, task.direction, warning.message)
    return values


def _log_exclusions(task: RetrievalTask, values: dict[str, np.ndarray]) -> None:
    """Queries left out of a metric, counted (logged once per task, the same for every scoring)."""
    for key in (*task.metrics, *(["PMRP"] if task.pmrp_labels is not None else [])):
        left_out = int(np.isnan(values[key]).sum())
        if left_out:
            reason = "no label or no plausible match" if key.startswith("PMRP") else f"no positive in {task.positives_source}"
            log.warning(
                "%s fold %d %s %s: %d of %d queries left out (%s)",
                task.protocol, task.fold, task.direction, key, left_out, len(task.queries), reason,
            )  # fmt: skip


def _reported_metrics(task: RetrievalTask) -> dict[str, str]:
    """{per-query key: the metric's name in the tables} of a task's reported metrics."""
    names = dict(task.metrics)
    if task.pmrp_labels is not None:
        names.update({f"PMRP@{z}": f"PMRP@{z}" for z in PMRP_ZETAS} | {"PMRP": "PMRP"})
    return names


def _per_query_table(tasks: list[RetrievalTask], values: dict[str, list[dict]]) -> tuple[pd.DataFrame, pd.Series]:
    """per_query.parquet from {scoring: each task's per-query values}, and each row's fold.

    A row's weight in its metric's mean is 1, on 1K 1 / its fold's evaluated queries: the mean of fold means.
    """
    parts, folds = [], []
    for scoring, results in values.items():
        for task, result in zip(tasks, results, strict=True):
            for key, name in _reported_metrics(task).items():
                defined = ~np.isnan(result[key])
                weight = 1.0 / max(1, int(defined.sum())) if task.protocol == "1K" else 1.0
                parts.append(
                    pd.DataFrame(
                        {
                            "protocol": task.protocol,
                            "scoring": scoring,
                            "direction": task.direction,
                            "query": task.queries[defined],
                            "metric": name,
                            "value": result[key][defined],
                            "weight": weight,
                        }
                    )
                )
                folds.append(np.full(int(defined.sum()), task.fold))
    per_query = pd.concat(parts, ignore_index=True)[PER_QUERY_COLUMNS]
    per_query["query"] = per_query["query"].astype(np.int64)
    return per_query, pd.Series(np.concatenate(folds))


def _metric_table(per_query: pd.DataFrame, run: dict) -> pd.DataFrame:
    """metrics.csv: the (weighted) mean of every (protocol, scoring, direction, metric) group, plus RSUM."""
    keys = ["protocol", "scoring", "direction", "metric"]
    means = weighted_means(per_query, keys)
    rsums = []
    for (protocol, scoring), group in means[means["protocol"].isin(RSUM_PROTOCOLS)].groupby(["protocol", "scoring"], sort=False):
        total = rsum(dict(zip(zip(group["direction"], group["metric"]), group["value"])))
        if total is None:
            log.warning("%s %s: RSUM left out, R@1/5/10 of both directions are not all defined", protocol, scoring)
        else:
            rsums.append({"protocol": protocol, "scoring": scoring, "direction": BOTH, "metric": RSUM, "value": total})
    table = pd.concat([means, pd.DataFrame(rsums, columns=[*keys, "value"])], ignore_index=True)
    return _with_run(table, run)[METRICS_COLUMNS]


def _log_fold_means(per_query: pd.DataFrame, folds: pd.Series) -> None:
    """On 1K, say where the mean of the fold means (reported) differs from the mean over every fold's queries."""
    one_k = per_query[per_query["protocol"] == "1K"].assign(fold=folds[per_query["protocol"] == "1K"])
    if one_k["fold"].nunique() < 2:
        return
    for key, group in one_k.groupby(["scoring", "direction", "metric"], sort=False):
        pooled, by_fold = group["value"].mean(), group.groupby("fold")["value"].mean().mean()
        if abs(pooled - by_fold) > 1e-9:
            log.info("1K %s %s %s: mean of fold means %.4f (reported), mean over queries %.4f", *key, by_fold, pooled)


# --- pass 2: the σ analysis, on the method's own scoring --------------------------------------


@dataclass
class _Analysis:
    """Per-query arrays of one (protocol, direction, positives) on one scoring, over every query row (NaN = not evaluated).

    ``binned``: the metrics reported per uncertainty bin, by the name the bins table gives
    them; ``summary``: whether the summary statistics (correlations, AUROC) are computed.
    """

    protocol: str
    direction: str
    values: dict[str, np.ndarray]
    binned: dict[str, str]
    margin: np.ndarray
    summary: bool
    statistics: tuple[str, ...]


def _binned_metrics(task: RetrievalTask) -> dict[str, str]:
    """{per-query key: name in the bins table} of a task's uncertainty bins."""
    if task.protocol in UNCERTAINTY_PROTOCOLS:
        return {"R@1": "R@1", **({"PMRP": "PMRP"} if task.pmrp_labels is not None else {"R-P": "R-P"})}
    if task.protocol == "ECCV":  # PCME++'s bins: ECCV Caption's mAP@R, CxC's R@1
        return {"mAP@R": task.metrics["mAP@R"]} if "mAP@R" in task.metrics else {"R@1": task.metrics["R@1"]}
    return {"R@1": "R@1"}


def _analysis_arrays(
    tasks: list[RetrievalTask], results: list[dict], n_queries: dict, statistics: tuple[str, ...]
) -> list[_Analysis]:
    """The σ analysis's arrays from each task's per-query values (with MARGIN) on the method's own scoring.

    ``statistics``: the method's uncertainty statistics; PCME++'s protocols bin by its
    PCMEPP_STATISTIC where the method has it, else by the method's own.
    """
    pcmepp = (PCMEPP_STATISTIC,) if PCMEPP_STATISTIC in statistics else statistics[:1]
    out: dict[tuple[str, str, str], _Analysis] = {}
    for task, values in zip(tasks, results, strict=True):
        if task.protocol not in ANALYSED_PROTOCOLS:
            continue
        key = (task.protocol, task.direction, task.positives_source)  # the folds of 1K share one
        if key not in out:
            size = n_queries[task.direction]
            summary = task.protocol in UNCERTAINTY_PROTOCOLS
            out[key] = _Analysis(
                task.protocol, task.direction, {}, _binned_metrics(task), np.full(size, np.nan), summary,
                statistics if summary else pcmepp,
            )  # fmt: skip
        analysis = out[key]
        for name in {"R@1", "first_rank", *analysis.binned}:
            analysis.values.setdefault(name, np.full(len(analysis.margin), np.nan))[task.queries] = values[name]
        analysis.margin[task.queries] = values[MARGIN]
    return list(out.values())


@dataclass
class _Summary:
    """uncertainty_summary.csv's rows of one scoring; an undefined (NaN) statistic is logged instead."""

    scoring: str
    rows: list[dict] = field(default_factory=list)

    def add(self, protocol: str, direction: str, uncertainty: str, statistic: str, value: float) -> None:
        check_summary_statistic(statistic)
        if np.isnan(value):
            log.warning(
                "%s %s %s %s of %s: undefined (e.g. no failure or a constant input), not written",
                protocol, self.scoring, direction, statistic, uncertainty,
            )  # fmt: skip
        else:
            self.rows.append(
                {"protocol": protocol, "scoring": self.scoring, "direction": direction, "uncertainty": uncertainty,
                 "statistic": statistic, "value": value}
            )  # fmt: skip


def _bins(analysis: _Analysis, query_u: np.ndarray, evaluated: np.ndarray) -> tuple[pd.DataFrame | None, float]:
    """The bins of one statistic on one analysis, and the Pearson correlation of bin index with per-bin R@1 (NaN without)."""
    binned = {label: analysis.values[key] for key, label in analysis.binned.items()}
    in_bins = evaluated & ~np.isnan(next(iter(binned.values())))
    if in_bins.sum() < N_BINS:
        log.warning(
            "%s %s: %d queries, fewer than %d bins; no bins", analysis.protocol, analysis.direction, in_bins.sum(), N_BINS
        )
        return None, float("nan")
    table = uncertainty_bins(query_u[in_bins], {k: v[in_bins] for k, v in binned.items()}, N_BINS)
    r1 = table[table["metric"] == "R@1"]
    return table, pearson(r1["bin"].to_numpy(), r1["value"].to_numpy()) if len(r1) else float("nan")


def _uncertainty_tables(
    analyses: list[_Analysis], scoring: str, u: dict | None, true_matches: dict | None, lengths: dict
) -> tuple[list[pd.DataFrame], list[dict]]:
    """Bins and summary statistics of one scoring: u-based ones where ``u`` is given, the margin baseline always.

    ``u``: {statistic name: {direction: per-query values}}, e.g. mean_log_sigma and sum_sigma_sq.
    ``true_matches``: {direction: each query's number of true matches}, on synthetic data (else None).
    ``lengths``: {direction: per-query values or None} of the obvious confound of ambiguity, a
    caption's word count (t2i) and an image's number of instance categories (i2t, COCO format).
    """
    bins, summary = [], _Summary(scoring)
    for a in analyses:
        evaluated = ~np.isnan(a.values["R@1"])
        failure = np.where(evaluated, a.values["R@1"] == 0, np.nan)
        for name in a.statistics if u is not None else ():
            query_u = u[name][a.direction]
            table, pearson_r1 = _bins(a, query_u, evaluated)
            if table is not None:
                bins.append(table.assign(protocol=a.protocol, scoring=scoring, direction=a.direction, uncertainty=name))
            if a.summary:
                summary.add(a.protocol, a.direction, name, "spearman_u_rank", spearman(query_u, a.values["first_rank"]))
                summary.add(a.protocol, a.direction, name, "pearson_bin_r1", pearson_r1)
                summary.add(a.protocol, a.direction, name, "auroc_u", auroc(query_u, failure))
        if a.summary:
            summary.add(a.protocol, a.direction, MARGIN, "auroc_margin", auroc(-a.margin, failure))
    if u is not None and true_matches is not None:
        _ambiguity_statistics(u, true_matches, lengths, summary)
    return bins, summary.rows


def _ambiguity_statistics(u: dict, true_matches: dict, lengths: dict, summary: _Summary) -> None:
    """Synthetic data: each statistic against the log of the query's true number of matches (protocol
    full), with its bootstrap interval over queries and its controls for the query's length."""
    for name in u:
        for direction in DIRECTIONS:
            matches, query_u = true_matches[direction], u[name][direction]
            log_matches = np.where(matches > 0, np.log(np.where(matches > 0, matches, 1)), np.nan)
            summary.add(FULL_PROTOCOL, direction, name, "spearman_u_log_matches", spearman(query_u, log_matches))
            bounds = spearman_interval(query_u, log_matches, SPEARMAN_REPLICATES)
            for end, bound in zip(INTERVAL_ENDS, bounds, strict=True):
                summary.add(FULL_PROTOCOL, direction, name, "spearman_u_log_matches" + end, bound)
            length = lengths.get(direction)
            if length is not None:
                control = partial_spearman(query_u, log_matches, length)
                summary.add(FULL_PROTOCOL, direction, name, "partial_spearman_u_log_matches", control)
                within = within_strata_spearman(query_u, log_matches, length, MIN_STRATUM)
                summary.add(FULL_PROTOCOL, direction, name, "within_length_spearman_u_log_matches", within)


def _true_matches(tasks: list[RetrievalTask], n_queries: dict) -> dict[str, np.ndarray]:
    """Each query's number of matches in the complete synthetic ground truth (protocol full); NaN elsewhere."""
    true_matches = {d: np.full(n_queries[d], np.nan) for d in DIRECTIONS}
    for task in tasks:
        if task.protocol == FULL_PROTOCOL:
            true_matches[task.direction][task.queries] = task.positives.sum(axis=1)
    return true_matches


def _queries_table(u: dict | None, own_statistic: str | None, true_matches: dict, n_queries: dict) -> pd.DataFrame:
    """queries.parquet: each query's own uncertainty statistic (u), Σσ² and true number of matches (NaN where undefined)."""

    def statistic(name, direction):
        return u[name][direction] if u and name in u else np.full(n_queries[direction], np.nan)

    return pd.concat(
        [
            pd.DataFrame(
                {
                    "direction": d,
                    "query": np.arange(n_queries[d], dtype=np.int64),
                    "u": statistic(own_statistic, d),
                    "sum_sigma_sq": statistic(PCMEPP_STATISTIC, d),
                    "true_matches": true_matches[d],
                }
            )
            for d in DIRECTIONS
        ],
        ignore_index=True,
    )[QUERIES_COLUMNS]


# --- the run ------------------------------------------------------------------------------------


def evaluate_run(prepared_dir, embeddings_path, settings: dict, device: str | None = None, eccv_data=None) -> Evaluation:
    """Every table of one trained run, from its embeddings file (``pcmebench.embed``)."""
    prepared = PreparedDataset(prepared_dir)
    split = EvaluationSplit.from_prepared(prepared, "test")
    embeddings = load_embeddings(embeddings_path)
    check_settings(settings, embeddings)
    check_alignment(embeddings, split, prepared_dir)
    run_device = resolve_device(device or settings.get("device", "auto"))
    return evaluate_embeddings(prepared, split, embeddings, settings, run_device, eccv_data)


def evaluate_embeddings(
    prepared: PreparedDataset, split: EvaluationSplit, embeddings: Embeddings, settings: dict, device, eccv_data=None
) -> Evaluation:
    """Every table of embeddings in the split's row order (a trained run's, or an external file's,
    ``pcmebench.external``): pass 1, retrieval on every scoring of their analysis; pass 2, the σ
    analysis on its own scoring. ``settings`` names the run (dataset, method, seed)."""
    dataset, method = settings["dataset"], settings["method"]
    run = {k: settings[k] for k in RUN_COLUMNS}
    analysis = embeddings.analysis
    scorings, own = analysis.scorings, analysis.own_scoring
    tasks = protocol_tasks(split, dataset, prepared.raw_root, eccv_data)
    log.info(
        "%s %s seed %s: %d images, %d captions; %d tasks (%s); scorings %s on %s",
        dataset, method, run["seed"], split.n_images, split.n_captions, len(tasks),
        ", ".join(sorted({t.protocol for t in tasks})), list(scorings), device,
    )  # fmt: skip

    values = {scoring: _score_tasks(tasks, embeddings, scoring, device, scoring == own) for scoring in scorings}
    for task, result in zip(tasks, values[own], strict=True):
        _log_exclusions(task, result)  # the same queries for every scoring
    per_query, folds = _per_query_table(tasks, values)
    _log_fold_means(per_query, folds)

    n_queries = {"i2t": split.n_images, "t2i": split.n_captions}
    u = uncertainty_statistics(embeddings) if embeddings.is_probabilistic else None
    true_matches = _true_matches(tasks, n_queries)
    lengths = {"t2i": split.caption_words, "i2t": split.labels.sum(axis=1) if split.format == "coco" else None}
    analyses = _analysis_arrays(tasks, values[own], n_queries, analysis.statistics)
    synthetic_matches = true_matches if dataset in SYNTHETIC_FORMAT else None
    bins, summary = _uncertainty_tables(analyses, own, u, synthetic_matches, lengths)
    uncertainty = pd.concat(bins, ignore_index=True) if bins else pd.DataFrame(columns=UNCERTAINTY_COLUMNS[3:])
    return Evaluation(
        _metric_table(per_query, run),
        per_query,
        _queries_table(u, analysis.uncertainty_statistic, true_matches, n_queries),
        _with_run(uncertainty, run)[UNCERTAINTY_COLUMNS],
        _with_run(pd.DataFrame(summary, columns=UNCERTAINTY_SUMMARY_COLUMNS[3:]), run)[UNCERTAINTY_SUMMARY_COLUMNS],
    )


def _with_run(table: pd.DataFrame, run: dict) -> pd.DataFrame:
    """``table`` with the run's dataset, method and seed as its first columns."""
    return pd.concat([pd.DataFrame({k: [run[k]] * len(table) for k in RUN_COLUMNS}, index=table.index), table], axis=1)


def write_evaluation(evaluation: Evaluation, paths: dict[str, Path]) -> None:
    """Each table to its file (CSV or Parquet by the key), atomically."""
    writers = {
        "metrics": lambda p: evaluation.metrics.to_csv(p, index=False),
        "per_query": lambda p: evaluation.per_query.to_parquet(p, index=False),
        "queries": lambda p: evaluation.queries.to_parquet(p, index=False),
        "uncertainty": lambda p: evaluation.uncertainty.to_csv(p, index=False),
        "uncertainty_summary": lambda p: evaluation.uncertainty_summary.to_csv(p, index=False),
    }
    for key, path in paths.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(path), writers[key])
        log.info("wrote %s", path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", required=True, help="the prepared dataset folder")
    parser.add_argument("--embeddings", required=True, help="the run's embeddings_test.safetensors")
    parser.add_argument("--metrics", required=True, help="output: metrics.csv")
    parser.add_argument("--per-query", required=True, help="output: per_query.parquet")
    parser.add_argument("--queries", required=True, help="output: queries.parquet")
    parser.add_argument("--uncertainty", required=True, help="output: uncertainty.csv")
    parser.add_argument("--uncertainty-summary", required=True, help="output: uncertainty_summary.csv")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="default: the run's setting")
    add_stage_arguments(parser, "the run's settings as JSON (dataset, method, seed, ...)")
    args, settings = parse_stage_arguments(parser, argv)
    torch.set_float32_matmul_precision("highest")  # fp32 products: reduced precision changes top-10 rankings
    evaluation = evaluate_run(args.prepared, args.embeddings, settings, args.device)
    write_evaluation(
        evaluation,
        {
            "metrics": args.metrics,
            "per_query": args.per_query,
            "queries": args.queries,
            "uncertainty": args.uncertainty,
            "uncertainty_summary": args.uncertainty_summary,
        },
    )


if __name__ == "__main__":
    main()
