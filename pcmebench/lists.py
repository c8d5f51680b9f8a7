"""The lists a researcher embeds with their own model: an evaluation split's images and captions, in the split's row order.

    python -m pcmebench.lists --prepared work/prepared/coco --out lists/coco [--split test]

writes ``images.csv`` (row, image_id, file) and ``captions.csv`` (row, caption_id, image_id, text).
``file`` is the image's path relative to the raw dataset's folder (``<data_root>/coco``,
``<data_root>/cub``; the prepared data's ``meta.json`` records where it is), ``text`` the caption as
the annotations give it. Every protocol evaluates the ``test`` split. A file of embeddings or scores
made over these lists (``pcmebench.external``, docs/external.md) names its rows by these ids, in this
order or in any other.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from corpora.prepared import PreparedDataset
from pcmebench.logs import log_to_stderr
from pcmebench.tables import write_csv

log = logging.getLogger("pcmebench.lists")

IMAGE_LIST_COLUMNS = ["row", "image_id", "file"]
CAPTION_LIST_COLUMNS = ["row", "caption_id", "image_id", "text"]
LIST_FILES = {"images": "images.csv", "captions": "captions.csv"}


def split_lists(prepared_dir, split: str = "test") -> dict[str, pd.DataFrame]:
    """{"images": ..., "captions": ...}: the split's rows, in its order, as the lists' columns."""
    data = PreparedDataset(prepared_dir).split(split)
    images = data.images.select_columns(["image_id", "image_file"]).to_pandas()
    captions = data.captions.select_columns(["caption_id", "image_id", "caption"]).to_pandas()
    images = images.rename(columns={"image_file": "file"}).assign(row=np.arange(len(images), dtype=np.int64))
    captions = captions.rename(columns={"caption": "text"}).assign(row=np.arange(len(captions), dtype=np.int64))
    return {"images": images[IMAGE_LIST_COLUMNS], "captions": captions[CAPTION_LIST_COLUMNS]}


def write_lists(prepared_dir, out_dir, split: str = "test") -> dict[str, Path]:
    """Write the split's lists into ``out_dir``, each atomically; returns their paths."""
    paths = {}
    for kind, table in split_lists(prepared_dir, split).items():
        paths[kind] = Path(out_dir) / LIST_FILES[kind]
        write_csv(table, paths[kind])
        log.info("wrote %s: %d %s of split %r", paths[kind], len(table), kind, split)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", required=True, help="the prepared dataset folder (work/prepared/<dataset>)")
    parser.add_argument("--out", required=True, help="the folder to write images.csv and captions.csv into")
    parser.add_argument("--split", default="test", help="the split (default: test, which every protocol evaluates)")
    args = parser.parse_args(argv)
    log_to_stderr()
    write_lists(args.prepared, args.out, args.split)


if __name__ == "__main__":
    main()
