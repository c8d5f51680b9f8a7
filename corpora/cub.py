"""CUB-200-2011 with the captions of Reed et al. (2016), in the zero-shot class split.

Layout under the dataset root (the real data and ``synthetic-cub`` alike)::

    images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg ...
    images.txt               "<image id> <class dir>/<file>"           (CUB_200_2011)
    classes.txt              "<class id> <class dir>"                  (CUB_200_2011)
    image_class_labels.txt   "<image id> <class id>"                   (CUB_200_2011)
    text_c10/<class dir>/<image file stem>.txt   ten captions, one a line (Reed et al.)
    trainvalclasses.txt, testclasses.txt        class dirs, one a line (PCME's split files)
    seen_test_images.txt     "<class dir>/<file>" of images held out of training (PCME)

The split is PCME's (its ``datasets/annotations/cub/``): Xian et al. 2017's proposed zero-shot
split, 150 trainval classes and 50 disjoint test classes none of which is an ImageNet-1K class,
so the ImageNet-pretrained backbone has seen none of them. Reed et al.'s archive carries files of
the same names with another class split; they are not these. As PCME's code does
(``datasets/_dataloader.py``, ``omit_ids``), training leaves out the images listed in
``seen_test_images.txt`` (Xian et al.'s test images of the seen classes); the test split is every
image of the test classes. Every image-caption pair of one class is a match. CUB captions have no
ids of their own, so caption ``k`` (0-based line) of image ``i`` gets id ``100 * i + k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from corpora.corpus import CaptionSplit, multi_hot
from corpora.errors import DataError
from corpora.images import verify_images
from corpora.text import tokenize

CUB_SPLITS = ("train", "test")
SPLIT_CLASSES_FILE = {"train": "trainvalclasses.txt", "test": "testclasses.txt"}
HELD_OUT_FILE = "seen_test_images.txt"
CAPTION_ID_STRIDE = 100


@dataclass(frozen=True)
class CubLayout:
    """Where each file of a CUB-format dataset lives under ``root``."""

    root: Path

    @property
    def images_txt(self) -> Path:
        return self.root / "images.txt"

    @property
    def classes_txt(self) -> Path:
        return self.root / "classes.txt"

    @property
    def image_class_labels_txt(self) -> Path:
        return self.root / "image_class_labels.txt"

    def image(self, relative: str) -> Path:
        return self.root / "images" / relative

    def caption_file(self, relative_image: str) -> Path:
        return self.root / "text_c10" / Path(relative_image).with_suffix(".txt")

    def split_classes(self, split: str) -> Path:
        return self.root / SPLIT_CLASSES_FILE[split]

    @property
    def seen_test_images(self) -> Path:
        """Images of the training classes held out of training, one ``<class dir>/<file>`` a line."""
        return self.root / HELD_OUT_FILE

    def ground_truth(self, direction: str) -> Path:
        """Complete positives of the test split (synthetic data only), ECCV Caption's format."""
        return self.root / f"full_{direction}.json"

    def required_files(self, splits=CUB_SPLITS) -> list[Path]:
        held_out = [self.seen_test_images] if "train" in splits else []
        return [
            self.images_txt, self.classes_txt, self.image_class_labels_txt, *(self.split_classes(s) for s in splits), *held_out,
        ]  # fmt: skip


def read_lines(path: Path, item: str | None = None) -> list[str]:
    """The lines of a UTF-8 text file (no line ends). A missing file, or a line that is not UTF-8,
    raises a DataError naming the file and the line (prefixed by ``item`` when given)."""
    if not path.is_file():
        raise DataError(path, item or "file", "not found")
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    decoded = []
    for number, raw in enumerate(lines, start=1):
        try:
            decoded.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            where = f"{item}, line {number}" if item else f"line {number}"
            bad = raw[error.start : error.start + 1]
            raise DataError(path, where, f"not UTF-8 text (byte 0x{bad.hex()} at column {error.start + 1})") from None
    return decoded


def _read_pairs(path: Path, what: str) -> dict[int, str]:
    """An ``<integer id> <value>`` file as a dict; malformed or repeated lines raise DataError."""
    pairs: dict[int, str] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value.strip():
            raise DataError(path, f"line {number}", f"expected '<{what} id> <value>', found {line!r}")
        if int(key) in pairs:
            raise DataError(path, f"line {number}", f"{what} id {key} listed twice")
        pairs[int(key)] = value.strip()
    return pairs


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in read_lines(path) if line.strip()]


def _read_held_out(layout: CubLayout, images: dict[int, str]) -> set[int]:
    """Image ids listed in seen_test_images.txt; a line naming no image of images.txt is a DataError."""
    path = layout.seen_test_images
    image_of_file = {relative: image_id for image_id, relative in images.items()}
    held_out = set()
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        if line.strip() not in image_of_file:
            raise DataError(path, f"line {number}", f"{line.strip()!r} is not an image of {layout.images_txt}")
        held_out.add(image_of_file[line.strip()])
    return held_out


def read_captions(path: Path, item: str, expected: int | None) -> list[str]:
    """The captions of one image file: one a line, none empty, ``expected`` of them if given."""
    if not path.is_file():
        raise DataError(path, item, "caption file is missing")
    lines = read_lines(path, item)
    while lines and not lines[-1]:  # empty lines at the end of the file
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not tokenize(line):
            raise DataError(path, f"{item}, line {number}", f"caption is empty: {line!r}")
    if expected is not None and len(lines) != expected:
        raise DataError(path, item, f"has {len(lines)} captions, expected {expected}")
    if len(lines) > CAPTION_ID_STRIDE:
        raise DataError(path, item, f"more than {CAPTION_ID_STRIDE} captions")
    return [line.strip() for line in lines]


def load_cub(
    root: str | Path, splits=CUB_SPLITS, check_images: bool = True, captions_per_image: int | None = 10, workers: int = 1
) -> dict[str, CaptionSplit]:
    """Read ``splits`` of a CUB-format dataset under ``root``; images in image-id order.

    With ``check_images`` every image file must exist and decode to its last byte (checked on
    ``workers`` processes).
    """
    layout = CubLayout(Path(root))
    unknown = set(splits) - set(CUB_SPLITS)
    if unknown:
        raise ValueError(f"unknown CUB split(s) {sorted(unknown)}; allowed: {list(CUB_SPLITS)}")
    classes = _read_pairs(layout.classes_txt, "class")
    images = _read_pairs(layout.images_txt, "image")
    image_classes = _read_pairs(layout.image_class_labels_txt, "image")
    by_class = _images_by_class(layout, classes, images, image_classes)
    split_classes = _split_classes(layout, splits, classes, by_class)
    held_out = _read_held_out(layout, images) if "train" in splits else set()
    width = max(classes)
    result = {}
    for split, class_ids in split_classes.items():
        image_ids = sorted(i for c in class_ids for i in by_class[c] if split != "train" or i not in held_out)
        if not image_ids:
            raise DataError(layout.seen_test_images, "file", f"holds out every image of the {split} classes")
        result[split] = _read_split(layout, split, image_ids, images, image_classes, captions_per_image, width)
    if check_images:
        verify_images([item for split in result.values() for item in split.image_items()], workers)
    return result


def _images_by_class(
    layout: CubLayout, classes: dict[int, str], images: dict[int, str], image_classes: dict[int, str]
) -> dict[int, list[int]]:
    """Each class id's image ids, in image-id order; an image without a known class, or outside its
    class's folder, is a DataError."""
    by_class: dict[int, list[int]] = {}
    for image_id, relative in sorted(images.items()):
        if image_id not in image_classes:
            raise DataError(layout.image_class_labels_txt, f"image id {image_id}", "has no class label")
        class_id = int(image_classes[image_id])
        if class_id not in classes:
            raise DataError(
                layout.image_class_labels_txt, f"image id {image_id}", f"class id {class_id} is not in {layout.classes_txt}"
            )
        if Path(relative).parts[0] != classes[class_id]:
            raise DataError(
                layout.images_txt, f"image id {image_id}", f"{relative} is not in the folder of its class {classes[class_id]}"
            )
        by_class.setdefault(class_id, []).append(image_id)
    return by_class


def _split_classes(layout: CubLayout, splits, classes: dict[int, str], by_class: dict[int, list[int]]) -> dict[str, list[int]]:
    """The class ids each split's class file lists; unknown or empty classes, an empty file and a
    class in both splits are DataErrors."""
    class_of_dir = {name: class_id for class_id, name in classes.items()}
    split_classes = {}
    for split in splits:
        path = layout.split_classes(split)
        ids = []
        for name in _read_names(path):
            if name not in class_of_dir:
                raise DataError(path, f"class {name}", f"not in {layout.classes_txt}")
            if class_of_dir[name] not in by_class:
                raise DataError(path, f"class {name}", f"has no images in {layout.images_txt}")
            ids.append(class_of_dir[name])
        if not ids:
            raise DataError(path, "file", "lists no classes")
        split_classes[split] = ids
    if len(splits) == 2:
        shared = set(split_classes["train"]) & set(split_classes["test"])
        if shared:
            names = sorted(classes[c] for c in shared)
            raise DataError(
                layout.split_classes("test"), f"class {names[0]}", f"also in the training classes ({len(names)} shared)"
            )
    return split_classes


def _read_split(
    layout: CubLayout,
    split: str,
    image_ids: list[int],
    images: dict[int, str],
    image_classes: dict[int, str],
    captions_per_image: int | None,
    width: int,
) -> CaptionSplit:
    """One split of ``image_ids``: its image table, captions (ids ``100 * image id + line``) and class labels."""
    image_rows, caption_rows = [], []
    for index, image_id in enumerate(image_ids):
        relative = images[image_id]
        item = f"image id {image_id} ({relative})"
        class_id = int(image_classes[image_id])
        image_rows.append((image_id, f"images/{relative}", class_id))
        for k, caption in enumerate(read_captions(layout.caption_file(relative), item, captions_per_image)):
            caption_rows.append((CAPTION_ID_STRIDE * image_id + k, image_id, index, caption))
    frame = pd.DataFrame(image_rows, columns=["image_id", "image_file", "class_id"])
    labels = multi_hot([[c - 1] for c in frame["class_id"]], width)
    captions = pd.DataFrame(caption_rows, columns=["caption_id", "image_id", "image_index", "caption"])
    return CaptionSplit("cub", split, layout.root, frame, captions, labels)
