"""Time PMRP at COCO 5K (or 1K) size against one full np.sort of each direction's score matrix, in the same run.

    python benchmarks/bench_pmrp.py [--size 5k|1k] [--seed 0] [--repeats 5] [--chunk-size N] [--skip-reference] [--json PATH]

Inputs mimic COCO: 5,000 images with 90-dim multi-hot labels (about 3 categories per image,
skewed category frequencies, about 1% of the images unlabeled), 5 captions per image that inherit
their image's labels, and float32 scores from noisy label-correlated embeddings; i2t scores are
(5,000, 25,000), t2i scores their contiguous transpose. Both directions, zetas 0, 1, 2.

Per direction and repeat, in turn: ``np.sort(scores, axis=1)`` (the yardstick: one full sort of the
matrix), ``pmrp_per_query`` (selection by partition, metrics.pmrp), and the sort-based counting
that PMRP used before and still uses for a query with a tie across its cut (a full sort of each
row, then the plausible items above each cut); the minimum over the repeats is reported (the CPU is
shared), each as a ratio to the sort. Then a straightforward reference (a stable argsort of every
row, cumulative sums of the plausible mask per zeta) runs once per direction: the script checks
that the three give identical per-query values and reports its time too.

Measured on this project's CPU: see the PMRP section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reporting import write_json

from metrics import ExcludedQueriesWarning, pmrp, pmrp_per_query

PMRP_MODULE = importlib.import_module("metrics.pmrp")  # the package's name `pmrp` is the function
SIZES = {"5k": 5000, "1k": 1000}
CAPTIONS_PER_IMAGE = 5
CATEGORIES = 90
ZETAS = (0, 1, 2)


def coco_like_inputs(n_images: int, seed: int):
    """(image labels, caption labels, i2t scores float32) with COCO-like label structure."""
    rng = np.random.default_rng(seed)
    popularity = rng.pareto(1.0, CATEGORIES) + 0.05  # a few frequent categories (person, car, ...), a long tail
    popularity /= popularity.sum()
    image_labels = np.zeros((n_images, CATEGORIES), dtype=bool)
    counts = np.minimum(1 + rng.poisson(1.9, n_images), 12)
    counts[rng.random(n_images) < 0.01] = 0  # images without instance annotations
    for image, count in enumerate(counts):  # data generation only; the timed code has no such loop
        image_labels[image, rng.choice(CATEGORIES, size=count, replace=False, p=popularity)] = True
    caption_labels = np.repeat(image_labels, CAPTIONS_PER_IMAGE, axis=0)
    dim = 64
    category_vectors = rng.normal(size=(CATEGORIES, dim))
    image_embedding = image_labels @ category_vectors + rng.normal(scale=2.0, size=(n_images, dim))
    caption_embedding = caption_labels @ category_vectors + rng.normal(scale=2.0, size=(len(caption_labels), dim))
    caption_embedding += np.repeat(rng.normal(size=(n_images, dim)), CAPTIONS_PER_IMAGE, axis=0)  # the image's own content
    image_embedding /= np.linalg.norm(image_embedding, axis=1, keepdims=True)
    caption_embedding /= np.linalg.norm(caption_embedding, axis=1, keepdims=True)
    return image_labels, caption_labels, (image_embedding @ caption_embedding.T).astype(np.float32)


def sort_based_pmrp_per_query(scores, query_labels, gallery_labels, zetas, chunk_size=None) -> dict[str, np.ndarray]:
    """PMRP as counted before the partition: every row sorted whole, the plausible items above each cut
    read off the sorted row (metrics.ranking.hits_in_top; the partition method's path for ties)."""
    labels = PMRP_MODULE._Labels(query_labels, gallery_labels, zetas)
    rows = chunk_size or max(1, 2**20 // scores.shape[1])
    hits = np.concatenate(
        [
            PMRP_MODULE._count_hits_by_sorting(
                scores[labels.queries[start : start + rows]], labels.query_set[start : start + rows], labels
            )
            for start in range(0, len(labels.queries), rows)
        ],
        axis=1,
    )
    result = {}
    for z, zeta_hits, depth in zip(labels.zetas, hits, labels.counts[:, labels.query_set]):
        values = np.full(len(scores), np.nan)
        defined = depth > 0
        values[labels.queries[defined]] = 100.0 * zeta_hits[defined] / depth[defined]
        result[f"PMRP@{z}"] = values
    return result


def reference_pmrp_per_query(scores, query_labels, gallery_labels, zetas, chunk_size=200) -> dict[str, np.ndarray]:
    """Straightforward PMRP: stable argsort of every row, cumulative sums of the plausible mask per zeta."""
    labeled_gallery = gallery_labels.any(axis=1)
    scores, gallery = scores[:, labeled_gallery], gallery_labels[labeled_gallery].astype(np.float32)
    queries = query_labels.astype(np.float32)
    result = {z: np.full(len(scores), np.nan) for z in zetas}
    for start in range(0, len(scores), chunk_size):
        rows = slice(start, start + chunk_size)
        order = np.argsort(-scores[rows], axis=1, kind="stable")
        distance = queries[rows].sum(1)[:, None] + gallery.sum(1)[None, :] - 2 * queries[rows] @ gallery.T
        for z in zetas:
            plausible = distance <= z
            r = plausible.sum(axis=1)
            hits = np.cumsum(np.take_along_axis(plausible, order, axis=1), axis=1)
            valid = (r > 0) & query_labels[rows].any(axis=1)
            result[z][rows][valid] = 100.0 * hits[valid, r[valid] - 1] / r[valid]
    return {f"PMRP@{z}": values for z, values in result.items()}


def timed_minimum(directions, repeats: int, chunk_size) -> tuple[dict, dict]:
    """Per direction: the best time over ``repeats`` of the sort, pmrp_per_query and the sort-based counting, taken in turn."""
    methods = {
        "np.sort": lambda scores, query_labels, gallery_labels: np.sort(scores, axis=1),
        "pmrp_per_query": lambda *args: pmrp_per_query(*args, zetas=ZETAS, chunk_size=chunk_size),
        "sort-based counting": lambda *args: sort_based_pmrp_per_query(*args, ZETAS, chunk_size),
    }
    best, results = {}, {}
    for _ in range(repeats):
        for name, inputs in directions.items():
            for method, function in methods.items():
                started = time.perf_counter()
                results[name, method] = function(*inputs)
                best[name, method] = min(best.get((name, method), np.inf), time.perf_counter() - started)
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="5k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each method, the minimum kept")
    parser.add_argument("--chunk-size", type=int, default=None, help="queries per chunk (default: the library's)")
    parser.add_argument("--skip-reference", action="store_true", help="skip the argsort + cumsum reference (minutes at 5k)")
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args()

    image_labels, caption_labels, i2t = coco_like_inputs(SIZES[args.size], args.seed)
    directions = {"i2t": (i2t, image_labels, caption_labels), "t2i": (np.ascontiguousarray(i2t.T), caption_labels, image_labels)}
    print(f"COCO {args.size} size: i2t {i2t.shape}, t2i {directions['t2i'][0].shape}, zetas {ZETAS}")
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}")
    best, results = timed_minimum(directions, args.repeats, args.chunk_size)
    summary = {"size": args.size, "numpy": np.__version__, "repeats": args.repeats, "seconds": {}, "ratio_to_sort": {}}
    for method in ("np.sort", "pmrp_per_query", "sort-based counting"):
        times = [best[name, method] for name in directions]
        ratios = [best[name, method] / best[name, "np.sort"] for name in directions]
        both = sum(times) / sum(best[name, "np.sort"] for name in directions)
        print(
            f"{method:>20}: i2t {times[0]:.3f} s ({ratios[0]:.2f}x), t2i {times[1]:.3f} s ({ratios[1]:.2f}x), "
            f"both {sum(times):.3f} s ({both:.2f}x the sort)"
        )
        summary["seconds"][method] = dict(zip(directions, times))
        summary["ratio_to_sort"][method] = {**dict(zip(directions, ratios)), "both": both}
    for name, (scores, query_labels, gallery_labels) in directions.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExcludedQueriesWarning)
            values = pmrp(scores, query_labels, gallery_labels, zetas=ZETAS)
        print(f"pmrp {name}: " + ", ".join(f"{key} {value:.3f}" for key, value in values.items()))
        for warning in caught:
            print(f"  warning: {warning.message}")
    identical = check_identical(directions, results, args.skip_reference, summary)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    write_json(args.json, summary)
    if not identical:
        raise SystemExit("MISMATCH: the per-query values differ (see above)")


def check_identical(directions, results, skip_reference: bool, summary: dict) -> bool:
    """Per-query values of pmrp_per_query against the sort-based counting and (unless skipped) the reference."""
    identical = True
    for name, inputs in directions.items():
        compared = {"sort-based counting": results[name, "sort-based counting"]}
        if not skip_reference:
            started = time.perf_counter()
            compared["argsort + cumsum reference"] = reference_pmrp_per_query(*inputs, ZETAS)
            elapsed = time.perf_counter() - started
            print(
                f"argsort + cumsum reference {name}: {elapsed:.2f} s ({elapsed / summary['seconds']['np.sort'][name]:.1f}x the sort)"
            )
            summary.setdefault("reference_seconds", {})[name] = elapsed
        for other, values in compared.items():
            for key, expected in values.items():
                same = np.array_equal(expected, results[name, "pmrp_per_query"][key], equal_nan=True)
                identical &= same
                if not same:
                    print(f"MISMATCH in {name} {key} against {other}")
    print("per-query values identical" if identical else "per-query values DIFFER")
    summary["identical"] = identical
    return identical


if __name__ == "__main__":
    main()
