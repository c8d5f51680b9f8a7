"""One self-contained HTML page of a benchmark's results: tables, figures and the config behind them.

``python -m pcmebench.report --results results --plots results/plots --config-json '<json>' --out results/report/index.html``

templates/report.html.j2 (Jinja2, autoescape) lays out what :class:`Report` selects from the tables of results/
(README there): our numbers beside the published ones, the uncertainty analysis, the training cost, every PNG
under ``--plots`` with its caption (``--captions``/<figure>.rst, through docutils) and the config. Styles are
inline and images are data URIs: the file opens offline and fetches nothing.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
import yaml
from docutils.core import publish_parts
from docutils.writers import html5_polyglot

from corpora import SYNTHETIC_FORMAT
from models.registry import UNCERTAINTY_STATISTICS
from pcmebench import tables
from pcmebench import vocabulary as vocab
from pcmebench.files import atomic_write
from pcmebench.files import code_version as current_code_version
from pcmebench.plots import COMPARED, FIGURES
from pcmebench.tables import entries, is_own_scoring, known_methods, label, probabilistic_methods, scoring_series, select

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The headline table's columns per direction: the primary protocol's, then the complete ground truth's where it exists.
HEADLINE_METRICS = ("R@1", "R@5", "R@10", "R-P", "PMRP")
EXTRA_PROTOCOL_METRICS = (("ECCV", "ECCV mAP@R"), (vocab.FULL_PROTOCOL, "full mAP@R"))
# The uncertainty column's values: the registry's σ statistics, described, and the score-margin baseline.
UNCERTAINTIES = {name: s.description for name, s in UNCERTAINTY_STATISTICS.items()} | {vocab.MARGIN: "the score margin (no σ)"}
# The statistics tables' headers: names broken after an underscore past 8 characters, for narrow columns.
HEADER = {"uncertainty": "σ statistic"} | {name: re.sub(r"(.{8,}?)_", "\\1_\n", name) for name in vocab.SUMMARY_STATISTICS}
SUITE_RECIPE = "naver-ai/pcme"  # the recipe config/paper.yaml follows; other recipes' numbers are labelled as such


@dataclass
class Table:
    """Display cells, each a string or a list of (text, CSS class, tooltip); the first ``labels`` columns align left."""

    frame: pd.DataFrame
    labels: int = 1
    classes: list[str] | None = None


def number(value, digits: int = 1) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}f}"


def duration(seconds: float) -> str:
    if pd.isna(seconds):
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}" if minutes >= 60 else f"{minutes}:{rest:02d}"


def ordered(frame: pd.DataFrame, orders: dict) -> pd.DataFrame:
    """``frame`` sorted by the columns of ``orders``, each in its given order (None: the column's own)."""
    return frame.sort_values(list(orders), key=lambda c: c if orders[c.name] is None else c.map(vocab.rank_in(orders[c.name])))


def interval(low, high, digits: int = 1) -> list[tuple]:
    """A 95% interval as a cell part; none without both bounds."""
    return [] if pd.isna(low) or pd.isna(high) else [(f"[{number(low, digits)}, {number(high, digits)}]", "ci", "")]


def statistic_cells(rows: pd.DataFrame, keys: list[str]) -> pd.Series:
    """uncertainty_summary rows as cells by ``keys`` and statistic: the mean over seeds, the sd over seeds (two or
    more) and the mean bootstrap interval (the rows <statistic><end> of vocabulary.INTERVAL_ENDS)."""
    ends = f"({'|'.join(vocab.INTERVAL_ENDS)})$"
    end = rows["statistic"].str.extract(ends)[0].fillna("value")
    rows = rows.assign(statistic=rows["statistic"].str.replace(ends, "", regex=True), end=end)
    values = rows[rows["end"] == "value"].groupby([*keys, "statistic"])["value"].agg(["mean", "std", "count"])
    bounds = rows[rows["end"] != "value"].groupby([*keys, "statistic", "end"])["value"].mean().unstack("end")
    cells = []
    for mean, std, count, low, high in values.join(bounds.reindex(columns=list(vocab.INTERVAL_ENDS))).itertuples(index=False):
        cell = [(number(mean, 3), "", "")] + ([(f"± {number(std, 3)} (sd, {count} seeds)", "ci", "")] if count > 1 else [])
        cells.append(cell + interval(low, high, 3))
    return pd.Series(cells, index=values.index, dtype=object)


def bin_table(rows: pd.DataFrame, uncertainty: str) -> Table:
    """One group's retrieval per σ bin, mean over seeds: the bin's range of the statistic, its queries, its metrics."""
    values = rows.pivot_table(index="bin", columns="metric", values="value", aggfunc="mean")
    values = values[sorted(values.columns, key=vocab.rank_in(vocab.METRIC_ORDER))]
    edges = rows.groupby("bin")[["u_low", "u_high", "queries"]].mean().loc[values.index]
    bounds = edges[["u_low", "u_high"]].map(number, digits=3)
    ranges = (bounds["u_low"] + " … " + bounds["u_high"]).rename(f"{uncertainty} range")
    queries = edges["queries"].map(lambda q: number(q, 0))
    return Table(pd.concat([ranges, queries, values.map(number)], axis=1).rename(index=str).reset_index())


@functools.cache
def caption(path: Path) -> str:
    """A figure's caption (reStructuredText, workflow/report/<figure>.rst) as an HTML fragment; none without its file."""
    if not path.is_file():
        return ""
    settings = {"file_insertion_enabled": False, "raw_enabled": False, "report_level": 3}
    return publish_parts(path.read_text(), writer=html5_polyglot.Writer(), settings_overrides=settings)["fragment"]


class Report:
    """The tables and figures of one results folder, selected and ordered as the page shows them."""

    def __init__(self, results: Path, plots: Path, config: dict | None, captions: Path | None):
        self.results, self.plots, self.config, self.captions = Path(results), Path(plots), config, captions
        read = {name: tables.read_table(self.results / name, columns) for name, columns in tables.RESULT_TABLES.items()
                if name != "metrics.csv"}  # fmt: skip
        self.summary, self.uncertainty, self.runs = read["summary.csv"], read["uncertainty.csv"], read["runs.csv"]
        self.uncertainty_summary = read["uncertainty_summary.csv"]
        paper = read["paper.csv"].astype({"value": float, "source": str, "recipe": str})
        keys = ["dataset", "method", "protocol", "direction", "metric"]
        self.published = {key: list(rows.itertuples()) for key, rows in paper.groupby(keys, sort=False)}
        self.sources, self.recipes = list(dict.fromkeys(paper["source"])), sorted(set(paper["recipe"]) - {SUITE_RECIPE})
        self.external = read["external.csv"]
        tables.declare_external(tables.external_methods(self.external))
        present = {*self.summary["method"], *self.runs["method"]}
        self.datasets = list(config["datasets"] if config else dict.fromkeys([*self.summary["dataset"], *self.runs["dataset"]]))
        external = [m for m in (config.get("external") or {}) if m in present] if config else []  # with files of these datasets
        self.methods = known_methods([*config["methods"], *external] if config else [m for m in entries() if m in present])
        self.probabilistic = probabilistic_methods(self.methods)

    def paper(self, key: tuple) -> list[tuple]:
        """The published numbers of (dataset, method, protocol, direction, metric) as cell parts, each with its source."""
        parts = []
        for row in self.published.get(key, []):
            recipe = "paper" if row.recipe == SUITE_RECIPE else f"{row.recipe} recipe"
            value = f"{row.value:.1f}" if round(row.value, 1) == row.value else f"{row.value:.2f}"  # as published
            parts.append((f"{recipe} {value} [{self.sources.index(row.source) + 1}]", "paper", row.source))
        return parts

    def page(self) -> dict:
        """What the template shows beside the tables."""
        shown = [entries()[m] for m in self.methods]
        sigma = [f"{e.label}: " + ", ".join(UNCERTAINTIES[s] for s in e.statistics) for e in shown if e.probabilistic]
        files = self.external.astype({"seed": int}).sort_values(["method", "dataset", "seed"], kind="stable")
        return {
            "labels": [label(e.name) for e in shown],
            "notes": " ".join(e.note for e in shown if e.note),
            "external": [
                f"{label(r.method)} on {r.dataset}, seed {r.seed}: {r.file} (SHA-256 {r.sha256[:12]})"
                for r in files.itertuples()
                if r.method in self.methods
            ],
            "seeds": (self.config.get("seeds") or []) if self.config else sorted(set(self.runs["seed"])),
            "sigma": "; ".join(sigma),
            "total": duration(float(self.runs["wall_seconds"].sum())) if len(self.runs) else "—",
            "config": yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True) if self.config else None,
        }

    def figure(self, path: Path) -> dict:
        kind, pdf = FIGURES.get(path.stem), path.with_suffix(".pdf")
        return {
            "id": f"figure-{path.parent.name}-{path.stem}",
            "title": f"{path.parent.name}: {kind.title if kind else path.stem}",
            "data": base64.b64encode(path.read_bytes()).decode("ascii"),
            "files": f"{path}" + (f" · for papers: {pdf}" if pdf.is_file() else ""),
            "caption": caption(self.captions / f"{path.stem}.rst") if self.captions else "",
        }

    def figures_of(self, section: str | None, dataset: str | None = None) -> list[dict]:
        """One dataset's (default: the page's datasets') figures of one section (None: those no section claims)."""
        paths = []
        for name in [dataset] if dataset else self.datasets:
            paths += sorted((self.plots / name).glob("*.png"), key=lambda p: (vocab.rank_in(FIGURES)(p.stem), p.stem))
        return [self.figure(p) for p in paths if getattr(FIGURES.get(p.stem), "section", None) == section]

    def headline(self, dataset: str) -> Table | str:
        """Every method's own scoring (then its other scorings, greyed) against the headline metrics: the mean over
        seeds (bold: the column's best), its interval, and the published number beside the method's own scoring."""
        rows, protocol = select(self.summary, dataset=dataset, method=self.methods), vocab.primary_protocol(dataset)
        if rows.empty:
            return f"summary.csv has no rows for {dataset} and the configured methods."
        metrics = [*((protocol, m) for m in HEADLINE_METRICS), *EXTRA_PROTOCOL_METRICS]
        candidates = [*((p, d, m) for d in vocab.DIRECTIONS for p, m in metrics), (protocol, vocab.BOTH, vocab.RSUM)]
        ours = set(zip(rows["protocol"], rows["direction"], rows["metric"], strict=True))
        columns = [c for c in candidates if c in ours or any((dataset, m, *c) in self.published for m in self.methods)]
        series = scoring_series(rows, self.methods)
        cells = rows.set_index(["method", "scoring", "protocol", "direction", "metric"])[["mean", "ci_low", "ci_high"]]
        values = cells.reindex([(*s, *c) for s in series for c in columns]).to_numpy().reshape(len(series), len(columns), 3)
        best, body = pd.DataFrame(values[:, :, 0]).max(), []
        for (method, scoring), row in zip(series, values, strict=True):
            own, seeds = entries()[method].primary_scoring == scoring, rows.loc[rows["method"] == method, "n"].max()
            body.append([label(method, scoring), scoring, number(seeds, 0)])
            for column, (mean, low, high), top in zip(columns, row, best, strict=True):
                cell = [(number(mean), "best" if mean == top else "", "")] + interval(low, high)
                body[-1].append(cell + (self.paper((dataset, method, *column)) if own else []))
        header = ["method", "scoring", "seeds", *(f"{vocab.DIRECTIONS.get(d, d)}\n{m}\n{p}" for p, d, m in columns)]
        classes = ["" if entries()[m].primary_scoring == s else "secondary" for m, s in series]
        return Table(pd.DataFrame(body, columns=header), labels=2, classes=classes)

    def full_summary(self, dataset: str) -> Table | None:
        """Every summary row of a dataset, the published number beside its own scoring, then the published ones not measured."""
        rows = select(self.summary, dataset=dataset, method=self.methods)
        if rows.empty:
            return None
        rows = rows.assign(other=~is_own_scoring(rows))
        orders = {"protocol": vocab.PROTOCOL_ORDER, "direction": vocab.DIRECTION_ORDER, "metric": vocab.METRIC_ORDER}
        rows = ordered(rows, {**orders, "method": self.methods, "other": None, "scoring": None})
        keys = [(dataset, *key) for key in zip(rows["method"], rows["protocol"], rows["direction"], rows["metric"], strict=True)]
        frame = rows[["protocol", "direction", "metric"]].assign(
            method=rows["method"].map(label), scoring=rows["scoring"], mean=rows["mean"].map(number),
            std=rows["std"].map(number), seeds=rows["n"].map("{:.0f}".format),
            interval=[f"[{number(low)}, {number(high)}]" for low, high in zip(rows["ci_low"], rows["ci_high"], strict=True)],
            paper=[[] if other else self.paper(key) for key, other in zip(keys, rows["other"], strict=True)],
        ).rename(columns={"interval": "95% CI"})  # fmt: skip
        measured = {key for key, other in zip(keys, rows["other"], strict=True) if not other}
        unmeasured = [k for k in self.published if k[0] == dataset and k[1] in self.methods and k not in measured]
        extra = [[p, d, x, label(m), entries()[m].primary_scoring, "—", "—", "0", "", self.paper((dataset, m, p, d, x))]
                 for _, m, p, d, x in unmeasured]  # fmt: skip
        return Table(pd.concat([frame, pd.DataFrame(extra, columns=frame.columns)], ignore_index=True), labels=5)

    def statistics(self, dataset: str) -> tuple[list[tuple[str, Table]] | str, list[tuple[str, str]]]:
        """uncertainty_summary.csv's statistics, a table per direction (rows: protocol, method, scoring, σ); their legend."""
        protocols = vocab.uncertainty_protocols(dataset)
        rows = select(self.uncertainty_summary, dataset=dataset, method=self.methods, protocol=protocols)
        rows = select(rows, uncertainty=list(UNCERTAINTIES))
        scorings = rows["method"].map(lambda m: entries()[m].scorings)
        rank = [s.index(x) if x in s else -1 for s, x in zip(scorings, rows["scoring"], strict=True)]  # 0: the method's own
        rows = rows.assign(rank=rank).query("rank >= 0")
        if rows.empty:
            return f"uncertainty_summary.csv has no {'/'.join(protocols)} rows for {dataset}.", []
        cells = statistic_cells(rows, ["direction", "protocol", "method", "rank", "scoring", "uncertainty"]).unstack("statistic")
        cells, found = cells[sorted(cells.columns, key=vocab.rank_in(vocab.SUMMARY_STATISTICS))], []
        for direction in [d for d in vocab.DIRECTIONS if d in cells.index.get_level_values("direction")]:
            here = cells.xs(direction, level="direction").dropna(axis=1, how="all").reset_index()
            here = ordered(here, {"protocol": protocols, "method": self.methods, "rank": None, "uncertainty": UNCERTAINTIES})
            here = here.assign(method=[label(m, s) for m, s in zip(here["method"], here["scoring"], strict=True)])
            classes = ["secondary" if rank else "" for rank in here.pop("rank")]
            found.append((vocab.DIRECTIONS[direction], Table(here.rename(columns=HEADER).fillna("—"), 4, classes)))
        return found, [(s, vocab.SUMMARY_STATISTICS.get(s, s)) for s in cells.columns] + list(UNCERTAINTIES.items())

    def bins(self, dataset: str) -> list[tuple[str, list[tuple[str, Table]]]]:
        """Each probabilistic method's per-bin retrieval with its own scoring: a table per protocol, statistic and
        direction (and per metric on ECCV, whose ECCV and CxC bins cover other queries)."""
        found = []
        for method in self.probabilistic:
            rows = select(self.uncertainty, dataset=dataset, method=method, scoring=entries()[method].primary_scoring)
            rows = select(rows, direction=list(vocab.DIRECTIONS), uncertainty=list(UNCERTAINTIES))
            protocols = vocab.uncertainty_protocols(dataset) + [p for p in vocab.PCMEPP_PROTOCOLS if p in set(rows["protocol"])]
            rows = select(rows, protocol=protocols)
            groups = rows.groupby(["protocol", "uncertainty", "direction", rows["metric"].where(rows["protocol"] == "ECCV", "")])
            order = [vocab.rank_in(protocols), vocab.rank_in(UNCERTAINTIES), vocab.rank_in(vocab.DIRECTIONS), str]
            groups = sorted(groups, key=lambda group: [rank(k) for rank, k in zip(order, group[0], strict=True)])
            parts = [(f"{p} protocol, {vocab.DIRECTIONS[d]}, bins of {u}", bin_table(group, u)) for (p, u, d, _), group in groups]
            found += [(label(method), parts)] if parts else []
        return found

    def sigma_comparison(self, dataset: str) -> Table | str | None:
        """Every probabilistic method's σ statistics side by side on the complete ground truth (synthetic data)."""
        if dataset not in SYNTHETIC_FORMAT or not self.probabilistic:
            return None
        rows = select(self.uncertainty_summary, dataset=dataset, protocol=vocab.FULL_PROTOCOL, method=self.probabilistic)
        if rows.empty:
            return f"uncertainty_summary.csv has no {vocab.FULL_PROTOCOL} rows of {', '.join(self.probabilistic)} for {dataset}."
        cells, body = statistic_cells(rows[is_own_scoring(rows)], ["method", "uncertainty", "direction"]), []
        for method in self.probabilistic:
            for uncertainty, direction in itertools.product(entries()[method].statistics, vocab.DIRECTIONS):
                keys = [(method, fixed or uncertainty, direction, s) for s, (fixed, *_) in COMPARED.items()]
                row = [label(method), UNCERTAINTIES[uncertainty], vocab.QUERY_MODALITY[direction]]
                body.append(row + [cells.get(key, "—") for key in keys])
        return Table(
            pd.DataFrame(body, columns=["method", "σ statistic", "queries", *(header for *_, header in COMPARED.values())]),
            labels=3,
        )

    def training(self) -> Table:
        """Every run's cost and provenance (runs.csv)."""
        runs = ordered(self.runs, {"dataset": self.datasets, "method": self.methods, "seed": None})
        text, millions = runs.astype(str), "{:.2f} M".format
        frame = text[["dataset", "method", "seed", "device", "epochs"]].assign(
            method=runs["method"].map(lambda m: entries()[m].label if m in entries() else m),
            wall=runs["wall_seconds"].map(duration), speed=runs["samples_per_second"].map(number),
            parameters=(runs["parameters"] / 1e6).map(millions), trainable=(runs["trainable_parameters"] / 1e6).map(millions),
            loss=runs["final_loss"].map(lambda v: number(v, 4)), hash=[[(h, "code", "")] for h in text["config_hash"]],
            code=[[(v, "code", "")] for v in text["code_version"]],
        )  # fmt: skip
        names = {"wall": "wall time", "speed": "samples/s", "loss": "final loss", "hash": "config hash"}
        return Table(frame.rename(columns=names), labels=4)


def write_report(
    results, plots, out, config=None, captions=None, generated: str | None = None, code_version: str | None = None
) -> Path:
    """Render the page and write it to ``out``; ``generated`` defaults to now (UTC), ``code_version`` to git's."""
    report = Report(Path(results), Path(plots), config, Path(captions) if captions else None)
    loader, undefined = jinja2.FileSystemLoader(TEMPLATES), jinja2.StrictUndefined
    environment = jinja2.Environment(loader=loader, undefined=undefined, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.policies["urlize.rel"] = ""  # plain links, followed only on a click
    code_version = current_code_version() if code_version is None else code_version
    generated = generated or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    shown = {"suite": SUITE_RECIPE, "primary": vocab.primary_protocol, "generated": generated, "code_version": code_version}
    page = environment.get_template("report.html.j2").render(r=report, page=report.page(), **shown)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out), lambda path: path.write_text(page, encoding="utf-8"))
    return Path(out)


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
        config = json.loads(args.config_json) if args.config_json else None
        if args.config_file:
            config = yaml.safe_load(Path(args.config_file).read_text())
        out = write_report(args.results, args.plots, args.out, config, args.captions)
    except (tables.ResultsError, json.JSONDecodeError, yaml.YAMLError, OSError) as error:
        sys.exit(f"pcmebench.report: {error}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
