"""Figures of a benchmark's results: retrieval with confidence intervals, σ against failure, training curves.

``python -m pcmebench.plots --results results --runs work/runs/<dataset>/<method>/seed<seed> ... --out results/plots``

Each figure is one entry of :data:`FIGURES`, written as PNG (for the page) and PDF (for papers) to
``<out>/<dataset>/<figure>.{png,pdf}``. Which figures exist follows from the configured datasets and methods alone
(:func:`figure_files`), so the workflow declares them before anything runs; a figure whose rows are missing is still
written and says what is missing, so one empty table hides no other result.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corpora import SYNTHETIC_FORMAT
from models.registry import UNCERTAINTY_STATISTICS
from pcmebench import tables, vocabulary
from pcmebench.logs import log_to_stderr
from pcmebench.tables import entries, known_methods, label, probabilistic_methods, scoring_series, select, trained_methods
from pcmebench.vocabulary import DIRECTIONS, FULL_PROTOCOL, MARGIN, QUERY_MODALITY, primary_protocol, uncertainty_protocols

log = logging.getLogger("pcmebench.plots")
FORMATS = ("png", "pdf")
RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "PMRP")
SECONDARY_HATCHES = {"sample-dot": "\\\\", "mu": "//", "csd": ".."}
MODALITY_TITLES = {direction: f"{modality} ({direction} queries)" for direction, modality in QUERY_MODALITY.items()}
# The σ comparison's statistics (this figure and the page's table): the correlation with log true matches, its two length
# controls, the AUROCs; each with its uncertainty column (None: the method's own σ statistic), figure tick and table header.
COMPARED = {
    "spearman_u_log_matches": (None, "ρ(σ, log matches)", "ρ(σ, log true matches)\n[95% interval]"),
    "partial_spearman_u_log_matches": (None, "partial ρ\n(length fixed)", "partial ρ,\nlength fixed"),
    "within_length_spearman_u_log_matches": (None, "ρ within\neach length", "ρ within\neach length"),
    "auroc_u": (None, "AUROC of σ", "AUROC of σ\n(R@1 failure)"),
    "auroc_margin": (MARGIN, "AUROC of the score margin", "AUROC of the\nscore margin"),
}
# The figure's rows of panels: y label, y range, reference line, bars.
COMPARISON = (
    ("Spearman correlation", (-1, 1), 0, list(COMPARED)[:3]),
    ("AUROC for an R@1 failure", (0, 1), 0.5, list(COMPARED)[3:]),
)


@dataclass
class Run:
    dataset: str
    method: str
    seed: int
    queries: pd.DataFrame
    train_log: pd.DataFrame


def load_runs(run_dirs) -> list[Run]:
    """Each run folder's queries and training curve; an external model's folder (external.json) has no curve."""
    runs = []
    for run_dir in map(Path, run_dirs):
        trained = not (run_dir / "external.json").is_file()
        record = tables.read_run_record(run_dir / ("run.json" if trained else "external.json"), tables.RUN_COLUMNS)
        queries = tables.read_table(run_dir / "queries.parquet", tables.QUERIES_COLUMNS)
        curve = tables.read_table(run_dir / "train_log.csv", tables.TRAIN_LOG_COLUMNS) if trained else pd.DataFrame()
        runs.append(Run(record["dataset"], record["method"], int(record["seed"]), queries, curve))
    return runs


def method_runs(runs: list[Run], dataset: str, method: str) -> list[Run]:
    return sorted((r for r in runs if r.dataset == dataset and r.method == method), key=lambda r: r.seed)


def new_figure(width: float, height: float, title: str):
    """A titled figure outside pyplot's global state (nothing to close, safe to build many in one process)."""
    from matplotlib.figure import Figure  # here: the workflow imports this module for FIGURES only

    figure = Figure(figsize=(width, height), layout="constrained")
    figure.suptitle(title)
    return figure


def say_no_data(axes, message: str) -> None:
    """Write on the panel why it is empty (and warn in the log): the planned file exists, the gap is visible."""
    log.warning("no data: %s", message)
    axes.text(0.5, 0.5, f"no data\n{message}", ha="center", va="center", wrap=True, fontsize=10, transform=axes.transAxes)
    axes.set(xticks=[], yticks=[])


def panels(figure, rows: list, columns: dict, ylabel=None, titled: bool = False, sharey: bool = True):
    """(axes, row, column) for a row of panels per item of ``rows`` (``titled``: methods, labelling their rows) and a panel
    per item of ``columns``, titled with its value; ``ylabel`` (one, or one per row) on each row's first panel."""
    parts = [figure] if len(rows) == 1 and not titled else figure.subfigures(max(len(rows), 1), 1, squeeze=False)[:, 0]
    for index, (part, row) in enumerate(zip(parts, rows, strict=False)):
        if titled:
            part.suptitle(label(row), fontsize=10)
        row_panels = part.subplots(1, len(columns), sharey=sharey, squeeze=False)[0]
        if ylabel is not None:
            row_panels[0].set_ylabel(ylabel if isinstance(ylabel, str) else ylabel[index])
        for axes, (column, title) in zip(row_panels, columns.items(), strict=True):
            axes.set_title(title)
            yield axes, row, column


def figure_path(out: str | Path, dataset: str, name: str, extension: str) -> Path:
    return Path(out) / dataset / f"{name}.{extension}"


def save(figure, out: Path, dataset: str, name: str) -> list[Path]:
    """Write the figure as PNG and PDF; metadata without dates, so the same data gives the same bytes."""
    written = []
    for extension in FORMATS:
        path = figure_path(out, dataset, name, extension)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=150, metadata={"CreationDate": None} if extension == "pdf" else {"Software": None})
        figure.set_layout_engine("none")  # the layout is computed; the second format reuses it
        written.append(path)
    return written


def own_values(rows: pd.DataFrame, method: str, statistic: str, uncertainty: str) -> np.ndarray:
    """One statistic of a method's own scoring for one uncertainty signal, one value per seed."""
    mine = select(rows, method=method, scoring=entries()[method].primary_scoring, statistic=statistic, uncertainty=uncertainty)
    return mine["value"].to_numpy(dtype=float)


def bar_with_seeds(axes, x: float, rows: pd.DataFrame, method: str, statistic: str, uncertainty: str, width: float, legend=None):
    """A bar at the mean over seeds of :func:`own_values` (paler for the score margin) with a dot per seed; the mean."""
    points = own_values(rows, method, statistic, uncertainty)
    mean = float(np.nanmean(points)) if points.size else np.nan
    alpha = 0.6 if uncertainty == MARGIN else 1.0
    axes.bar(x, mean, width, color=entries()[method].color, alpha=alpha, label=legend)
    axes.plot(np.full(points.size, x), points, "o", color="black", markersize=3)
    return mean


def plot_retrieval(summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Grouped bars of R@1, R@5, R@10 and PMRP per direction, 95% interval as error bars; each method's own scoring,
    then its other scorings that have rows (hatched)."""
    protocol = primary_protocol(dataset)
    rows = select(summary, dataset=dataset, protocol=protocol, metric=list(RETRIEVAL_METRICS), method=list(methods))
    cells = rows.set_index(["direction", "method", "scoring", "metric"])[["mean", "ci_low", "ci_high"]]
    series = scoring_series(rows, methods)
    figure = new_figure(11, 4.2, f"{dataset}: retrieval, {protocol} protocol (mean over seeds, 95% bootstrap interval)")
    width, x = 0.8 / max(len(series), 1), np.arange(len(RETRIEVAL_METRICS))
    for axes, _, direction in panels(figure, [None], DIRECTIONS, "%"):
        if direction not in cells.index:
            say_no_data(axes, f"summary.csv has no {protocol} {direction} rows of {', '.join(RETRIEVAL_METRICS)} for {dataset}")
            continue
        for index, (method, scoring) in enumerate(series):
            means, low, high = cells.reindex([(direction, method, scoring, m) for m in RETRIEVAL_METRICS]).to_numpy(float).T
            errors = np.nan_to_num(np.vstack([means - low, high - means]), nan=0.0).clip(min=0)  # no interval: no error bar
            entry, offset = entries()[method], (index - (len(series) - 1) / 2) * width
            style = {"alpha": 1.0, "edgecolor": "white"}
            if scoring != entry.primary_scoring:
                style = {"alpha": 0.55, "hatch": SECONDARY_HATCHES.get(scoring, ".."), "edgecolor": entry.color}
            axes.bar(x + offset, means, width, yerr=errors, capsize=2, color=entry.color, label=label(method, scoring), **style)
        axes.set_xticks(x, RETRIEVAL_METRICS)
        axes.set_ylim(0, 100)
        axes.grid(axis="y", alpha=0.3)
    handles, texts = max((a.get_legend_handles_labels() for a in figure.axes), key=lambda pair: len(pair[0]))
    if handles:
        figure.legend(handles, texts, loc="outside right center", fontsize=8)
    return figure


def plot_auroc(uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """AUROC of the score margin (every method) and of each probabilistic method's own σ statistic for an R@1 failure."""
    protocol = primary_protocol(dataset)
    rows = select(uncertainty_summary, dataset=dataset, protocol=protocol)
    bars = [(m, "auroc_margin", MARGIN, "margin") for m in methods]
    bars += [(m, "auroc_u", entries()[m].uncertainty_statistic, "σ") for m in probabilistic_methods(methods)]
    title = f"{dataset}: how well each signal predicts an R@1 failure ({protocol}; dots: seeds; dashed: chance)"
    figure = new_figure(max(6, 0.95 * len(bars) * len(DIRECTIONS)), 4, title)
    for axes, _, direction in panels(figure, [None], DIRECTIONS, "AUROC"):
        here = select(rows, direction=direction)
        if here.empty:
            say_no_data(axes, f"uncertainty_summary.csv has no {protocol} {direction} rows for {dataset}")
            continue
        for index, (method, statistic, uncertainty, _) in enumerate(bars):
            bar_with_seeds(axes, index, here, method, statistic, uncertainty, 0.7)
        axes.axhline(0.5, color="gray", linestyle="--", linewidth=1)
        axes.set_xticks(range(len(bars)), [f"{label(m)}\n{signal}" for m, *_, signal in bars], fontsize=8)
        axes.set_ylim(0, 1)
        axes.grid(axis="y", alpha=0.3)
    return figure


def plot_uncertainty_bins(uncertainty: pd.DataFrame, dataset: str, methods: list[str]):
    """Per-bin retrieval of each probabilistic method's queries sorted into equal-count bins of its own σ statistic
    (bin 0 = least uncertain), with its own scoring; one row per method."""
    protocols, chosen = uncertainty_protocols(dataset), probabilistic_methods(methods)
    title = f"{dataset}: retrieval per σ bin (each method's own scoring; thin lines: seeds)"
    figure = new_figure(10, 4.2 * max(len(chosen), 1), title)
    for axes, method, direction in panels(figure, chosen, DIRECTIONS, "% (mean over seeds)", titled=True):
        entry = entries()[method]
        statistic = entry.uncertainty_statistic
        mine = select(uncertainty, dataset=dataset, method=method, scoring=entry.primary_scoring, direction=direction)
        here = select(mine, protocol=protocols, uncertainty=statistic)
        if here.empty:
            missing = f"{method} {'/'.join(protocols)} {direction} bins of {statistic} for {dataset}"
            say_no_data(axes, f"uncertainty.csv has no {missing}")
            continue
        for protocol, color in zip(protocols, (entry.color, "#333333"), strict=False):
            metrics = sorted(select(here, protocol=protocol)["metric"].unique(), key=lambda m: (m != "R@1", m))
            for metric, style in zip(metrics, ("-o", "--s", ":^"), strict=False):
                cell = select(here, protocol=protocol, metric=metric)
                per_seed = cell.pivot_table(index="bin", columns="seed", values="value")
                if per_seed.shape[1] > 1:
                    axes.plot(per_seed.index, per_seed.to_numpy(), style[:-1], color=color, alpha=0.25, linewidth=1)
                label = f"{metric}, {protocol} protocol"
                axes.plot(per_seed.index, per_seed.mean(axis=1), style, color=color, markersize=4, label=label)
        axes.set_xlabel(f"σ bin (0 = most certain; equal-count bins of {UNCERTAINTY_STATISTICS[statistic].label})")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_ylim(0, 100)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure


def plot_sigma_histogram(runs: list[Run], dataset: str, methods: list[str]):
    """Distribution of each probabilistic method's own σ statistic (queries.parquet's u) over its image and caption
    embeddings, one outline per seed; one row per method."""
    chosen = probabilistic_methods(methods)
    figure = new_figure(10, 3.8 * max(len(chosen), 1), f"{dataset}: uncertainty of each test embedding")
    for axes, method, direction in panels(figure, chosen, MODALITY_TITLES, titled=True, sharey=False):
        values = {r.seed: select(r.queries, direction=direction)["u"].to_numpy(float) for r in method_runs(runs, dataset, method)}
        values = {seed: u[np.isfinite(u)] for seed, u in values.items() if np.isfinite(u).any()}
        modality = QUERY_MODALITY[direction]
        if not values:
            say_no_data(axes, f"no finite u of {method} {modality} ({direction} queries) in queries.parquet for {dataset}")
            continue
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=40)
        for seed, u in values.items():
            axes.hist(u, bins=edges, histtype="step", linewidth=1.5, label=f"seed {seed} (n={u.size})")
        statistic = entries()[method].uncertainty_statistic
        axes.set(xlabel=UNCERTAINTY_STATISTICS[statistic].label, ylabel=f"{modality} per bin")
        axes.legend(fontsize=8)
    return figure


def spearman_lines(rows: pd.DataFrame) -> str:
    """Spearman's ρ(u, log matches), its interval and its length control (means over seeds) as title lines; empty without ρ."""
    mean = rows.groupby("statistic")["value"].mean()
    if "spearman_u_log_matches" not in mean:
        return ""
    text = f"\nSpearman ρ(u, log matches) = {mean['spearman_u_log_matches']:.3f}"
    bounds = mean.reindex([f"spearman_u_log_matches{end}" for end in vocabulary.INTERVAL_ENDS])
    if bounds.notna().all():
        text += " [{:.3f}, {:.3f}]".format(*bounds)
    if "partial_spearman_u_log_matches" in mean:
        text += f"\nlength held fixed (partial ρ) = {mean['partial_spearman_u_log_matches']:.3f}"
    return text


def plot_sigma_multiplicity(runs: list[Run], uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Each probabilistic method's σ statistic of each query against its number of matches in the complete ground
    truth (log scale), Spearman's ρ in the panel's title, off the points; one row per method."""
    chosen = probabilistic_methods(methods)
    figure = new_figure(10, 4.4 * max(len(chosen), 1), f"{dataset}: σ against how many items truly match a query")
    for axes, method, direction in panels(figure, chosen, MODALITY_TITLES, titled=True, sharey=False):
        points = []
        for run in method_runs(runs, dataset, method):
            queries = select(run.queries, direction=direction)
            u, matches = queries["u"].to_numpy(dtype=float), queries["true_matches"].to_numpy(dtype=float)
            keep = np.isfinite(u) & (matches > 0)
            if keep.any():
                points.append((run.seed, matches[keep], u[keep]))
        if not points:
            missing = f"{method} {direction} queries with finite u and true_matches > 0"
            say_no_data(axes, f"no {missing} in queries.parquet for {dataset}")
            continue
        for seed, matches, u in points:
            axes.scatter(matches, u, s=4, alpha=0.25, rasterized=True, label=f"seed {seed}")
        matches, u = (np.concatenate([p[i] for p in points]) for i in (1, 2))
        # Medians over log-spaced groups of the match count show the trend through the cloud.
        group = np.digitize(matches, np.unique(np.geomspace(matches.min(), matches.max() + 1, num=12).round()))
        groups = np.unique(group)
        centres = [np.exp(np.log(matches[group == g]).mean()) for g in groups]
        axes.plot(centres, [np.median(u[group == g]) for g in groups], "-o", color="black", markersize=4, label="median")
        statistic = entries()[method].uncertainty_statistic
        mine = select(uncertainty_summary, dataset=dataset, method=method, direction=direction, uncertainty=statistic)
        lines = spearman_lines(mine)
        axes.set_title(MODALITY_TITLES[direction] + lines, fontsize=9 if lines else None)
        xlabel = "true matches in the complete ground truth (log scale)"
        axes.set(xscale="log", xlabel=xlabel, ylabel=UNCERTAINTY_STATISTICS[statistic].label)
        if direction == list(MODALITY_TITLES)[-1]:  # one legend per row, beside its last panel, off the points
            axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    return figure


def plot_sigma_comparison(uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Every probabilistic method side by side on the complete ground truth, each with its own σ statistic: top,
    Spearman of σ with log true matches, raw (whiskers: mean bootstrap interval) and with the query's length held
    fixed; bottom, AUROC of σ and of the score margin for an R@1 failure."""
    chosen = probabilistic_methods(methods)
    rows = select(uncertainty_summary, dataset=dataset, protocol=FULL_PROTOCOL, method=chosen)
    title = f"{dataset}: the probabilistic methods' σ on the complete ground truth (bars: mean; dots: seeds)"
    figure, width = new_figure(max(9, 2.2 * len(chosen) + 6), 7, title), 0.8 / max(len(chosen), 1)
    for axes, row, direction in panels(figure, COMPARISON, DIRECTIONS, [ylabel for ylabel, *_ in COMPARISON]):
        (_, limits, reference, bars), here = row, select(rows, direction=direction)
        if here.empty:
            missing = f"{FULL_PROTOCOL} {direction} rows of {', '.join(chosen)}"
            say_no_data(axes, f"uncertainty_summary.csv has no {missing} for {dataset}")
            continue
        for (k, method), (g, name) in itertools.product(enumerate(chosen), enumerate(bars)):
            x, uncertainty = (
                g + (k - (len(chosen) - 1) / 2) * width,
                COMPARED[name][0] or entries()[method].uncertainty_statistic,
            )
            legend = f"{label(method)}: {UNCERTAINTY_STATISTICS[uncertainty].label}" if g == 0 and row is COMPARISON[0] else None
            mean = bar_with_seeds(axes, x, here, method, name, uncertainty, width * 0.9, legend)
            if name == "spearman_u_log_matches":
                low, high = (np.nanmean(own_values(here, method, name + end, uncertainty)) for end in vocabulary.INTERVAL_ENDS)
                axes.errorbar(x, mean, [[mean - low], [high - mean]], color="black", capsize=3, linewidth=1)
        axes.axhline(reference, color="gray", linestyle="--" if reference else "-", linewidth=1)
        axes.set_xticks(range(len(bars)), [COMPARED[name][1] for name in bars], fontsize=8)
        axes.set_ylim(*limits)
        axes.grid(axis="y", alpha=0.3)
        if row is COMPARISON[0]:
            axes.legend(fontsize=7, loc="upper right")
    return figure


def plot_training_curves(runs: list[Run], dataset: str, methods: list[str]):
    """The mean training loss of each epoch, one panel per method (losses differ in scale), one line per seed."""
    methods = trained_methods(methods)
    columns = min(len(methods), 3) or 1
    rows = -(-max(len(methods), 1) // columns)
    figure = new_figure(3.6 * columns, 2.8 * rows, f"{dataset}: training loss per epoch")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid[len(methods) :]:
        axes.set_visible(False)
    for axes, method in zip(grid, methods, strict=False):
        entry, chosen = entries()[method], method_runs(runs, dataset, method)
        axes.set_title(entry.label)
        if all(r.train_log.empty for r in chosen):
            say_no_data(axes, f"no train_log.csv rows of {method} on {dataset}")
            continue
        for run, style in zip(chosen, itertools.cycle(("-o", "--s", ":^", "-.v")), strict=False):
            curve = run.train_log.sort_values("epoch")
            axes.plot(curve["epoch"], curve["loss"], style, markersize=3, color=entry.color, alpha=0.8, label=f"seed {run.seed}")
            epochs, phases = curve["epoch"].to_numpy(), curve["phase"].to_numpy()
            for epoch in epochs[:-1][phases[1:] != phases[:-1]]:  # the frozen-backbone phase ends here
                axes.axvline(epoch + 0.5, color="gray", linestyle=":", linewidth=1)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set(xlabel="epoch", ylabel="loss")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return figure


@dataclass(frozen=True)
class FigureKind:
    """One figure: its report section and title, its draw function with the inputs it takes before (dataset,
    methods), and whether it needs a probabilistic method (σ) and a synthetic dataset (the complete ground truth)."""

    section: str
    title: str
    draw: Callable
    inputs: tuple[str, ...]
    sigma: bool = False
    truth: bool = False
    trained: bool = False  # needs a method trained here (external models have no training)


# Every figure, in report order; its inputs are tables of results/ by stem, or "runs".
FIGURES = {
    "retrieval": FigureKind("Retrieval", "R@K and PMRP with 95% confidence intervals", plot_retrieval, ("summary",)),
    "auroc": FigureKind("Uncertainty", "AUROC for predicting an R@1 failure: σ against the score margin", plot_auroc,
                        ("uncertainty_summary",)),
    "uncertainty_bins": FigureKind("Uncertainty", "R@1 per σ bin", plot_uncertainty_bins, ("uncertainty",), sigma=True),
    "sigma_histogram": FigureKind("Uncertainty", "σ per modality", plot_sigma_histogram, ("runs",), sigma=True),
    "sigma_multiplicity": FigureKind("Uncertainty", "σ against the true number of matches", plot_sigma_multiplicity,
                                     ("runs", "uncertainty_summary"), sigma=True, truth=True),
    "sigma_comparison": FigureKind("Uncertainty", "The probabilistic methods' σ, raw and with length held fixed",
                                   plot_sigma_comparison, ("uncertainty_summary",), sigma=True, truth=True),
    "training_curves": FigureKind("Training", "Training loss per epoch", plot_training_curves, ("runs",), trained=True),
}  # fmt: skip


def figure_names(dataset: str, methods) -> list[str]:
    """The figures of one dataset for the configured methods, in report order."""
    sigma, trained = bool(probabilistic_methods(methods)), bool(trained_methods(methods))
    return [
        n for n, f in FIGURES.items()
        if (sigma or not f.sigma) and (dataset in SYNTHETIC_FORMAT or not f.truth) and (trained or not f.trained)
    ]  # fmt: skip


def figure_files(out: str | Path, datasets: list[str], methods: list[str], extensions: tuple[str, ...] = FORMATS) -> list[str]:
    """Every file the plots stage writes for these datasets and methods (deterministic order)."""
    names = [(dataset, name) for dataset in datasets for name in figure_names(dataset, methods)]
    return [str(figure_path(out, dataset, name, extension)) for dataset, name in names for extension in extensions]


def write_figures(results, run_dirs, out, datasets: list[str] | None = None, methods: list[str] | None = None) -> list[Path]:
    """Every figure of :func:`figure_files` for these datasets and methods (default: those of the runs)."""
    stems = sorted({stem for kind in FIGURES.values() for stem in kind.inputs} - {"runs"})
    inputs = {stem: tables.read_table(Path(results) / f"{stem}.csv", tables.RESULT_TABLES[f"{stem}.csv"]) for stem in stems}
    tables.declare_external(tables.external_methods(tables.read_table(Path(results) / "external.csv", tables.EXTERNAL_COLUMNS)))
    inputs["runs"] = load_runs(run_dirs)
    datasets = list(datasets or dict.fromkeys(r.dataset for r in inputs["runs"]))
    methods, written = known_methods(methods or dict.fromkeys(r.method for r in inputs["runs"])), []
    for dataset in datasets:
        for name in figure_names(dataset, methods):
            kind = FIGURES[name]
            written += save(kind.draw(*(inputs[i] for i in kind.inputs), dataset, methods), Path(out), dataset, name)
            log.info("wrote %s/%s/%s.{%s}", out, dataset, name, ",".join(FORMATS))
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="folder with summary.csv, uncertainty.csv, uncertainty_summary.csv")
    parser.add_argument("--runs", nargs="*", default=[],
                        help="run folders (run.json, queries.parquet, train_log.csv), external models' (external.json, queries.parquet)")  # fmt: skip
    parser.add_argument("--out", required=True, help="where <dataset>/<figure>.{png,pdf} go")
    parser.add_argument("--datasets", nargs="+", help="datasets to plot (default: those of the runs)")
    parser.add_argument("--methods", nargs="+", help="methods to plot (default: those of the runs)")
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        write_figures(args.results, args.runs, args.out, args.datasets, args.methods)
    except tables.ResultsError as error:
        sys.exit(f"pcmebench.plots: {error}")


if __name__ == "__main__":
    main()
