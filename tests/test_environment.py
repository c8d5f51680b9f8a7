"""pyproject.toml and environment.yml list the same packages; CI runs what the README says."""

import re
import tomllib

import yaml

from tests.conftest import REPO

CONDA_NAME = {"torch": "pytorch"}  # conda-forge's name for a PyPI package, where they differ


def requirement(spec: str) -> tuple[str, str]:
    name, bound = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
    return name.lower(), bound.replace(" ", "")


def test_pyproject_and_environment_list_the_same_packages_and_bounds():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pypi = dict(requirement(s) for s in project["dependencies"] + project["optional-dependencies"]["test"])
    pypi["python"] = project["requires-python"]
    entries = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    # Plain entries come from conda channels, a `pip:` list from PyPI (packages conda-forge lacks).
    pip_entries = [s for e in entries if isinstance(e, dict) for s in e.get("pip", [])]
    conda = dict(requirement(s) for s in [*(e for e in entries if isinstance(e, str)), *pip_entries])
    conda.pop("pip")
    assert {CONDA_NAME.get(n, n): b for n, b in pypi.items()} == conda


def test_torch_range_admits_the_local_and_current_releases():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    bounds = dict(requirement(s) for s in project["dependencies"])
    for package in ("torch", "torchvision"):
        assert bounds[package].startswith(">="), "no upper pin: users' newer releases must satisfy it"
    assert tuple(map(int, bounds["torch"][2:].split("."))) <= (2, 14, 1)
    assert tuple(map(int, bounds["torchvision"][2:].split("."))) <= (0, 29, 1)


def test_ci_runs_the_readmes_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    test_command = next(c for c in commands if "pytest" in c)
    for line in test_command.strip().splitlines():
        assert line in ci, f"README's test command line not in .ci/run: {line}"
    assert any("snakemake --cores 8 all" in c for c in commands)
