"""The prepare stage: a raw dataset -> Arrow splits, vocabulary and word vectors (corpora.prepared).

    python -m pcmebench.prepare --dataset synthetic-coco --format coco --raw data/synthetic-coco \
        --output work/prepared/synthetic-coco --train-splits train restval --min-word-count 1 --word-dim 300 \
        --word-vector-std 1.0 [--word-vectors GLOVE|None] [--stored-shorter-side N|None] [--workers N] [--sources JSON]

A real dataset's split files are verified against ``--sources`` (the config's ``sources`` section,
JSON) first: a download is checked as it lands, files placed by hand only here, and Reed et al.'s
CUB files carry the names of PCME's, with another split.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from corpora import DATASETS, dataset_format
from corpora.prepared import prepare_dataset
from corpora.sources import REAL_DATASETS, verify_in_place
from pcmebench.logs import log_to_stderr

log = logging.getLogger("pcmebench.prepare")


def none_or(kind):
    """An argument of type ``kind``, or None as Snakemake writes it into a command line ("None")."""
    return lambda text: None if text in ("None", "null") else kind(text)


def number(text: str) -> int | float:
    """A number as the config gives it: an integer stays one."""
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--format", required=True, choices=sorted({dataset_format(name) for name in DATASETS}))
    parser.add_argument("--raw", required=True, help="the raw dataset's root")
    parser.add_argument("--output", required=True)
    parser.add_argument("--train-splits", nargs="+", required=True)
    parser.add_argument("--min-word-count", type=int, required=True)
    parser.add_argument("--word-dim", type=int, required=True)
    parser.add_argument("--word-vector-std", type=number, required=True)
    parser.add_argument("--word-vectors", type=none_or(str), default=None, help="a GloVe file (None: every vector drawn)")
    parser.add_argument("--stored-shorter-side", type=none_or(int), default=None, help="store resized copies (None: no)")
    parser.add_argument("--workers", type=int, default=1, help="processes that decode every image once")
    parser.add_argument("--sources", type=json.loads, default=None, help="the config's sources section (JSON); real data only")
    args = parser.parse_args(argv)
    log_to_stderr()
    if args.dataset in REAL_DATASETS:
        if args.sources is None:
            parser.error(f"--sources is required for {args.dataset}: its split files are verified against it")
        checked = verify_in_place(args.dataset, Path(args.raw), args.sources)
        log.info("verified %s", ", ".join(map(str, checked)))
    meta = prepare_dataset(
        args.format,
        args.raw,
        args.output,
        train_splits=args.train_splits,
        min_word_count=args.min_word_count,
        word_dim=args.word_dim,
        word_vectors_file=args.word_vectors,
        word_vector_std=args.word_vector_std,
        stored_shorter_side=args.stored_shorter_side,
        workers=args.workers,
    )
    log.info("prepared %s", json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
