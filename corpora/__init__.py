"""Image-caption datasets: synthetic generators, COCO and CUB loaders, text, prepared splits."""

from corpora.corpus import CaptionSplit
from corpora.errors import DataError

__all__ = ["CaptionSplit", "DataError"]
