"""The in-memory form every loader returns, whatever the dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class CaptionSplit:
    """One split of an image-caption dataset, in the split's canonical order.

    ``images``: one row per image, columns ``image_id`` and ``image_file`` (relative
    to ``root``), plus ``class_id`` on CUB. ``captions``: one row per caption,
    columns ``caption_id``, ``image_id``, ``image_index`` (row in ``images``) and
    ``caption``, in the split's order (COCO: the split file's; CUB: by image id). ``labels``: (images,
    label width) bool multi-hot: COCO's instance categories (``category_id - 1``,
    90 wide on COCO) or the CUB class (one-hot).
    """

    dataset: str
    split: str
    root: Path
    images: pd.DataFrame
    captions: pd.DataFrame
    labels: np.ndarray

    def __post_init__(self):
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} label rows for {len(self.images)} images")

    def image_items(self) -> list[tuple[Path, str]]:
        """(file, "image id N of split S") of every image, for checks that name the item."""
        return [
            (self.root / file, f"image id {image_id} of split {self.split!r}")
            for image_id, file in zip(self.images["image_id"], self.images["image_file"], strict=True)
        ]

    @property
    def captions_per_image(self) -> np.ndarray:
        return np.bincount(self.captions["image_index"].to_numpy(), minlength=len(self.images))


def multi_hot(label_lists: list[list[int]], width: int) -> np.ndarray:
    """(len(label_lists), width) bool matrix with True at each listed index."""
    out = np.zeros((len(label_lists), width), dtype=bool)
    for row, labels in enumerate(label_lists):
        out[row, labels] = True
    return out
