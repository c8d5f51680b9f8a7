"""Prepared splits: the loaders' output stored as Hugging Face ``datasets`` (Arrow, memory-mapped).

``prepare_dataset`` reads a raw COCO- or CUB-format dataset through the shared
loaders and writes, under ``out_dir``::

    meta.json                 what was prepared, from where, with which settings
    vocab.json                words of the training captions (``corpora.text``)
    word_vectors.npy          (vocab, word_dim) float32 initial word vectors
    <split>/images/           Arrow: image_id, image_file, labels (label indices), class_id (CUB)
    <split>/captions/         Arrow: caption_id, image_id, image_index, caption, tokens

Images stay files under the raw root and are decoded only when an item is read.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpora.coco import COCO_SPLITS, load_coco
from corpora.corpus import CaptionSplit, multi_hot
from corpora.cub import CUB_SPLITS, load_cub
from corpora.images import load_rgb
from corpora.text import Vocabulary, word_vectors

LOADERS = {"coco": (load_coco, COCO_SPLITS), "cub": (load_cub, CUB_SPLITS)}
EVALUATION_SPLITS = {"coco": ("dev", "test"), "cub": ("test",)}


def prepare_dataset(
    kind: str,
    raw_root: str | Path,
    out_dir: str | Path,
    train_splits: list[str],
    min_word_count: int = 1,
    word_dim: int = 300,
    word_vectors_file: str | Path | None = None,
    seed: int = 0,
    check_images: bool = True,
) -> dict:
    """Read every split of ``raw_root`` (``kind`` "coco" or "cub") and store it under ``out_dir``.

    The vocabulary comes from the captions of ``train_splits`` only. Returns the
    metadata also written to ``meta.json``.
    """
    import datasets as hf  # Hugging Face; imported here so the loaders work without it

    hf.disable_progress_bars()

    if kind not in LOADERS:
        raise ValueError(f"unknown dataset format {kind!r}; allowed: {sorted(LOADERS)}")
    load, all_splits = LOADERS[kind]
    leaked = sorted(set(train_splits) & set(EVALUATION_SPLITS[kind]))
    if leaked or not train_splits or not set(train_splits) <= set(all_splits):
        raise ValueError(
            f"train_splits {train_splits} must be a non-empty subset of {list(all_splits)} "
            f"without the evaluation splits {list(EVALUATION_SPLITS[kind])}"
        )
    raw_root = Path(raw_root).resolve()
    splits = load(raw_root, check_images=check_images)
    vocab = Vocabulary.build((c for s in train_splits for c in splits[s].captions["caption"]), min_word_count)
    vectors, from_glove = word_vectors(vocab, word_dim, seed, word_vectors_file)

    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, split in splits.items():
        _image_table(split).pipe(hf.Dataset.from_pandas, preserve_index=False).save_to_disk(str(staging / name / "images"))
        captions = split.captions.assign(tokens=[vocab.encode(c) for c in split.captions["caption"]])
        hf.Dataset.from_pandas(captions, preserve_index=False).save_to_disk(str(staging / name / "captions"))
    vocab.save(staging / "vocab.json")
    np.save(staging / "word_vectors.npy", vectors)
    meta = {
        "format": kind,
        "raw_root": str(raw_root),
        "train_splits": list(train_splits),
        "splits": {n: {"images": len(s.images), "captions": len(s.captions)} for n, s in splits.items()},
        "label_width": int(next(iter(splits.values())).labels.shape[1]),
        "vocab_size": len(vocab),
        "min_word_count": min_word_count,
        "word_dim": word_dim,
        "word_vectors_file": str(word_vectors_file) if word_vectors_file else None,
        "words_from_word_vectors_file": from_glove,
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return meta


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

    def __post_init__(self):
        self._files = self.images["image_file"]
        self._ids = self.images["image_id"]

    def image(self, index: int):
        """The PIL image of row ``index`` of ``images``; a DataError names a missing or corrupt file."""
        return load_rgb(self.raw_root / self._files[index], f"image id {self._ids[index]} of split {self.name!r}")

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
        self.meta = json.loads(meta_file.read_text())
        self.vocab = Vocabulary.load(self.path / "vocab.json")

    @property
    def split_names(self) -> list[str]:
        return list(self.meta["splits"])

    def word_vectors(self) -> np.ndarray:
        return np.load(self.path / "word_vectors.npy", allow_pickle=False)

    def split(self, name: str) -> PreparedSplit:
        import datasets as hf

        if name not in self.meta["splits"]:
            raise KeyError(f"{self.path} has no split {name!r}; it has {self.split_names}")
        return PreparedSplit(
            name,
            Path(self.meta["raw_root"]),
            hf.load_from_disk(str(self.path / name / "images")),
            hf.load_from_disk(str(self.path / name / "captions")),
            self.meta["label_width"],
        )
