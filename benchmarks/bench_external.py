"""Time the whole evaluation of one external COCO 5K-sized file against one np.sort of its 5K score matrix, in the same run.

    python benchmarks/bench_external.py [--quick] [--dim 512] [--repeats 3] [--json PATH]

Builds, in a temporary folder, a COCO-format dataset whose test split has COCO 5K's own ids, pairs
and order (the eccv-caption package's coco_test_ids.npy and original_caption_to_image.json: 5,000
images, 25,000 captions), made-up captions and instance labels (90 categories with COCO-like
frequencies, about 1% of the images unlabeled) and tiny train, restval and dev splits, and no
image files: the evaluation reads none, and prepare runs without its image check. Then it writes
an external file as a user would: image and caption embeddings (D = 512, as CLIP ViT-B/32's;
captions near their image, both near their labels' directions) with their ids, rows shuffled,
safetensors.

Timed, the best of ``--repeats``: ``pcmebench.external.evaluate_external`` with dataset ``coco``
and scoring ``cosine``: the file read and checked, the score matrix, every protocol of coco (1K:
five folds, 5K: R@K and PMRP, ECCV Caption and CxC, whose files ship in eccv-caption), no σ (the
file has no log σ); and alone, its main parts: the read, the score matrix, PMRP on 5K in both
directions. Each is reported beside one ``np.sort`` of the (5,000 x 25,000) score matrix, timed in
the same run, as a ratio to it.

``--quick``: the first 250 images of that order with their captions, ECCV Caption's and CxC's files
restricted to them (written beside the dataset): every protocol but 5K, in seconds
(tests/test_bench_external.py runs it).

Measured on this project's CPU: see the external section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reporting import write_json

from corpora.prepared import PreparedDataset, prepare_dataset
from metrics import pmrp_per_query
from pcmebench.external import evaluate_external, read_external
from pcmebench.protocols import PMRP_ZETAS, EvaluationSplit, eccv_caption_data
from pcmebench.scoring import score_matrix

CATEGORIES = 90
QUICK_IMAGES = 250
WORDS = ("dog", "cat", "street", "car", "table", "plate", "man", "woman", "bus", "train", "park", "kite", "horse", "field")
NOISE = 8.0  # a caption's spread around its image's embedding (an image's around its labels' directions: 1)
SMALL_SPLITS = {"train": ("train2014", 4), "restval": ("val2014", 2), "dev": ("val2014", 2)}  # made-up ids, 5 captions each


def coco_5k_order(n_images: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(caption ids in COCO 5K's order, each one's image id), from eccv-caption's files; the first
    ``n_images`` images (by first caption) with all their captions when given."""
    data = eccv_caption_data()
    caption_ids = np.load(data / "coco_test_ids.npy").astype(np.int64)
    owner = json.loads((data / "original_caption_to_image.json").read_text())
    image_ids = np.array([owner[str(c)][0] for c in caption_ids.tolist()], dtype=np.int64)
    if n_images is not None:
        _, first = np.unique(image_ids, return_index=True)
        kept = image_ids[np.sort(first)[:n_images]]
        keep = np.isin(image_ids, kept)
        caption_ids, image_ids = caption_ids[keep], image_ids[keep]
    return caption_ids, image_ids


def coco_like_labels(image_ids: np.ndarray, rng: np.random.Generator) -> dict[int, list[int]]:
    """image id -> category ids (1..90): a few frequent categories and a long tail; about 1% none."""
    popularity = rng.pareto(1.0, CATEGORIES) + 0.05
    popularity /= popularity.sum()
    counts = np.minimum(1 + rng.poisson(1.9, len(image_ids)), 12)
    counts[rng.random(len(image_ids)) < 0.01] = 0
    return {
        int(image): (1 + rng.choice(CATEGORIES, size=count, replace=False, p=popularity)).tolist()
        for image, count in zip(image_ids, counts)
    }


def write_raw_coco(root: Path, caption_ids: np.ndarray, image_ids: np.ndarray, rng: np.random.Generator) -> None:
    """A COCO-format folder (corpora.coco's layout) with this test split, tiny other splits, no image files."""
    sources = {"train2014": {"images": {}, "captions": []}, "val2014": {"images": {}, "captions": []}}
    split_ids = {"test": caption_ids}
    for image, caption in zip(image_ids.tolist(), caption_ids.tolist()):
        sources["val2014"]["images"][image] = f"COCO_val2014_{image:012d}.jpg"
        sources["val2014"]["captions"].append((caption, image))
    made_up = int(max(caption_ids.max(), image_ids.max())) + 1  # ids of the small splits: none of COCO's
    for split, (source, n_images) in SMALL_SPLITS.items():
        split_ids[split] = np.arange(made_up, made_up + 5 * n_images)
        for k, caption in enumerate(split_ids[split].tolist()):
            image = made_up + k // 5
            sources[source]["images"][image] = f"COCO_{source}_{image:012d}.jpg"
            sources[source]["captions"].append((caption, image))
        made_up += 5 * n_images
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    for source, content in sources.items():
        images = [{"id": i, "file_name": name} for i, name in content["images"].items()]
        captions = [
            {"id": c, "image_id": i, "caption": f"a {rng.choice(WORDS)} near a {rng.choice(WORDS)} by the {rng.choice(WORDS)}"}
            for c, i in content["captions"]
        ]
        labels = coco_like_labels(np.array(list(content["images"])), rng)
        instances = [
            {"id": n, "image_id": i, "category_id": c} for n, (i, c) in enumerate((i, c) for i, cs in labels.items() for c in cs)
        ]
        categories = [{"id": c, "name": f"category {c}"} for c in range(1, CATEGORIES + 1)]
        (annotations / f"captions_{source}.json").write_text(json.dumps({"images": images, "annotations": captions}))
        (annotations / f"instances_{source}.json").write_text(
            json.dumps({"images": images, "annotations": instances, "categories": categories})
        )
    for split, ids in split_ids.items():
        np.save(annotations / f"coco_{split}_ids.npy", ids)


def restricted_ground_truth(folder: Path, split: EvaluationSplit) -> Path:
    """ECCV Caption's and CxC's files with only the queries and positives of ``split`` (the quick mode's subset)."""
    folder.mkdir(parents=True)
    ids = {"image": set(split.image_ids.tolist()), "caption": set(split.caption_ids.tolist())}
    for name in ("eccv", "cxc"):
        for query, gallery, direction in (("image", "caption", "image_to_caption"), ("caption", "image", "caption_to_image")):
            content = json.loads((eccv_caption_data() / f"{name}_{direction}.json").read_text())
            kept = {
                key: [p for p in positives if p in ids[gallery]] for key, positives in content.items() if int(key) in ids[query]
            }
            (folder / f"{name}_{direction}.json").write_text(json.dumps({k: v for k, v in kept.items() if v}))
    return folder


def write_external_file(path: Path, split: EvaluationSplit, dim: int, seed: int) -> None:
    """Image and caption embeddings with their ids, rows shuffled, as a user exports them (safetensors)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(split.labels.shape[1], dim, generator=generator)
    images = torch.from_numpy(split.labels.astype(np.float32)) @ directions + torch.randn(
        split.n_images, dim, generator=generator
    )
    captions = images[torch.from_numpy(split.caption_image)] + NOISE * torch.randn(split.n_captions, dim, generator=generator)
    shuffle = {m: torch.randperm(n, generator=generator) for m, n in (("image", split.n_images), ("caption", split.n_captions))}
    ids = {"image": torch.from_numpy(split.image_ids), "caption": torch.from_numpy(split.caption_ids)}
    tensors = {}
    for modality, embeddings in (("image", images), ("caption", captions)):
        tensors[f"{modality}_ids"] = ids[modality][shuffle[modality]].contiguous()
        tensors[f"{modality}_embeddings"] = torch.nn.functional.normalize(embeddings, dim=1)[shuffle[modality]].contiguous()
    save_file(tensors, str(path))


def build(folder: Path, quick: bool, dim: int, seed: int) -> tuple[Path, Path, Path | None]:
    """(prepared dataset, external file, ECCV/CxC folder or None for eccv-caption's own) under ``folder``."""
    rng = np.random.default_rng(seed)
    caption_ids, image_ids = coco_5k_order(QUICK_IMAGES if quick else None)
    write_raw_coco(folder / "raw", caption_ids, image_ids, rng)
    prepare_dataset("coco", folder / "raw", folder / "prepared", train_splits=["train"], word_dim=8, check_images=False)
    split = EvaluationSplit.from_prepared(PreparedDataset(folder / "prepared"), "test")
    write_external_file(folder / "model.safetensors", split, dim, seed)
    eccv_data = restricted_ground_truth(folder / "eccv", split) if quick else None
    return folder / "prepared", folder / "model.safetensors", eccv_data


def timed(function, *args, **kwargs) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def both_directions_pmrp(scores: np.ndarray, transposed: np.ndarray, split: EvaluationSplit) -> None:
    caption_labels = split.labels[split.caption_image]
    pmrp_per_query(scores, split.labels, caption_labels, PMRP_ZETAS)
    pmrp_per_query(transposed, caption_labels, split.labels, PMRP_ZETAS)


def measure(prepared: Path, path: Path, eccv_data: Path | None, repeats: int) -> tuple[dict, object]:
    """Seconds of the whole evaluation, its main parts alone and one np.sort of the score matrix (best of ``repeats``,
    taken in turn so that a slow spell of the shared CPU hits each alike)."""
    dataset = PreparedDataset(prepared)
    split = EvaluationSplit.from_prepared(dataset, "test")
    seconds, evaluation = {}, None
    for _ in range(repeats):
        parts = {}
        parts["whole evaluation"], evaluation = timed(
            evaluate_external, prepared, path, "coco", ("cosine",), device="cpu", eccv_data=eccv_data
        )
        parts["read and check the file"], embeddings = timed(read_external, path, dataset, split, ("cosine",))
        parts["score matrix (cosine)"], scores = timed(score_matrix, embeddings, "cosine", "cpu")
        parts["PMRP, both directions"], _ = timed(both_directions_pmrp, scores, np.ascontiguousarray(scores.T), split)
        parts["np.sort of the score matrix"], _ = timed(np.sort, scores, axis=1)
        for name, value in parts.items():
            seconds[name] = min(seconds.get(name, np.inf), value)
    return seconds, evaluation


def run(argv=None) -> dict:
    """Build the dataset and the file, time them; print and return (and write to ``--json``) the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_IMAGES} images of COCO 5K's order only")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (512: CLIP ViT-B/32's)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs, the best kept (default: 3; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    logging.getLogger("pcmebench").setLevel(logging.ERROR)  # the evaluation's notes per task: not this output
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        prepared, path, eccv_data = build(Path(folder), args.quick, args.dim, args.seed)
        built = time.perf_counter() - started
        seconds, evaluation = measure(prepared, path, eccv_data, repeats)
    sort = seconds["np.sort of the score matrix"]
    metrics = evaluation.metrics
    print(
        f"{'quick: ' if args.quick else ''}one external file of {evaluation.queries.groupby('direction').size().to_dict()} queries"
    )
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, numpy {np.__version__}, torch {torch.__version__}"
    )
    print(f"dataset and file built in {built:.1f} s (not timed below); load average {os.getloadavg()[0]:.2f}; best of {repeats}")
    for name, value in seconds.items():
        print(f"{name:>30}: {value:7.3f} s  {value / sort:6.2f}x the sort")
    protocols = sorted(metrics["protocol"].unique())
    shown = metrics[metrics["metric"].isin(["R@1", "PMRP", "ECCV mAP@R", "CxC R@1"])]
    print(f"protocols: {', '.join(protocols)}; {len(metrics)} metric rows, e.g.:")
    print(shown[["protocol", "direction", "metric", "value"]].to_string(index=False))
    summary = {
        "quick": args.quick,
        "dim": args.dim,
        "repeats": repeats,
        "seconds": seconds,
        "ratio_to_sort": {k: v / sort for k, v in seconds.items()},
    }
    summary |= {"protocols": protocols, "numpy": np.__version__, "torch": torch.__version__}
    write_json(args.json, summary)
    return summary | {"metrics": metrics}


if __name__ == "__main__":
    run()
