"""Export a run's score matrices and top-k ranked lists, named by ids, for rescoring and for eccv-caption.

    python -m pcmebench.export --prepared work/prepared/coco \
        --embeddings work/runs/coco/pcme/seed0/embeddings_test.safetensors --out export/pcme-seed0 [--top-k 100]
    python -m pcmebench.export --external --dataset coco --scoring cosine --prepared work/prepared/coco \
        --embeddings clip.npz --out export/clip [--top-k 100]

For each scoring (default: the run's, its own first; an external file's: ``--scoring``) it writes

- ``scores/<scoring>.safetensors``: ``image_ids``, ``caption_ids`` (int64) and ``scores`` (float32,
  images x captions, higher = closer), rows and columns in the split's order: the external format of
  ``pcmebench.external``, so the ``precomputed`` scoring evaluates it again to the same metrics;
- ``rankings/<scoring>.parquet``: for each (protocol, fold, direction) of the dataset's protocols
  (``pcmebench.protocols``), each query's ``top_k`` best items of that task's gallery, in the
  metrics' order (descending score, ties by the lower row; ``metrics.ranking``), with ids:
  RANKING_COLUMNS.

docs/export.md describes the files, their sizes and how to feed eccv-caption (``eccv_caption_lists``).
Everything is checked before anything is computed; the files are made in a hidden folder beside
``out`` (each written atomically) and moved into ``out`` only when all of them are made, so a bad
input or a failed write leaves ``out`` as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from corpora import DATASETS
from corpora.prepared import PreparedDataset
from metrics.ranking import query_chunks, row_counts
from models.scorings import SCORINGS
from pcmebench.evaluate import check_alignment, task_blocks
from pcmebench.external import read_external
from pcmebench.files import atomic_write
from pcmebench.logs import log_to_stderr
from pcmebench.protocols import EvaluationSplit, RetrievalTask, protocol_tasks
from pcmebench.runs import resolve_device, use_threads
from pcmebench.scoring import Embeddings, load_embeddings, score_matrix, tensors_read
from pcmebench.vocabulary import DIRECTIONS

log = logging.getLogger("pcmebench.export")

TOP_K = 100  # ECCV Caption's largest positive set is 48 captions (its mAP@R reads that deep), R@K at most 10
SCORES_FOLDER, RANKINGS_FOLDER = "scores", "rankings"
MATRIX = "scores"  # the matrix's name in a scores file: the item of the precomputed scoring (pcmebench.external)
ORIENTATION = "images x captions, higher = closer"
RANKING_COLUMNS = ["scoring", "protocol", "fold", "direction", "query_id", "rank", "item_id", "score"]
RANKING_SCHEMA = pa.schema(
    [
        ("scoring", pa.dictionary(pa.int8(), pa.string())),
        ("protocol", pa.dictionary(pa.int8(), pa.string())),
        ("fold", pa.int32()),
        ("direction", pa.dictionary(pa.int8(), pa.string())),
        ("query_id", pa.int64()),
        ("rank", pa.int32()),
        ("item_id", pa.int64()),
        ("score", pa.float32()),
    ]
)


def export_files(out_dir, scorings) -> list[Path]:
    """The files ``export_run`` writes for ``scorings``: each one's score matrix, then each one's rankings."""
    out_dir = Path(out_dir)
    return [out_dir / SCORES_FOLDER / f"{s}.safetensors" for s in scorings] + [
        out_dir / RANKINGS_FOLDER / f"{s}.parquet" for s in scorings
    ]


def ranked_groups(tasks: list[RetrievalTask], protocols=None) -> list[RetrievalTask]:
    """One task per (protocol, fold, direction) of ``protocols`` (default: every one), in the tasks' order.

    Tasks that share one (ECCV Caption's and CxC's queries on ECCV) share the gallery, so a query's
    list is the same in each: the group's task has the queries of all of them, in row order (only its
    queries and gallery are read; its positives are the first task's).
    """
    groups: dict[tuple, RetrievalTask] = {}
    for task in tasks:
        if protocols is not None and task.protocol not in protocols:
            continue
        key = (task.protocol, task.fold, task.direction)
        if key not in groups:
            groups[key] = task
            continue
        if not np.array_equal(groups[key].gallery, task.gallery):
            raise ValueError(f"{task.protocol} fold {task.fold} {task.direction}: tasks of one protocol with two galleries")
        groups[key] = dataclasses.replace(groups[key], queries=np.union1d(groups[key].queries, task.queries))
    return list(groups.values())


def top_columns(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best columns (all of them when fewer) and their scores, best first.

    The order is the metrics' (``metrics.ranking``): descending score, equal scores by the lower
    column. The k-th largest score t of a row is read by a partial sort; every column above t is
    in, and the free places go to the columns equal to t in column order; only those k are sorted.
    """
    n_queries, n_gallery = scores.shape
    k = min(k, n_gallery)
    columns = np.empty((n_queries, k), dtype=np.int64)
    for rows in query_chunks(n_queries, n_gallery, None):
        chunk = scores[rows]
        if k == n_gallery:
            candidates = np.broadcast_to(np.arange(n_gallery), chunk.shape)
        else:
            threshold = np.partition(chunk, n_gallery - k, axis=1)[:, n_gallery - k, None]
            taken = chunk >= threshold
            crowded = np.flatnonzero(row_counts(taken) > k)  # t is tied across the cut
            if len(crowded):
                above = chunk[crowded] > threshold[crowded]
                tied = chunk[crowded] == threshold[crowded]
                free = k - row_counts(above)
                taken[crowded] = above | (tied & (np.cumsum(tied, axis=1) <= free[:, None]))
            candidates = np.nonzero(taken)[1].reshape(len(chunk), k)  # each row's k columns, in column order
        order = np.argsort(-np.take_along_axis(chunk, candidates, axis=1), axis=1, kind="stable")
        columns[rows] = np.take_along_axis(candidates, order, axis=1)
    return columns, np.take_along_axis(scores, columns, axis=1)


def _constant(value: str, length: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(length, dtype=np.int8)), pa.array([value]))


def ranking_table(group: RetrievalTask, scores: np.ndarray, embeddings: Embeddings, scoring: str, k: int) -> pa.Table:
    """The ranked lists of one (protocol, fold, direction) from its (queries, gallery) block of scores, as RANKING_SCHEMA rows."""
    ids = {"image": embeddings.image_ids, "caption": embeddings.caption_ids}
    query_kind, item_kind = ("image", "caption") if group.direction == "i2t" else ("caption", "image")
    columns, values = top_columns(scores, k)
    n_queries, depth = columns.shape
    size = n_queries * depth
    return pa.table(
        {
            "scoring": _constant(scoring, size),
            "protocol": _constant(group.protocol, size),
            "fold": np.full(size, group.fold, dtype=np.int32),
            "direction": _constant(group.direction, size),
            "query_id": np.repeat(ids[query_kind][group.queries], depth),
            "rank": np.tile(np.arange(1, depth + 1, dtype=np.int32), n_queries),
            "item_id": ids[item_kind][group.gallery[columns]].ravel(),
            "score": values.ravel(),
        },
        schema=RANKING_SCHEMA,
    )


def write_rankings(path: Path, tables) -> None:
    """Stream the tables (one row group or more each) into one Parquet file, atomically."""

    def write(temporary):
        with pq.ParquetWriter(temporary, RANKING_SCHEMA, compression="zstd") as writer:
            for table in tables:
                writer.write_table(table)

    atomic_write(path, write)


def write_scores(path: Path, matrix: np.ndarray, embeddings: Embeddings, scoring: str) -> None:
    """One scoring's matrix with the ids, in pcmebench.external's format, atomically.

    ``save_file`` streams the matrix to disk (``tensorfiles.write_safetensors`` builds the file in
    memory: a 5K matrix is 500 MB); one metadata key leaves safetensors no key order to vary.
    """
    tensors = {
        "image_ids": torch.from_numpy(np.ascontiguousarray(embeddings.image_ids, dtype=np.int64)),
        "caption_ids": torch.from_numpy(np.ascontiguousarray(embeddings.caption_ids, dtype=np.int64)),
        MATRIX: torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32)),
    }
    about = {"scoring": scoring, "orientation": ORIENTATION, "settings": embeddings.settings, "source": embeddings.path.name}
    metadata = {"export": json.dumps(about, sort_keys=True, default=str)}
    atomic_write(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def _checked_request(embeddings: Embeddings, scorings, top_k, protocols, tasks) -> tuple[str, ...]:
    """The scorings to export; a scoring the embeddings cannot give, a bad ``top_k`` or an unknown protocol raise ValueError."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k: {top_k!r}; expected a positive number of items per query")
    scorings = tuple(embeddings.analysis.scorings if scorings is None else scorings)
    if not scorings or len(set(scorings)) != len(scorings):
        raise ValueError(f"scorings {list(scorings)}: give one or more, each once")
    for scoring in scorings:
        if scoring not in SCORINGS:
            raise ValueError(f"{embeddings.path}: scoring {scoring!r}: unknown; allowed: {', '.join(SCORINGS)}")
        lacking = [name for name in tensors_read(scoring) if name not in embeddings.tensors]
        if lacking:
            raise ValueError(
                f"{embeddings.path}: scoring {scoring!r} reads {', '.join(lacking)}, which the file does not hold; "
                f"its scorings: {', '.join(embeddings.analysis.scorings)}"
            )
    known = list(dict.fromkeys(task.protocol for task in tasks))
    unknown = sorted(set(protocols or ()) - set(known))
    if unknown:
        raise ValueError(f"protocols {unknown}: not protocols of dataset {embeddings.settings.get('dataset')!r}; its: {known}")
    return scorings


def export_run(
    prepared_dir, embeddings: Embeddings, out_dir, top_k: int = TOP_K, scorings=None, device="cpu", protocols=None,
    eccv_data=None, split: EvaluationSplit | None = None,
) -> list[Path]:  # fmt: skip
    """Write each scoring's score matrix and ranked lists (``export_files``) of ``embeddings`` under ``out_dir``.

    ``embeddings``: a trained run's (``pcmebench.scoring.load_embeddings``) or an external file's
    (``pcmebench.external.read_external``), of the test split of ``prepared_dir``; its settings name
    the dataset. ``scorings`` default to its analysis's; ``protocols`` to every one of the dataset's.
    ``split``: the test split of ``prepared_dir`` where the caller has read it already. Returns the files written.
    """
    out_dir = Path(out_dir)
    prepared = PreparedDataset(prepared_dir)
    split = split or EvaluationSplit.from_prepared(prepared, "test")
    check_alignment(embeddings, split, prepared_dir)
    if "dataset" not in embeddings.settings:
        raise ValueError(f"{embeddings.path}: its settings name no dataset; give the dataset (read_external's settings)")
    tasks = protocol_tasks(split, embeddings.settings["dataset"], prepared.raw_root, eccv_data)
    scorings = _checked_request(embeddings, scorings, top_k, protocols, tasks)
    groups = ranked_groups(tasks, protocols)
    device = resolve_device(device) if isinstance(device, str) else device
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for folder in (SCORES_FOLDER, RANKINGS_FOLDER):
            (staging / folder).mkdir()
        for scoring in scorings:
            started = time.perf_counter()
            matrix = score_matrix(embeddings, scoring, device)
            write_scores(staging / SCORES_FOLDER / f"{scoring}.safetensors", matrix, embeddings, scoring)
            blocks, matrix = task_blocks(groups, matrix), None
            tables = {i: ranking_table(groups[i], block, embeddings, scoring, top_k) for i, block in blocks}
            write_rankings(staging / RANKINGS_FOLDER / f"{scoring}.parquet", [tables[i] for i in range(len(groups))])
            log.info(
                "%s: the matrix and %d tasks' top-%d lists in %.1f s", scoring, len(groups), top_k, time.perf_counter() - started
            )
        written = export_files(out_dir, scorings)
        for path in written:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / path.relative_to(out_dir), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for path in written:
        log.info("wrote %s", path)
    return written


def eccv_caption_lists(rankings: pd.DataFrame, protocol: str = "5K") -> dict[str, dict[int, list[int]]]:
    """{"i2t": {image id: caption ids, best first}, "t2i": {caption id: image ids}} of one scoring's rankings
    of ``protocol``: the ``i2t_retrieved_items`` and ``t2i_retrieved_items`` of eccv-caption's
    ``Metrics.compute_all_metrics`` (naver-ai/eccv-caption, eccv_caption/metrics.py). On 1K each query's
    list is its fold's, which is what eccv-caption's COCO 1K keeps of a 5K list (docs/export.md)."""
    chosen = rankings[rankings["protocol"] == protocol]
    if chosen.empty:
        raise ValueError(f"rankings: no lists of protocol {protocol!r}; they have {sorted(set(rankings['protocol']))}")
    if chosen["scoring"].nunique() != 1:
        raise ValueError(f"rankings: lists of the scorings {sorted(set(chosen['scoring']))}; pass one scoring's")
    lists = {}
    for direction in DIRECTIONS:
        part = chosen[chosen["direction"] == direction].sort_values(["query_id", "rank"])
        queries, items = part["query_id"].to_numpy(), part["item_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, queries[1:] != queries[:-1]]) if len(queries) else np.array([], dtype=np.int64)
        lists[direction] = {int(q): group.tolist() for q, group in zip(queries[starts], np.split(items, starts[1:]), strict=True)}
    return lists


def read_embeddings(
    path, prepared_dir, external: bool, dataset: str | None, scorings
) -> tuple[Embeddings, EvaluationSplit | None]:
    """A trained run's embeddings file, or (``external``) a user's file of ``dataset`` read for ``scorings``
    with the test split it was put in the order of (None for a trained run's: export_run reads it)."""
    if not external:
        return load_embeddings(path), None
    prepared = PreparedDataset(prepared_dir)
    split = EvaluationSplit.from_prepared(prepared, "test")
    settings = {"dataset": dataset, "method": Path(path).stem}
    return read_external(path, prepared, split, scorings, settings=settings), split


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pcmebench.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", required=True, help="the prepared dataset folder")
    parser.add_argument("--embeddings", required=True, help="a run's embeddings_test.safetensors; with --external a user's file")
    parser.add_argument("--out", required=True, help="the folder of scores/ and rankings/")
    parser.add_argument("--top-k", type=int, default=TOP_K, help=f"items per query in the rankings (default {TOP_K})")
    parser.add_argument("--scoring", nargs="+", default=None, choices=list(SCORINGS),
                        help="scorings (default: the run's); with --external required")  # fmt: skip
    parser.add_argument("--protocols", nargs="+", default=None, help="the rankings' protocols (default: every one)")
    parser.add_argument("--external", action="store_true", help="the file is a user's (docs/external.md)")
    parser.add_argument("--dataset", default=None, choices=DATASETS, help="with --external: the dataset the file is of")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the matrices are computed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.external and (args.dataset is None or args.scoring is None):
        parser.error("--external needs --dataset and --scoring")
    log_to_stderr()
    use_threads(args.threads)
    torch.set_float32_matmul_precision("highest")  # the evaluation's fp32 products: the same matrices
    try:
        embeddings, split = read_embeddings(args.embeddings, args.prepared, args.external, args.dataset, args.scoring)
        export_run(args.prepared, embeddings, args.out, args.top_k, args.scoring, args.device, args.protocols, split=split)
    except (ValueError, FileNotFoundError) as error:  # DataError is a ValueError: the message names file and item
        sys.exit(f"pcmebench-export: {error}")


if __name__ == "__main__":
    main()
