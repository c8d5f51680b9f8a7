"""Plausible Match R-Precision (PMRP; Chun et al., CVPR 2021, "Probabilistic Embeddings for Cross-Modal Retrieval").

Gallery item j is a plausible match of query i at threshold zeta iff the Hamming distance of their
binary multi-hot labels (COCO: the 90-dim instance-category labels) is <= zeta. PMRP@zeta is the mean
over queries of the R-Precision against the plausible matches, R = the query's number of plausible
matches; PMRP = the mean over zetas (0, 1, 2 in the paper) of PMRP@zeta.

Items without any label are left out, as the official evaluation does (naver-ai/pcme,
evaluate_pmrp_coco.py, skips queries whose image has no instance annotation and drops such items
from each ranking): an unlabeled query gets NaN, an unlabeled gallery item takes no rank and is
never a plausible match. Ranks: descending score, ties by lower gallery index (metrics.ranking).

Speed: the Hamming distances depend only on the distinct label rows, so they come from a small
table of distinct query label sets x distinct gallery label sets (captions share their image's
labels). Per query and zeta, the top-R cut is read off one value sort of the row (no argsort):
O(G) comparisons per zeta. benchmarks/bench_pmrp.py times it against an argsort + cumsum reference.
"""

from __future__ import annotations

import warnings

import numpy as np

from metrics.ranking import (
    ExcludedQueriesWarning,
    check_binary,
    check_chunk_size,
    check_int_sequence,
    check_scores,
    hits_in_top,
    query_chunks,
)


def _check_labels(query_labels, gallery_labels, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    query_labels = check_binary(query_labels, "query_labels")
    gallery_labels = check_binary(gallery_labels, "gallery_labels")
    if query_labels.shape[1] != gallery_labels.shape[1]:
        raise ValueError(
            f"query_labels has {query_labels.shape[1]} label columns but gallery_labels has {gallery_labels.shape[1]}; "
            "both must use the same label vocabulary"
        )
    if query_labels.shape[0] != shape[0]:
        raise ValueError(f"query_labels: {query_labels.shape[0]} rows, but scores has {shape[0]} queries (rows)")
    if gallery_labels.shape[0] != shape[1]:
        raise ValueError(f"gallery_labels: {gallery_labels.shape[0]} rows, but scores has {shape[1]} gallery items (columns)")
    return query_labels, gallery_labels


def _distinct_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct label rows as float32, index of each row's distinct set)."""
    packed = np.packbits(labels, axis=1)
    width = -(-packed.shape[1] // 8) * 8  # whole 64-bit words: sorting them beats np.unique(axis=0) on bytes
    words = np.zeros((len(labels), width), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    words = words.view(np.uint64)
    order = np.lexsort(words.T[::-1])
    new_set = np.ones(len(labels), dtype=bool)
    new_set[1:] = (words[order[1:]] != words[order[:-1]]).any(axis=1)
    set_of_sorted = np.cumsum(new_set) - 1
    inverse = np.empty(len(labels), dtype=np.int64)
    inverse[order] = set_of_sorted
    return labels[order[new_set]].astype(np.float32), inverse


def _hamming_table(query_sets: np.ndarray, gallery_sets: np.ndarray, cap: int) -> np.ndarray:
    """Hamming distances between distinct label sets, capped at ``cap``: |a| + |b| - 2 a.b."""
    table = np.empty((len(query_sets), len(gallery_sets)), dtype=np.uint8 if cap <= 255 else np.int32)
    gallery_sizes = gallery_sets.sum(axis=1)
    for start in range(0, len(query_sets), 1024):
        block = query_sets[start : start + 1024]
        # exact in float32: every term is an integer <= the number of label columns
        distance = block.sum(axis=1)[:, None] + gallery_sizes[None, :] - 2.0 * (block @ gallery_sets.T)
        table[start : start + 1024] = np.minimum(distance, cap)
    return table


def _plausible_counts(distance_table: np.ndarray, gallery_set_sizes: np.ndarray, zetas) -> dict[int, np.ndarray]:
    """Per distinct query label set and zeta: the number of gallery items within Hamming distance zeta."""
    counts = {z: np.empty(len(distance_table), dtype=np.int64) for z in zetas}
    sizes = gallery_set_sizes.astype(np.float64)  # float64 products of 0/1 and counts are exact (and BLAS-fast)
    for start in range(0, len(distance_table), 1024):
        block = distance_table[start : start + 1024]
        for z in zetas:
            counts[z][start : start + 1024] = np.rint((block <= z).astype(np.float64) @ sizes)
    return counts


def pmrp_per_query(scores, query_labels, gallery_labels, zetas=(0, 1, 2), chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """Per-query Plausible Match R-Precision in percent: {"PMRP@0": (Q,), ..., "PMRP": (Q,)} (float64).

    For query i and threshold zeta: plausible(i, j) iff hamming(query_labels[i], gallery_labels[j]) <= zeta
    over the labeled gallery items, R = the number of plausible items, and
    PMRP@zeta = 100 * (plausible items among the top R of the labeled gallery) / R,
    ranked by descending score with ties by lower gallery index (Chun et al. 2021).
    NaN where the query has no label, or no plausible match at that zeta. "PMRP" is the mean over
    zetas of the query's values (NaN if any is NaN); its mean over queries equals pmrp()["PMRP"]
    whenever the same queries are defined at every zeta (always when each query's true match is in
    the gallery with identical labels, as in COCO). ``chunk_size`` = queries per chunk.
    """
    scores = check_scores(scores)
    query_labels, gallery_labels = _check_labels(query_labels, gallery_labels, scores.shape)
    zetas = check_int_sequence(zetas, "zetas", minimum=0)
    check_chunk_size(chunk_size)
    n_queries = scores.shape[0]
    per_zeta = {z: np.full(n_queries, np.nan) for z in zetas}

    labeled_queries = np.flatnonzero(query_labels.any(axis=1))
    labeled_gallery = gallery_labels.any(axis=1)
    if len(labeled_queries) and labeled_gallery.any():
        query_sets, query_set = _distinct_rows(query_labels[labeled_queries])
        gallery_sets, gallery_set = _distinct_rows(gallery_labels)
        cap = max(zetas) + 1  # distances beyond the largest zeta only need to read "not plausible"
        distance_table = _hamming_table(query_sets, gallery_sets, cap)
        unlabeled_sets = ~gallery_sets.any(axis=1)  # the all-zero row, if any: never plausible
        distance_table[:, unlabeled_sets] = cap
        gallery_set_sizes = np.bincount(gallery_set, minlength=len(gallery_sets))
        plausible_count = _plausible_counts(distance_table, gallery_set_sizes, zetas)
        unlabeled_gallery = np.flatnonzero(~labeled_gallery)
        left_out = unlabeled_gallery if len(unlabeled_gallery) else None
        all_queries = len(labeled_queries) == n_queries
        for block in query_chunks(len(labeled_queries), scores.shape[1], chunk_size):
            queries = labeled_queries[block]
            chunk = np.ascontiguousarray(scores[block] if all_queries else scores[queries])
            sorted_rows = chunk.copy()
            # an unlabeled item takes no rank: at -inf it sorts below every (finite) score, and the
            # top R (R <= the number of labeled items) never reaches it
            sorted_rows[:, unlabeled_gallery] = -np.inf
            sorted_rows.sort(axis=1)
            distance = np.take(distance_table[query_set[block]], gallery_set, axis=1)
            relevant = np.empty(distance.shape, dtype=bool)
            for z in zetas:
                depth = plausible_count[z][query_set[block]]
                defined = depth > 0
                hits = hits_in_top(chunk, sorted_rows, np.less_equal(distance, z, out=relevant), np.maximum(depth, 1), left_out)
                per_zeta[z][queries[defined]] = 100.0 * hits[defined] / depth[defined]
    result = {f"PMRP@{z}": values for z, values in per_zeta.items()}
    result["PMRP"] = np.mean(np.stack(list(per_zeta.values())), axis=0)
    return result


def pmrp(scores, query_labels, gallery_labels, zetas=(0, 1, 2), chunk_size: int | None = None) -> dict[str, float]:
    """Plausible Match R-Precision in percent: {"PMRP": ..., "PMRP@0": ..., "PMRP@1": ..., "PMRP@2": ...}.

    PMRP@zeta = mean over queries of the R-Precision against the plausible matches (Hamming distance
    of the binary multi-hot labels <= zeta; R = the query's number of plausible matches); PMRP = mean
    over zetas of PMRP@zeta (Chun et al. 2021). Unlabeled queries and gallery items are left out;
    a query with no plausible match at a zeta is left out of that zeta's mean. Each exclusion is
    reported with an ExcludedQueriesWarning; a zeta with no query left raises ValueError.
    See pmrp_per_query for the exact definition and tie order.
    """
    per_query = pmrp_per_query(scores, query_labels, gallery_labels, zetas=zetas, chunk_size=chunk_size)
    n_queries = len(per_query["PMRP"])
    unlabeled = n_queries - int(check_binary(query_labels, "query_labels").any(axis=1).sum())
    result, exclusions = {}, {}
    for z in check_int_sequence(zetas, "zetas", minimum=0):
        values = per_query[f"PMRP@{z}"]
        defined = ~np.isnan(values)
        excluded = n_queries - int(defined.sum())
        reason = f"{unlabeled} without labels, {excluded - unlabeled} with no plausible match"
        if excluded == n_queries:
            raise ValueError(f"pmrp: at zeta={z} all {n_queries} queries are excluded ({reason}); the metric is undefined")
        if excluded:
            exclusions[z] = f"{excluded} of {n_queries} ({reason})"
        result[f"PMRP@{z}"] = float(values[defined].mean())
    if len(exclusions) == len(result) and len(set(exclusions.values())) == 1:
        warnings.warn(
            f"pmrp: {next(iter(exclusions.values()))} queries excluded from the mean at every zeta",
            ExcludedQueriesWarning,
            stacklevel=2,
        )
    elif exclusions:
        listed = "; ".join(f"zeta={z}: {text}" for z, text in exclusions.items())
        warnings.warn(f"pmrp: queries excluded from the mean at {listed}", ExcludedQueriesWarning, stacklevel=2)
    return {"PMRP": float(np.mean(list(result.values()))), **result}
