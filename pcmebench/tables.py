"""The per-run files' schemas, atomic writing and the code version, free of torch (quick to import).

``pcmebench.evaluate`` writes these tables into every run folder and
``pcmebench.aggregate`` reads them back; both take the column lists from here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

RUN_COLUMNS = ["dataset", "method", "seed"]
METRICS_COLUMNS = [*RUN_COLUMNS, "protocol", "scoring", "direction", "metric", "value"]
PER_QUERY_COLUMNS = ["protocol", "scoring", "direction", "query", "metric", "value"]
QUERIES_COLUMNS = ["direction", "query", "u", "sum_sigma_sq", "true_matches"]
UNCERTAINTY_COLUMNS = [
    *RUN_COLUMNS, "protocol", "scoring", "direction", "uncertainty", "bin", "u_low", "u_high", "queries", "metric", "value",
]  # fmt: skip
UNCERTAINTY_SUMMARY_COLUMNS = [*RUN_COLUMNS, "protocol", "scoring", "direction", "uncertainty", "statistic", "value"]
# PCME++'s uncertainty analysis (Chun, ICLR 2024): bins of the sum of sigma^2 on COCO 5K and ECCV Caption.
PCMEPP_PROTOCOLS = ("5K", "ECCV")


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary path)``, then move the result over ``path`` in one step."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def code_version() -> str:
    """The git commit of this checkout (with -dirty), or the installed package version."""
    here = Path(__file__).resolve().parent
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"pcme-bench {version('pcme-bench')}"
