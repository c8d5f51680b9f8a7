"""Embedded datasets, generated deterministically in the real datasets' on-disk formats."""

from __future__ import annotations

from corpora.synthetic import birds, shapes_coco
from corpora.synthetic.birds import write_synthetic_cub
from corpora.synthetic.shapes_coco import write_synthetic_coco

GENERATORS = {"synthetic-coco": write_synthetic_coco, "synthetic-cub": write_synthetic_cub}
# What a generator writes changes with its version (same settings, other files).
GENERATOR_VERSIONS = {"synthetic-coco": shapes_coco.GENERATOR_VERSION, "synthetic-cub": birds.GENERATOR_VERSION}


def write_synthetic(name: str, out_dir, **settings) -> None:
    """Generate the embedded dataset ``name`` into ``out_dir`` with the generator's ``settings``."""
    if name not in GENERATORS:
        raise ValueError(f"unknown synthetic dataset {name!r}; allowed: {sorted(GENERATORS)}")
    GENERATORS[name](out_dir, **settings)


__all__ = ["GENERATORS", "GENERATOR_VERSIONS", "write_synthetic", "write_synthetic_coco", "write_synthetic_cub"]
