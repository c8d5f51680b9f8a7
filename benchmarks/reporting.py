"""What the benchmarks share to report: the median and spread of repeated measurements, JSON output."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def spread(values: list[float], digits: int) -> str:
    """``median (min-max)`` of repeated measurements, or the one value."""
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def write_json(path: str | Path | None, data: dict) -> None:
    """``data`` as indented JSON at ``path`` (its folder made), when a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
