"""The lists a researcher embeds with their own model: an evaluation split's images and captions, in the split's row order.

    python -m pcmebench.lists --raw data/coco --format coco --out results/lists/coco [--split test]
    python -m pcmebench.lists --prepared work/prepared/coco --out results/lists/coco [--split test]

writes ``images.csv`` (row, image_id, file) and ``captions.csv`` (row, caption_id, image_id, text).
``file`` is the image's path relative to the raw dataset's folder (``<data_root>/coco``,
``<data_root>/cub``), ``text`` the caption as the annotations give it. Every protocol evaluates the
``test`` split. From the raw folder, the lists read the annotations and split files only (COCO: the
captions and instances files of val2014 and ``coco_test_ids.npy``; CUB: the index files, the class
split and the captions), not the images, through the same loaders as the prepare stage, so their
rows are the prepared split's. A file of embeddings or scores made over these lists
(``pcmebench.external``, docs/external.md) names its rows by these ids, in this order or in any other.
`snakemake lists` writes them for every configured dataset.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from corpora import dataset_format
from corpora.corpus import CaptionSplit
from corpora.prepared import LOADERS, PreparedDataset
from pcmebench.logs import log_to_stderr
from pcmebench.tables import write_csv

log = logging.getLogger("pcmebench.lists")

IMAGE_LIST_COLUMNS = ["row", "image_id", "file"]
CAPTION_LIST_COLUMNS = ["row", "caption_id", "image_id", "text"]
LIST_FILES = {"images": "images.csv", "captions": "captions.csv"}


def split_lists(prepared_dir, split: str = "test") -> dict[str, pd.DataFrame]:
    """{"images": ..., "captions": ...}: the prepared split's rows, in its order, as the lists' columns."""
    data = PreparedDataset(prepared_dir).split(split)
    images = data.images.select_columns(["image_id", "image_file"]).to_pandas()
    captions = data.captions.select_columns(["caption_id", "image_id", "caption"]).to_pandas()
    return _as_lists(images, captions)


def raw_lists(kind: str, raw_root, split: str = "test") -> dict[str, pd.DataFrame]:
    """The same lists from a raw dataset of format ``kind`` ("coco" or "cub"), its images not read."""
    load, splits = LOADERS[kind]
    if split not in splits:
        raise ValueError(f"{kind} has no split {split!r}; its splits: {', '.join(splits)}")
    data: CaptionSplit = load(raw_root, splits=(split,), check_images=False)[split]
    return _as_lists(data.images[["image_id", "image_file"]], data.captions[["caption_id", "image_id", "caption"]])


def _as_lists(images: pd.DataFrame, captions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    images = images.rename(columns={"image_file": "file"}).assign(row=np.arange(len(images), dtype=np.int64))
    captions = captions.rename(columns={"caption": "text"}).assign(row=np.arange(len(captions), dtype=np.int64))
    return {"images": images[IMAGE_LIST_COLUMNS], "captions": captions[CAPTION_LIST_COLUMNS]}


def write_lists(lists: dict[str, pd.DataFrame], out_dir, split: str = "test") -> dict[str, Path]:
    """Write a split's lists into ``out_dir``, each atomically; returns their paths."""
    paths = {}
    for kind, table in lists.items():
        paths[kind] = Path(out_dir) / LIST_FILES[kind]
        write_csv(table, paths[kind])
        log.info("wrote %s: %d %s of split %r", paths[kind], len(table), kind, split)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prepared", help="the prepared dataset folder (work/prepared/<dataset>)")
    source.add_argument("--raw", help="the raw dataset folder (data/<dataset>): annotations and split files only")
    parser.add_argument("--format", choices=sorted(LOADERS), help="with --raw: the dataset's format (coco or cub)")
    parser.add_argument("--dataset", help="with --raw, instead of --format: the dataset's name")
    parser.add_argument("--out", required=True, help="the folder to write images.csv and captions.csv into")
    parser.add_argument("--split", default="test", help="the split (default: test, which every protocol evaluates)")
    args = parser.parse_args(argv)
    log_to_stderr()
    if args.prepared:
        lists = split_lists(args.prepared, args.split)
    elif kind := args.format or (args.dataset and dataset_format(args.dataset)):
        lists = raw_lists(kind, args.raw, args.split)
    else:
        parser.error("--raw needs --format or --dataset")
    write_lists(lists, args.out, args.split)


if __name__ == "__main__":
    main()
