"""Evaluate one run's test embeddings: retrieval metrics of every protocol and the sigma-uncertainty analysis.

    python -m pcmebench.evaluate --prepared work/prepared/synthetic-coco \
        --embeddings work/runs/synthetic-coco/pcme/seed0/embeddings_test.safetensors \
        --metrics RUN/metrics.csv --per-query RUN/per_query.parquet --queries RUN/queries.parquet \
        --uncertainty RUN/uncertainty.csv --uncertainty-summary RUN/uncertainty_summary.csv \
        --settings '{"dataset": "synthetic-coco", "method": "pcme", "seed": 0, ...}' [--threads N] [--device auto]

Protocols: ``pcmebench.protocols``; score matrices: ``pcmebench.scoring``;
metrics: the ``metrics`` package. Files written (atomically), values in percent:

- ``metrics.csv``: dataset, method, seed, protocol, scoring, direction, metric, value.
  Each value is the mean of the metric's per-query values; on 1K the mean of the
  folds' means, as the original's 1K (``pcmebench.tables.weighted_means``; it differs
  from the mean over every fold's queries only where folds have different numbers of
  evaluated queries, as PMRP's with unlabeled images: logged). RSUM (direction
  ``both``) = R@1 + R@5 + R@10 of both directions on 1K and 5K.
- ``per_query.parquet``: protocol, scoring, direction, query, metric, value, weight:
  every per-query value behind metrics.csv (query = row of the query in the test split:
  image row for i2t, caption row for t2i) and its weight in the metric's mean (1; on 1K
  1 / the fold's evaluated queries); excluded queries have no row.
- ``queries.parquet``: direction, query, u, sum_sigma_sq, true_matches: u = the method's own
  uncertainty statistic (its registry entry's first; PCME's: the mean over dimensions of log
  sigma) and sum_sigma_sq = sum over dimensions of sigma^2, for a probabilistic method (NaN
  otherwise, and where the method does not list it), true_matches = the query's number of
  matches in the complete synthetic ground truth (NaN on real data).
- ``uncertainty.csv``: dataset, method, seed, protocol, scoring, direction, uncertainty,
  bin, u_low, u_high, queries, metric, value: a probabilistic method's queries (those its
  registry entry marks probabilistic) in 10 equal-count bins of each uncertainty statistic the
  entry lists (PCME: ``mean_log_sigma``, u; ``sum_sigma_sq``, the sum of sigma^2, PCME++'s),
  with the method's own scoring (PCME: ``match-prob``): R@1 and PMRP (1K) or R-P (CUB, full)
  per bin, on protocol 1K (COCO format) or CUB (CUB format), and full on synthetic data, for
  each statistic; and PCME++'s analysis, sum_sigma_sq bins (else the method's own statistic's)
  of 5K R@1 (protocol 5K) and of ECCV mAP@R and CxC R@1 (protocol ECCV, each over its own queries), where those
  protocols run (real COCO). The metric column names the measure; the protocol says on
  which positives. Other methods: the header only.
- ``uncertainty_summary.csv``: dataset, method, seed, protocol, scoring, direction,
  uncertainty, statistic, value on 1K / CUB / full, for each uncertainty statistic:
  ``spearman_u_rank`` (the statistic against the rank of the first correct item),
  ``pearson_bin_r1`` (bin index against per-bin R@1), ``auroc_u`` (the statistic
  predicting an R@1 failure), ``spearman_u_log_matches`` (synthetic: the statistic
  against the log of the true number of matches; protocol full, with its 95% bootstrap
  interval over queries as ``spearman_u_log_matches_ci_low`` / ``_ci_high``, and its length
  controls: ``partial_spearman_u_log_matches``, the partial rank correlation given the query's
  length, and ``within_length_spearman_u_log_matches``, the mean of the correlations within each
  length of at least 50 queries weighted by their queries; length = a caption's word count, an
  image's number of instance categories on the COCO format), all with the
  method's own scoring; and ``auroc_margin`` (uncertainty ``score_margin``: the negative top-1
  minus top-2 score margin predicting an R@1 failure) for every method with its own
  scoring (cosine, max-cosine, match-prob). A statistic that is undefined (e.g. no
  failure) is logged, not written.

Queries left out of a metric (no positive, no label) are counted in the log.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
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
from pcmebench.protocols import DIRECTIONS, PMRP_ZETAS, EvaluationSplit, RetrievalTask, protocol_tasks
from pcmebench.runs import add_stage_arguments, parse_stage_arguments, resolve_device
from pcmebench.scoring import Embeddings, load_embeddings, score_matrix, scorings_for, uncertainty_statistics
from pcmebench.tables import (
    METRICS_COLUMNS,
    PER_QUERY_COLUMNS,
    QUERIES_COLUMNS,
    RUN_COLUMNS,
    UNCERTAINTY_COLUMNS,
    UNCERTAINTY_SUMMARY_COLUMNS,
    weighted_means,
)
from pcmebench.vocabulary import PCMEPP_PROTOCOLS

log = logging.getLogger("pcmebench.evaluate")

RSUM_PROTOCOLS = ("1K", "5K")
RSUM_PARTS = ("R@1", "R@5", "R@10")
UNCERTAINTY_PROTOCOLS = ("1K", "CUB", "full")
PCMEPP_STATISTIC = "sum_sigma_sq"
MARGIN = "score_margin"
N_BINS = 10
SPEARMAN_REPLICATES = 1000  # bootstrap resamples of the queries for the interval of spearman_u_log_matches
MIN_STRATUM = 50  # queries of one length for its within-length Spearman to count


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
    missing = [k for k in RUN_COLUMNS if k not in settings]
    if missing:
        raise ValueError(f"--settings lacks {missing}; it needs at least dataset, method and seed")
    for key in ("dataset", "method"):
        recorded = embeddings.settings.get(key)
        if recorded is not None and recorded != settings[key]:
            raise ValueError(f"{embeddings.path}: embeddings of {key} {recorded!r}, but the evaluation is for {settings[key]!r}")


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
    names = dict(task.metrics)
    if task.pmrp_labels is not None:
        names.update({f"PMRP@{z}": f"PMRP@{z}" for z in PMRP_ZETAS} | {"PMRP": "PMRP"})
    return names


def _metric_table(per_query: pd.DataFrame, run: dict) -> pd.DataFrame:
    """metrics.csv: the (weighted) mean of every (protocol, scoring, direction, metric) group, plus RSUM."""
    keys = ["protocol", "scoring", "direction", "metric"]
    means = weighted_means(per_query, keys)
    rsum = []
    for (protocol, scoring), group in means[means["protocol"].isin(RSUM_PROTOCOLS)].groupby(["protocol", "scoring"], sort=False):
        parts = group[group["metric"].isin(RSUM_PARTS)]
        if len(parts) == 2 * len(RSUM_PARTS):
            rsum.append(
                {"protocol": protocol, "scoring": scoring, "direction": "both", "metric": "RSUM", "value": parts["value"].sum()}
            )
        else:
            log.warning("%s %s: RSUM left out, R@1/5/10 of both directions are not all defined", protocol, scoring)
    table = pd.concat([means, pd.DataFrame(rsum, columns=[*keys, "value"])], ignore_index=True)
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
    tasks: list[RetrievalTask], results: list[dict], margins: list[np.ndarray], n_queries: dict, statistics: tuple[str, ...]
) -> list[_Analysis]:
    """``statistics``: the method's uncertainty statistics; PCME++'s protocols bin by its
    PCMEPP_STATISTIC where the method has it, else by the method's own."""
    pcmepp = (PCMEPP_STATISTIC,) if PCMEPP_STATISTIC in statistics else statistics[:1]
    out: dict[tuple[str, str, str], _Analysis] = {}
    for task, values, margin in zip(tasks, results, margins):
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
        analysis.margin[task.queries] = margin
    return list(out.values())


def _uncertainty_tables(
    analyses: list[_Analysis], scoring: str, u: dict | None, true_matches: dict, synthetic: bool, lengths: dict | None = None
):
    """Bins and summary statistics of one scoring: u-based ones where ``u`` is given, the margin baseline always.

    ``u``: {statistic name: {direction: per-query values}}, e.g. mean_log_sigma and sum_sigma_sq.
    ``lengths``: {direction: per-query values} of the obvious confound of ambiguity, a caption's word
    count (t2i) and an image's number of instance categories (i2t, COCO format).
    """
    bins, summary = [], []

    def statistic(protocol, direction, uncertainty, name, value):
        if np.isnan(value):
            log.warning(
                "%s %s %s %s of %s: undefined (e.g. no failure or a constant input), not written",
                protocol, scoring, direction, name, uncertainty,
            )  # fmt: skip
        else:
            summary.append(
                {"protocol": protocol, "scoring": scoring, "direction": direction, "uncertainty": uncertainty,
                 "statistic": name, "value": value}
            )  # fmt: skip

    for a in analyses:
        evaluated = ~np.isnan(a.values["R@1"])
        failure = np.where(evaluated, a.values["R@1"] == 0, np.nan)
        for name in a.statistics if u is not None else ():
            query_u = u[name][a.direction]
            binned = {label: a.values[key] for key, label in a.binned.items()}
            pearson_r1 = float("nan")
            in_bins = evaluated & ~np.isnan(next(iter(binned.values())))
            if in_bins.sum() >= N_BINS:
                table = uncertainty_bins(query_u[in_bins], {k: v[in_bins] for k, v in binned.items()}, N_BINS)
                bins.append(table.assign(protocol=a.protocol, scoring=scoring, direction=a.direction, uncertainty=name))
                r1 = table[table["metric"] == "R@1"]
                if len(r1):
                    pearson_r1 = pearson(r1["bin"].to_numpy(), r1["value"].to_numpy())
            else:
                log.warning("%s %s: %d queries, fewer than %d bins; no bins", a.protocol, a.direction, in_bins.sum(), N_BINS)
            if a.summary:
                statistic(a.protocol, a.direction, name, "spearman_u_rank", spearman(query_u, a.values["first_rank"]))
                statistic(a.protocol, a.direction, name, "pearson_bin_r1", pearson_r1)
                statistic(a.protocol, a.direction, name, "auroc_u", auroc(query_u, failure))
        if a.summary:
            statistic(a.protocol, a.direction, MARGIN, "auroc_margin", auroc(-a.margin, failure))
    if u is not None and synthetic:
        for name in u:
            for direction in DIRECTIONS:
                matches = true_matches[direction]
                log_matches = np.where(matches > 0, np.log(np.where(matches > 0, matches, 1)), np.nan)
                statistic("full", direction, name, "spearman_u_log_matches", spearman(u[name][direction], log_matches))
                low, high = spearman_interval(u[name][direction], log_matches, SPEARMAN_REPLICATES)
                statistic("full", direction, name, "spearman_u_log_matches_ci_low", low)
                statistic("full", direction, name, "spearman_u_log_matches_ci_high", high)
                length = (lengths or {}).get(direction)
                if length is not None:
                    control = partial_spearman(u[name][direction], log_matches, length)
                    statistic("full", direction, name, "partial_spearman_u_log_matches", control)
                    within = within_strata_spearman(u[name][direction], log_matches, length, MIN_STRATUM)
                    statistic("full", direction, name, "within_length_spearman_u_log_matches", within)
    return bins, summary


def evaluate_run(prepared_dir, embeddings_path, settings: dict, device: str | None = None, eccv_data=None) -> Evaluation:
    """Every table of one run (see the module docstring)."""
    prepared = PreparedDataset(prepared_dir)
    split = EvaluationSplit.from_prepared(prepared, "test")
    embeddings = load_embeddings(embeddings_path)
    check_settings(settings, embeddings)
    check_alignment(embeddings, split, prepared_dir)
    dataset, method = settings["dataset"], settings["method"]
    run = {k: settings[k] for k in RUN_COLUMNS}
    scorings = scorings_for(method)
    entry = embeddings.method  # the method's registry entry (check_settings: the same method)
    run_device = resolve_device(device or settings.get("device", "auto"))
    synthetic = dataset in SYNTHETIC_FORMAT
    tasks = protocol_tasks(split, dataset, prepared.raw_root, eccv_data)
    n_queries = {"i2t": split.n_images, "t2i": split.n_captions}
    log.info(
        "%s %s seed %s: %d images, %d captions; %d tasks (%s); scorings %s on %s",
        dataset, method, run["seed"], split.n_images, split.n_captions, len(tasks),
        ", ".join(sorted({t.protocol for t in tasks})), list(scorings), run_device,
    )  # fmt: skip

    u = uncertainty_statistics(embeddings) if embeddings.is_probabilistic else None
    lengths = {"t2i": split.caption_words, "i2t": split.labels.sum(axis=1) if split.format == "coco" else None}
    true_matches = {d: np.full(n_queries[d], np.nan) for d in DIRECTIONS}
    for task in tasks:
        if task.protocol == "full":
            true_matches[task.direction][task.queries] = task.positives.sum(axis=1)

    per_query_parts, folds, bins, summary = [], [], [], []
    for number, scoring in enumerate(scorings):
        started = time.perf_counter()
        matrix = score_matrix(embeddings, scoring, run_device)
        scored = time.perf_counter()
        analysed_tasks, results, margins = [], [], []
        for task in tasks:
            scores = task.scores(matrix)
            values = _per_query_values(task, scores)
            if number == 0:
                _log_exclusions(task, values)
            for key, name in _reported_metrics(task).items():
                defined = ~np.isnan(values[key])
                weight = 1.0 / max(1, int(defined.sum())) if task.protocol == "1K" else 1.0  # 1K: the mean of fold means
                per_query_parts.append(
                    pd.DataFrame(
                        {
                            "protocol": task.protocol,
                            "scoring": scoring,
                            "direction": task.direction,
                            "query": task.queries[defined],
                            "metric": name,
                            "value": values[key][defined],
                            "weight": weight,
                        }
                    )
                )
                folds.append(np.full(int(defined.sum()), task.fold))
            if number == 0 and task.protocol in UNCERTAINTY_PROTOCOLS + PCMEPP_PROTOCOLS:  # the method's own scoring
                analysed_tasks.append(task)
                results.append(values)
                margins.append(score_margin(scores))
        if analysed_tasks:
            analyses = _analysis_arrays(analysed_tasks, results, margins, n_queries, entry.statistics)
            with_u = u if scoring == entry.primary_scoring else None
            scoring_bins, scoring_summary = _uncertainty_tables(analyses, scoring, with_u, true_matches, synthetic, lengths)
            bins += scoring_bins
            summary += scoring_summary
        del matrix
        log.info("%s: scores %.2f s, metrics %.2f s", scoring, scored - started, time.perf_counter() - scored)

    per_query = pd.concat(per_query_parts, ignore_index=True)[PER_QUERY_COLUMNS]
    per_query["query"] = per_query["query"].astype(np.int64)
    _log_fold_means(per_query, pd.Series(np.concatenate(folds)))
    metrics_table = _metric_table(per_query, run)

    queries = pd.concat(
        [
            pd.DataFrame(
                {
                    "direction": d,
                    "query": np.arange(n_queries[d], dtype=np.int64),
                    "u": u[entry.uncertainty_statistic][d] if u is not None else np.full(n_queries[d], np.nan),
                    "sum_sigma_sq": u[PCMEPP_STATISTIC][d] if u and PCMEPP_STATISTIC in u else np.full(n_queries[d], np.nan),
                    "true_matches": true_matches[d],
                }
            )
            for d in DIRECTIONS
        ],
        ignore_index=True,
    )[QUERIES_COLUMNS]
    uncertainty = _with_run(pd.concat(bins, ignore_index=True) if bins else pd.DataFrame(columns=UNCERTAINTY_COLUMNS[3:]), run)
    summary_table = _with_run(pd.DataFrame(summary, columns=UNCERTAINTY_SUMMARY_COLUMNS[3:]), run)
    return Evaluation(
        metrics_table, per_query, queries, uncertainty[UNCERTAINTY_COLUMNS], summary_table[UNCERTAINTY_SUMMARY_COLUMNS]
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
