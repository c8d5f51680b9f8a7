"""Evaluate a model trained elsewhere: its embeddings, or its score matrix, of an evaluation split, from a file.

    pcmebench-evaluate --dataset coco --prepared work/prepared/coco --embeddings clip.safetensors \
        --scoring cosine --out results/clip/ [--name clip-vitb32] [--label "CLIP ViT-B/32"] [--seed 0] [--statistics ...]

(``python -m pcmebench.external`` alike.) It writes the five tables a trained run's evaluation
writes (results/README.md), with ``method`` the name and ``seed`` the given seed, computed by the
same functions (``pcmebench.evaluate.evaluate_embeddings``), and ``external.json``: the model's
name, label, colour, scorings and statistics, and the file with its SHA-256, which
``pcmebench.aggregate`` gathers into ``external.csv`` (the workflow's config key ``external`` runs
this for every file it lists).

The file (safetensors, or numpy's ``.npz`` with the same names) holds ``image_ids`` and
``caption_ids`` (int) naming its rows by the ids of the lists ``python -m pcmebench.lists`` writes,
in that order or in any other (it is put in the split's order); without them its rows must be
the lists' rows, in order. Beside them, the tensors its scorings read, as ``pcmebench.embed``
writes them: ``image_<item>`` and ``caption_<item>`` for each item (``embeddings`` (N, D) or
(N, K, D); ``mu``, ``log_sigma`` (N, D); ``samples`` (N, J, D)) and the learned scalars (``a``,
``b``); or ``scores``, a score matrix (images x captions, higher = closer), which the
``precomputed`` scoring ranks. With ``image_log_sigma`` and ``caption_log_sigma`` the σ analysis
runs too. docs/external.md describes the format with examples.

A file that cannot be used raises a ``corpora.DataError`` naming the file, the tensor and the
first offending ids, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from corpora import DATASETS, DataError
from corpora.prepared import PreparedDataset
from models.registry import registered
from models.scorings import SCORINGS, UNCERTAINTY_STATISTICS
from pcmebench.evaluate import Evaluation, evaluate_embeddings, write_evaluation
from pcmebench.files import atomic_write
from pcmebench.logs import log_to_stderr
from pcmebench.protocols import EvaluationSplit
from pcmebench.runs import file_sha256, resolve_device, use_threads
from pcmebench.scoring import MODALITIES, Analysis, Embeddings, tensors_read
from pcmebench.tables import EXTERNAL_COLUMNS, EXTERNAL_RECORD, RUN_TABLES
from pcmebench.tensorfiles import read_safetensors

log = logging.getLogger("pcmebench.external")

FORMAT = "see docs/external.md for the format"
MATRIX = "scores"  # a score matrix's name in the file: the item of the precomputed scoring
SIGMA = "log_sigma"  # the item whose presence (both modalities) brings the σ analysis
ONE_PER_ITEM = "embeddings"  # an (N, D) one is one embedding per item: (N, 1, D), as embed writes it
SHOWN = 5  # offending ids an error names


def _first(ids) -> str:
    ids = [str(int(i)) for i in np.asarray(ids).ravel()]
    return ", ".join(ids[:SHOWN]) + (f" ... ({len(ids)} in all)" if len(ids) > SHOWN else "")


def read_arrays(path: Path) -> dict[str, torch.Tensor]:
    """Every named array of a ``.safetensors`` or ``.npz`` file, as CPU tensors."""
    if path.suffix == ".safetensors":
        return read_safetensors(path, "file", f"write the file again; {FORMAT}")[0]
    if path.suffix != ".npz":
        raise DataError(path, "file", f"is neither .safetensors nor .npz; save the arrays as one of them ({FORMAT})")
    if not path.is_file():
        raise DataError(path, "file", "not found")
    try:
        with np.load(path, allow_pickle=False) as loaded:
            arrays = {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, EOFError, TypeError, AttributeError, zipfile.BadZipFile) as error:
        raise DataError(path, "file", f"not a readable .npz file of named arrays (np.savez) ({error}); {FORMAT}") from None
    tensors = {}
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise DataError(path, key, f"holds {value.dtype} values; ids are integers and tensors floating-point numbers")
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
    return tensors


def row_order(path: Path, arrays: dict, modality: str, split_ids: np.ndarray, prepared: PreparedDataset) -> np.ndarray:
    """For each row of the split, its row in the file (from the file's ``<modality>_ids``; without them, the same row)."""
    key = f"{modality}_ids"
    if key not in arrays:
        log.warning("%s: no %s; its %s rows are taken as the lists' rows, in order", path, key, modality)
        return np.arange(len(split_ids))
    ids = arrays[key]
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.ndim != 1:
        raise DataError(path, key, f"is {ids.dtype} of shape {tuple(ids.shape)}; expected one integer id per row (1-D)")
    ids = ids.numpy().astype(np.int64)
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(path, key, f"ids listed more than once: {_first(values[counts > 1])}; each row needs its own id")
    extra = ids[~np.isin(ids, split_ids)]
    if len(extra):
        raise DataError(
            path, key, f"ids that are not {modality}s of the test split of {prepared.path}: {_first(extra)}"
            f"{_elsewhere(prepared, modality, extra)}; embed the test split's lists (python -m pcmebench.lists)"
        )  # fmt: skip
    missing = split_ids[~np.isin(split_ids, ids)]
    if len(missing):
        raise DataError(
            path, key, f"lacks {len(missing)} of the test split's {len(split_ids)} {modality}s: {_first(missing)}; "
            "embed every row of the lists (python -m pcmebench.lists)"
        )  # fmt: skip
    sorter = np.argsort(ids)
    return sorter[np.searchsorted(ids, split_ids, sorter=sorter)]


def _elsewhere(prepared: PreparedDataset, modality: str, ids: np.ndarray) -> str:
    """Which other splits of the prepared data hold ``ids``, in words."""
    column = {"image": ("images", "image_id"), "caption": ("captions", "caption_id")}[modality]
    found = []
    for name in prepared.split_names:
        if name != "test":
            table = getattr(prepared.split(name), column[0])
            held = np.isin(ids, np.asarray(table[column[1]], dtype=np.int64)).sum()
            found += [f"{held} in its {name!r} split"] if held else []
    return f" ({', '.join(found)})" if found else ""


def _per_item(path: Path, arrays: dict, key: str, file_ids: np.ndarray, reason: str) -> torch.Tensor:
    """One modality's tensor of one item: a row per id, floating-point, finite."""
    if key not in arrays:
        raise DataError(path, key, f"absent: {reason}; the file holds {', '.join(sorted(arrays))} ({FORMAT})")
    value = arrays[key]
    if not value.is_floating_point() or value.ndim < 2 or len(value) != len(file_ids):
        raise DataError(
            path, key, f"is {value.dtype} of shape {tuple(value.shape)}; expected floating-point numbers, one row per id "
            f"({len(file_ids)} rows; {FORMAT})"
        )  # fmt: skip
    bad = ~torch.isfinite(value.reshape(len(value), -1)).all(1).numpy()
    if bad.any():
        raise DataError(path, key, f"NaN or infinite values in {bad.sum()} row(s), of ids {_first(file_ids[bad])}")
    value = value.float()
    return value[:, None] if key.endswith(ONE_PER_ITEM) and value.ndim == 2 else value


def _score_matrix(path: Path, arrays: dict, image_ids: np.ndarray, caption_ids: np.ndarray) -> torch.Tensor:
    """The file's ``scores``: images x captions, floating-point, finite."""
    expected = (len(image_ids), len(caption_ids))
    if MATRIX not in arrays:
        raise DataError(path, MATRIX, f"absent: scoring 'precomputed' ranks it; the file holds {', '.join(sorted(arrays))}")
    value = arrays[MATRIX]
    shape = tuple(value.shape)
    if shape == expected[::-1] and expected[0] != expected[1]:
        raise DataError(path, MATRIX, f"is captions x images {shape}; it must be images x captions {expected}: transpose it")
    if shape != expected or not value.is_floating_point():
        raise DataError(path, MATRIX, f"is {value.dtype} {shape}; expected floating-point scores, images x captions {expected}")
    bad = ~torch.isfinite(value).numpy()
    if bad.any():
        rows, columns = np.nonzero(bad)
        pairs = ", ".join(f"({image_ids[r]}, {caption_ids[c]})" for r, c in zip(rows[:SHOWN], columns[:SHOWN], strict=True))
        raise DataError(path, MATRIX, f"NaN or infinite at {len(rows)} (image id, caption id) pair(s): {pairs}")
    return value.float()


def _learned(path: Path, arrays: dict, name: str, reason: str) -> torch.Tensor:
    if name not in arrays:
        raise DataError(path, name, f"absent: {reason}; the file holds {', '.join(sorted(arrays))}")
    value = arrays[name]
    if value.numel() != 1 or not value.is_floating_point() or not torch.isfinite(value).all():
        raise DataError(path, name, f"is {value.dtype} {tuple(value.shape)}; expected one finite floating-point number")
    return value.float().reshape(1)


def _check_scorings(path: Path, tensors: dict, scorings: tuple[str, ...]) -> None:
    """Each scoring on the first rows: tensors whose shapes it cannot read are named before the evaluation runs."""
    for scoring in scorings:
        entry, reads = SCORINGS[scoring], tensors_read(scoring)
        shapes = ", ".join(f"{k} {tuple(tensors[k].shape)}" for k in reads)
        for modality in MODALITIES:
            if len({tensors[f"{modality}_{item}"].shape for item in entry.items}) > 1:
                raise DataError(path, f"scoring {scoring!r}", f"reads {shapes}: one modality's tensors need one shape")
        images, captions = ({item: tensors[f"{m}_{item}"][:2] for item in entry.items} for m in MODALITIES)
        learned = {name: tensors[name].reshape(()) for name in entry.learned}
        try:
            with torch.no_grad():
                entry.compute(images, captions, learned)
        except (ValueError, RuntimeError, IndexError) as error:
            raise DataError(path, f"scoring {scoring!r}", f"cannot read {shapes} ({error}); {FORMAT}") from None


def _analysis(path: Path, arrays: dict, scorings, statistics) -> Analysis:
    """The scorings (own first) and, with log σ in the file, the statistics (default: every one)."""
    scorings = tuple(scorings)
    unknown = [s for s in scorings if s not in SCORINGS] + [s for s in statistics or () if s not in UNCERTAINTY_STATISTICS]
    if not scorings or unknown:
        raise ValueError(
            f"scorings {list(scorings)}, statistics {list(statistics or ())}: unknown {unknown or 'none given'}; "
            f"scorings: {', '.join(SCORINGS)}; statistics: {', '.join(UNCERTAINTY_STATISTICS)}"
        )
    if not all(f"{m}_{SIGMA}" in arrays for m in MODALITIES):
        if statistics:
            raise DataError(path, f"image_{SIGMA}, caption_{SIGMA}", f"absent: the statistics {list(statistics)} read them")
        return Analysis(scorings)
    return Analysis(scorings, SIGMA, tuple(statistics or UNCERTAINTY_STATISTICS))


def read_external(
    path, prepared: PreparedDataset, split: EvaluationSplit, scorings, statistics=None, settings: dict | None = None
) -> Embeddings:
    """An external file's tensors in ``split``'s row order, checked, as the evaluation takes them;
    ``settings`` name the run (dataset, method, seed)."""
    path = Path(path)
    arrays = read_arrays(path)
    analysis = _analysis(path, arrays, scorings, statistics)
    order = {m: row_order(path, arrays, m, ids, prepared) for m, ids in zip(MODALITIES, (split.image_ids, split.caption_ids))}
    file_ids = {"image": split.image_ids[np.argsort(order["image"])], "caption": split.caption_ids[np.argsort(order["caption"])]}
    items = {item for s in analysis.scorings for item in SCORINGS[s].items} | ({SIGMA} if analysis.probabilistic else set())
    tensors = {}
    for item in sorted(items):
        if item == MATRIX:
            matrix = _score_matrix(path, arrays, file_ids["image"], file_ids["caption"])
            matrix = matrix[torch.from_numpy(order["image"])][:, torch.from_numpy(order["caption"])]
            tensors |= {f"image_{MATRIX}": matrix, f"caption_{MATRIX}": matrix.T}
            continue
        reason = f"the scorings {list(analysis.scorings)} and statistics {list(analysis.statistics)} read {item!r}"
        for m in MODALITIES:
            value = _per_item(path, arrays, f"{m}_{item}", file_ids[m], reason)
            tensors[f"{m}_{item}"] = value[torch.from_numpy(order[m])]
        shapes = [tuple(tensors[f"{m}_{item}"].shape) for m in MODALITIES]
        if shapes[0][1:] != shapes[1][1:]:
            raise DataError(
                path, f"image_{item}, caption_{item}", f"shapes {shapes[0]}, {shapes[1]}: need one shape but for the rows"
            )
    for name in sorted({name for s in analysis.scorings for name in SCORINGS[s].learned}):
        tensors[name] = _learned(path, arrays, name, f"a scoring of {list(analysis.scorings)} reads it")
    if analysis.probabilistic and tensors[f"image_{SIGMA}"].ndim != 2:
        raise DataError(path, f"image_{SIGMA}", f"has shape {tuple(tensors[f'image_{SIGMA}'].shape)}; log σ is (N, D)")
    _check_scorings(path, tensors, analysis.scorings)
    ignored = sorted(set(arrays) - {*tensors, *(f"{m}_ids" for m in MODALITIES), MATRIX})
    if ignored:
        log.info("%s: not read by the scorings %s: %s", path, list(analysis.scorings), ", ".join(ignored))
    return Embeddings(path, split.image_ids, split.caption_ids, split.caption_image, tensors, settings or {}, analysis)


def evaluate_external(
    prepared_dir, path, dataset: str, scorings, name: str | None = None, seed: int = 0, statistics=None,
    device: str = "auto", eccv_data=None,
) -> Evaluation:  # fmt: skip
    """Every table of one external file against the test split of ``prepared_dir``; ``method`` is ``name``
    (default: the file's name without its suffix)."""
    path = Path(path)
    name = name or path.stem
    if name in registered():
        raise ValueError(f"name {name!r} is the name of a method of this suite; give the external model another")
    prepared = PreparedDataset(prepared_dir)
    split = EvaluationSplit.from_prepared(prepared, "test")
    settings = {"dataset": dataset, "method": name, "seed": seed}
    embeddings = read_external(path, prepared, split, scorings, statistics, settings)
    return evaluate_embeddings(prepared, split, embeddings, settings, resolve_device(device), eccv_data)


def write_record(path: Path, evaluation: Evaluation, args: argparse.Namespace, name: str) -> None:
    """external.json: what the model is (EXTERNAL_COLUMNS) and which file, by content, gave its tables."""
    statistics = [s for s in UNCERTAINTY_STATISTICS if s in set(evaluation.uncertainty_summary["uncertainty"])]
    record = {
        "dataset": args.dataset, "method": name, "seed": args.seed, "label": args.label or name, "color": args.color,
        "scorings": " ".join(args.scoring), "statistics": " ".join(args.statistics or statistics),
        "file": str(args.embeddings), "sha256": file_sha256(args.embeddings),
    }  # fmt: skip
    assert list(record) == EXTERNAL_COLUMNS
    atomic_write(path, lambda temporary: temporary.write_text(json.dumps(record, indent=1) + "\n"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="pcmebench-evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset the file is of (its protocols)")
    parser.add_argument("--prepared", default=None, help="the prepared dataset folder (default: work/prepared/<dataset>)")
    parser.add_argument("--embeddings", required=True, help="the file: .safetensors or .npz (docs/external.md)")
    parser.add_argument("--scoring", nargs="+", required=True, choices=list(SCORINGS), help="scorings, its own first")
    parser.add_argument("--statistics", nargs="*", default=None, choices=list(UNCERTAINTY_STATISTICS),
                        help="with log σ in the file: the uncertainty statistics, its own first (default, or none given: every one)")  # fmt: skip
    parser.add_argument("--out", required=True, help="the folder of the five tables")
    parser.add_argument("--name", default=None, help="the tables' method column (default: the file's name without suffix)")
    parser.add_argument("--label", default=None, help="its name in figures and the report (default: --name)")
    parser.add_argument("--color", default="#7f7f7f", help="its colour in figures (#rrggbb)")
    parser.add_argument("--seed", type=int, default=0, help="the tables' seed column")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    log_to_stderr()
    use_threads(args.threads)
    torch.set_float32_matmul_precision("highest")  # fp32 products: reduced precision changes top-10 rankings
    prepared = args.prepared or Path("work") / "prepared" / args.dataset
    try:
        evaluation = evaluate_external(
            prepared, args.embeddings, args.dataset, args.scoring, args.name, args.seed, args.statistics, args.device
        )
    except (ValueError, FileNotFoundError) as error:  # DataError is a ValueError: the message names file, tensor, ids
        sys.exit(f"pcmebench-evaluate: {error}")
    write_evaluation(evaluation, {Path(name).stem: Path(args.out) / name for name in RUN_TABLES})
    write_record(Path(args.out) / EXTERNAL_RECORD, evaluation, args, args.name or Path(args.embeddings).stem)


if __name__ == "__main__":
    main()
