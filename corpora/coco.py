"""MS-COCO 2014 in the layout of the cross-modal retrieval benchmark (Karpathy splits).

Layout under the dataset root (the real data and ``synthetic-coco`` alike)::

    images/train2014/COCO_train2014_000000000009.jpg ...
    images/val2014/COCO_val2014_000000000042.jpg ...
    annotations/captions_train2014.json     COCO captions: images, annotations
    annotations/captions_val2014.json
    annotations/instances_train2014.json    COCO instances: images, annotations, categories
    annotations/instances_val2014.json
    annotations/coco_{train,restval,dev,test}_ids.npy   caption annotation ids per split

The split files are those of VSE++/PCME (113,287 train+restval images, 5,000
dev, 5,000 test, five captions each); train ids point into
``captions_train2014.json``, the other three into ``captions_val2014.json``.
Instance labels are a multi-hot vector per image at ``category_id - 1``, 90
wide on COCO (its category ids run to 90), as the PCME benchmark does for PMRP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corpora.corpus import CaptionSplit, multi_hot
from corpora.errors import DataError
from corpora.images import check_image
from corpora.text import tokenize

COCO_SPLITS = ("train", "restval", "dev", "test")
SPLIT_SOURCE = {"train": "train2014", "restval": "val2014", "dev": "val2014", "test": "val2014"}


@dataclass(frozen=True)
class CocoLayout:
    """Where each file of a COCO-format dataset lives under ``root``."""

    root: Path

    def images_dir(self, source: str) -> Path:
        return self.root / "images" / source

    def captions_json(self, source: str) -> Path:
        return self.root / "annotations" / f"captions_{source}.json"

    def instances_json(self, source: str) -> Path:
        return self.root / "annotations" / f"instances_{source}.json"

    def split_ids(self, split: str) -> Path:
        return self.root / "annotations" / f"coco_{split}_ids.npy"

    def ground_truth(self, direction: str) -> Path:
        """Complete positives of the test split (synthetic data only), ECCV Caption's format."""
        return self.root / "annotations" / f"full_{direction}.json"

    def required_files(self, splits=COCO_SPLITS) -> list[Path]:
        sources = sorted({SPLIT_SOURCE[s] for s in splits})
        return [
            *(self.captions_json(s) for s in sources),
            *(self.instances_json(s) for s in sources),
            *(self.split_ids(s) for s in splits),
        ]


def read_json(path: Path, keys: tuple[str, ...] = ()) -> dict | list:
    """A JSON document (an object with ``keys`` at its top level, when given), or a DataError naming the file."""
    if not path.is_file():
        raise DataError(path, "file", "not found")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, "file", f"not valid JSON ({error})") from None
    for key in keys:
        if not isinstance(content, dict) or key not in content:
            raise DataError(path, "top level", f"has no {key!r} list (not a COCO annotation file?)")
    return content


def _field(record: dict, key: str, path: Path, position: int):
    try:
        return record[key]
    except (KeyError, TypeError):
        raise DataError(path, f"entry #{position} {str(record)[:80]}", f"has no {key!r}") from None


def _read_captions(layout: CocoLayout, source: str):
    """caption id -> (image id, caption) and image id -> file name, for one source."""
    path = layout.captions_json(source)
    content = read_json(path, ("images", "annotations"))
    files = {int(_field(im, "id", path, i)): str(_field(im, "file_name", path, i)) for i, im in enumerate(content["images"])}
    captions = {}
    for i, ann in enumerate(content["annotations"]):
        caption_id = int(_field(ann, "id", path, i))
        image_id = int(_field(ann, "image_id", path, i))
        caption = _field(ann, "caption", path, i)
        if image_id not in files:
            raise DataError(path, f"caption id {caption_id}", f"its image id {image_id} is not in 'images'")
        captions[caption_id] = (image_id, caption)
    return captions, files


def _read_instance_labels(layout: CocoLayout, source: str):
    """image id -> sorted category indices (category_id - 1), and the label width."""
    path = layout.instances_json(source)
    content = read_json(path, ("images", "annotations", "categories"))
    category_ids = {int(_field(c, "id", path, i)) for i, c in enumerate(content["categories"])}
    if not category_ids or min(category_ids) < 1:
        raise DataError(path, "categories", "category ids must be positive integers")
    labels: dict[int, set[int]] = {}
    for i, ann in enumerate(content["annotations"]):
        category = int(_field(ann, "category_id", path, i))
        if category not in category_ids:
            raise DataError(path, f"annotation id {ann.get('id')}", f"category_id {category} is not among the categories")
        labels.setdefault(int(_field(ann, "image_id", path, i)), set()).add(category - 1)
    return {image: sorted(cats) for image, cats in labels.items()}, max(category_ids)


def load_coco(root: str | Path, splits=COCO_SPLITS, check_images: bool = True) -> dict[str, CaptionSplit]:
    """Read ``splits`` of a COCO-format dataset under ``root``.

    Captions keep the order of the split file; images are numbered in the order
    their first caption appears. With ``check_images`` every image file must
    exist and have a readable header. Any inconsistency raises a DataError
    naming the file and the item.
    """
    layout = CocoLayout(Path(root))
    unknown = set(splits) - set(COCO_SPLITS)
    if unknown:
        raise ValueError(f"unknown COCO split(s) {sorted(unknown)}; allowed: {list(COCO_SPLITS)}")
    sources = sorted({SPLIT_SOURCE[s] for s in splits})
    captions = {source: _read_captions(layout, source) for source in sources}
    instance_labels = {source: _read_instance_labels(layout, source) for source in sources}
    width = max(w for _, w in instance_labels.values())
    return {
        split: _assemble_split(
            layout, split, captions[SPLIT_SOURCE[split]], instance_labels[SPLIT_SOURCE[split]][0], width, check_images
        )
        for split in splits
    }


def _assemble_split(layout, split, source_captions, image_labels, width, check_images) -> CaptionSplit:
    source = SPLIT_SOURCE[split]
    caption_index, image_files = source_captions
    ids_path = layout.split_ids(split)
    if not ids_path.is_file():
        raise DataError(ids_path, "file", "not found")
    try:
        caption_ids = np.load(ids_path, allow_pickle=False)
    except ValueError as error:
        raise DataError(ids_path, "file", f"not a numeric .npy array ({error})") from None
    if caption_ids.ndim != 1 or not np.issubdtype(caption_ids.dtype, np.integer):
        raise DataError(ids_path, "file", f"expected a 1-D integer array, found {caption_ids.dtype} {caption_ids.shape}")
    if len(caption_ids) == 0:
        raise DataError(ids_path, "file", "lists no caption ids")
    seen: set[int] = set()
    image_index: dict[int, int] = {}
    rows = []
    for caption_id in caption_ids.tolist():
        if caption_id in seen:
            raise DataError(ids_path, f"caption id {caption_id}", "listed twice")
        seen.add(caption_id)
        if caption_id not in caption_index:
            raise DataError(ids_path, f"caption id {caption_id}", f"absent from {layout.captions_json(source)}")
        image_id, caption = caption_index[caption_id]
        if not isinstance(caption, str) or not tokenize(caption):
            raise DataError(
                layout.captions_json(source), f"caption id {caption_id} (image {image_id})", f"caption is empty: {caption!r}"
            )
        rows.append((caption_id, image_id, image_index.setdefault(image_id, len(image_index)), caption))
    captions = pd.DataFrame(rows, columns=["caption_id", "image_id", "image_index", "caption"])
    image_ids = list(image_index)
    images = pd.DataFrame({"image_id": image_ids, "image_file": [f"images/{source}/{image_files[i]}" for i in image_ids]})
    if check_images:
        for image_id, image_file in zip(image_ids, images["image_file"]):
            check_image(layout.root / image_file, f"image id {image_id} of split {split!r}")
    labels = multi_hot([image_labels.get(i, []) for i in image_ids], width)
    return CaptionSplit("coco", split, layout.root, images, captions, labels)
