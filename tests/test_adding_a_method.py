"""The README's worked example kept honest: the InfoNCE method of 'Adding a method', written as one new
file into a copy of the smoke project, trains, and appears in every table and the report."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import PACKAGES, REPO, SMOKE, SMOKE_RESULTS, copy_packages, preset, snakemake, tail

pytestmark = pytest.mark.slow  # runs Snakemake

SECTION = "## Adding a method"


def readme_example() -> tuple[str, str, dict]:
    """The section's method file (its name, its code) and its config, as a reader copies them."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION) + 1)]
    name = re.search(r"Save this as `(models/\w+\.py)`", section)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.DOTALL)[1])
    return name, code, config


def sources(root: Path) -> dict[str, str]:
    """SHA-256 of every file the workflow and its packages are made of, by path."""
    names = ("Snakefile", "workflow", "config", "profiles", "environment.yml", *PACKAGES)
    files = [p for n in names for p in ([root / n] if (root / n).is_file() else (root / n).rglob("*"))]
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_readme_example_method_is_one_file_and_appears_everywhere(built, tmp_path):
    name, code, example = readme_example()
    method = example["methods"][-1]
    assert set(example["method_settings"]) == {method}
    # A copy of the built smoke project, with the code beside it: the existing runs stay up to date.
    project = Path(shutil.copytree(built, tmp_path / "project", symlinks=True))
    copy_packages(project)
    before = sources(project)
    (project / name).write_text(code)
    smoke = preset(SMOKE[1], root=project)
    config = {"methods": [*smoke["methods"], method], "method_settings": example["method_settings"]}
    (project / "method.yaml").write_text(yaml.safe_dump(config))
    assert example["methods"][:-1] == smoke["methods"]  # the README adds it to the smoke preset's list

    threads = ("--set-threads", "train=1", "embed=1", "evaluate=1")
    result = snakemake(project, "all", "report", "--cores", "2", *threads, *SMOKE, "method.yaml")
    assert result.returncode == 0, tail(result)
    output = result.stdout + result.stderr
    trained = re.findall(r"rule train:\n(?:.*\n)*?\s+wildcards: dataset=([\w-]+), method=([\w+.-]+), seed=(\d+)", output)
    assert {(d, int(s)) for d, _, s in trained} == {(d, s) for d in smoke["datasets"] for s in smoke["seeds"]}, trained
    assert {m for _, m, _ in trained} == {method}, trained  # only the new method's runs
    assert sources(project).keys() - before.keys() == {name}  # one new file ...
    assert {k: v for k, v in sources(project).items() if k != name} == before  # ... and nothing else changed

    results = project / SMOKE_RESULTS
    runs = {(d, s) for d in smoke["datasets"] for s in smoke["seeds"]}
    metrics = pd.read_csv(results / "metrics.csv")
    mine = metrics[metrics["method"] == method]
    assert set(zip(mine["dataset"], mine["seed"], strict=True)) == runs
    assert set(mine["scoring"]) == {"cosine"} and mine["value"].notna().all()
    summary = pd.read_csv(results / "summary.csv")
    assert set(summary[summary["method"] == method]["dataset"]) == set(smoke["datasets"])
    assert set(summary["method"]) == set(config["methods"])  # beside every other method
    page = (results / "report" / "index.html").read_text()
    assert page.count('<td class="label">InfoNCE</td>') >= len(smoke["datasets"])  # a row in each headline table
