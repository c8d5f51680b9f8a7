"""The HTML report: self-contained, every figure embedded, our numbers beside the published ones, text escaped."""

from __future__ import annotations

import base64
import html
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from PIL import Image

from models.registry import registered
from pcmebench.plots import figure_files
from pcmebench.report import UNCERTAINTIES, main, write_report
from pcmebench.tables import ResultsError
from tests.test_plots import DATASETS, METHODS, PROBABILISTIC, SEEDS, register_twin, write_fake_results

REGISTRY = registered()
METHOD_LABELS = {name: m.label for name, m in REGISTRY.items()}
CONFIG = {"datasets": list(DATASETS), "methods": list(METHODS), "seeds": list(SEEDS), "work_dir": "work"}


class Resources(HTMLParser):
    """Every start tag with its attributes: what the page would load."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(page: str) -> list[tuple[str, dict]]:
    parser = Resources()
    parser.feed(page)
    return parser.tags


def write_fake_figures(plots: Path) -> list[Path]:
    """A small distinct PNG (and a PDF stand-in) for every planned figure: the report only embeds them."""
    pngs = []
    for index, path in enumerate(map(Path, figure_files(plots, list(DATASETS), list(METHODS)))):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".png":
            buffer = io.BytesIO()
            Image.new("RGB", (8, 6), (index * 7 % 256, 40, 90)).save(buffer, format="PNG")
            path.write_bytes(buffer.getvalue())
            pngs.append(path)
        else:
            path.write_bytes(b"%PDF-1.4 stand-in")
    return pngs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    results, _ = write_fake_results(root)
    pngs = write_fake_figures(root / "plots")
    return {"root": root, "results": results, "plots": root / "plots", "pngs": pngs}


@pytest.fixture(scope="module")
def page(inputs) -> str:
    out = write_report(
        inputs["results"], inputs["plots"], inputs["root"] / "report" / "index.html", CONFIG,
        captions=Path(__file__).resolve().parents[1] / "workflow" / "report", generated="2030-01-02 03:04:05 UTC",
        code_version="v-test-123",
    )  # fmt: skip
    return out.read_text(encoding="utf-8")


def section(page: str, anchor: str) -> str:
    """The HTML from an element with id=anchor up to the next heading of the same or a higher level."""
    start = page.index(f'id="{anchor}"')
    level = page[page.rindex("<h", 0, start) + 2]
    following = re.search(rf"<h[1-{level}][ >]", page[start:])
    return page[start : start + following.start()] if following else page[start:]


def table_row(html: str, *labels: str) -> str:
    """The first table row whose leading label cells are ``labels``."""
    cells = "".join(f'<td class="label">{re.escape(label)}</td>' for label in labels)
    match = re.search(rf"<tr[^>]*>{cells}.*?</tr>", html)
    assert match, f"no row {labels}"
    return match.group()


def test_every_figure_is_embedded_once_as_a_data_uri(page, inputs):
    images = [attrs["src"] for tag, attrs in parse(page) if tag == "img"]
    assert len(images) == len(inputs["pngs"]) == 5 + 7  # coco has no multiplicity or comparison figure
    embedded = sorted(base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in images)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert embedded == sorted(p.read_bytes() for p in inputs["pngs"])
    assert "pdf" in page and str(inputs["plots"] / "coco" / "retrieval.pdf") in page  # the paper version is named


def test_the_page_loads_nothing_from_anywhere(page):
    for tag, attrs in parse(page):
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        if tag in ("img", "source", "video", "audio"):
            assert attrs["src"].startswith("data:"), attrs
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?https?:", page)
    assert re.search(r"<style>.*</style>", page, re.DOTALL)


def test_headline_table_has_our_interval_and_the_published_number(page, inputs):
    summary = pd.read_csv(inputs["results"] / "summary.csv")
    pcme = summary.set_index(["dataset", "method", "protocol", "scoring", "direction", "metric"]).loc[
        ("coco", "pcme", "1K", "match-prob", "i2t", "R@1")
    ]
    headline = section(page, "retrieval-coco")
    row = table_row(headline, "PCME")
    assert f"{pcme['mean']:.1f}" in row
    assert f"[{pcme['ci_low']:.1f}, {pcme['ci_high']:.1f}]" in row
    assert "paper 68.8 [" in row and "paper 45.0 [" in row  # PCME README: COCO 1K i2t R@1, PMRP
    assert "yalesong/pvse recipe 69.24 [" in table_row(headline, "PVSE K=2")  # PVSE's own recipe: not a target
    assert "paper 68.8" not in table_row(headline, "PCME (mu)")  # published numbers belong to the method's own scoring
    assert "recipe 74.96" in headline  # a 5K number, in the collapsed table of every row
    assert "<em>yalesong/pvse recipe</em>: trained with" in page and "not a target for our runs" in page
    assert (
        html.escape("what the official evaluate_cub.py runs with the shipped CUB config") in page
    )  # which scoring CUB's code ranks by
    assert "naver-ai/pcme" in headline and '<a href="https://github.com/yalesong/pvse">' in page
    for method in METHODS:
        assert "[" in table_row(headline, METHOD_LABELS[method])  # every configured method has a row with an interval


def test_uncertainty_section_reports_sigma_and_margin(page):
    coco = section(page, "uncertainty-coco")
    assert "auroc_u" in coco and "auroc_margin" in coco and "spearman_u_log_matches" not in coco
    synthetic = section(page, "uncertainty-synthetic-cub")
    assert "spearman_u_log_matches</th>" in synthetic.replace("<br>", "")
    assert "0.600" in table_row(synthetic, "full", "PCME")  # the fake spearman_u_log_matches, on the complete ground truth
    assert "[0.550, 0.650]" in table_row(synthetic, "full", "PCME")  # and its bootstrap interval
    assert "spearman_u_log_matches_ci_low" not in synthetic  # the interval is not a column of its own
    assert "0.600" not in table_row(synthetic, "CUB", "PCME")
    assert "—" in table_row(synthetic, "CUB", "VSE0")  # no σ statistics for a deterministic method
    assert "± " in table_row(synthetic, "CUB", "VSE0")  # two seeds: the spread of the margin's AUROC is shown


def test_sigma_comparison_puts_every_probabilistic_method_side_by_side(page):
    synthetic = section(page, "uncertainty-synthetic-cub")
    assert "σ compared across the probabilistic methods" in synthetic
    assert "σ compared" not in section(page, "uncertainty-coco")  # no true match counts on real data
    comparison = synthetic[synthetic.index("σ compared") : synthetic.index("</table>", synthetic.index("σ compared"))]
    for method in PROBABILISTIC:
        statistic = str(escape(UNCERTAINTIES[REGISTRY[method].statistics[0]]))
        row = table_row(comparison, METHOD_LABELS[method], statistic, "captions")
        # the fakes: rho 0.6 [0.55, 0.65], partial 0.2, within-length 0.1, over two seeds
        assert "0.600" in row and "[0.550, 0.650]" in row and "0.200" in row and "0.100" in row and "2 seeds" in row
    assert "VSE0" not in comparison


def test_training_cost_and_provenance(page):
    training = section(page, "training")
    assert (
        f"{len(DATASETS) * len(METHODS) * len(SEEDS)} training runs" in training
        and "0:30" in training
        and "1.23 M" in training
        and "abc123" in training
    )
    assert "Generated 2030-01-02 03:04:05 UTC" in page and "v-test-123" in page
    assert "Recall@1, @5, @10" in html.unescape(page)  # the figure's caption (workflow/report/retrieval.rst)


def test_config_values_and_table_text_are_escaped(inputs, tmp_path):
    hostile = "<script>alert('x')</script>"
    paper = pd.read_csv(inputs["results"] / "paper.csv")
    paper.loc[0, "source"] = f"a <b>bold</b> claim & {hostile}"
    results = tmp_path / "results"
    results.mkdir()
    for table in inputs["results"].iterdir():
        (results / table.name).write_bytes(table.read_bytes())
    paper.to_csv(results / "paper.csv", index=False)
    config = {**CONFIG, "work_dir": hostile, "note": 'say "hi" & <bye>'}
    out = write_report(results, inputs["plots"], tmp_path / "index.html", config, generated="now", code_version="<v1>")
    page = out.read_text()
    assert "<script" not in page and "<b>bold" not in page and "<v1>" not in page
    assert "work_dir: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; claim &amp;" in page
    assert "say &#34;hi&#34; &amp; &lt;bye&gt;" in page


def test_a_table_without_a_column_names_file_and_column(inputs, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for table in inputs["results"].iterdir():
        (results / table.name).write_bytes(table.read_bytes())
    pd.read_csv(inputs["results"] / "runs.csv").drop(columns="samples_per_second").to_csv(results / "runs.csv", index=False)
    with pytest.raises(ResultsError, match=rf"{re.escape(str(results / 'runs.csv'))}: missing column\(s\) samples_per_second"):
        write_report(results, inputs["plots"], tmp_path / "index.html", code_version="x")
    (results / "summary.csv").write_text("")
    with pytest.raises(SystemExit, match=r"summary\.csv: cannot be read as a table"):
        main(["--results", str(results), "--plots", str(inputs["plots"]), "--out", str(tmp_path / "index.html")])
    assert not (tmp_path / "index.html").exists()


def test_command_line_writes_the_page_with_a_config_file(inputs, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("datasets: [coco]\nmethods: [vse0, pcme]\nseeds: [0, 1]\n")
    out = tmp_path / "report" / "index.html"
    main(["--results", str(inputs["results"]), "--plots", str(inputs["plots"]), "--out", str(out), "--config-file", str(config)])
    page = out.read_text()
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by pcme-bench \S+", page)
    assert 'id="retrieval-coco"' in page and 'id="retrieval-synthetic-cub"' not in page  # the config decides
    assert "PVSE K=2" not in section(page, "retrieval-coco")
    assert f"wrote {out}" in capsys.readouterr().out


def test_every_probabilistic_method_gets_its_uncertainty_rows(inputs, tmp_path, monkeypatch):
    """A second probabilistic method (a twin of the first under another name) has its σ rows and its
    own per-bin table in the uncertainty section, as the first has."""
    first = register_twin(monkeypatch)
    results = tmp_path / "results"
    results.mkdir()
    for path in inputs["results"].iterdir():
        table = pd.read_csv(path)
        if "method" in table and path.name != "paper.csv":
            table = pd.concat([table, table[table["method"] == first].assign(method="twin")])
        table.to_csv(results / path.name, index=False)
    config = {**CONFIG, "methods": [*CONFIG["methods"], "twin"]}
    page = write_report(results, inputs["plots"], tmp_path / "index.html", config, code_version="x").read_text()
    synthetic = section(page, "uncertainty-synthetic-cub")
    label = REGISTRY[first].label
    for name in (label, "Twin"):
        assert f"{name} per-bin values for synthetic-cub" in synthetic
        assert "0.600" in table_row(synthetic, "full", name)  # its spearman_u_log_matches
