"""The percentile bootstrap: resamples of queries and the interval of a statistic's replicates.

Two ways to resample the same thing, n items drawn with replacement: as indices, for a statistic
of the drawn items (``metrics.uncertainty.spearman_interval``), or as counts, for weighted means
of many series at once with one matrix product (the aggregate stage's intervals, where one
resample serves every seed and method of a dataset). Either way the interval is
``percentile_interval`` of the replicates.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def resample_indices(rng: np.random.Generator, items: int, replicates: int) -> np.ndarray:
    """(replicates, items) indices: each row draws ``items`` of them uniformly with replacement."""
    return rng.integers(0, items, (replicates, items))


def resample_counts(rng: np.random.Generator, items: int, replicates: int) -> np.ndarray:
    """(replicates, items) multiplicities of a resample: each row draws ``items`` of them with replacement."""
    return rng.multinomial(items, np.full(items, 1.0 / items), size=replicates).astype(np.float64)


def series_replicates(values: np.ndarray, counts: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap replicates of the (weighted) mean of each row of ``values`` (series x items, NaN = item not in the series).

    Replicate b of series s is sum_q c_bq w_sq v_sq / sum_q c_bq w_sq [v_sq defined]: the mean over the
    resampled items that the series has (``weights`` w: 1 when None); NaN when the resample holds none
    of them. ``counts``: from ``resample_counts``. Returns (replicates, series).
    """
    present = ~np.isnan(values)
    weights = present.astype(np.float64) if weights is None else np.where(present, weights, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ np.where(present, values * weights, 0.0).T) / (counts @ weights.T)


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile bootstrap interval of a vector of replicates: its (1 - confidence) / 2 and
    (1 + confidence) / 2 percentiles, undefined (NaN, inf) replicates ignored; (NaN, NaN) when none is left."""
    replicates = np.asarray(replicates, dtype=np.float64)
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
