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
STYLE = Path(__file__).resolve().parent / "templates" / "figures.mplstyle"
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


def stacked(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, *tables.RUN_COLUMNS])


def load_runs(run_dirs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run folder's queries and training curve, each row with its run's dataset, method and seed; an external
    model's folder (external.json) has no curve."""
    queries, curves = [], []
    for run_dir in map(Path, run_dirs):
        path = tables.record_path(run_dir)
        record, trained = tables.read_run_record(path, tables.RUN_COLUMNS), path.name != tables.EXTERNAL_RECORD
        run = {"dataset": record["dataset"], "method": record["method"], "seed": int(record["seed"])}
        queries.append(tables.read_table(run_dir / "queries.parquet", tables.QUERIES_COLUMNS).assign(**run))
        curves += [tables.read_table(run_dir / "train_log.csv", tables.TRAIN_LOG_COLUMNS).assign(**run)] if trained else []
    return stacked(queries, tables.QUERIES_COLUMNS), stacked(curves, tables.TRAIN_LOG_COLUMNS)


def sigma_of(queries: pd.DataFrame, dataset: str, methods: list[str]) -> pd.DataFrame:
    """The queries of ``methods`` on ``dataset`` that have a finite σ statistic (u)."""
    rows = select(queries, dataset=dataset, method=methods)
    return rows[np.isfinite(rows["u"].astype(float))]


def own_statistic(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of each method's own scoring and own σ statistic."""
    statistic = rows["method"].map(lambda m: entries()[m].uncertainty_statistic)
    return rows[tables.is_own_scoring(rows) & (rows["uncertainty"] == statistic)]


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


def facets(figure, rows: pd.DataFrame, panel_rows: list, columns: dict, missing: str, ylabel=None, titled=False, sharey=True):
    """(axes, panel row, direction, its rows) per panel: a row of panels per item of ``panel_rows`` (``titled``:
    methods, which title and select their row) and a panel per direction of ``columns``, titled with its value;
    ``ylabel`` (one, or one per row) on each row's first panel. A panel without rows says so, naming what is
    ``missing`` (a format string of method, direction and modality), and is not yielded."""
    subfigures = titled or len(panel_rows) > 1
    parts = figure.subfigures(max(len(panel_rows), 1), 1, squeeze=False)[:, 0] if subfigures else [figure]
    for index, (part, panel_row) in enumerate(zip(parts, panel_rows, strict=False)):
        if titled:
            part.suptitle(label(panel_row), fontsize=10)
        panels = part.subplots(1, len(columns), sharey=sharey, squeeze=False)[0]
        if ylabel is not None:
            panels[0].set_ylabel(ylabel if isinstance(ylabel, str) else ylabel[index])
        for axes, (direction, title) in zip(panels, columns.items(), strict=True):
            axes.set_title(title)
            here = select(rows, direction=direction, **({"method": panel_row} if titled else {}))
            if here.empty:
                say_no_data(axes, missing.format(method=panel_row, direction=direction, modality=QUERY_MODALITY[direction]))
            else:
                yield axes, panel_row, direction, here


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


def offset(index: int, count: int, width: float) -> float:
    """The shift of the ``index``-th of ``count`` bars of ``width`` side by side around their group's centre."""
    return (index - (count - 1) / 2) * width


def own_values(rows: pd.DataFrame, method: str, statistic: str, uncertainty: str) -> np.ndarray:
    """One statistic of a method's own scoring for one uncertainty signal, one value per seed."""
    mine = select(rows, method=method, scoring=entries()[method].primary_scoring, statistic=statistic, uncertainty=uncertainty)
    return mine["value"].to_numpy(dtype=float)


def bar_with_seeds(axes, x: float, rows: pd.DataFrame, method: str, statistic: str, uncertainty: str, width: float, legend=None):
    """A bar at the mean over seeds of :func:`own_values` (paler for the score margin) with a dot per seed; the mean."""
    points = own_values(rows, method, statistic, uncertainty)
    mean = float(np.nanmean(points)) if points.size else np.nan
    axes.bar(x, mean, width, color=entries()[method].color, alpha=0.6 if uncertainty == MARGIN else 1.0, label=legend)
    axes.plot(np.full(points.size, x), points, "o", color="black", markersize=3)
    return mean


def plot_retrieval(summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Grouped bars of R@1, R@5, R@10 and PMRP (those the dataset has) per direction, 95% interval as error bars; each
    method's own scoring, then its other scorings that have rows (hatched)."""
    protocol = primary_protocol(dataset)
    rows = select(summary, dataset=dataset, protocol=protocol, metric=list(RETRIEVAL_METRICS), method=list(methods))
    metrics, series = [m for m in RETRIEVAL_METRICS if m in set(rows["metric"])], scoring_series(rows, methods)
    figure = new_figure(11, 4.2, f"{dataset}: retrieval, {protocol} protocol (mean over seeds, 95% bootstrap interval)")
    width, x = 0.8 / max(len(series), 1), np.arange(len(metrics))
    missing = f"summary.csv has no {protocol} {{direction}} rows of {', '.join(RETRIEVAL_METRICS)} for {dataset}"
    for axes, *_, here in facets(figure, rows, [None], DIRECTIONS, missing, "%"):
        cells = here.set_index(["method", "scoring", "metric"])[["mean", "ci_low", "ci_high"]]
        for index, (method, scoring) in enumerate(series):
            means, low, high = cells.reindex([(method, scoring, m) for m in metrics]).to_numpy(float).T
            errors = np.nan_to_num(np.vstack([means - low, high - means]), nan=0.0).clip(min=0)  # no interval: no error bar
            entry = entries()[method]
            style = {"alpha": 1.0, "edgecolor": "white"}
            if scoring != entry.primary_scoring:
                style = {"alpha": 0.55, "hatch": SECONDARY_HATCHES.get(scoring, ".."), "edgecolor": entry.color}
            axes.bar(x + offset(index, len(series), width), means, width, yerr=errors, color=entry.color,
                     label=label(method, scoring), **style)  # fmt: skip
        axes.set(xticks=x, xticklabels=metrics, ylim=(0, 100))
    handles, texts = max((a.get_legend_handles_labels() for a in figure.axes), key=lambda pair: len(pair[0]))
    if handles:
        figure.legend(handles, texts, loc="outside right center")
    return figure


def plot_auroc(uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """AUROC of the score margin (every method) and of each probabilistic method's own σ statistic for an R@1 failure."""
    protocol = primary_protocol(dataset)
    rows = select(uncertainty_summary, dataset=dataset, protocol=protocol)
    bars = [(m, "auroc_margin", MARGIN, "margin") for m in methods]
    bars += [(m, "auroc_u", entries()[m].uncertainty_statistic, "σ") for m in probabilistic_methods(methods)]
    title = f"{dataset}: how well each signal predicts an R@1 failure ({protocol}; dots: seeds; dashed: chance)"
    figure = new_figure(max(6, 0.95 * len(bars) * len(DIRECTIONS)), 4, title)
    missing = f"uncertainty_summary.csv has no {protocol} {{direction}} rows for {dataset}"
    for axes, *_, here in facets(figure, rows, [None], DIRECTIONS, missing, "AUROC"):
        for index, (method, statistic, uncertainty, _) in enumerate(bars):
            bar_with_seeds(axes, index, here, method, statistic, uncertainty, 0.7)
        axes.axhline(0.5, color="gray", linestyle="--", linewidth=1)
        axes.set(xticks=range(len(bars)), xticklabels=[f"{label(m)}\n{signal}" for m, *_, signal in bars], ylim=(0, 1))
    return figure


def plot_uncertainty_bins(uncertainty: pd.DataFrame, dataset: str, methods: list[str]):
    """Per-bin retrieval of each probabilistic method's queries sorted into equal-count bins of its own σ statistic
    (bin 0 = least uncertain), with its own scoring; one row per method."""
    protocols, chosen = uncertainty_protocols(dataset), probabilistic_methods(methods)
    rows = own_statistic(select(uncertainty, dataset=dataset, method=chosen, protocol=protocols))
    figure = new_figure(
        10, 4.2 * max(len(chosen), 1), f"{dataset}: retrieval per σ bin (each method's own scoring; thin lines: seeds)"
    )
    missing = f"uncertainty.csv has no {{method}} {'/'.join(protocols)} {{direction}} bins of its own σ statistic for {dataset}"
    for axes, method, _, here in facets(figure, rows, chosen, DIRECTIONS, missing, "% (mean over seeds)", titled=True):
        for protocol, color in zip(protocols, (entries()[method].color, "#333333"), strict=False):
            metrics = sorted(select(here, protocol=protocol)["metric"].unique(), key=lambda m: (m != "R@1", m))
            for metric, style in zip(metrics, ("-o", "--s", ":^"), strict=False):
                per_seed = select(here, protocol=protocol, metric=metric).pivot_table(index="bin", columns="seed", values="value")
                if per_seed.shape[1] > 1:
                    axes.plot(per_seed.index, per_seed.to_numpy(), style[:-1], color=color, alpha=0.25, linewidth=1)
                axes.plot(per_seed.index, per_seed.mean(axis=1), style, color=color, label=f"{metric}, {protocol} protocol")
        statistic = UNCERTAINTY_STATISTICS[entries()[method].uncertainty_statistic].label
        axes.set(xlabel=f"σ bin (0 = most certain; equal-count bins of {statistic})", ylim=(0, 100))
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend()
    return figure


def plot_sigma_histogram(queries: pd.DataFrame, dataset: str, methods: list[str]):
    """Distribution of each probabilistic method's own σ statistic (queries.parquet's u) over its image and caption
    embeddings, one outline per seed; one row per method."""
    chosen = probabilistic_methods(methods)
    figure = new_figure(10, 3.8 * max(len(chosen), 1), f"{dataset}: uncertainty of each test embedding")
    missing = f"no finite u of {{method}} {{modality}} ({{direction}} queries) in queries.parquet for {dataset}"
    for axes, method, direction, here in facets(
        figure, sigma_of(queries, dataset, chosen), chosen, MODALITY_TITLES, missing, titled=True, sharey=False
    ):
        edges = np.histogram_bin_edges(here["u"].astype(float), bins=40)
        for seed, u in here.groupby("seed")["u"]:
            axes.hist(u, bins=edges, histtype="step", linewidth=1.5, label=f"seed {seed} (n={u.size})")
        statistic = UNCERTAINTY_STATISTICS[entries()[method].uncertainty_statistic].label
        axes.set(xlabel=statistic, ylabel=f"{QUERY_MODALITY[direction]} per bin")
        axes.legend()
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


def plot_sigma_multiplicity(queries: pd.DataFrame, uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Each probabilistic method's σ statistic of each query against its number of matches in the complete ground
    truth (log scale), Spearman's ρ in the panel's title, off the points; one row per method."""
    chosen = probabilistic_methods(methods)
    rows = sigma_of(queries, dataset, chosen).query("true_matches > 0")
    figure = new_figure(10, 4.4 * max(len(chosen), 1), f"{dataset}: σ against how many items truly match a query")
    missing = f"no {{method}} {{direction}} queries with finite u and true_matches > 0 in queries.parquet for {dataset}"
    for axes, method, direction, here in facets(figure, rows, chosen, MODALITY_TITLES, missing, titled=True, sharey=False):
        for seed, points in here.groupby("seed"):
            axes.scatter(points["true_matches"], points["u"], s=4, alpha=0.25, rasterized=True, label=f"seed {seed}")
        # Medians over log-spaced groups of the match count show the trend through the cloud.
        matches = here["true_matches"].astype(float)
        group = np.digitize(matches, np.unique(np.geomspace(matches.min(), matches.max() + 1, num=12).round()))
        centres, medians = np.exp(np.log(matches).groupby(group).mean()), here["u"].astype(float).groupby(group).median()
        axes.plot(centres, medians, "-o", color="black", label="median")
        statistic = entries()[method].uncertainty_statistic
        lines = spearman_lines(
            select(uncertainty_summary, dataset=dataset, method=method, direction=direction, uncertainty=statistic)
        )
        axes.set_title(MODALITY_TITLES[direction] + lines, fontsize=9 if lines else None)
        xlabel = "true matches in the complete ground truth (log scale)"
        axes.set(xscale="log", xlabel=xlabel, ylabel=UNCERTAINTY_STATISTICS[statistic].label)
        if direction == list(MODALITY_TITLES)[-1]:  # one legend per row, beside its last panel, off the points
            axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    return figure


def plot_sigma_comparison(uncertainty_summary: pd.DataFrame, dataset: str, methods: list[str]):
    """Every probabilistic method side by side on the complete ground truth, each with its own σ statistic: top,
    Spearman of σ with log true matches, raw (whiskers: mean bootstrap interval) and with the query's length held
    fixed; bottom, AUROC of σ and of the score margin for an R@1 failure."""
    chosen = probabilistic_methods(methods)
    rows = select(uncertainty_summary, dataset=dataset, protocol=FULL_PROTOCOL, method=chosen)
    title = f"{dataset}: the probabilistic methods' σ on the complete ground truth (bars: mean; dots: seeds)"
    figure, width = new_figure(max(9, 2.2 * len(chosen) + 6), 7, title), 0.8 / max(len(chosen), 1)
    missing = f"uncertainty_summary.csv has no {FULL_PROTOCOL} {{direction}} rows of {', '.join(chosen)} for {dataset}"
    for axes, row, _, here in facets(figure, rows, COMPARISON, DIRECTIONS, missing, [ylabel for ylabel, *_ in COMPARISON]):
        _, limits, reference, bars = row
        for (k, method), (g, name) in itertools.product(enumerate(chosen), enumerate(bars)):
            x, uncertainty = g + offset(k, len(chosen), width), COMPARED[name][0] or entries()[method].uncertainty_statistic
            legend = f"{label(method)}: {UNCERTAINTY_STATISTICS[uncertainty].label}" if g == 0 and row is COMPARISON[0] else None
            mean = bar_with_seeds(axes, x, here, method, name, uncertainty, width * 0.9, legend)
            if name == "spearman_u_log_matches":
                low, high = (np.nanmean(own_values(here, method, name + end, uncertainty)) for end in vocabulary.INTERVAL_ENDS)
                axes.errorbar(x, mean, [[mean - low], [high - mean]], color="black", capsize=3, linewidth=1)
        axes.axhline(reference, color="gray", linestyle="--" if reference else "-", linewidth=1)
        axes.set(xticks=range(len(bars)), xticklabels=[COMPARED[name][1] for name in bars], ylim=limits)
        if row is COMPARISON[0]:
            axes.legend(fontsize=7, loc="upper right")
    return figure


def plot_training_curves(curves: pd.DataFrame, dataset: str, methods: list[str]):
    """The mean training loss of each epoch, one panel per method (losses differ in scale), one line per seed."""
    methods = trained_methods(methods)
    columns = min(len(methods), 3) or 1
    rows = -(-max(len(methods), 1) // columns)
    figure = new_figure(3.6 * columns, 2.8 * rows, f"{dataset}: training loss per epoch")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid[len(methods) :]:
        axes.set_visible(False)
    for axes, method in zip(grid, methods, strict=False):
        entry, mine = entries()[method], select(curves, dataset=dataset, method=method)
        axes.set_title(entry.label)
        if mine.empty:
            say_no_data(axes, f"no train_log.csv rows of {method} on {dataset}")
            continue
        for (seed, curve), style in zip(mine.groupby("seed"), itertools.cycle(("-o", "--s", ":^", "-.v")), strict=False):
            curve = curve.sort_values("epoch")
            axes.plot(curve["epoch"], curve["loss"], style, markersize=3, color=entry.color, alpha=0.8, label=f"seed {seed}")
            epochs, phases = curve["epoch"].to_numpy(), curve["phase"].to_numpy()
            for epoch in epochs[:-1][phases[1:] != phases[:-1]]:  # the frozen-backbone phase ends here
                axes.axvline(epoch + 0.5, color="gray", linestyle=":", linewidth=1)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set(xlabel="epoch", ylabel="loss")
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


# Every figure, in report order; its inputs are tables of results/ by stem, or the runs' "queries" or "curves".
FIGURES = {
    "retrieval": FigureKind("Retrieval", "R@K and PMRP with 95% confidence intervals", plot_retrieval, ("summary",)),
    "auroc": FigureKind("Uncertainty", "AUROC for predicting an R@1 failure: σ against the score margin", plot_auroc,
                        ("uncertainty_summary",)),
    "uncertainty_bins": FigureKind("Uncertainty", "R@1 per σ bin", plot_uncertainty_bins, ("uncertainty",), sigma=True),
    "sigma_histogram": FigureKind("Uncertainty", "σ per modality", plot_sigma_histogram, ("queries",), sigma=True),
    "sigma_multiplicity": FigureKind("Uncertainty", "σ against the true number of matches", plot_sigma_multiplicity,
                                     ("queries", "uncertainty_summary"), sigma=True, truth=True),
    "sigma_comparison": FigureKind("Uncertainty", "The probabilistic methods' σ, raw and with length held fixed",
                                   plot_sigma_comparison, ("uncertainty_summary",), sigma=True, truth=True),
    "training_curves": FigureKind("Training", "Training loss per epoch", plot_training_curves, ("curves",), trained=True),
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
    from matplotlib.style import context

    stems = sorted({stem for kind in FIGURES.values() for stem in kind.inputs} - {"queries", "curves"})
    inputs = {stem: tables.read_table(Path(results) / f"{stem}.csv", tables.RESULT_TABLES[f"{stem}.csv"]) for stem in stems}
    tables.declare_external(tables.external_methods(tables.read_table(Path(results) / "external.csv", tables.EXTERNAL_COLUMNS)))
    inputs["queries"], inputs["curves"] = load_runs(run_dirs)
    datasets = list(datasets or dict.fromkeys(inputs["queries"]["dataset"]))
    methods, written = known_methods(methods or dict.fromkeys(inputs["queries"]["method"])), []
    with context(STYLE):  # read once for every figure
        for dataset, name in [(d, n) for d in datasets for n in figure_names(d, methods)]:
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
