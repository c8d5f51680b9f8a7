"""Evaluation protocols: for each, the queries, the gallery, the positives and the metrics reported.

A protocol is a list of ``RetrievalTask``: one retrieval problem of one direction
(``i2t``: image queries against captions; ``t2i``: caption queries against images)
over rows of the test split, with a boolean (queries x gallery) positives matrix.

COCO format (``coco``, ``synthetic-coco``):

- ``5K``: the whole test split when it has 5,000 images (real COCO), images and
  captions in the split's order, which is the order of the test caption-id file
  (``corpora.coco`` keeps that order and numbers images by their first caption).
  Positives: an image and its own captions. R@1, R@5, R@10, and PMRP@0/1/2 and
  their mean PMRP (Chun et al. 2021) from the images' instance labels; a caption
  inherits its image's labels; unlabeled items are left out (as the PCME benchmark
  does with COCO images that have no instance annotation). RSUM is derived from
  these by the evaluation stage.
- ``1K``: consecutive blocks of 1,000 images with their captions (on COCO, the five
  folds of the 5K set, each 5,000 consecutive caption ids: the same folds as the
  ECCV Caption package's COCO 1K); the same metrics within each fold, and the
  value is the mean of the folds' values (the evaluation stage weighs each fold's
  queries by 1 / their number, as the original computes 1K). A split with fewer than 1,000
  images (the small synthetic ones) is one fold of all its images; images beyond
  the last full block are left out of 1K (logged).
- ``ECCV`` (real ``coco`` only): the positives of ECCV Caption (Chun et al., ECCV
  2022; naver-ai/eccv-caption) -> ``ECCV mAP@R``, ``ECCV R-P``, ``ECCV R@1`` over
  the queries its files list (a subset of the 5K queries; the gallery is the whole
  5K split), and ``CxC R@1`` on the CxC positives (Parekh et al., EACL 2021) over
  the queries of the CxC files. The files ship in the ``eccv-caption`` package
  (COCO image and caption ids; mapped here to rows). ECCV Caption's image-to-caption
  file lists two caption ids (144675, 467259) as positives that are not among the
  25,000 test captions of its own ``coco_test_ids.npy``: they cannot be retrieved
  and are left out of R, with a log line; the package counts them in R, so its
  R-P and mAP@R of those two image queries can be slightly lower.

CUB format (``cub``, ``synthetic-cub``): ``CUB`` on the test classes; positives
= same class (``class_id``): R@1, R@5, R@10, R-P, mAP@R in both directions.

Synthetic datasets also get ``full``: positives from the generator's complete
ground truth (``full_caption_to_image.json``, ``full_image_to_caption.json``, in
ECCV Caption's format) -> ``full mAP@R``, ``full R-P``, ``full R@1``.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from corpora import SYNTHETIC_FORMAT, dataset_format
from corpora.coco import CocoLayout
from corpora.cub import CubLayout
from corpora.errors import DataError
from corpora.prepared import PreparedDataset
from corpora.readers import read_json
from pcmebench.vocabulary import DIRECTIONS

log = logging.getLogger("pcmebench.protocols")

FOLD_IMAGES = 1000  # COCO 1K
COCO_5K_IMAGES = 5000
RECALLS = {"R@1": "R@1", "R@5": "R@5", "R@10": "R@10"}
PMRP_ZETAS = (0, 1, 2)
CUB_METRICS = {**RECALLS, "R-P": "R-P", "mAP@R": "mAP@R"}
ECCV_METRICS = {"mAP@R": "ECCV mAP@R", "R-P": "ECCV R-P", "R@1": "ECCV R@1"}
CXC_METRICS = {"R@1": "CxC R@1"}
FULL_METRICS = {"mAP@R": "full mAP@R", "R-P": "full R-P", "R@1": "full R@1"}
# Ground-truth file of each direction: its keys are the queries, its lists the positives.
GROUND_TRUTH_FILE = {"i2t": "image_to_caption", "t2i": "caption_to_image"}
LAYOUTS = {"coco": CocoLayout, "cub": CubLayout}


@dataclass(frozen=True)
class EvaluationSplit:
    """What the protocols need of an evaluation split: ids in row order, each caption's image, labels.

    ``labels``: (images, C) bool multi-hot (COCO instance categories; CUB one-hot
    class); ``class_ids``: (images,) on CUB, else None; ``caption_words``: (captions,) each
    caption's number of words (its tokens less ``<start>`` and ``<end>``), where known.
    """

    format: str
    image_ids: np.ndarray
    caption_ids: np.ndarray
    caption_image: np.ndarray
    labels: np.ndarray
    class_ids: np.ndarray | None = None
    caption_words: np.ndarray | None = None

    def __post_init__(self):
        n_images, n_captions = len(self.image_ids), len(self.caption_ids)
        if self.format not in LAYOUTS:
            raise ValueError(f"unknown dataset format {self.format!r}; allowed: {sorted(LAYOUTS)}")
        if len(self.caption_image) != n_captions:
            raise ValueError(f"{len(self.caption_image)} caption image rows for {n_captions} captions")
        if n_captions and (self.caption_image.min() < 0 or self.caption_image.max() >= n_images):
            raise ValueError(f"a caption's image row is outside 0..{n_images - 1}")
        if self.labels.shape[0] != n_images:
            raise ValueError(f"{self.labels.shape[0]} label rows for {n_images} images")
        if self.format == "cub" and (self.class_ids is None or len(self.class_ids) != n_images):
            raise ValueError("a CUB-format split needs one class id per image")
        for kind, ids in (("image", self.image_ids), ("caption", self.caption_ids)):
            if len(np.unique(ids)) != len(ids):
                raise ValueError(f"{kind} ids of the split are not unique")

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def n_captions(self) -> int:
        return len(self.caption_ids)

    @classmethod
    def from_prepared(cls, prepared: PreparedDataset, split: str = "test") -> EvaluationSplit:
        data = prepared.split(split)
        images, captions = data.images.with_format("arrow"), data.captions.with_format("arrow")  # columns without lists

        def column(table, name: str) -> np.ndarray:
            return table[name].to_numpy().astype(np.int64)

        return cls(
            format=prepared.meta["format"],
            image_ids=column(images, "image_id"),
            caption_ids=column(captions, "caption_id"),
            caption_image=column(captions, "image_index"),
            labels=data.label_matrix(),
            class_ids=column(images, "class_id") if "class_id" in images.column_names else None,
            caption_words=pc.list_value_length(captions["tokens"]).to_numpy().astype(np.int64) - 2,
        )


@dataclass
class RetrievalTask:
    """One direction of one protocol (one fold of 1K): queries against a gallery, rows of the split.

    ``metrics`` maps a key of ``metrics.retrieval_per_query`` to the reported metric
    name; ``pmrp_labels`` = (query labels, gallery labels) where PMRP is reported.
    """

    protocol: str
    direction: str
    queries: np.ndarray
    gallery: np.ndarray
    positives: np.ndarray
    metrics: dict[str, str]
    pmrp_labels: tuple[np.ndarray, np.ndarray] | None = None
    fold: int = 0
    positives_source: str = "own captions"

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(int(key[2:]) for key in self.metrics if key.startswith("R@"))

    def scores(self, matrix: np.ndarray, by_caption: np.ndarray | None = None) -> np.ndarray:
        """This task's (queries, gallery) block of an (images, captions) score matrix, C-contiguous; a t2i
        task's from ``by_caption``, the matrix's (captions, images) copy, where given (its rows, contiguous)."""
        if self.direction == "i2t":
            return np.ascontiguousarray(_block(matrix, self.queries, self.gallery))
        if by_caption is not None:
            return np.ascontiguousarray(_block(by_caption, self.queries, self.gallery))
        return np.ascontiguousarray(_block(matrix, self.gallery, self.queries).T)


def _as_index(rows: np.ndarray):
    """A slice when ``rows`` is a run of consecutive rows (a view, no copy), else the rows."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _block(matrix: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    r, c = _as_index(rows), _as_index(columns)
    if isinstance(r, slice) or isinstance(c, slice):
        return matrix[r][:, c]
    return matrix[np.ix_(r, c)]


def coco_folds(split: EvaluationSplit, fold_images: int = FOLD_IMAGES) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image rows, caption rows) of each 1K fold: consecutive blocks of ``fold_images`` images and their captions.

    Fewer images than one block: one fold of all of them. Images after the last
    full block are left out (logged).
    """
    n = split.n_images
    if n < fold_images:
        log.info("1K: the split has %d images (< %d): one fold of all of them", n, fold_images)
        blocks = [np.arange(n)]
    else:
        blocks = [np.arange(start, start + fold_images) for start in range(0, n - fold_images + 1, fold_images)]
        if n % fold_images:
            log.warning("1K: %d images after the last full %d-image fold are left out of 1K", n % fold_images, fold_images)
    folds = []
    for images in blocks:
        in_fold = (split.caption_image >= images[0]) & (split.caption_image <= images[-1])
        folds.append((images, np.flatnonzero(in_fold)))
    return folds


def own_caption_tasks(
    split: EvaluationSplit, protocol: str, images: np.ndarray, captions: np.ndarray, fold: int = 0
) -> list[RetrievalTask]:
    """Both directions over ``images`` and ``captions``: positives = an image and its own captions, R@K and PMRP."""
    owners = split.caption_image[captions]
    image_labels, caption_labels = split.labels[images], split.labels[owners]
    # each direction's positives compared in its own layout: a transposed copy of 5K's would cost more
    return [
        RetrievalTask(
            protocol, "i2t", images, captions, images[:, None] == owners, RECALLS, (image_labels, caption_labels), fold
        ),
        RetrievalTask(
            protocol, "t2i", captions, images, owners[:, None] == images, RECALLS, (caption_labels, image_labels), fold
        ),
    ]


def cub_tasks(split: EvaluationSplit) -> list[RetrievalTask]:
    """Both directions over the whole split: positives = same class."""
    images, captions = np.arange(split.n_images), np.arange(split.n_captions)
    image_classes, caption_classes = split.class_ids, split.class_ids[split.caption_image]
    same = "same class"
    return [
        RetrievalTask(
            "CUB", "i2t", images, captions, image_classes[:, None] == caption_classes, CUB_METRICS, positives_source=same
        ),
        RetrievalTask(
            "CUB", "t2i", captions, images, caption_classes[:, None] == image_classes, CUB_METRICS, positives_source=same
        ),
    ]


def read_ground_truth(
    path: Path,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    query_kind: str,
    gallery_kind: str,
    unknown_positives: str = "error",
):
    """A ``{"<query id>": [positive ids]}`` file -> (query rows in row order, (Q, G) bool positives).

    The file's keys are the queries. An id that is not in the split raises a
    DataError naming the file and the id; with ``unknown_positives="drop"``, a
    positive outside the split is left out instead (logged with its ids): it can
    never be retrieved from this gallery.
    """
    path = Path(path)
    content = read_json(path)
    if not isinstance(content, dict) or not content:
        raise DataError(path, "file", 'expected a non-empty object {"<query id>": [positive ids]}')
    query_row = {int(i): r for r, i in enumerate(query_ids)}
    gallery_row = {int(i): r for r, i in enumerate(gallery_ids)}
    pairs, dropped = [], []
    for key, positives in content.items():
        try:
            query = query_row[int(key)]
        except (KeyError, ValueError):
            raise DataError(path, f"{query_kind} id {key}", f"is not among the {query_kind}s of the test split") from None
        if not isinstance(positives, list):
            raise DataError(
                path, f"{query_kind} id {key}", f"expected a list of {gallery_kind} ids, found {type(positives).__name__}"
            )
        for positive in positives:
            try:
                pairs.append((query, gallery_row[int(positive)]))
            except KeyError:
                if unknown_positives != "drop":
                    raise DataError(
                        path, f"{query_kind} id {key}", f"its {gallery_kind} id {positive} is not in the test split"
                    ) from None
                dropped.append(f"{positive} (of {query_kind} {key})")
            except (ValueError, TypeError):
                raise DataError(path, f"{query_kind} id {key}", f"{gallery_kind} id {positive!r} is not an integer id") from None
    if dropped:
        log.warning(
            "%s: %d positive %s id(s) not in the test split, left out: %s", path, len(dropped), gallery_kind, ", ".join(dropped)
        )
    queries = np.sort(np.fromiter((query_row[int(k)] for k in content), dtype=np.int64, count=len(content)))
    position = np.searchsorted(queries, [q for q, _ in pairs])
    matrix = np.zeros((len(queries), len(gallery_ids)), dtype=bool)
    matrix[position, [g for _, g in pairs]] = True
    return queries, matrix


def ground_truth_tasks(
    split: EvaluationSplit, protocol: str, files: dict[str, Path], metrics: dict[str, str], unknown_positives: str = "error"
) -> list[RetrievalTask]:
    """Both directions from ground-truth files ({direction: path}); the gallery is the whole split."""
    tasks = []
    for direction in DIRECTIONS:
        if direction == "i2t":
            queries, positives = read_ground_truth(
                files[direction], split.image_ids, split.caption_ids, "image", "caption", unknown_positives
            )
            gallery = np.arange(split.n_captions)
        else:
            queries, positives = read_ground_truth(
                files[direction], split.caption_ids, split.image_ids, "caption", "image", unknown_positives
            )
            gallery = np.arange(split.n_images)
        tasks.append(
            RetrievalTask(protocol, direction, queries, gallery, positives, metrics, positives_source=str(files[direction]))
        )
    return tasks


def eccv_caption_data() -> Path:
    """The data folder of the ``eccv-caption`` package, found without importing it (its import warns)."""
    spec = importlib.util.find_spec("eccv_caption")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the ECCV protocol needs the eccv-caption package (pip install eccv-caption)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: the eccv-caption package has no data folder")
    return data


def eccv_tasks(split: EvaluationSplit, data_dir: Path | None = None) -> list[RetrievalTask]:
    """ECCV Caption's and CxC's positives over the 5K split (both directions)."""
    data_dir = Path(data_dir) if data_dir is not None else eccv_caption_data()
    tasks = []
    for source, metrics in (("eccv", ECCV_METRICS), ("cxc", CXC_METRICS)):
        files = {d: data_dir / f"{source}_{GROUND_TRUTH_FILE[d]}.json" for d in DIRECTIONS}
        tasks += ground_truth_tasks(split, "ECCV", files, metrics, unknown_positives="drop")
    return tasks


def full_ground_truth_files(dataset_format_name: str, raw_root: str | Path) -> dict[str, Path]:
    layout = LAYOUTS[dataset_format_name](Path(raw_root))
    return {d: layout.ground_truth(GROUND_TRUTH_FILE[d]) for d in DIRECTIONS}


def protocol_tasks(
    split: EvaluationSplit, dataset: str, raw_root: str | Path | None = None, eccv_data: Path | None = None
) -> list[RetrievalTask]:
    """Every task of every protocol that applies to ``dataset`` (a name of the config), in a fixed order."""
    fmt = dataset_format(dataset)
    if fmt != split.format:
        raise ValueError(f"dataset {dataset!r} is {fmt}-format but the prepared split is {split.format}-format")
    tasks: list[RetrievalTask] = []
    if fmt == "coco":
        for fold, (images, captions) in enumerate(coco_folds(split)):
            tasks += own_caption_tasks(split, "1K", images, captions, fold)
        if split.n_images == COCO_5K_IMAGES:
            tasks += own_caption_tasks(split, "5K", np.arange(split.n_images), np.arange(split.n_captions))
        else:
            log.info("5K: left out, the split has %d images, not %d", split.n_images, COCO_5K_IMAGES)
        if dataset == "coco":
            tasks += eccv_tasks(split, eccv_data)
    else:
        tasks += cub_tasks(split)
    if dataset in SYNTHETIC_FORMAT:
        if raw_root is None:
            raise ValueError(f"{dataset}: the full protocol needs the raw dataset folder (its ground-truth files)")
        tasks += ground_truth_tasks(split, "full", full_ground_truth_files(fmt, raw_root), FULL_METRICS)
    return tasks
