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
labels). No row is sorted whole: PMRP@zeta needs only each query's R-th largest score t (R its
plausible count), the top R being then the items scoring >= t. Rows that share a label set (so
their R's) are partitioned together (np.partition: linear-time selection) around the largest
zeta's R, their top R again around the next zeta's, and only that top sorted; the plausible items
scoring >= t are counted over the query's plausible columns alone (listed per label set, nearest
first, so a zeta's are a prefix). A query whose R-th and (R + 1)-th largest scores are equal (a tie
across the cut, which gallery index settles) is counted from a full sort of its row instead.
benchmarks/bench_pmrp.py times it against one np.sort of the matrix.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from metrics.ranking import (
    ExcludedQueriesWarning,
    check_binary,
    check_chunk_size,
    check_finite,
    check_int_sequence,
    check_scores,
    hits_in_top,
    row_counts,
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


# Rows per chunk: about 1 MB of scores, in the core's cache while they are partitioned and counted
# (0.5 to 4 MB took the same time in benchmarks/bench_pmrp.py). The plausible-column lists are built
# for about 2**23 score entries' worth of queries at a time, which bounds their memory.
PARTITION_CHUNK_BYTES = 2**20
COLUMN_LIST_ENTRIES = 2**23


def _hamming_table(query_sets: np.ndarray, gallery_sets: np.ndarray, cap: int) -> np.ndarray:
    """Hamming distances between distinct label sets, capped at ``cap``: |a| + |b| - 2 a.b."""
    table = np.empty((len(query_sets), len(gallery_sets)), dtype=np.uint8 if cap <= 255 else np.int32)
    query_sizes, gallery_sizes = query_sets.sum(axis=1), gallery_sets.sum(axis=1)
    for start in range(0, len(query_sets), 1024):
        rows = slice(start, start + 1024)
        # exact in float32: every term is an integer <= the number of label columns
        distance = query_sets[rows] @ gallery_sets.T
        distance *= -2.0
        distance += query_sizes[rows, None]
        distance += gallery_sizes
        table[rows] = np.minimum(distance, cap, out=distance)
    return table


def _plausible_counts(distance_table: np.ndarray, gallery_set_sizes: np.ndarray, zetas) -> dict[int, np.ndarray]:
    """Per distinct query label set and zeta: the number of gallery items within Hamming distance zeta."""
    # sums of 0/1 times counts are exact in float32 up to 2**24 items, in float64 beyond (both BLAS-fast)
    dtype = np.float32 if gallery_set_sizes.sum() < 2**24 else np.float64
    sizes = gallery_set_sizes.astype(dtype)
    counts = {z: np.empty(len(distance_table), dtype=np.int64) for z in zetas}
    for start in range(0, len(distance_table), 1024):
        block = distance_table[start : start + 1024]
        for z in zetas:
            counts[z][start : start + 1024] = np.rint((block <= z).astype(dtype) @ sizes)
    return counts


class _Labels:
    """What PMRP needs of the labels: each labeled query's label set, the distance table, the plausible counts."""

    def __init__(self, query_labels: np.ndarray, gallery_labels: np.ndarray, zetas: tuple[int, ...]):
        self.queries = np.flatnonzero(query_labels.any(axis=1))
        self.unlabeled_gallery = np.flatnonzero(~gallery_labels.any(axis=1))
        self.zetas = tuple(sorted(zetas))  # ascending: nested plausible sets, the last the largest
        query_sets, self.query_set = _distinct_rows(query_labels[self.queries])
        gallery_sets, self.gallery_set = _distinct_rows(gallery_labels)
        cap = self.zetas[-1] + 1  # distances beyond the largest zeta only need to read "not plausible"
        self.table = _hamming_table(query_sets, gallery_sets, cap)
        self.table[:, ~gallery_sets.any(axis=1)] = cap  # the all-zero row, if any: never plausible
        self.set_sizes = np.bincount(self.gallery_set, minlength=len(gallery_sets))
        counts = _plausible_counts(self.table, self.set_sizes, self.zetas)
        self.counts = np.stack([counts[z] for z in self.zetas])  # zetas x distinct query label sets
        self.columns_by_set = np.argsort(self.gallery_set, kind="stable")
        self.set_starts = np.cumsum(self.set_sizes) - self.set_sizes

    def plausible_columns(self, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the distinct query label sets ``sets``: their plausible gallery columns at the largest zeta,
        concatenated, each set's ordered by label distance (so zeta's plausible columns are a prefix of
        count[zeta] columns); and where each set's list starts (len(sets) + 1 offsets)."""
        largest = self.zetas[-1]
        distances = self.table[sets]
        set_index, gallery_index = np.nonzero(distances <= largest)
        nearest_first = np.argsort(set_index * (largest + 1) + distances[set_index, gallery_index], kind="stable")
        set_index, gallery_index = set_index[nearest_first], gallery_index[nearest_first]
        lengths = self.set_sizes[gallery_index]
        ends = np.cumsum(lengths)
        positions = np.arange(int(ends[-1]) if len(ends) else 0)
        positions += np.repeat(self.set_starts[gallery_index] - (ends - lengths), lengths)
        per_set = np.bincount(set_index, weights=lengths, minlength=len(sets)).astype(np.int64)
        return self.columns_by_set[positions], np.concatenate([[0], np.cumsum(per_set)])


def _select_run(rows: np.ndarray, depths: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Partition rows that share their depths (ascending, >= 1; the last the deepest, R) in place: the top
    R at the end, the (R + 1)-th largest just before them, and within the top R, the top R' + 1 at the
    end (R' the next depth). Returns each row's R-th largest score and the (R + 1)-th (None if R is all)."""
    n_gallery, deepest = rows.shape[1], depths[-1]
    rows.partition(max(n_gallery - deepest - 1, 0), axis=1)  # numpy's vectorised selection (no sort)
    top = rows[:, n_gallery - deepest :]
    if len(depths) > 1 and depths[-2] + 1 < deepest:
        top.partition(deepest - depths[-2] - 1, axis=1)
    return top.min(axis=1), rows[:, n_gallery - deepest - 1] if deepest < n_gallery else None


def _cut_scores(part: np.ndarray, depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's depth-th largest score for the depths before the deepest (rows of ``part`` as _select_run
    leaves them: the top R' + 1 at each row's end), and whether any ties with the next score down.
    The top R' + 1 of every row are sorted in place (only these: R' is the next depth, not the deepest)."""
    n_rows, n_gallery = part.shape
    width = min(int(depths[-1].max()) + 1, n_gallery)
    top = part[:, n_gallery - width :]
    top.sort(axis=1)  # each row's top R' + 1 in ascending order at its end (and lower scores before them)
    at = width - depths
    rows = np.arange(n_rows)
    cuts = top[rows, at]
    tied = ((at > 0) & (top[rows, np.maximum(at - 1, 0)] == cuts)).any(axis=0)
    return cuts, tied


def _chunk_hits(chunk: np.ndarray, sets: np.ndarray, depth: np.ndarray, labels: _Labels, columns, starts):
    """Per zeta and row of ``chunk`` (scores; reordered in place): its plausible items scoring >= its cut;
    and whether the row has a tie across a cut (then that count is not the top R's).

    Rows come in runs that share a label set (so its plausible columns and depths): ``columns[starts[i]:]``
    are row i's set's plausible columns, nearest first (zeta's are a prefix). A run's plausible scores are
    read (into one array, -inf after each row's own), then its rows partitioned (_select_run).
    """
    counts = labels.counts[:, sets]
    plausible = np.full((len(chunk), max(int(counts[-1].max()), 1)), -np.inf, dtype=chunk.dtype)
    cuts = np.empty(depth.shape, dtype=chunk.dtype)
    tied = np.zeros(len(chunk), dtype=bool)
    chunk[:, labels.unlabeled_gallery] = -np.inf  # takes no rank: below every (finite) score; never plausible
    bounds = np.concatenate([[0], np.flatnonzero(sets[1:] != sets[:-1]) + 1, [len(sets)]]).tolist()
    for first, stop in itertools.pairwise(bounds):
        deepest = int(counts[-1, first])
        run_columns = columns[starts[first] : starts[first] + deepest]
        np.take(chunk[first:stop], run_columns, axis=1, out=plausible[first:stop, :deepest], mode="wrap")
        cuts[-1, first:stop], below = _select_run(chunk[first:stop], depth[:, first].tolist())
        if below is not None:
            tied[first:stop] = below == cuts[-1, first:stop]
    if len(depth) > 1:
        cuts[:-1], tied_before = _cut_scores(chunk, depth[:-1])
        tied |= tied_before
    hits = np.empty(cuts.shape, dtype=np.int64)
    for z in range(len(counts)):
        width = max(int(counts[z].max()), 1)
        above = plausible[:, :width] >= cuts[z, :, None]
        if z < len(counts) - 1:  # beyond a row's own count: plausible at a larger zeta only
            above &= np.arange(width) < counts[z, :, None]
        hits[z] = row_counts(above)
    return hits, tied


def _count_hits_by_sorting(chunk: np.ndarray, sets: np.ndarray, labels: _Labels) -> np.ndarray:
    """The plausible items in each row's top R per zeta, read off a full sort of each row (exact under any tie)."""
    left_out = labels.unlabeled_gallery if len(labels.unlabeled_gallery) else None
    sorted_rows = chunk.copy()
    sorted_rows[:, labels.unlabeled_gallery] = -np.inf  # takes no rank: below every (finite) score
    sorted_rows.sort(axis=1)
    distance = np.take(labels.table[sets], labels.gallery_set, axis=1)
    depths = np.maximum(labels.counts[:, sets], 1)
    return np.stack([hits_in_top(chunk, sorted_rows, distance <= z, depth, left_out) for z, depth in zip(labels.zetas, depths)])


def _plausible_hits(scores: np.ndarray, labels: _Labels, chunk_size: int | None) -> np.ndarray:
    """Per zeta (ascending) and labeled query: the plausible items among its top R (R = its plausible count).

    Also checks that the labeled queries' scores are finite (check_scores's error), as it reads them.
    """
    n_gallery = scores.shape[1]
    depth = np.maximum(labels.counts[:, labels.query_set], 1)
    order = np.lexsort((labels.query_set, -depth[-1]))  # the deepest first; a label set's rows together
    rows_per_chunk = chunk_size or max(1, PARTITION_CHUNK_BYTES // (scores.itemsize * n_gallery))
    buffer = np.empty((min(rows_per_chunk, len(order)), n_gallery), dtype=scores.dtype)
    hits = np.empty(depth.shape, dtype=np.int64)
    step = max(rows_per_chunk, COLUMN_LIST_ENTRIES // n_gallery // rows_per_chunk * rows_per_chunk)
    for outer in range(0, len(order), step):
        present, local = np.unique(labels.query_set[order[outer : outer + step]], return_inverse=True)
        columns, set_starts = labels.plausible_columns(present)
        for start in range(outer, min(outer + step, len(order)), rows_per_chunk):
            queries = order[start : start + rows_per_chunk]
            rows = labels.queries[queries]
            chunk = np.take(scores, rows, axis=0, out=buffer[: len(queries)], mode="wrap")  # 'wrap': no buffered copy
            check_finite(chunk, scores)
            sets, starts = labels.query_set[queries], set_starts[local[start - outer : start - outer + len(queries)]]
            chunk_hits, tied = _chunk_hits(chunk, sets, depth[:, queries], labels, columns, starts)
            if tied.any():  # a tie across a cut: gallery index settles it, read off a full sort
                chunk_hits[:, tied] = _count_hits_by_sorting(scores[rows[tied]], sets[tied], labels)
            hits[:, start : start + len(queries)] = chunk_hits
    in_query_order = np.empty_like(order)
    in_query_order[order] = np.arange(len(order))
    return hits[:, in_query_order]


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
    scores = check_scores(scores, finite=False)  # finiteness: checked on the rows as they are read
    try:
        query_labels, gallery_labels = _check_labels(query_labels, gallery_labels, scores.shape)
        zetas = check_int_sequence(zetas, "zetas", minimum=0)
        check_chunk_size(chunk_size)
    except ValueError:
        check_scores(scores)  # a non-finite score is reported first
        raise
    per_zeta = {z: np.full(scores.shape[0], np.nan) for z in zetas}
    labeled = query_labels.any(axis=1)
    if not labeled.all() or not gallery_labels.any():
        check_finite(scores[~labeled] if gallery_labels.any() else scores, scores)  # rows read nowhere else
    if labeled.any() and gallery_labels.any():
        labels = _Labels(query_labels, gallery_labels, zetas)
        hits = _plausible_hits(scores, labels, chunk_size)
        for z, zeta_hits, depth in zip(labels.zetas, hits, labels.counts[:, labels.query_set]):
            defined = depth > 0
            per_zeta[z][labels.queries[defined]] = 100.0 * zeta_hits[defined] / depth[defined]
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
