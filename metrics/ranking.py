"""Shared core of the retrieval metrics: input checks, query chunking and the tie-aware ranking primitives.

Ranking convention (every metric of this package): a query ranks the gallery by descending score;
items with equal scores are ordered by gallery index, the lower index first. So the rank (1-based)
of gallery item j for a query with scores s is

    rank(j) = #{k : s_k > s_j} + #{k < j : s_k = s_j} + 1,

which is the order of a stable sort of -s. Nothing here loops in Python over query x gallery pairs:
work is vectorised over a chunk of queries and the chunks bound the extra memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

# Score entries per query chunk when no chunk size is given: 2**20 entries keep the chunk's sorted copy
# and boolean masks at a few MB (cache-friendly); 2**18..2**22 took the same CPU time in
# benchmarks/bench_pmrp.py, 2**24 a third more.
DEFAULT_CHUNK_ENTRIES = 2**20


class ExcludedQueriesWarning(UserWarning):
    """Some queries were left out of a metric's mean (no positive, no label, no plausible match)."""


def to_numpy(x, name: str) -> np.ndarray:
    """A numpy view or copy of a numpy array, torch tensor (any device) or nested sequence."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        tensor = x.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            tensor = tensor.float()
        return tensor.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: cannot be read as an array ({error})") from None


def check_scores(scores, finite: bool = True) -> np.ndarray:
    """Validate a (Q, G) score matrix: 2-D, real, non-empty, finite. Returns a float32/float64 array (no copy if possible).

    ``finite=False`` leaves finiteness to the caller (check_finite on the rows it reads anyway, in cache).
    """
    array = to_numpy(scores, "scores")
    if array.ndim != 2:
        raise ValueError(f"scores: expected a 2-D (queries, gallery) matrix, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"scores: empty matrix of shape {array.shape}")
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"scores: expected real numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64)
    elif array.dtype.itemsize < 4:  # float16: sorting and comparing it is slow, float32 holds it exactly
        array = array.astype(np.float32)
    for rows in query_chunks(array.shape[0], array.shape[1], None) if finite else ():
        if _sum_is_finite(array[rows]):
            continue
        finite_entries = np.isfinite(array[rows])
        if not finite_entries.all():
            row, column = np.argwhere(~finite_entries)[0]
            value = array[rows][row, column]
            raise ValueError(f"scores: {value} at query {rows.start + row}, gallery item {column}; every score must be finite")
    return array


def _sum_is_finite(block: np.ndarray) -> bool:
    """One pass: NaN and inf propagate through a sum; a sum of finite values that overflows reads False too."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(block, axis=None)))


def check_finite(block: np.ndarray, scores: np.ndarray) -> None:
    """Raise check_scores's error for ``scores`` when ``block`` (some of its entries, in cache) holds a
    non-finite value. NaN propagates through min and max; on rows in cache these two vectorised
    reductions take about half a sum's time."""
    if not (np.isfinite(block.min()) and np.isfinite(block.max())):
        check_scores(scores)  # names the matrix's first non-finite entry


def check_binary(matrix, name: str, shape: tuple[int, ...] | None = None, ndim: int = 2) -> np.ndarray:
    """Validate a binary matrix (bool, or numbers that are all 0 or 1) and return it as bool."""
    array = to_numpy(matrix, name)
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D matrix, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name}: shape {array.shape} does not match the expected {shape}")
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name}: expected binary values, got dtype {array.dtype}")
    binary = (array == 0) | (array == 1)
    if not binary.all():
        index = tuple(int(i) for i in np.argwhere(~binary)[0])
        raise ValueError(f"{name}: value {array[index]} at {index} is not binary (0/1)")
    return array.astype(bool)


def check_int_sequence(values, name: str, minimum: int) -> tuple[int, ...]:
    """A non-empty sequence of distinct integers >= ``minimum`` (bools refused), as plain ints."""
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum for v in values):
        kind = {0: "non-negative", 1: "positive"}.get(minimum, f">= {minimum}")
        raise ValueError(f"{name}: expected a non-empty sequence of {kind} integers, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: repeated values in {values!r}")
    return tuple(int(v) for v in values)


def check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size: expected a positive integer or None, got {chunk_size!r}")


def query_chunks(n_queries: int, n_gallery: int, chunk_size: int | None) -> Iterator[slice]:
    """Consecutive slices of query rows; by default about DEFAULT_CHUNK_ENTRIES score entries each."""
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_CHUNK_ENTRIES // max(1, n_gallery))
    for start in range(0, n_queries, chunk_size):
        yield slice(start, min(start + chunk_size, n_queries))


def count_sorted_below(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray, inclusive: bool) -> np.ndarray:
    """For each (row, value): how many entries of the ascending ``sorted_rows[row]`` are < value (<= if inclusive).

    A binary search vectorised over all pairs (np.searchsorted per row, without a loop over rows).
    """
    n_gallery = sorted_rows.shape[1]
    low = np.zeros(len(values), dtype=np.int64)
    high = np.full(len(values), n_gallery, dtype=np.int64)
    for _ in range(int(n_gallery).bit_length()):  # the interval halves each step: empty after this many
        middle = (low + high) // 2
        probe = sorted_rows[rows, np.minimum(middle, n_gallery - 1)]
        go_right = (probe <= values) if inclusive else (probe < values)
        open_ = low < high
        low = np.where(open_ & go_right, middle + 1, low)
        high = np.where(open_ & ~go_right, middle, high)
    return low


def ranks_of_items(chunk: np.ndarray, sorted_rows: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """1-based rank of gallery item columns[i] for query rows[i] within ``chunk`` (ties by gallery index).

    ``sorted_rows`` is ``np.sort(chunk, axis=1)``. The rank is #greater + 1, plus the number of equal
    scores at a lower gallery index; that correction needs a pass over the row only where a tie exists.
    """
    n_gallery = chunk.shape[1]
    values = chunk[rows, columns]
    at_most = count_sorted_below(sorted_rows, rows, values, inclusive=True)
    below = count_sorted_below(sorted_rows, rows, values, inclusive=False)
    ranks = n_gallery - at_most + 1
    tied = np.flatnonzero(at_most - below > 1)
    if len(tied):
        batch = max(1, DEFAULT_CHUNK_ENTRIES // n_gallery)
        index = np.arange(n_gallery)
        for start in range(0, len(tied), batch):
            part = tied[start : start + batch]
            equal_before = (chunk[rows[part]] == values[part, None]) & (index < columns[part, None])
            ranks[part] += row_counts(equal_before)
    return ranks


def row_counts(mask: np.ndarray) -> np.ndarray:
    """Number of True entries per row of a 2-D boolean array (several times faster than np.count_nonzero(axis=1))."""
    return mask.view(np.uint8).sum(axis=1, dtype=np.uint16 if mask.shape[1] < 2**16 else np.int64).astype(np.int64)


def hits_in_top(
    chunk: np.ndarray, sorted_rows: np.ndarray, relevant: np.ndarray, depth: np.ndarray, left_out: np.ndarray | None = None
) -> np.ndarray:
    """Number of relevant items among the top ``depth[i]`` of each row (ties by gallery index); 1 <= depth.

    ``sorted_rows`` holds each row's scores in ascending order, with the ``left_out`` columns (which
    take no rank and must not be relevant) replaced by -inf. The depth-th largest score t is read
    from it. Items scoring >= t are the top depth unless t also occurs just below the cut (a tie
    across it); then the items above t are all in and the free slots go to the tied items in
    gallery-index order. O(G) per row, no argsort.
    """
    n_rows, n_gallery = chunk.shape
    row = np.arange(n_rows)
    cut = n_gallery - depth
    threshold = sorted_rows[row, cut]
    in_top = np.greater_equal(chunk, threshold[:, None])
    hits = row_counts(np.logical_and(in_top, relevant, out=in_top))
    overflow = np.flatnonzero((cut > 0) & (sorted_rows[row, np.maximum(cut - 1, 0)] == threshold))
    if len(overflow):
        rows, row_threshold, row_relevant = chunk[overflow], threshold[overflow, None], relevant[overflow]
        if left_out is not None:
            rows[:, left_out] = -np.inf
        above = rows > row_threshold
        free_slots = depth[overflow] - row_counts(above)
        tie = rows == row_threshold
        first_ties = tie & (np.cumsum(tie, axis=1) <= free_slots[:, None])
        hits[overflow] = row_counts((above | first_ties) & row_relevant)
    return hits


def warn_excluded(metric: str, excluded: int, total: int, reason: str) -> None:
    """Warn (ExcludedQueriesWarning) when queries are left out of a mean; raise when every one is."""
    if excluded == total:
        raise ValueError(f"{metric}: all {total} queries are excluded ({reason}); the metric is undefined")
    if excluded:
        warnings.warn(
            f"{metric}: {excluded} of {total} queries excluded from the mean ({reason})", ExcludedQueriesWarning, stacklevel=3
        )
