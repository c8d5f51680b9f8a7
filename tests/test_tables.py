"""results/README.md lists exactly the columns that pcmebench.tables defines, in their order, so the two cannot drift."""

import re

import pytest

from pcmebench.tables import RESULT_TABLES, RUN_TABLES
from tests.conftest import REPO

README = REPO / "results" / "README.md"


def documented_columns(text: str) -> dict[str, list[str]]:
    """{table file: its columns} from the README's text: each ``## <file>`` or ``### <file>`` heading's
    table, whose first cells name the columns (several, comma-separated, in one row where they share a meaning)."""
    tables, current = {}, None
    for line in text.splitlines():
        heading = re.fullmatch(r"#{2,3} (\S+\.(?:csv|parquet))", line.strip())
        if heading:
            current = tables.setdefault(heading.group(1), [])
        elif line.startswith("#"):
            current = None
        elif current is not None and line.startswith("|"):
            first = line.split("|")[1].strip()
            if first not in ("column", "---"):
                current.extend(name.strip() for name in first.split(","))
    return tables


@pytest.fixture(scope="module")
def documented() -> dict[str, list[str]]:
    return documented_columns(README.read_text())


def test_every_table_is_documented_once(documented):
    assert set(documented) == set(RESULT_TABLES) | set(RUN_TABLES)
    headings = re.findall(r"^#{2,3} (\S+\.(?:csv|parquet))$", README.read_text(), flags=re.MULTILINE)
    assert len(headings) == len(set(headings))  # a run table named like a result table shares its section


@pytest.mark.parametrize("name", list(RESULT_TABLES))
def test_result_table_columns_are_the_documented_ones(documented, name):
    assert documented[name] == RESULT_TABLES[name]


@pytest.mark.parametrize("name", list(RUN_TABLES))
def test_run_table_columns_are_the_documented_ones(documented, name):
    assert documented[name] == RUN_TABLES[name]


def test_a_column_missing_from_the_readme_is_noticed():
    text = README.read_text()
    assert "| weight |" in text
    assert (
        documented_columns(text.replace("| weight |", "| the weight |"))["per_query.parquet"] != RUN_TABLES["per_query.parquet"]
    )
    shared = "| dataset, method, protocol, scoring, direction, metric | as in metrics.csv |"
    assert (
        documented_columns(text.replace(shared, "| dataset, method, protocol, direction, metric | as in metrics.csv |"))[
            "summary.csv"
        ]
        != RESULT_TABLES["summary.csv"]
    )
