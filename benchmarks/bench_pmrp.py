"""Time PMRP at COCO 5K (or 1K) size against a straightforward argsort + cumsum reference on the same inputs.

    python benchmarks/bench_pmrp.py [--size 5k|1k] [--seed 0] [--chunk-size N]

Inputs mimic COCO: 5,000 images with 90-dim multi-hot labels (about 3 categories per image,
skewed category frequencies, about 1% of the images unlabeled), 5 captions per image that inherit
their image's labels, and float32 scores from noisy label-correlated embeddings; i2t scores are
(5,000, 25,000), t2i scores their contiguous transpose. Both directions, zetas 0, 1, 2.
The reference ranks each row with a stable argsort and reads R-Precision off cumulative sums of
the plausible mask per zeta; the script checks that both give the same per-query values and
prints the times and the ratio.

Measured 2026-11-26 on this project's 2-core CPU (shared with other sessions), numpy 2.4.6:
see the PMRP section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from metrics import ExcludedQueriesWarning, pmrp, pmrp_per_query

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="5k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=None, help="queries per chunk (default: the library's)")
    args = parser.parse_args()

    image_labels, caption_labels, i2t = coco_like_inputs(SIZES[args.size], args.seed)
    t2i = np.ascontiguousarray(i2t.T)
    directions = {"i2t": (i2t, image_labels, caption_labels), "t2i": (t2i, caption_labels, image_labels)}
    print(
        f"COCO {args.size} size: i2t {i2t.shape}, t2i {t2i.shape}, {image_labels.sum(1).mean():.2f} labels/image, zetas {ZETAS}"
    )

    fast, fast_time = {}, 0.0
    for name, (scores, query_labels, gallery_labels) in directions.items():
        start = time.perf_counter()
        fast[name] = pmrp_per_query(scores, query_labels, gallery_labels, zetas=ZETAS, chunk_size=args.chunk_size)
        elapsed = time.perf_counter() - start
        fast_time += elapsed
        print(f"pmrp_per_query {name}: {elapsed:6.2f} s")
    start = time.perf_counter()
    for name, (scores, query_labels, gallery_labels) in directions.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExcludedQueriesWarning)
            summary = pmrp(scores, query_labels, gallery_labels, zetas=ZETAS, chunk_size=args.chunk_size)
        print(f"pmrp {name}: " + ", ".join(f"{key} {value:.3f}" for key, value in summary.items()))
        for warning in caught:
            print(f"  warning: {warning.message}")
    print(f"pmrp (both directions): {time.perf_counter() - start:6.2f} s")

    reference_time = 0.0
    for name, (scores, query_labels, gallery_labels) in directions.items():
        start = time.perf_counter()
        reference = reference_pmrp_per_query(scores, query_labels, gallery_labels, ZETAS)
        elapsed = time.perf_counter() - start
        reference_time += elapsed
        print(f"reference argsort + cumsum {name}: {elapsed:6.2f} s")
        for key, values in reference.items():
            if not np.array_equal(values, fast[name][key], equal_nan=True):
                raise SystemExit(f"MISMATCH in {name} {key}: {np.sum(values != fast[name][key])} queries differ")
    print("per-query values identical to the reference")
    print(f"total: pmrp_per_query {fast_time:.2f} s, reference {reference_time:.2f} s, ratio {reference_time / fast_time:.1f}x")


if __name__ == "__main__":
    main()
