"""Writing a generated dataset: into a temporary folder first, then moved into place."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

STAMP = "GENERATOR.json"


@contextmanager
def dataset_folder(out_dir: str | Path, stamp: dict):
    """Yield a fresh temporary folder that becomes ``out_dir`` when the block succeeds.

    An existing ``out_dir`` is replaced only if it was generated before (it has a
    ``GENERATOR.json``), so a user's real data is never deleted.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / STAMP).is_file():
        raise FileExistsError(f"{out_dir} exists and was not made by the generator; move it away first")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        write_json(staging / STAMP, stamp, indent=2)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


def write_json(path: Path, content, indent: int | None = None) -> None:
    """Compact (COCO-style) or indented JSON; keys keep insertion order so bytes are stable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    separators = (",", ":") if indent is None else (",", ": ")
    path.write_text(json.dumps(content, separators=separators, indent=indent) + "\n", encoding="utf-8")


def ground_truth_json(truth, query_ids, gallery_ids) -> dict[str, list[int]]:
    """ECCV Caption's format: ``{"<query id>": [ids of every gallery item it is true of]}``."""
    gallery_ids = [int(i) for i in gallery_ids]
    return {str(int(q)): sorted(gallery_ids[j] for j in row.nonzero()[0]) for q, row in zip(query_ids, truth)}
