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

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from corpora.corpus import CaptionSplit, multi_hot
from corpora.errors import DataError
from corpora.images import verify_images
from corpora.readers import read_json, read_npy
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


def _field(record: dict, key: str, path: Path, position: int, kind: type = object):
    """``record[key]``, as ``kind`` (int or str) where given; a DataError names the file and the entry."""
    try:
        value = record[key]
    except (KeyError, TypeError):
        raise DataError(path, f"entry #{position} {str(record)[:80]}", f"has no {key!r}") from None
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().lstrip("+-").isdigit():
            raise DataError(path, f"entry #{position} {str(record)[:80]}", f"{key!r} is not an integer: {value!r}")
        return int(value)
    if kind is str and not isinstance(value, str):
        raise DataError(path, f"entry #{position} {str(record)[:80]}", f"{key!r} is not text: {value!r}")
    return value


def _records(content: dict, key: str, path: Path) -> list:
    """The list under ``key`` of an annotation file."""
    records = content[key]
    if not isinstance(records, list):
        raise DataError(path, key, f"expected a list, found {type(records).__name__}")
    return records


def _read_captions(layout: CocoLayout, source: str):
    """caption id -> (image id, caption) and image id -> file name, for one source."""
    path = layout.captions_json(source)
    content = read_json(path, ("images", "annotations"))
    files = {
        _field(im, "id", path, i, int): _field(im, "file_name", path, i, str)
        for i, im in enumerate(_records(content, "images", path))
    }
    captions = {}
    for i, ann in enumerate(_records(content, "annotations", path)):
        caption_id = _field(ann, "id", path, i, int)
        image_id = _field(ann, "image_id", path, i, int)
        caption = _field(ann, "caption", path, i)
        if image_id not in files:
            raise DataError(path, f"caption id {caption_id}", f"its image id {image_id} is not in 'images'")
        captions[caption_id] = (image_id, caption)
    return captions, files


def _read_instance_labels(layout: CocoLayout, source: str):
    """image id -> sorted category indices (category_id - 1), and the label width."""
    path = layout.instances_json(source)
    content = read_json(path, ("images", "annotations", "categories"))
    category_ids = {_field(c, "id", path, i, int) for i, c in enumerate(_records(content, "categories", path))}
    if not category_ids or min(category_ids) < 1:
        raise DataError(path, "categories", "category ids must be positive integers")
    labels: dict[int, set[int]] = {}
    for i, ann in enumerate(_records(content, "annotations", path)):
        category = _field(ann, "category_id", path, i, int)
        if category not in category_ids:
            raise DataError(path, f"annotation id {ann.get('id')}", f"category_id {category} is not among the categories")
        labels.setdefault(_field(ann, "image_id", path, i, int), set()).add(category - 1)
    return {image: sorted(cats) for image, cats in labels.items()}, max(category_ids)


def load_coco(root: str | Path, splits=COCO_SPLITS, check_images: bool = True, workers: int = 1) -> dict[str, CaptionSplit]:
    """Read ``splits`` of a COCO-format dataset under ``root``.

    Captions keep the order of the split file; images are numbered in the order
    their first caption appears. With ``check_images`` every image file must
    exist and decode to its last byte (checked on ``workers`` processes). Any inconsistency raises a DataError
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
    result = {
        split: _assemble_split(layout, split, captions[SPLIT_SOURCE[split]], instance_labels[SPLIT_SOURCE[split]][0], width)
        for split in splits
    }
    if check_images:
        verify_images([item for split in result.values() for item in split.image_items()], workers)
    return result


def _assemble_split(layout, split, source_captions, image_labels, width) -> CaptionSplit:
    source = SPLIT_SOURCE[split]
    caption_index, image_files = source_captions
    ids_path = layout.split_ids(split)
    caption_ids = read_npy(ids_path, ndim=1, kind="i")
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
    labels = multi_hot([image_labels.get(i, []) for i in image_ids], width)
    return CaptionSplit("coco", split, layout.root, images, captions, labels)
