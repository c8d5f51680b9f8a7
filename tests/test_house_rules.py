"""The shape the code was given for the next person to read (issue 21), kept: no function over 60 lines outside tests/ and
benchmarks/, common.smk within 150 lines, the README within 300."""

import ast

import pytest

from tests.conftest import REPO

PACKAGES = ("corpora", "metrics", "models", "pcmebench")
LIMITS = {"workflow/rules/common.smk": 150, "README.md": 300}
MAX_FUNCTION_LINES = 60


def long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of every function or method of ``source`` longer than ``limit`` lines, its docstring included."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > limit
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_over_60_lines(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    found = {str(p.relative_to(REPO)): long_functions(p.read_text(), MAX_FUNCTION_LINES) for p in files}
    assert {path: functions for path, functions in found.items() if functions} == {}


def test_a_long_function_is_noticed():
    body = "".join(f"        x{i} = {i}\n" for i in range(59))  # with its def line: 60 lines, the most allowed
    assert long_functions(f"class A:\n    def ok(self):\n{body}", MAX_FUNCTION_LINES) == []
    assert long_functions(f"class A:\n    def long(self):\n{body}        y = 0\n", MAX_FUNCTION_LINES) == [("long", 61)]


@pytest.mark.parametrize(("path", "limit"), LIMITS.items())
def test_file_within_its_length(path, limit):
    assert len((REPO / path).read_text().splitlines()) <= limit
