"""Prepared splits: the loaders' output stored as Hugging Face ``datasets`` (Arrow, memory-mapped).

``prepare_dataset`` reads a raw COCO- or CUB-format dataset through the shared
loaders and writes, under ``out_dir``::

    meta.json                 what was prepared, from where (relative to this folder), with which
                              settings, and the SHA-256 of everything else written here
    vocab.json                words of the training captions (``corpora.text``)
    word_vectors.npy          (vocab, word_dim) float32 initial word vectors
    <split>/images/           Arrow: image_id, image_file, labels (label indices), class_id (CUB)
    <split>/captions/         Arrow: caption_id, image_id, image_index, caption, tokens
    stored/<image_file>       with ``stored_shorter_side``: every image resized once (``corpora.images.store_resized``)

Images stay files under the raw root and are decoded only when an item is read;
``prepare_dataset`` decodes each one once, to its last byte, so a truncated file
stops this stage instead of a training job hours later. ``meta.json`` holds the
raw root relative to the prepared folder, so a project moved or copied with its
``data_root`` and ``work_dir`` keeps reading its own images. With
``stored_shorter_side`` the jobs read the stored copies instead, a few times
fewer pixels to decode per image (benchmarks/bench_data_path.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpora.coco import COCO_SPLITS, load_coco
from corpora.corpus import CaptionSplit, multi_hot
from corpora.cub import CUB_SPLITS, load_cub
from corpora.errors import DataError
from corpora.images import STORED_QUALITY, load_rgb, store_images
from corpora.readers import read_json, read_npy
from corpora.text import Vocabulary, word_vectors

LOADERS = {"coco": (load_coco, COCO_SPLITS), "cub": (load_cub, CUB_SPLITS)}
EVALUATION_SPLITS = {"coco": ("dev", "test"), "cub": ("test",)}
STORED_FOLDER = "stored"


def prepare_dataset(
    kind: str,
    raw_root: str | Path,
    out_dir: str | Path,
    train_splits: list[str],
    min_word_count: int = 1,
    word_dim: int = 300,
    word_vectors_file: str | Path | None = None,
    seed: int = 0,
    word_vector_std: float = 1.0,
    check_images: bool = True,
    workers: int = 1,
    stored_shorter_side: int | None = None,
) -> dict:
    """Read every split of ``raw_root`` (``kind`` "coco" or "cub") and store it under ``out_dir``.

    The vocabulary comes from the captions of ``train_splits`` only. With ``check_images``
    every image is decoded (on ``workers`` processes) and the first bad one is named.
    With ``stored_shorter_side`` every image is also stored resized under ``stored/`` (decoded
    whole on the way, so checked too), and the jobs read those copies.
    Returns the metadata also written to ``meta.json``.
    """
    load = _loader(kind, train_splits)
    raw_root = Path(raw_root)
    # storing decodes every image whole: the loader's own check would decode them all twice
    splits = load(raw_root, check_images=check_images and not stored_shorter_side, workers=workers)
    vocab = Vocabulary.build((c for s in train_splits for c in splits[s].captions["caption"]), min_word_count)
    vectors, from_glove = word_vectors(vocab, word_dim, seed, word_vectors_file, word_vector_std)

    out_dir = Path(out_dir)
    staging = _empty_staging(out_dir)
    _write_tables(staging, splits, vocab)
    if stored_shorter_side:
        _store_copies(staging, splits, stored_shorter_side, workers)
    vocab.save(staging / "vocab.json")
    np.save(staging / "word_vectors.npy", vectors)
    meta = {
        "format": kind,
        # relative: the project (data_root and work_dir) can move as a whole
        "raw_root": os.path.relpath(raw_root.absolute(), out_dir.absolute()),
        "train_splits": list(train_splits),
        "splits": {n: {"images": len(s.images), "captions": len(s.captions)} for n, s in splits.items()},
        "label_width": int(next(iter(splits.values())).labels.shape[1]),
        "vocab_size": len(vocab),
        "min_word_count": min_word_count,
        "word_dim": word_dim,
        "word_vectors_file": str(word_vectors_file) if word_vectors_file else None,
        "words_from_word_vectors_file": from_glove,
        "word_vector_std": word_vector_std,
        "stored_images": (
            {"folder": STORED_FOLDER, "shorter_side": stored_shorter_side, "jpeg_quality": STORED_QUALITY}
            if stored_shorter_side
            else None
        ),
        "content_sha256": content_digest(staging),
    }
    _publish(staging, out_dir, meta)
    return meta


def _loader(kind: str, train_splits: list[str]):
    """The loader of format ``kind``, once ``train_splits`` is known to be a non-empty subset of its
    splits without an evaluation split."""
    if kind not in LOADERS:
        raise ValueError(f"unknown dataset format {kind!r}; allowed: {sorted(LOADERS)}")
    load, all_splits = LOADERS[kind]
    leaked = sorted(set(train_splits) & set(EVALUATION_SPLITS[kind]))
    if leaked or not train_splits or not set(train_splits) <= set(all_splits):
        raise ValueError(
            f"train_splits {train_splits} must be a non-empty subset of {list(all_splits)} "
            f"without the evaluation splits {list(EVALUATION_SPLITS[kind])}"
        )
    return load


def _write_tables(staging: Path, splits: dict[str, CaptionSplit], vocab: Vocabulary) -> None:
    """Each split's image and caption tables (captions with their token ids) as Arrow under ``staging/<split>/``."""
    import datasets as hf  # Hugging Face; imported here so the loaders work without it

    hf.disable_progress_bars()
    for name, split in splits.items():
        _image_table(split).pipe(hf.Dataset.from_pandas, preserve_index=False).save_to_disk(str(staging / name / "images"))
        captions = split.captions.assign(tokens=[vocab.encode(c) for c in split.captions["caption"]])
        hf.Dataset.from_pandas(captions, preserve_index=False).save_to_disk(str(staging / name / "captions"))


def _store_copies(staging: Path, splits: dict[str, CaptionSplit], shorter_side: int, workers: int) -> None:
    """Every image of ``splits`` resized to ``shorter_side`` under ``staging/stored/``, once however many splits list it."""
    jobs = {
        file: (path, staging / STORED_FOLDER / file, item)
        for split in splits.values()
        for file, (path, item) in zip(split.images["image_file"], split.image_items(), strict=True)
    }
    store_images(list(jobs.values()), shorter_side, workers, f"storing images at {shorter_side} px")


def _empty_staging(out_dir: Path) -> Path:
    """An empty ``<out_dir>.partial`` beside ``out_dir``: the folder is written there and moved into place when whole."""
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, out_dir: Path, meta: dict) -> None:
    """Write ``meta.json`` last, then put the finished folder in ``out_dir``'s place."""
    (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


def content_digest(folder: str | Path) -> str:
    """SHA-256 of every file of a prepared folder but ``meta.json`` (names and bytes, in name order).

    It identifies the prepared data a run trains on: captions, image list, labels, vocabulary
    and word vectors, and the stored images if any (not the raw image pixels, under the raw root).
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "meta.json"):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _image_table(split: CaptionSplit):
    labels = [np.flatnonzero(row).astype(np.int16).tolist() for row in split.labels]
    return split.images.assign(labels=labels)


@dataclass
class PreparedSplit:
    """One prepared split: Arrow tables of images and captions, images decoded on access."""

    name: str
    raw_root: Path
    images: object  # datasets.Dataset
    captions: object  # datasets.Dataset
    label_width: int
    image_root: Path | None = None  # where the image files are read: the stored copies, else raw_root

    def __post_init__(self):
        self._files = self.images["image_file"]
        self._ids = self.images["image_id"]

    def image(self, index: int):
        """The PIL image of row ``index`` of ``images``; a DataError names a missing or corrupt file."""
        root = self.image_root or self.raw_root
        return load_rgb(root / self._files[index], f"image id {self._ids[index]} of split {self.name!r}")

    def label_matrix(self) -> np.ndarray:
        """(images, label_width) bool multi-hot labels."""
        return multi_hot(self.images["labels"], self.label_width)


class PreparedDataset:
    """A folder written by ``prepare_dataset``, opened memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{self.path} is not a prepared dataset (no meta.json); run the prepare rule")
        self.meta = read_json(meta_file, ("format", "raw_root", "splits", "label_width", "train_splits"))
        self.vocab = Vocabulary.load(self.path / "vocab.json")

    @property
    def raw_root(self) -> Path:
        """The raw dataset's folder (stored relative to this folder; absolute in older ones)."""
        return self.path / self.meta["raw_root"]

    @property
    def image_root(self) -> Path:
        """Where the jobs read images: the resized copies of ``stored_shorter_side``, else the raw root."""
        stored = self.meta.get("stored_images")
        return self.path / stored["folder"] if stored else self.raw_root

    @property
    def content_sha256(self) -> str:
        """What the prepared data is (``content_digest``); computed for folders that predate it."""
        return self.meta.get("content_sha256") or content_digest(self.path)

    @property
    def split_names(self) -> list[str]:
        return list(self.meta["splits"])

    def word_vectors(self) -> np.ndarray:
        vectors = read_npy(self.path / "word_vectors.npy", ndim=2, kind="f")
        if len(vectors) != len(self.vocab):
            raise DataError(self.path / "word_vectors.npy", "file", f"{len(vectors)} rows for {len(self.vocab)} vocabulary words")
        return vectors

    def split(self, name: str) -> PreparedSplit:
        import datasets as hf

        if name not in self.meta["splits"]:
            raise KeyError(f"{self.path} has no split {name!r}; it has {self.split_names}")
        return PreparedSplit(
            name,
            self.raw_root,
            hf.load_from_disk(str(self.path / name / "images")),
            hf.load_from_disk(str(self.path / name / "captions")),
            self.meta["label_width"],
            self.image_root,
        )
