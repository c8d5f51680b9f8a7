"""Retrieval metrics against a binary ground truth: Recall@K, R-Precision, mAP@R, and the top-1/top-2 score margin.

Every function takes ``scores``, a (Q, G) matrix (numpy array or torch tensor; higher = more similar),
and ``positives``, a binary (Q, G) matrix (True where gallery item j is a correct match of query i).
Ranks follow metrics.ranking: descending score, ties by gallery index (lower index first).
Values are in percent. A query without any positive is excluded: NaN per query, left out of the
means with an ExcludedQueriesWarning, and a ValueError when no query is left.
"""

from __future__ import annotations

import numpy as np

from metrics.ranking import (
    check_binary,
    check_chunk_size,
    check_int_sequence,
    check_scores,
    query_chunks,
    ranks_of_items,
    row_counts,
    warn_excluded,
)


def retrieval_per_query(scores, positives, ks=(1, 5, 10), chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """Per-query Recall@K, R-Precision, mAP@R and rank of the first positive (float64, percent except the rank).

    With R = the number of positives of query i and rank(j) its 1-based rank of gallery item j
    (descending score, ties by lower gallery index):

    - ``R@K`` = 100 if any positive has rank <= K else 0;
    - ``R-P`` (R-Precision, Musgrave et al. 2020, "A Metric Learning Reality Check") = 100 * (positives with rank <= R) / R;
    - ``mAP@R`` (same paper) = 100 * (1/R) * sum over r = 1..R of P@r * [the item at rank r is a positive],
      with P@r = (positives with rank <= r) / r;
    - ``first_rank`` = the rank of the best-ranked positive (1-based; not in percent).

    Every value is NaN for a query with no positive. ``chunk_size`` = queries per chunk (default:
    about 4M score entries per chunk). Cost per chunk: one value sort of the rows plus a vectorised
    binary search per positive, so it stays fast with few positives per query (COCO) and many (CUB).
    """
    scores = check_scores(scores)
    positives = check_binary(positives, "positives", shape=scores.shape)
    ks = check_int_sequence(ks, "ks", minimum=1)
    check_chunk_size(chunk_size)
    n_queries, n_gallery = scores.shape
    first_rank = np.full(n_queries, np.nan)
    r_precision = np.full(n_queries, np.nan)
    map_at_r = np.full(n_queries, np.nan)
    for block in query_chunks(n_queries, n_gallery, chunk_size):
        chunk, chunk_positives = np.ascontiguousarray(scores[block]), positives[block]
        rows, columns = np.nonzero(chunk_positives)  # row-major: grouped by query
        if len(rows) == 0:
            continue
        ranks = ranks_of_items(chunk, np.sort(chunk, axis=1), rows, columns)
        order = np.lexsort((ranks, rows))  # each query's positives by rank
        rows, ranks = rows[order], ranks[order]
        n_positive = row_counts(chunk_positives)
        start = np.concatenate(([0], np.cumsum(n_positive)[:-1]))
        position = np.arange(len(rows)) - start[rows] + 1  # 1-based among the query's positives
        within_r = ranks <= n_positive[rows]
        has_positive = n_positive > 0
        # positives with rank <= R are exactly the first ones in rank order, so the count of
        # those also gives P@r = position / rank at each positive's rank r.
        hits_r = np.bincount(rows, weights=within_r, minlength=len(n_positive))
        precision_sum = np.bincount(rows, weights=np.where(within_r, position / ranks, 0.0), minlength=len(n_positive))
        query = np.arange(block.start, block.stop)[has_positive]
        first_rank[query] = ranks[start[has_positive]]
        r_precision[query] = 100.0 * hits_r[has_positive] / n_positive[has_positive]
        map_at_r[query] = 100.0 * precision_sum[has_positive] / n_positive[has_positive]
    result = {f"R@{k}": np.where(np.isnan(first_rank), np.nan, 100.0 * (first_rank <= k)) for k in ks}
    result.update({"R-P": r_precision, "mAP@R": map_at_r, "first_rank": first_rank})
    return result


def _mean_over_queries(per_query: dict[str, np.ndarray], keys, metric: str) -> dict[str, float]:
    defined = ~np.isnan(per_query["first_rank"])
    warn_excluded(metric, int((~defined).sum()), len(defined), "no positive in the gallery")
    return {key: float(per_query[key][defined].mean()) for key in keys}


def recall_at_k(scores, positives, ks=(1, 5, 10), chunk_size: int | None = None) -> dict[str, float]:
    """Recall@K in percent: the share of queries with at least one positive among their top K gallery items.

    Returns {"R@1": ..., "R@5": ..., "R@10": ...} for the default ``ks``. Ranks: descending score, ties
    by lower gallery index. Queries without a positive are excluded (ExcludedQueriesWarning with their count).
    """
    ks = check_int_sequence(ks, "ks", minimum=1)
    per_query = retrieval_per_query(scores, positives, ks=ks, chunk_size=chunk_size)
    return _mean_over_queries(per_query, [f"R@{k}" for k in ks], "recall_at_k")


def r_precision(scores, positives, chunk_size: int | None = None) -> float:
    """R-Precision in percent (Musgrave et al. 2020): mean over queries of (positives in the top R) / R,
    R = the query's number of positives. Ties by lower gallery index; queries without a positive excluded."""
    per_query = retrieval_per_query(scores, positives, ks=(1,), chunk_size=chunk_size)
    return _mean_over_queries(per_query, ["R-P"], "r_precision")["R-P"]


def map_at_r(scores, positives, chunk_size: int | None = None) -> float:
    """mAP@R in percent (Musgrave et al. 2020): mean over queries of (1/R) * sum_{r<=R} P@r * [item at rank r is a positive],
    R = the query's number of positives, P@r = precision of the top r. Ties by lower gallery index;
    queries without a positive excluded."""
    per_query = retrieval_per_query(scores, positives, ks=(1,), chunk_size=chunk_size)
    return _mean_over_queries(per_query, ["mAP@R"], "map_at_r")["mAP@R"]


def score_margin(scores, chunk_size: int | None = None) -> np.ndarray:
    """Per query (Q,) float64: the largest score minus the second largest (>= 0; 0 when the top two tie).

    In score units. Its negative is the confidence baseline for predicting an R@1 failure. Needs G >= 2.
    """
    scores = check_scores(scores)
    check_chunk_size(chunk_size)
    n_queries, n_gallery = scores.shape
    if n_gallery < 2:
        raise ValueError(f"score_margin: needs at least 2 gallery items, got {n_gallery}")
    margin = np.empty(n_queries)
    for block in query_chunks(n_queries, n_gallery, chunk_size):
        # partitioning at G - 2 puts the second largest there and the largest after it
        top_two = np.partition(scores[block], n_gallery - 2, axis=1)[:, -2:].astype(np.float64)
        margin[block] = top_two[:, 1] - top_two[:, 0]
    return margin
