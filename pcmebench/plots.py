"""Figures of a benchmark's results: retrieval with confidence intervals, σ against failure, training curves.

``python -m pcmebench.plots --results results --runs work/runs/<dataset>/<method>/seed<seed> ... --out results/plots``

Every figure is written twice, as PNG (for the HTML page) and PDF (for papers), to
``<out>/<dataset>/<figure>.{png,pdf}``. Which figures exist depends only on the configured datasets
and methods (:func:`figure_files`), so the workflow declares them before anything runs: the σ
figures need a method the registry marks probabilistic (one row of panels for each), the
multiplicity figure a synthetic dataset (whose complete ground truth is
known). A planned figure whose rows are missing from the tables is still written and says what is
missing, so one empty table does not hide every other result.

Inputs: ``summary.csv``, ``uncertainty.csv`` and ``uncertainty_summary.csv`` of ``--results``
(see results/README.md), and per run ``run.json``, ``queries.parquet`` and ``train_log.csv``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corpora import SYNTHETIC_FORMAT, dataset_format
from models.registry import UNCERTAINTY_STATISTICS, registered
from pcmebench.aggregate import SUMMARY_COLUMNS, UNCERTAINTY_COLUMNS, UNCERTAINTY_SUMMARY_COLUMNS
from pcmebench.logs import log_to_stderr
from pcmebench.tables import QUERIES_COLUMNS

log = logging.getLogger("pcmebench.plots")

# Every registered method (models/registry.py, torch-free: the workflow imports this module), its
# label and colour, its own way to score a pair (what its paper retrieves with; PCME: match
# probability) and its other scorings, shown beside it.
REGISTRY = registered()
METHODS = tuple(REGISTRY)
METHOD_LABELS = {name: m.label for name, m in REGISTRY.items()}
METHOD_COLORS = {name: m.color for name, m in REGISTRY.items()}
PRIMARY_SCORING = {name: m.primary_scoring for name, m in REGISTRY.items()}
SECONDARY_SCORINGS = {name: m.scorings[1:] for name, m in REGISTRY.items() if len(m.scorings) > 1}
MARGIN = "score_margin"  # the uncertainty column of the score-margin baseline every method has
SECONDARY_HATCHES = {"sample-dot": "\\\\", "mu": "//", "csd": ".."}
# The protocol a dataset's headline numbers use: COCO's 1K folds, CUB's test classes. Synthetic
# datasets also have "full", the complete ground truth.
PRIMARY_PROTOCOL = {"coco": "1K", "cub": "CUB"}
FULL_PROTOCOL = "full"
DIRECTIONS = {"i2t": "image → text", "t2i": "text → image"}
# i2t queries are images, t2i queries are captions: σ of a modality is the u of its queries.
QUERY_MODALITY = {"i2t": "images", "t2i": "captions"}
FORMATS = ("png", "pdf")
RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "PMRP")


@dataclass(frozen=True)
class FigureKind:
    """One kind of figure: its file stem, where it belongs in a report, and a one-line title."""

    name: str
    section: str
    title: str


FIGURES = {
    kind.name: kind
    for kind in (
        FigureKind("retrieval", "Retrieval", "R@K and PMRP with 95% confidence intervals"),
        FigureKind("auroc", "Uncertainty", "AUROC for predicting an R@1 failure: σ against the score margin"),
        FigureKind("uncertainty_bins", "Uncertainty", "R@1 per σ bin"),
        FigureKind("sigma_histogram", "Uncertainty", "σ per modality"),
        FigureKind("sigma_multiplicity", "Uncertainty", "σ against the true number of matches"),
        FigureKind("sigma_comparison", "Uncertainty", "The probabilistic methods' σ, raw and with length held fixed"),
        FigureKind("training_curves", "Training", "Training loss per epoch"),
    )
}

TRAIN_LOG_COLUMNS = ("epoch", "loss")
RUN_IDENTITY_KEYS = ("dataset", "method", "seed")


class ResultsError(ValueError):
    """A results table or run file that cannot be read as documented; the message names the file."""


def primary_protocol(dataset: str) -> str:
    """The protocol of a dataset's headline numbers, by its format."""
    try:
        return PRIMARY_PROTOCOL[dataset_format(dataset)]
    except KeyError:
        known = ", ".join([*SYNTHETIC_FORMAT, *PRIMARY_PROTOCOL])
        raise ResultsError(f"unknown dataset {dataset!r}; known: {known}") from None


def probabilistic_methods(methods) -> list[str]:
    """Those of ``methods`` the registry marks probabilistic (they have σ figures), in their order."""
    return [m for m in methods if m in REGISTRY and REGISTRY[m].probabilistic]


def plotted_uncertainty(method: str) -> str:
    """The uncertainty statistic a probabilistic method's σ figures plot: its entry's first."""
    return REGISTRY[method].uncertainty_statistic


def figure_names(dataset: str, methods: list[str] | tuple[str, ...]) -> list[str]:
    """The figures of one dataset for the configured methods, in report order."""
    names = ["retrieval", "auroc"]
    if probabilistic_methods(methods):
        names += ["uncertainty_bins", "sigma_histogram"]
        if dataset in SYNTHETIC_FORMAT:
            names += ["sigma_multiplicity", "sigma_comparison"]
    return names + ["training_curves"]


def figure_path(out: str | Path, dataset: str, name: str, extension: str) -> Path:
    return Path(out) / dataset / f"{name}.{extension}"


def figure_files(out: str | Path, datasets: list[str], methods: list[str], extensions: tuple[str, ...] = FORMATS) -> list[str]:
    """Every file the plots stage writes for these datasets and methods (deterministic order)."""
    return [
        str(figure_path(out, dataset, name, extension))
        for dataset in datasets
        for name in figure_names(dataset, methods)
        for extension in extensions
    ]


# --- reading -------------------------------------------------------------------------------------


def read_table(path: str | Path, columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """A CSV or Parquet table with at least ``columns``; anything else raises ResultsError naming the file.

    Extra columns are allowed (a consumer of the tables, unlike pcmebench.aggregate, which checks
    what it writes exactly); a missing one is named.
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: file is missing")
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as error:
        raise ResultsError(f"{path}: cannot be read as a table ({error})") from error
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ResultsError(
            f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(map(str, table.columns)) or 'none'}"
        )
    return table


def read_run_record(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "run.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ResultsError(f"{path}: file is missing") from error
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON ({error})") from error
    missing = [k for k in RUN_IDENTITY_KEYS if k not in record]
    if missing:
        raise ResultsError(f"{path}: missing key(s) {', '.join(missing)}")
    return record


@dataclass
class Run:
    """One training run's files that the figures use."""

    dataset: str
    method: str
    seed: int
    queries: pd.DataFrame
    train_log: pd.DataFrame


def load_runs(run_dirs: list[str | Path]) -> list[Run]:
    runs = []
    for run_dir in map(Path, run_dirs):
        record = read_run_record(run_dir)
        runs.append(
            Run(
                dataset=record["dataset"],
                method=record["method"],
                seed=int(record["seed"]),
                queries=read_table(run_dir / "queries.parquet", QUERIES_COLUMNS),
                train_log=read_table(run_dir / "train_log.csv", TRAIN_LOG_COLUMNS),
            )
        )
    return runs


# --- drawing -------------------------------------------------------------------------------------


def new_figure(width: float, height: float):
    """A figure outside pyplot's global state (nothing to close, safe to build many in one process)."""
    # Imported here: the workflow imports this module when it parses, for the list of figures only.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def say_no_data(axes, message: str) -> None:
    """Write on the panel why it is empty (and warn in the log): the planned file exists, the gap is visible."""
    log.warning("no data: %s", message)
    axes.text(0.5, 0.5, f"no data\n{message}", ha="center", va="center", wrap=True, fontsize=10, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def direction_panels(figure, rows: pd.DataFrame, missing: str) -> tuple[list, list[tuple]]:
    """One titled panel per direction, side by side with a shared y axis.

    Returns the panels and (axes, that direction's rows) for each panel with rows;
    a panel without any says why (``missing``, its ``{direction}`` filled in).
    """
    panels = figure.subplots(1, len(DIRECTIONS), sharey=True, squeeze=False)[0]
    filled = []
    for axes, (direction, direction_label) in zip(panels, DIRECTIONS.items(), strict=True):
        axes.set_title(direction_label)
        here = rows[rows["direction"] == direction]
        if here.empty:
            say_no_data(axes, missing.format(direction=direction))
        else:
            filled.append((axes, here))
    return panels, filled


def save(figure, out: Path, dataset: str, name: str) -> list[Path]:
    """Write the figure as PNG and PDF; metadata without dates, so the same data gives the same bytes."""
    written = []
    for extension in FORMATS:
        path = figure_path(out, dataset, name, extension)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"CreationDate": None} if extension == "pdf" else {"Software": None}
        figure.savefig(path, dpi=150, metadata=metadata)
        # The layout is now computed; the second format reuses it instead of solving it again.
        figure.set_layout_engine("none")
        written.append(path)
    return written


def method_series(methods: list[str], available: set[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """(method, scoring, is primary) for every method's primary scoring and the secondary ones that have data."""
    series = []
    for method in methods:
        series.append((method, PRIMARY_SCORING[method], True))
        series += [(method, s, False) for s in SECONDARY_SCORINGS.get(method, ()) if (method, s) in available]
    return series


def series_label(method: str, scoring: str, primary: bool) -> str:
    return METHOD_LABELS[method] if primary else f"{METHOD_LABELS[method]} ({scoring})"


def plot_retrieval(summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Grouped bars of R@1, R@5, R@10 and PMRP per direction, 95% interval as error bars."""
    protocol = primary_protocol(dataset)
    rows = summary[
        (summary["dataset"] == dataset) & (summary["protocol"] == protocol) & summary["metric"].isin(RETRIEVAL_METRICS)
    ]
    rows = rows[rows["method"].isin(methods)]
    series = method_series(methods, set(zip(rows["method"], rows["scoring"], strict=True)))
    figure = new_figure(11, 4.2)
    figure.suptitle(f"{dataset}: retrieval, {protocol} protocol (mean over seeds, 95% bootstrap interval)")
    width = 0.8 / max(len(series), 1)
    missing = f"summary.csv has no {protocol} {{direction}} rows of {', '.join(RETRIEVAL_METRICS)} for {dataset}"
    panels, filled = direction_panels(figure, rows, missing)
    for axes, here in filled:
        cells = here.set_index(["method", "scoring", "metric"])
        for index, (method, scoring, primary) in enumerate(series):
            keys = [(method, scoring, metric) for metric in RETRIEVAL_METRICS]
            means = np.array([cells["mean"].get(k, np.nan) for k in keys], dtype=float)
            low = np.array([cells["ci_low"].get(k, np.nan) for k in keys], dtype=float)
            high = np.array([cells["ci_high"].get(k, np.nan) for k in keys], dtype=float)
            # An interval that could not be computed (NaN) draws no bar rather than a zero-width one.
            errors = np.nan_to_num(np.vstack([means - low, high - means]), nan=0.0).clip(min=0)
            axes.bar(
                np.arange(len(RETRIEVAL_METRICS)) + (index - (len(series) - 1) / 2) * width,
                means,
                width,
                yerr=errors,
                capsize=2,
                color=METHOD_COLORS[method],
                alpha=1.0 if primary else 0.55,
                hatch=None if primary else SECONDARY_HATCHES.get(scoring, ".."),
                edgecolor="white" if primary else METHOD_COLORS[method],
                label=series_label(method, scoring, primary),
            )
        axes.set_xticks(np.arange(len(RETRIEVAL_METRICS)), RETRIEVAL_METRICS)
        axes.set_ylim(0, 100)
        axes.grid(axis="y", alpha=0.3)
    panels[0].set_ylabel("%")
    handles, labels = max((a.get_legend_handles_labels() for a in panels), key=lambda pair: len(pair[0]))
    if handles:
        figure.legend(handles, labels, loc="outside right center", fontsize=8)
    return figure


def seed_points(values: pd.Series) -> tuple[float, np.ndarray]:
    numbers = values.to_numpy(dtype=float)
    return (float(np.nanmean(numbers)) if numbers.size else np.nan), numbers


def own_values(rows: pd.DataFrame, method: str, statistic: str, uncertainty: str) -> pd.Series:
    """One statistic of a method's own scoring for one uncertainty signal, one value per seed."""
    return rows[
        (rows["method"] == method)
        & (rows["scoring"] == PRIMARY_SCORING[method])
        & (rows["statistic"] == statistic)
        & (rows["uncertainty"] == uncertainty)
    ]["value"]


def bar_with_seeds(axes, x: float, values: pd.Series, width: float, color: str, alpha: float = 1.0, label=None) -> float:
    """A bar at the mean over seeds with a dot per seed; the mean."""
    mean, points = seed_points(values)
    axes.bar(x, mean, width, color=color, alpha=alpha, label=label)
    axes.plot(np.full(points.size, x), points, "o", color="black", markersize=3)
    return mean


def plot_auroc(uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """AUROC of the score margin (every method) and of each probabilistic method's own σ statistic
    as predictors of an R@1 failure."""
    protocol = primary_protocol(dataset)
    table = uncertainty_summary
    rows = table[(table["dataset"] == dataset) & (table["protocol"] == protocol)]
    bars = [(m, "auroc_margin", MARGIN, f"{METHOD_LABELS[m]}\nmargin") for m in methods]
    bars += [(m, "auroc_u", plotted_uncertainty(m), f"{METHOD_LABELS[m]}\nσ") for m in probabilistic_methods(methods)]
    figure = new_figure(max(6, 0.95 * len(bars) * len(DIRECTIONS)), 4)
    figure.suptitle(f"{dataset}: how well each signal predicts an R@1 failure ({protocol}; dots: seeds; dashed: chance)")
    missing = f"uncertainty_summary.csv has no {protocol} {{direction}} rows for {dataset}"
    panels, filled = direction_panels(figure, rows, missing)
    for axes, here in filled:
        for index, (method, statistic, uncertainty, _) in enumerate(bars):
            values = own_values(here, method, statistic, uncertainty)
            bar_with_seeds(axes, index, values, 0.7, METHOD_COLORS[method], alpha=1.0 if statistic == "auroc_u" else 0.6)
        axes.axhline(0.5, color="gray", linestyle="--", linewidth=1)
        axes.set_xticks(range(len(bars)), [label for *_, label in bars], fontsize=8)
        axes.set_ylim(0, 1)
        axes.grid(axis="y", alpha=0.3)
    panels[0].set_ylabel("AUROC")
    return figure


def uncertainty_protocols(dataset: str) -> list[str]:
    """The protocols of the σ analysis: the primary one, and the complete ground truth on synthetic data."""
    return [primary_protocol(dataset)] + ([FULL_PROTOCOL] if dataset in SYNTHETIC_FORMAT else [])


def method_rows(figure, methods: list[str]) -> list:
    """One subfigure per probabilistic method, stacked, each titled with the method's label."""
    subfigures = figure.subfigures(max(len(methods), 1), 1, squeeze=False)[:, 0]
    for subfigure, method in zip(subfigures, methods, strict=False):
        subfigure.suptitle(METHOD_LABELS[method], fontsize=10)
    return list(subfigures)


def plot_uncertainty_bins(uncertainty: pd.DataFrame, dataset: str, methods: list[str]):
    """Per-bin retrieval of each probabilistic method's queries sorted into equal-count bins of its
    own σ statistic (bin 0 = least uncertain), with its own scoring; one row per method."""
    protocols = uncertainty_protocols(dataset)
    chosen = probabilistic_methods(methods)
    figure = new_figure(10, 4.2 * max(len(chosen), 1))
    figure.suptitle(f"{dataset}: retrieval per σ bin (each method's own scoring; thin lines: seeds)")
    for subfigure, method in zip(method_rows(figure, chosen), chosen, strict=True):
        statistic = plotted_uncertainty(method)
        rows = uncertainty[
            (uncertainty["dataset"] == dataset)
            & (uncertainty["method"] == method)
            & uncertainty["protocol"].isin(protocols)
            & (uncertainty["scoring"] == PRIMARY_SCORING[method])
            & (uncertainty["uncertainty"] == statistic)
        ]
        colors = dict(zip(protocols, (METHOD_COLORS[method], "#333333"), strict=False))
        missing = f"uncertainty.csv has no {method} {'/'.join(protocols)} {{direction}} bins of {statistic} for {dataset}"
        panels, filled = direction_panels(subfigure, rows, missing)
        for axes, here in filled:
            for protocol in protocols:
                metrics = sorted(here.loc[here["protocol"] == protocol, "metric"].unique(), key=lambda m: (m != "R@1", m))
                for metric, style in zip(metrics, ("-o", "--s", ":^"), strict=False):
                    cell = here[(here["protocol"] == protocol) & (here["metric"] == metric)]
                    per_seed = cell.pivot_table(index="bin", columns="seed", values="value")
                    if per_seed.shape[1] > 1:
                        axes.plot(
                            per_seed.index, per_seed.to_numpy(), style[:-1], color=colors[protocol], alpha=0.25, linewidth=1
                        )
                    label = f"{metric}, {protocol} protocol"
                    axes.plot(per_seed.index, per_seed.mean(axis=1), style, color=colors[protocol], markersize=4, label=label)
            axes.set_xlabel(f"σ bin (0 = most certain; equal-count bins of {UNCERTAINTY_STATISTICS[statistic].label})")
            axes.xaxis.get_major_locator().set_params(integer=True)
            axes.set_ylim(0, 100)
            axes.grid(alpha=0.3)
            axes.legend(fontsize=8)
        panels[0].set_ylabel("% (mean over seeds)")
    return figure


def method_runs(runs: list[Run], dataset: str, method: str) -> list[Run]:
    return sorted((r for r in runs if r.dataset == dataset and r.method == method), key=lambda r: r.seed)


def plot_sigma_histogram(runs: list[Run], dataset: str, methods: list[str]):
    """Distribution of each probabilistic method's own σ statistic (queries.parquet's u) over its image
    and caption embeddings, one outline per seed; one row per method."""
    chosen = probabilistic_methods(methods)
    figure = new_figure(10, 3.8 * max(len(chosen), 1))
    figure.suptitle(f"{dataset}: uncertainty of each test embedding")
    for subfigure, method in zip(method_rows(figure, chosen), chosen, strict=True):
        label = UNCERTAINTY_STATISTICS[plotted_uncertainty(method)].label
        panels = subfigure.subplots(1, len(QUERY_MODALITY), squeeze=False)[0]
        for axes, (direction, modality) in zip(panels, QUERY_MODALITY.items(), strict=True):
            axes.set_title(f"{modality} ({direction} queries)")
            values = {
                r.seed: r.queries.loc[r.queries["direction"] == direction, "u"].to_numpy(dtype=float)
                for r in method_runs(runs, dataset, method)
            }
            values = {seed: u[np.isfinite(u)] for seed, u in values.items()}
            values = {seed: u for seed, u in values.items() if u.size}
            if not values:
                say_no_data(axes, f"no finite u of {method} {modality} ({direction} queries) in queries.parquet for {dataset}")
                continue
            edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=40)
            for seed, u in values.items():
                axes.hist(u, bins=edges, histtype="step", linewidth=1.5, label=f"seed {seed} (n={u.size})")
            axes.set_xlabel(label)
            axes.set_ylabel(f"{modality} per bin")
            axes.legend(fontsize=8)
    return figure


def plot_sigma_multiplicity(runs: list[Run], uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Each probabilistic method's σ statistic of each query against its number of matches in the
    complete ground truth (log scale); one row per method."""
    chosen = probabilistic_methods(methods)
    figure = new_figure(10, 4 * max(len(chosen), 1))
    figure.suptitle(f"{dataset}: σ against how many items truly match a query")
    for subfigure, method in zip(method_rows(figure, chosen), chosen, strict=True):
        statistic = plotted_uncertainty(method)
        label = UNCERTAINTY_STATISTICS[statistic].label
        panels = subfigure.subplots(1, len(QUERY_MODALITY), squeeze=False)[0]
        correlations = uncertainty_summary[
            (uncertainty_summary["dataset"] == dataset)
            & (uncertainty_summary["method"] == method)
            & uncertainty_summary["statistic"].str.contains("spearman_u_log_matches")
            & (uncertainty_summary["uncertainty"] == statistic)
        ]
        for axes, (direction, modality) in zip(panels, QUERY_MODALITY.items(), strict=True):
            axes.set_title(f"{modality} ({direction} queries)")
            points = []
            for run in method_runs(runs, dataset, method):
                queries = run.queries[run.queries["direction"] == direction]
                u, matches = queries["u"].to_numpy(dtype=float), queries["true_matches"].to_numpy(dtype=float)
                keep = np.isfinite(u) & (matches > 0)
                if keep.any():
                    points.append((run.seed, matches[keep], u[keep]))
            if not points:
                say_no_data(
                    axes, f"no {method} {direction} queries with finite u and true_matches > 0 in queries.parquet for {dataset}"
                )
                continue
            for seed, matches, u in points:
                axes.scatter(matches, u, s=4, alpha=0.25, rasterized=True, label=f"seed {seed}")
            matches = np.concatenate([m for _, m, _ in points])
            u = np.concatenate([v for *_, v in points])
            # Medians over log-spaced groups of the match count show the trend through the cloud.
            edges = np.unique(np.geomspace(matches.min(), matches.max() + 1, num=12).round())
            group = np.digitize(matches, edges)
            centres = [np.exp(np.log(matches[group == g]).mean()) for g in np.unique(group)]
            medians = [np.median(u[group == g]) for g in np.unique(group)]
            axes.plot(centres, medians, "-o", color="black", markersize=4, label="median")
            here = correlations[correlations["direction"] == direction]
            rho = here.loc[here["statistic"] == "spearman_u_log_matches", "value"]
            if len(rho):
                text = f"Spearman ρ(u, log matches) = {rho.mean():.3f}"
                low, high = (
                    here.loc[here["statistic"] == f"spearman_u_log_matches{end}", "value"] for end in ("_ci_low", "_ci_high")
                )
                if len(low) and len(high):
                    text += f"\n95% bootstrap interval [{low.mean():.3f}, {high.mean():.3f}]"
                controlled = here.loc[here["statistic"] == "partial_spearman_u_log_matches", "value"]
                if len(controlled):
                    text += f"\nlength held fixed (partial ρ) = {controlled.mean():.3f}"
                axes.text(0.02, 0.97, text, transform=axes.transAxes, va="top", fontsize=9)
            axes.set_xscale("log")
            axes.set_xlabel("true matches in the complete ground truth (log scale)")
            axes.set_ylabel(label)
            axes.legend(fontsize=8, loc="lower right")
    return figure


# The σ comparison's correlations: the raw one (with its bootstrap interval) and its two length controls.
MATCH_CORRELATIONS = {
    "spearman_u_log_matches": "ρ(σ, log matches)",
    "partial_spearman_u_log_matches": "partial ρ\n(length fixed)",
    "within_length_spearman_u_log_matches": "ρ within\neach length",
}


def plot_sigma_comparison(uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Every probabilistic method side by side on the complete ground truth, each with its own σ statistic:
    top, Spearman of σ with log true matches, raw (whiskers: mean bootstrap interval) and with the
    query's length held fixed; bottom, AUROC of σ and of the score margin for an R@1 failure."""
    chosen = probabilistic_methods(methods)
    table = uncertainty_summary
    rows = table[(table["dataset"] == dataset) & (table["protocol"] == FULL_PROTOCOL) & table["method"].isin(chosen)]
    figure = new_figure(max(9, 2.2 * len(chosen) + 6), 7)
    figure.suptitle(f"{dataset}: the probabilistic methods' σ on the complete ground truth (bars: mean; dots: seeds)")
    top, bottom = figure.subfigures(2, 1)
    width = 0.8 / max(len(chosen), 1)
    missing = f"uncertainty_summary.csv has no {FULL_PROTOCOL} {{direction}} rows of {', '.join(chosen)} for {dataset}"

    def at(group: int, k: int) -> float:  # method k's bar in group ``group``
        return group + (k - (len(chosen) - 1) / 2) * width

    panels, filled = direction_panels(top, rows, missing)
    for axes, here in filled:
        for k, method in enumerate(chosen):
            statistic = plotted_uncertainty(method)
            for g, name in enumerate(MATCH_CORRELATIONS):
                label = f"{METHOD_LABELS[method]}: {UNCERTAINTY_STATISTICS[statistic].label}" if g == 0 else None
                values = own_values(here, method, name, statistic)
                mean = bar_with_seeds(axes, at(g, k), values, width * 0.9, METHOD_COLORS[method], label=label)
                if name == "spearman_u_log_matches":
                    low, high = (
                        np.nanmean(own_values(here, method, f"{name}{end}", statistic)) for end in ("_ci_low", "_ci_high")
                    )
                    axes.errorbar(at(g, k), mean, [[mean - low], [high - mean]], color="black", capsize=3, linewidth=1)
        axes.axhline(0, color="gray", linewidth=1)
        axes.set_xticks(range(len(MATCH_CORRELATIONS)), list(MATCH_CORRELATIONS.values()), fontsize=8)
        axes.set_ylim(-1, 1)
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=7, loc="upper right")
    panels[0].set_ylabel("Spearman correlation")
    panels, filled = direction_panels(bottom, rows, missing)
    for axes, here in filled:
        for k, method in enumerate(chosen):
            for g, (statistic, uncertainty) in enumerate((("auroc_u", plotted_uncertainty(method)), ("auroc_margin", MARGIN))):
                values = own_values(here, method, statistic, uncertainty)
                bar_with_seeds(axes, at(g, k), values, width * 0.9, METHOD_COLORS[method], alpha=1.0 if g == 0 else 0.6)
        axes.axhline(0.5, color="gray", linestyle="--", linewidth=1)
        axes.set_xticks([0, 1], ["AUROC of σ", "AUROC of the score margin"], fontsize=8)
        axes.set_ylim(0, 1)
        axes.grid(axis="y", alpha=0.3)
    panels[0].set_ylabel("AUROC for an R@1 failure")
    return figure


def plot_training_curves(runs: list[Run], dataset: str, methods: list[str]):
    """The mean training loss of each epoch, one panel per method (losses differ in scale), one line per seed."""
    columns = min(len(methods), 3) or 1
    rows = -(-max(len(methods), 1) // columns)
    figure = new_figure(3.6 * columns, 2.8 * rows)
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    figure.suptitle(f"{dataset}: training loss per epoch")
    for axes in panels[len(methods) :]:
        axes.set_visible(False)
    for axes, method in zip(panels, methods, strict=False):
        axes.set_title(METHOD_LABELS[method])
        chosen = sorted((r for r in runs if r.dataset == dataset and r.method == method), key=lambda r: r.seed)
        if not chosen or all(r.train_log.empty for r in chosen):
            say_no_data(axes, f"no train_log.csv rows of {method} on {dataset}")
            continue
        for run, style in zip(chosen, itertools.cycle(("-o", "--s", ":^", "-.v")), strict=False):
            curve = run.train_log.sort_values("epoch")
            axes.plot(
                curve["epoch"],
                curve["loss"],
                style,
                markersize=3,
                color=METHOD_COLORS[method],
                alpha=0.8,
                label=f"seed {run.seed}",
            )
            # The frozen-backbone phase ends where fine-tuning starts.
            if "phase" in curve and curve["phase"].nunique() > 1:
                change = curve["epoch"].to_numpy()[
                    np.flatnonzero(curve["phase"].to_numpy()[1:] != curve["phase"].to_numpy()[:-1])
                ]
                for epoch in change:
                    axes.axvline(epoch + 0.5, color="gray", linestyle=":", linewidth=1)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return figure


def write_figures(
    results: str | Path,
    run_dirs: list[str | Path],
    out: str | Path,
    datasets: list[str] | None = None,
    methods: list[str] | None = None,
) -> list[Path]:
    """Every figure of :func:`figure_files` for these datasets and methods (default: those of the runs)."""
    results, out = Path(results), Path(out)
    summary = read_table(results / "summary.csv", SUMMARY_COLUMNS)
    uncertainty = read_table(results / "uncertainty.csv", UNCERTAINTY_COLUMNS)
    uncertainty_summary = read_table(results / "uncertainty_summary.csv", UNCERTAINTY_SUMMARY_COLUMNS)
    runs = load_runs(run_dirs)
    datasets = list(datasets or dict.fromkeys(r.dataset for r in runs))
    methods = list(methods or dict.fromkeys(r.method for r in runs))
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ResultsError(
            f"unknown method(s) {', '.join(unknown)}: no file in models/ declares them; registered: {', '.join(METHODS)}"
        )
    written = []
    for dataset in datasets:
        for name in figure_names(dataset, methods):
            if name == "retrieval":
                figure = plot_retrieval(summary, dataset, methods)
            elif name == "auroc":
                figure = plot_auroc(uncertainty_summary, dataset, methods)
            elif name == "uncertainty_bins":
                figure = plot_uncertainty_bins(uncertainty, dataset, methods)
            elif name == "sigma_histogram":
                figure = plot_sigma_histogram(runs, dataset, methods)
            elif name == "sigma_multiplicity":
                figure = plot_sigma_multiplicity(runs, uncertainty_summary, dataset, methods)
            elif name == "sigma_comparison":
                figure = plot_sigma_comparison(uncertainty_summary, dataset, methods)
            else:
                figure = plot_training_curves(runs, dataset, methods)
            written += save(figure, out, dataset, name)
            log.info("wrote %s/%s/%s.{%s}", out, dataset, name, ",".join(FORMATS))
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="folder with summary.csv, uncertainty.csv, uncertainty_summary.csv")
    parser.add_argument("--runs", nargs="*", default=[], help="run folders (run.json, queries.parquet, train_log.csv)")
    parser.add_argument("--out", required=True, help="where <dataset>/<figure>.{png,pdf} go")
    parser.add_argument("--datasets", nargs="+", help="datasets to plot (default: those of the runs)")
    parser.add_argument("--methods", nargs="+", help="methods to plot (default: those of the runs)")
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        write_figures(args.results, args.runs, args.out, args.datasets, args.methods)
    except ResultsError as error:
        sys.exit(f"pcmebench.plots: {error}")


if __name__ == "__main__":
    main()
