"""results/README.md lists exactly the columns that pcmebench.tables defines, in their order, and the metric and statistic
names of pcmebench.vocabulary, so the two cannot drift."""

import re

import pytest

from pcmebench.tables import RESULT_TABLES, RUN_TABLES
from pcmebench.vocabulary import INTERVAL_ENDS, METRIC_ORDER, SUMMARY_STATISTICS, check_summary_statistic
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


def documented_names(text: str, table: str, column: str) -> list[str]:
    """The names in backticks of one column's row in one table's section of the README's text."""
    section = text.split(f"## {table}\n", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| {column} |"))
    return re.findall(r"`([^`]+)`", row)


def test_metric_names_are_the_vocabulary_ones_in_its_order():
    text = README.read_text()
    assert documented_names(text, "metrics.csv", "metric") == list(METRIC_ORDER)
    assert documented_names(text.replace("`CxC R@1`, ", ""), "metrics.csv", "metric") != list(METRIC_ORDER)


def test_summary_statistics_are_the_described_ones():
    """Every statistic the page describes is in the README, and every statistic the README names is described (the
    row also names protocol ``full``)."""
    text, expected = README.read_text(), {*SUMMARY_STATISTICS, *("spearman_u_log_matches" + end for end in INTERVAL_ENDS)}

    def named(readme):
        return set(documented_names(readme, "uncertainty_summary.csv", "statistic")) - {"full"}

    assert named(text) == expected
    assert named(text.replace("`pearson_bin_r1`", "`pearson_bin_r2`")) != expected
    for name in expected:
        check_summary_statistic(name)
    with pytest.raises(ValueError, match="'pearson_bin_r2' is not in pcmebench.vocabulary.SUMMARY_STATISTICS"):
        check_summary_statistic("pearson_bin_r2")
