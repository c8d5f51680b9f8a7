"""One self-contained HTML page of a benchmark's results: tables, figures and the config behind them.

``python -m pcmebench.report --results results --plots results/plots --config-json '<json>' --out results/report/index.html``

The page holds the headline table (methods x metrics per dataset: mean over seeds, 95% bootstrap
interval, and the published number beside ours where ``paper.csv`` has one), the uncertainty
analysis (``uncertainty_summary.csv``, ``uncertainty.csv`` and the σ figures), the training cost
(``runs.csv``), every PNG under ``--plots`` and the config that produced them. Styles are inline
and images are data URIs: the file opens offline and fetches nothing. Every text from a table or
the config is HTML-escaped.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import itertools
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

from corpora import SYNTHETIC_FORMAT
from models.registry import UNCERTAINTY_STATISTICS
from pcmebench.aggregate import PAPER_COLUMNS, RUN_RECORD_KEYS, SUMMARY_COLUMNS, UNCERTAINTY_COLUMNS, UNCERTAINTY_SUMMARY_COLUMNS
from pcmebench.files import atomic_write
from pcmebench.files import code_version as current_code_version
from pcmebench.plots import (
    DIRECTIONS,
    FIGURES,
    FULL_PROTOCOL,
    MARGIN,
    METHOD_LABELS,
    METHODS,
    PRIMARY_SCORING,
    QUERY_MODALITY,
    REGISTRY,
    ResultsError,
    method_series,
    primary_protocol,
    probabilistic_methods,
    read_table,
    series_label,
    uncertainty_protocols,
)
from pcmebench.vocabulary import PCMEPP_PROTOCOLS

URL = re.compile(r"https?://[^\s)\]>\"']+")
# The headline table's columns per direction, at the dataset's primary protocol, then the
# complete-ground-truth protocols where they exist (ECCV Caption on COCO, the synthetic truth).
HEADLINE_METRICS = ("R@1", "R@5", "R@10", "R-P", "PMRP")
EXTRA_PROTOCOL_METRICS = (("ECCV", "ECCV mAP@R"), ("full", "full mAP@R"))
STATISTICS = {
    "auroc_u": "AUROC of the row's σ statistic predicting an R@1 failure",
    "auroc_margin": "AUROC of the negative top-1 minus top-2 score margin predicting an R@1 failure",
    "spearman_u_rank": "Spearman correlation of the σ statistic with the rank of the first correct item",
    "pearson_bin_r1": "Pearson correlation of σ-bin index with the bin's R@1",
    "spearman_u_log_matches": (
        "Spearman correlation of the σ statistic with log(true number of matches), synthetic data only; "
        "below it, its 95% bootstrap interval over queries (mean over seeds of each seed's bounds)"
    ),
    "partial_spearman_u_log_matches": (
        "the same with the query's length held fixed (partial rank correlation given a caption's word count, "
        "an image's number of instance categories): the control for length, which alone predicts ambiguity"
    ),
    "within_length_spearman_u_log_matches": (
        "the same within each length of at least 50 queries, averaged weighted by their queries"
    ),
}
# The σ comparison's columns (Report.sigma_comparison_table), short.
COMPARED = ("spearman_u_log_matches", "partial_spearman_u_log_matches", "within_length_spearman_u_log_matches")
COMPARED_LABELS = {
    "spearman_u_log_matches": "ρ(σ, log true matches) [95% interval]",
    "partial_spearman_u_log_matches": "partial ρ, length fixed",
    "within_length_spearman_u_log_matches": "ρ within each length",
    "auroc_u": "AUROC of σ (R@1 failure)",
    "auroc_margin": "AUROC of the score margin",
}
# Statistics with a bootstrap interval carry it in two more rows, <statistic>_ci_low and _ci_high.
INTERVAL_SUFFIXES = ("_ci_low", "_ci_high")
# The uncertainty column's values: the registry's statistics (models/registry.py), described, and
# the score-margin baseline.
UNCERTAINTIES = {name: statistic.description for name, statistic in UNCERTAINTY_STATISTICS.items()} | {
    MARGIN: "the score margin (no σ)"
}
# Display order of the collapsed full table (results/README.md lists these names); others go last.
PROTOCOL_ORDER = ("1K", "5K", "CUB", "ECCV", "full")
DIRECTION_ORDER = ("i2t", "t2i", "both")
METRIC_ORDER = (
    "R@1", "R@5", "R@10", "RSUM", "R-P", "mAP@R", "PMRP", "PMRP@0", "PMRP@1", "PMRP@2",
    "ECCV mAP@R", "ECCV R-P", "ECCV R@1", "CxC R@1", "full mAP@R", "full R-P", "full R@1",
)  # fmt: skip

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1400px;
padding:0 24px 48px;color:#1d1d1f}
h1{margin:24px 0 4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:40px}h3{margin-top:28px}
.meta,.note{color:#555}.note{font-size:13px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f4f4f6}td.label,th.label{text-align:left;white-space:nowrap}
tr.secondary td{color:#666;background:#fafafa}
.ci{display:block;color:#666;font-size:11px}.paper{display:block;color:#8a4b00;font-size:11px}
.best{font-weight:700}
figure{margin:12px 0 28px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#333;max-width:1000px}.files{display:block;color:#777;font-size:12px}
pre{background:#f6f8fa;padding:12px;overflow:auto;font-size:12px;border:1px solid #eee}
details{margin:8px 0 16px}summary{cursor:pointer;color:#0550ae}
nav a{margin-right:14px}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def number(value, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def published(value: float) -> str:
    """A published number with the precision it was published with (up to two decimals)."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:.2f}"


# The recipe config/paper.yaml follows; published numbers from another recipe are labelled as such.
SUITE_RECIPE = "naver-ai/pcme"


class PaperNumbers:
    """Published numbers by (dataset, method, protocol, direction, metric), with numbered sources and their recipe."""

    def __init__(self, paper: pd.DataFrame):
        self.values: dict[tuple, list[tuple[float, str, str]]] = {}
        for row in paper.itertuples(index=False):
            key = (row.dataset, row.method, row.protocol, row.direction, row.metric)
            self.values.setdefault(key, []).append((float(row.value), str(row.source), str(row.recipe)))
        self.sources: list[str] = list(dict.fromkeys(source for entries in self.values.values() for _, source, _ in entries))
        self.other_recipes = sorted({recipe for entries in self.values.values() for *_, recipe in entries} - {SUITE_RECIPE})

    def get(self, key: tuple) -> list[tuple[float, str, str]]:
        return self.values.get(key, [])

    def html(self, key: tuple) -> str:
        return "".join(
            f'<span class="paper" title="{esc(source)}">{self.label(recipe)} {published(value)} [{self.sources.index(source) + 1}]</span>'
            for value, source, recipe in self.get(key)
        )

    @staticmethod
    def label(recipe: str) -> str:
        return "paper" if recipe == SUITE_RECIPE else f"{esc(recipe)} recipe"

    def references(self) -> str:
        if not self.sources:
            return ""
        items = "".join(f"<li>{link_or_text(source)}</li>" for source in self.sources)
        others = "".join(
            f'<p class="note"><em>{esc(recipe)} recipe</em>: trained with {esc(recipe)}\'s own code and training recipe, '
            f"not this suite's shared stack and {esc(SUITE_RECIPE)} recipe: a reference point, not a target for our runs.</p>"
            for recipe in self.other_recipes
        )
        return f'<p class="note">Published numbers (in brown) come from:</p><ol class="note">{items}</ol>{others}'


def link_or_text(text: str) -> str:
    """Escaped text whose http(s) URLs are hyperlinks (followed only on a click, never fetched)."""
    parts, last = [], 0
    for match in URL.finditer(text):
        parts += [esc(text[last : match.start()]), f'<a href="{esc(match.group())}">{esc(match.group())}</a>']
        last = match.end()
    return "".join(parts) + esc(text[last:])


def table_html(header: list[str], rows: list[list[str]], label_columns: int = 1, row_classes: list[str] | None = None) -> str:
    """A table from cells that are already HTML; the first ``label_columns`` columns align left."""
    head = "".join(f'<th class="label">{h}</th>' if i < label_columns else f"<th>{h}</th>" for i, h in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        cells = "".join(f'<td class="label">{c}</td>' if i < label_columns else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Report:
    """The tables of one results folder, rendered section by section."""

    def __init__(self, results: Path, plots: Path, config: dict | None, captions: Path | None):
        self.results, self.plots, self.config, self.captions = Path(results), Path(plots), config, captions
        self.summary = read_table(self.results / "summary.csv", SUMMARY_COLUMNS)
        self.uncertainty = read_table(self.results / "uncertainty.csv", UNCERTAINTY_COLUMNS)
        self.uncertainty_summary = read_table(self.results / "uncertainty_summary.csv", UNCERTAINTY_SUMMARY_COLUMNS)
        self.runs = read_table(self.results / "runs.csv", RUN_RECORD_KEYS)
        self.paper = PaperNumbers(read_table(self.results / "paper.csv", PAPER_COLUMNS))
        present = list(dict.fromkeys([*self.summary["dataset"], *self.runs["dataset"]]))
        self.datasets = list(config["datasets"]) if config else present
        named = (
            list(config["methods"])
            if config
            else [m for m in METHODS if m in set(self.summary["method"]) | set(self.runs["method"])]
        )
        unknown = sorted(set(named) - set(METHODS))
        if unknown:
            raise ResultsError(
                f"unknown method(s) {', '.join(unknown)}: no file in models/ declares them; registered: {', '.join(METHODS)}"
            )
        self.methods = named
        self.figures = self.find_figures()

    # --- figures ---------------------------------------------------------------------------

    def find_figures(self) -> dict[str, list[Path]]:
        """Every PNG under the plots folder, by dataset folder, in the order figures are defined."""
        order = list(FIGURES)
        found: dict[str, list[Path]] = {}
        for path in sorted(self.plots.glob("*/*.png")):
            found.setdefault(path.parent.name, []).append(path)
        for paths in found.values():
            paths.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.stem))
        return found

    def caption(self, name: str) -> str:
        """The figure's caption from the workflow's report captions (shared with Snakemake's report)."""
        if self.captions is None or not (self.captions / f"{name}.rst").is_file():
            return ""
        paragraphs = [p.strip() for p in (self.captions / f"{name}.rst").read_text().split("\n\n") if p.strip()]
        return "".join(f"<p>{esc(' '.join(p.split()))}</p>" for p in paragraphs)

    def figure(self, path: Path) -> str:
        kind = FIGURES.get(path.stem)
        title = f"{path.parent.name}: {kind.title if kind else path.stem}"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        pdf = path.with_suffix(".pdf")
        files = f"{path}" + (f" · for papers: {pdf}" if pdf.is_file() else "")
        return (
            f'<figure id="figure-{esc(path.parent.name)}-{esc(path.stem)}"><img alt="{esc(title)}" src="data:image/png;base64,{data}">'
            f'<figcaption><strong>{esc(title)}.</strong>{self.caption(path.stem)}<span class="files">{esc(files)}</span></figcaption></figure>'
        )

    def figures_of(self, dataset: str, section: str) -> str:
        return "".join(
            self.figure(p)
            for p in self.figures.get(dataset, [])
            if (FIGURES[p.stem].section if p.stem in FIGURES else None) == section
        )

    # --- sections --------------------------------------------------------------------------

    def headline_columns(self, dataset: str, rows: pd.DataFrame) -> list[tuple[str, str, str]]:
        protocol = primary_protocol(dataset)
        candidates = []
        for direction in DIRECTIONS:
            candidates += [(protocol, direction, metric) for metric in HEADLINE_METRICS]
            candidates += [(extra, direction, metric) for extra, metric in EXTRA_PROTOCOL_METRICS]
        candidates.append((protocol, "both", "RSUM"))
        ours = set(zip(rows["protocol"], rows["direction"], rows["metric"], strict=True))
        return [c for c in candidates if c in ours or any(self.paper.get((dataset, m, *c)) for m in self.methods)]

    def headline(self, dataset: str) -> str:
        rows = self.summary[(self.summary["dataset"] == dataset) & self.summary["method"].isin(self.methods)]
        if rows.empty:
            return f"<p>summary.csv has no rows for {esc(dataset)} and the configured methods.</p>"
        columns = self.headline_columns(dataset, rows)
        cells = rows.set_index(["method", "scoring", "protocol", "direction", "metric"])
        series = method_series(self.methods, set(zip(rows["method"], rows["scoring"], strict=True)))
        means = {
            column: [cells["mean"].get((m, s, *column), math.nan) for m, s, _ in series]
            for column in columns
        }  # fmt: skip
        best = {column: max((v for v in values if not math.isnan(v)), default=math.nan) for column, values in means.items()}
        body, classes = [], []
        for index, (method, scoring, primary) in enumerate(series):
            n = cells["n"][cells.index.get_level_values(0) == method].max() if method in set(rows["method"]) else math.nan
            row = [esc(series_label(method, scoring, primary)), esc(scoring), number(n, 0)]
            for column in columns:
                key = (method, scoring, *column)
                mean = means[column][index]
                mark = ' class="best"' if not math.isnan(mean) and mean == best[column] else ""
                text = f"<span{mark}>{number(mean)}</span>"
                if key in cells.index:
                    low, high = cells.at[key, "ci_low"], cells.at[key, "ci_high"]
                    if not (math.isnan(low) or math.isnan(high)):
                        text += f'<span class="ci">[{number(low)}, {number(high)}]</span>'
                if primary:
                    text += self.paper.html((dataset, method, *column))
                row.append(text)
            body.append(row)
            classes.append("" if primary else "secondary")
        header = ["method", "scoring", "seeds"] + [
            f"{esc(DIRECTIONS.get(d, d))}<br>{esc(m)}<br><small>{esc(p)}</small>" for p, d, m in columns
        ]
        return table_html(header, body, label_columns=2, row_classes=classes)

    def full_summary(self, dataset: str) -> str:
        """Every summary row of a dataset, with the published number beside its primary scoring."""
        rows = self.summary[(self.summary["dataset"] == dataset) & self.summary["method"].isin(self.methods)]
        if rows.empty:
            return ""
        orders = {"protocol": PROTOCOL_ORDER, "direction": DIRECTION_ORDER, "metric": METRIC_ORDER, "method": self.methods}
        rows = rows.assign(primary=rows["scoring"] != rows["method"].map(PRIMARY_SCORING)).sort_values(
            ["protocol", "direction", "metric", "method", "primary", "scoring"],
            key=lambda column: column.map(rank_in(orders[column.name])) if column.name in orders else column,
        )
        body = []
        seen = set()
        for row in rows.itertuples(index=False):
            key = (dataset, row.method, row.protocol, row.direction, row.metric)
            primary = PRIMARY_SCORING.get(row.method) == row.scoring
            if primary:
                seen.add(key)
            body.append(
                [esc(row.protocol), esc(row.direction), esc(row.metric), esc(METHOD_LABELS.get(row.method, row.method)), esc(row.scoring),
                 number(row.mean), number(row.std), number(row.n, 0), f"[{number(row.ci_low)}, {number(row.ci_high)}]",
                 self.paper.html(key) if primary else ""]
            )  # fmt: skip
        for key in self.paper.values:
            if key[0] == dataset and key[1] in self.methods and key not in seen:  # a published number we did not measure
                _, method, protocol, direction, metric = key
                body.append(
                    [esc(protocol), esc(direction), esc(metric), esc(METHOD_LABELS.get(method, method)), esc(PRIMARY_SCORING.get(method, "")),
                     "—", "—", "0", "", self.paper.html(key)]
                )  # fmt: skip
        header = ["protocol", "direction", "metric", "method", "scoring", "mean", "std", "seeds", "95% CI", "paper"]
        table = table_html(header, body, label_columns=5)
        return f"<details><summary>All {len(body)} rows of summary.csv for {esc(dataset)}</summary>{table}</details>"

    def retrieval_section(self) -> str:
        notes = " ".join(REGISTRY[m].note for m in self.methods if REGISTRY[m].note)
        parts = [
            '<h2 id="retrieval">Retrieval</h2>',
            (
                '<p class="note">Mean over seeds in percent; below it the 95% bootstrap confidence interval (queries '
                "resampled, combined over seeds); in brown the published number where one exists. Bold: the highest mean "
                "of a column (overlapping intervals mean the difference may not be real). Grey rows: a method's other "
                f"scorings; each method's own row ranks by its own scoring. {esc(notes)}</p>"
            ),
        ]
        for dataset in self.datasets:
            parts.append(
                f'<h3 id="retrieval-{esc(dataset)}">{esc(dataset)} <small>({esc(primary_protocol(dataset))} protocol)</small></h3>'
            )
            parts += [self.headline(dataset), self.full_summary(dataset), self.figures_of(dataset, "Retrieval")]
        parts.append(self.paper.references())
        return "".join(parts)

    def statistics_table(self, dataset: str) -> str:
        protocols = uncertainty_protocols(dataset)
        table = self.uncertainty_summary
        rows = table[(table["dataset"] == dataset) & table["protocol"].isin(protocols) & table["method"].isin(self.methods)]
        if rows.empty:
            return f"<p>uncertainty_summary.csv has no {esc('/'.join(protocols))} rows for {esc(dataset)}.</p>"
        intervals = rows[rows["statistic"].str.endswith(INTERVAL_SUFFIXES)]
        rows = rows[~rows["statistic"].str.endswith(INTERVAL_SUFFIXES)]
        bounds = intervals.groupby(["protocol", "method", "scoring", "uncertainty", "direction", "statistic"])["value"].mean()
        stats = [s for s in STATISTICS if s in set(rows["statistic"])] + sorted(set(rows["statistic"]) - set(STATISTICS))
        columns = [
            (d, s) for d in DIRECTIONS for s in stats if not rows[(rows["direction"] == d) & (rows["statistic"] == s)].empty
        ]
        grouped = rows.groupby(["protocol", "method", "scoring", "uncertainty", "direction", "statistic"])["value"].agg(
            ["mean", "std", "count"]
        )
        body, classes = [], []
        for protocol in protocols:
            here = rows[rows["protocol"] == protocol]
            for method, scoring, primary in method_series(self.methods, set(zip(here["method"], here["scoring"], strict=True))):
                mine = here[(here["method"] == method) & (here["scoring"] == scoring)]
                for uncertainty in [u for u in UNCERTAINTIES if u in set(mine["uncertainty"])]:
                    row = [esc(protocol), esc(series_label(method, scoring, primary)), esc(scoring), esc(uncertainty)]
                    for direction, statistic in columns:
                        key = (protocol, method, scoring, uncertainty, direction, statistic)
                        if key not in grouped.index:
                            row.append("—")
                            continue
                        mean, std, count = grouped.loc[key]
                        spread = f'<span class="ci">± {number(std, 3)} (sd over {int(count)} seeds)</span>' if count > 1 else ""
                        low, high = (bounds.get((*key[:-1], f"{statistic}{end}")) for end in INTERVAL_SUFFIXES)
                        if low is not None and high is not None:
                            spread += f'<span class="ci">[{number(low, 3)}, {number(high, 3)}]</span>'
                        row.append(number(mean, 3) + spread)
                    body.append(row)
                    classes.append("" if primary else "secondary")
        header = ["protocol", "method", "scoring", "σ statistic"] + [f"{esc(DIRECTIONS[d])}<br>{esc(s)}" for d, s in columns]
        legend = "".join(f"<li><code>{esc(s)}</code>: {esc(STATISTICS.get(s, s))}</li>" for s in stats)
        legend += "".join(f"<li><code>{esc(u)}</code>: {esc(text)}</li>" for u, text in UNCERTAINTIES.items())
        return table_html(header, body, label_columns=4, row_classes=classes) + f'<ul class="note">{legend}</ul>'

    def bins_table(self, dataset: str, method: str) -> str:
        """A probabilistic method's per-bin retrieval with its own scoring, mean over seeds, in a
        collapsed table beside the bin figure."""
        table = self.uncertainty
        rows = table[(table["dataset"] == dataset) & (table["method"] == method) & (table["scoring"] == PRIMARY_SCORING[method])]
        parts = []
        protocols = uncertainty_protocols(dataset) + [p for p in PCMEPP_PROTOCOLS if p in set(rows["protocol"])]
        for protocol, uncertainty in itertools.product(protocols, UNCERTAINTIES):
            for direction, label in DIRECTIONS.items():
                here = rows[
                    (rows["protocol"] == protocol) & (rows["direction"] == direction) & (rows["uncertainty"] == uncertainty)
                ]
                for metrics in (
                    [[m] for m in sorted(set(here["metric"]))] if protocol == "ECCV" else [sorted(set(here["metric"]))]
                ):
                    mine = here[here["metric"].isin(metrics)]  # ECCV's and CxC's bins cover different queries
                    if mine.empty:
                        continue
                    values = mine.pivot_table(index="bin", columns="metric", values="value", aggfunc="mean")
                    values = values[sorted(values.columns, key=rank_in(METRIC_ORDER))]
                    edges = mine.groupby("bin")[["u_low", "u_high", "queries"]].mean()
                    body = [
                        [
                            esc(b),
                            f"{number(edges.at[b, 'u_low'], 3)} … {number(edges.at[b, 'u_high'], 3)}",
                            number(edges.at[b, "queries"], 0),
                        ]
                        + [number(values.at[b, m]) for m in values.columns]
                        for b in values.index
                    ]
                    header = ["bin", f"{esc(uncertainty)} range", "queries", *map(esc, values.columns)]
                    title = f"{esc(protocol)} protocol, {esc(label)}, bins of {esc(uncertainty)}"
                    parts.append(f"<h4>{title}</h4>" + table_html(header, body))
        if not parts:
            return ""
        label = esc(METHOD_LABELS[method])
        return f"<details><summary>{label} per-bin values for {esc(dataset)} (bin 0 = most certain; mean over seeds)</summary>{''.join(parts)}</details>"

    def sigma_comparison_table(self, dataset: str) -> str:
        """Every probabilistic method's σ statistics side by side on the complete ground truth (synthetic
        data): the correlation with log true matches, its two length controls, and AUROC beside the
        score margin's; mean over seeds, sd over seeds and the mean bootstrap interval below."""
        chosen = probabilistic_methods(self.methods)
        if dataset not in SYNTHETIC_FORMAT or not chosen:
            return ""
        table = self.uncertainty_summary
        rows = table[(table["dataset"] == dataset) & (table["protocol"] == FULL_PROTOCOL) & table["method"].isin(chosen)]
        if rows.empty:
            return f"<p>uncertainty_summary.csv has no {FULL_PROTOCOL} rows of {esc(', '.join(chosen))} for {esc(dataset)}.</p>"
        grouped = rows.groupby(["method", "scoring", "uncertainty", "direction", "statistic"])["value"].agg(
            ["mean", "std", "count"]
        )
        columns = [*COMPARED, "auroc_u", "auroc_margin"]
        body = []
        for method in chosen:
            scoring = PRIMARY_SCORING[method]
            for uncertainty, direction in itertools.product(REGISTRY[method].statistics, DIRECTIONS):
                row = [esc(METHOD_LABELS[method]), esc(UNCERTAINTIES[uncertainty]), esc(QUERY_MODALITY[direction])]
                for statistic in columns:
                    key = (method, scoring, MARGIN if statistic == "auroc_margin" else uncertainty, direction, statistic)
                    if key not in grouped.index:
                        row.append("—")
                        continue
                    mean, std, count = grouped.loc[key]
                    cell = number(mean, 3)
                    if count > 1:
                        cell += f'<span class="ci">± {number(std, 3)} (sd, {int(count)} seeds)</span>'
                    bounds = [grouped["mean"].get((*key[:-1], f"{statistic}{end}")) for end in INTERVAL_SUFFIXES]
                    if None not in bounds:
                        cell += f'<span class="ci">[{number(bounds[0], 3)}, {number(bounds[1], 3)}]</span>'
                    row.append(cell)
                body.append(row)
        header = ["method", "σ statistic", "queries", *(esc(COMPARED_LABELS[s]) for s in columns)]
        note = (
            "The probabilistic methods compared on the complete ground truth (protocol <code>full</code>), each with its "
            "own scoring: does σ grow with a query's true number of matches once the query's length is held fixed, and "
            "does it foresee an R@1 failure better than the score margin?"
        )
        return f'<h4>σ compared across the probabilistic methods</h4><p class="note">{note}</p>' + table_html(
            header, body, label_columns=3
        )

    def uncertainty_section(self) -> str:
        probabilistic = probabilistic_methods(self.methods)
        statistics = "; ".join(
            f"{METHOD_LABELS[m]}: " + ", ".join(UNCERTAINTIES[s] for s in REGISTRY[m].statistics) for m in probabilistic
        )
        parts = [
            '<h2 id="uncertainty">Uncertainty</h2>',
            (
                "<p class=\"note\">Does a query's predicted uncertainty (the probabilistic methods' σ statistics, "
                f"{esc(statistics or 'none configured')}) tell in advance that retrieval will fail? Compared with the "
                "score margin (top-1 minus top-2), a signal every method has. "
                "AUROC 0.5 is chance. Mean over seeds at each dataset's primary protocol and, on synthetic data, on the "
                "complete ground truth (<code>full</code>).</p>"
            ),
        ]
        for dataset in self.datasets:
            parts.append(f'<h3 id="uncertainty-{esc(dataset)}">{esc(dataset)}</h3>')
            parts.append(self.sigma_comparison_table(dataset))
            parts.append(self.statistics_table(dataset))
            parts += [self.bins_table(dataset, method) for method in probabilistic]
            parts.append(self.figures_of(dataset, "Uncertainty"))
        return "".join(parts)

    def training_section(self) -> str:
        parts = ['<h2 id="training">Training cost</h2>']
        orders = {"dataset": self.datasets, "method": self.methods}
        runs = self.runs.sort_values(
            ["dataset", "method", "seed"],
            key=lambda column: column.map(rank_in(orders[column.name])) if column.name in orders else column,
        )
        body = [
            [esc(r.dataset), esc(METHOD_LABELS.get(r.method, r.method)), esc(r.seed), esc(r.device), esc(r.epochs), duration(r.wall_seconds),
             number(r.samples_per_second, 1), millions(r.parameters), millions(r.trainable_parameters), number(r.final_loss, 4),
             f"<code>{esc(r.config_hash)}</code>", f"<code>{esc(r.code_version)}</code>"]
            for r in runs.itertuples(index=False)
        ]  # fmt: skip
        header = [
            "dataset", "method", "seed", "device", "epochs", "wall time", "samples/s", "parameters", "trainable", "final loss", "config hash", "code",
        ]  # fmt: skip
        total = duration(float(self.runs["wall_seconds"].sum())) if len(self.runs) else "—"
        parts.append(
            f'<p class="note">{len(self.runs)} training runs, {total} of training in all (wall time of the training loop).</p>'
        )
        parts.append(table_html(header, body, label_columns=4))
        for dataset in self.datasets:
            parts.append(self.figures_of(dataset, "Training"))
        return "".join(parts)

    def other_figures(self) -> str:
        """Figures of the page's datasets that no section claims (a figure folder left from other
        datasets is not shown: the page describes one config)."""
        unplaced = [p for d in self.datasets for p in self.figures.get(d, []) if p.stem not in FIGURES]
        if not unplaced:
            return ""
        return '<h2 id="other-figures">Other figures</h2>' + "".join(self.figure(p) for p in unplaced)

    def config_section(self) -> str:
        if self.config is None:
            return '<h2 id="config">Config</h2><p>No config was given to the report.</p>'
        text = yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True, default_flow_style=False)
        return f'<h2 id="config">Config</h2><p class="note">The validated config of the workflow run.</p><pre>{esc(text)}</pre>'

    def render(self, generated: str, code_version: str) -> str:
        seeds = self.config.get("seeds") if self.config else sorted(set(self.runs["seed"]))
        nav = "".join(
            f'<a href="#{anchor}">{label}</a>'
            for anchor, label in (
                ("retrieval", "Retrieval"),
                ("uncertainty", "Uncertainty"),
                ("training", "Training cost"),
                ("config", "Config"),
            )
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>pcme-bench report</title><style>{STYLE}</style></head><body>"
            "<h1>pcme-bench results</h1>"
            f'<p class="meta">Datasets {esc(", ".join(self.datasets))} · methods {esc(", ".join(METHOD_LABELS.get(m, m) for m in self.methods))}'
            f" · seeds {esc(', '.join(map(str, seeds or [])))}<br>Generated {esc(generated)} by pcme-bench {esc(code_version)}"
            f" from {esc(self.results)}</p><nav>{nav}</nav>"
            f"{self.retrieval_section()}{self.uncertainty_section()}{self.training_section()}{self.other_figures()}{self.config_section()}"
            "</body></html>\n"
        )


def rank_in(order) -> callable:
    """A sort key: the position of a name in ``order``, names not in it after every name that is."""
    order = list(order)
    return lambda name: order.index(name) if name in order else len(order)


def millions(count) -> str:
    return f"{float(count) / 1e6:.2f} M"


def duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def write_report(
    results, plots, out, config: dict | None = None, captions=None, generated: str | None = None, code_version: str | None = None
) -> Path:
    """Render the page and write it to ``out``; ``generated`` defaults to now (UTC), ``code_version`` to git's."""
    report = Report(Path(results), Path(plots), config, Path(captions) if captions else None)
    if code_version is None:
        code_version = current_code_version()
    generated = generated or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    page = report.render(generated, code_version)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda path: path.write_text(page, encoding="utf-8"))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="folder with summary.csv, uncertainty*.csv, runs.csv, paper.csv")
    parser.add_argument("--plots", required=True, help="folder with <dataset>/<figure>.png (and .pdf)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config-json", help="the workflow's validated config as JSON text")
    source.add_argument("--config-file", help="a YAML (or JSON) config file to show")
    parser.add_argument("--captions", help="folder of <figure>.rst captions (workflow/report)")
    args = parser.parse_args(argv)
    try:
        if args.config_json:
            config = json.loads(args.config_json)
        elif args.config_file:
            config = yaml.safe_load(Path(args.config_file).read_text())
        else:
            config = None
        out = write_report(args.results, args.plots, args.out, config, args.captions)
    except (ResultsError, json.JSONDecodeError, yaml.YAMLError, OSError) as error:
        sys.exit(f"pcmebench.report: {error}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
