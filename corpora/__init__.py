"""Image-caption datasets: synthetic generators, COCO and CUB loaders, text, prepared splits."""

from corpora.corpus import CaptionSplit
from corpora.errors import DataError

SYNTHETIC_FORMAT = {"synthetic-coco": "coco", "synthetic-cub": "cub"}
# Every dataset name the suite knows: the real datasets (each its own format), then their synthetic twins.
DATASETS = ("coco", "cub", *SYNTHETIC_FORMAT)


def dataset_format(name: str) -> str:
    """coco or cub: the on-disk format (and protocol) of a dataset; synthetic ones follow their twin."""
    return SYNTHETIC_FORMAT.get(name, name)


__all__ = ["DATASETS", "SYNTHETIC_FORMAT", "CaptionSplit", "DataError", "dataset_format"]
