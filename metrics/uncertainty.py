"""Uncertainty against retrieval performance: equal-count bins of u, rank correlations and AUROC.

The analysis of PCME (Chun et al. 2021, "uncertainty vs performance": R@1 per bin of sigma),
which PCME++ (Chun 2024) repeats with bins of the sum of sigma^2, and the statistics that
summarise it here: the Pearson correlation of bin index with per-bin R@1, Spearman rank
correlations (with a bootstrap interval) and AUROC, computed by ``scipy.stats``. Inputs are 1-D
numpy arrays or torch tensors, one value per query.

Missing values: ``spearman``, ``pearson`` and ``auroc`` drop every pair where either value is NaN
(e.g. a query excluded from a metric). They return NaN, without an exception or a warning, when
the answer is undefined: fewer than two pairs or a constant input for the correlations, no
failure or no success for AUROC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, pearsonr, spearmanr

from metrics.bootstrap import CONFIDENCE, percentile_interval, resample_indices
from metrics.ranking import to_numpy

UNCERTAINTY_BIN_COLUMNS = ["bin", "u_low", "u_high", "queries", "metric", "value"]
# |rank correlation| with the control at which a variable counts as fully determined by it (partial_spearman).
DETERMINED = 1 - 1e-12


def _vector(x, name: str) -> np.ndarray:
    array = to_numpy(x, name)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array (one value per query), got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name}: expected real numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _paired(x, y, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Both vectors, same length, without the pairs where either is NaN."""
    x, y = _vector(x, names[0]), _vector(y, names[1])
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} has {len(x)} values but {names[1]} has {len(y)}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _aligned(**vectors) -> list[np.ndarray]:
    """The named vectors as float arrays of one length (NaNs kept)."""
    arrays = {name: _vector(v, name) for name, v in vectors.items()}
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"vectors of different lengths: {lengths}")
    return list(arrays.values())


def _undefined(*vectors: np.ndarray, minimum: int = 2) -> bool:
    """Whether a correlation of these NaN-free vectors is undefined: fewer than ``minimum`` values or a constant one.

    Checked before scipy, which would return NaN too but with a ConstantInputWarning per call.
    """
    return len(vectors[0]) < minimum or any((v == v[0]).all() for v in vectors)


def _spearman_of(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two NaN-free vectors; NaN for fewer than 2 pairs or a constant input."""
    return float("nan") if _undefined(x, y) else float(spearmanr(x, y).statistic)


def pearson(x, y) -> float:
    """Pearson correlation sum((x - mean x)(y - mean y)) / sqrt(sum (x - mean x)^2 * sum (y - mean y)^2).

    NaN pairs are dropped; NaN is returned for fewer than 2 pairs or a constant input; inf raises ValueError.
    """
    x, y = _paired(x, y, ("x", "y"))
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("pearson: inputs contain inf")
    return float("nan") if _undefined(x, y) else float(pearsonr(x, y).statistic)


def spearman(x, y) -> float:
    """Spearman rank correlation: the Pearson correlation of the average ranks of x and of y (ties share
    the mean of their ranks). NaN pairs are dropped; NaN for fewer than 2 pairs or a constant input."""
    return _spearman_of(*_paired(x, y, ("x", "y")))


def spearman_interval(x, y, replicates: int = 1000, seed: int = 0, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of ``spearman(x, y)`` over pairs.

    Each of ``replicates`` resamples draws len(pairs) (x, y) pairs with replacement (NaN pairs
    dropped first) from a generator seeded with ``seed``, and computes the Spearman correlation;
    the interval is ``metrics.bootstrap.percentile_interval`` of the defined replicates. (NaN, NaN)
    when fewer than two pairs remain or no replicate is defined.
    """
    x, y = _paired(x, y, ("x", "y"))
    if len(x) < 2:
        return float("nan"), float("nan")
    draws = resample_indices(np.random.default_rng(seed), len(x), replicates)
    return percentile_interval(np.array([_spearman_of(x[i], y[i]) for i in draws]), confidence)


def partial_spearman(x, y, control) -> float:
    """Spearman correlation of x and y with ``control`` partialled out: the partial correlation of
    the three variables' average ranks, (r_xy - r_xc r_yc) / sqrt((1 - r_xc^2)(1 - r_yc^2)).
    Triples with a NaN are dropped; NaN when undefined (fewer than 3 triples, a constant input, or
    x or y fully determined by the control: |r_xc| or |r_yc| of 1, to 1e-12)."""
    x, y, control = _aligned(x=x, y=y, control=control)
    keep = ~(np.isnan(x) | np.isnan(y) | np.isnan(control))
    x, y, control = x[keep], y[keep], control[keep]
    if _undefined(x, y, control, minimum=3):
        return float("nan")
    rho = spearmanr(np.column_stack([x, y, control])).statistic  # the 3 x 3 rank correlation matrix
    xy, xc, yc = rho[0, 1], rho[0, 2], rho[1, 2]
    if max(abs(xc), abs(yc)) >= DETERMINED:
        return float("nan")
    return float((xy - xc * yc) / np.sqrt((1 - xc**2) * (1 - yc**2)))


def within_strata_spearman(x, y, strata, min_size: int = 50) -> float:
    """The mean of the Spearman correlations of x and y within each stratum (e.g. captions of one
    word count) of at least ``min_size`` pairs, weighted by the stratum's pairs; strata where the
    correlation is undefined (a constant input) are left out. NaN when none is left."""
    x, y, strata = _aligned(x=x, y=y, strata=strata)
    values, weights = [], []
    for stratum in np.unique(strata[~np.isnan(strata)]):
        keep = (strata == stratum) & ~np.isnan(x) & ~np.isnan(y)
        if keep.sum() >= min_size:
            rho = _spearman_of(x[keep], y[keep])
            if not np.isnan(rho):
                values.append(rho)
                weights.append(keep.sum())
    return float(np.average(values, weights=weights)) if values else float("nan")


def auroc(predictor, failure) -> float:
    """Area under the ROC curve of ``predictor`` (higher = more likely a failure) for the binary ``failure``.

    AUROC = P(predictor of a failure > predictor of a success) + 0.5 * P(equal), over all
    (failure, success) pairs: the Mann-Whitney U of the failures divided by n_failure * n_success
    (scipy computes U from average ranks, so ties count half). In [0, 1]; 0.5 for a constant
    predictor. Pairs where either value is NaN are dropped; NaN when there is no failure or no success.
    """
    predictor, failure = _paired(predictor, failure, ("predictor", "failure"))
    if not np.isin(failure, (0.0, 1.0)).all():
        raise ValueError("failure: expected binary values (bool or 0/1, NaN for unknown)")
    failed = failure == 1.0
    n_failed, n_succeeded = int(failed.sum()), int((~failed).sum())
    if n_failed == 0 or n_succeeded == 0:
        return float("nan")
    # the asymptotic p-value (unused) costs nothing; the exact one would enumerate small samples
    u_statistic = mannwhitneyu(predictor[failed], predictor[~failed], method="asymptotic").statistic
    return float(u_statistic / (n_failed * n_succeeded))


def uncertainty_bins(u, per_query: dict, n_bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of the per-query uncertainty ``u`` and the mean of each per-query metric in each bin.

    Queries are sorted by u (stable: equal u keep query order) and split into ``n_bins`` consecutive
    bins whose sizes differ by at most one (the first Q mod n_bins bins get the extra query).
    Returns a DataFrame with columns bin, u_low, u_high, queries, metric, value: one row per (metric,
    bin) in the order of ``per_query``, then of bin; bin = 0 (lowest u) .. n_bins - 1; u_low/u_high =
    the smallest/largest u in the bin; queries = the number of queries in the bin; value = the mean
    of the metric over the bin's queries where it is defined (NaN values skipped; NaN if none is),
    in the metric's own units (percent stays percent).
    """
    u = _vector(u, "u")
    if np.isnan(u).any():
        raise ValueError(
            f"u: {int(np.isnan(u).sum())} NaN values (e.g. query {int(np.flatnonzero(np.isnan(u))[0])}); every query needs an uncertainty"
        )
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    if len(u) < n_bins:
        raise ValueError(f"uncertainty_bins: {len(u)} queries cannot fill {n_bins} bins")
    metrics = {name: _vector(values, f"per_query[{name!r}]") for name, values in per_query.items()}
    for name, values in metrics.items():
        if values.shape != u.shape:
            raise ValueError(f"per_query[{name!r}] has {len(values)} values but u has {len(u)}")
    bins = np.array_split(np.argsort(u, kind="stable"), n_bins)
    rows = []
    for name, values in metrics.items():
        for index, members in enumerate(bins):
            defined = values[members][~np.isnan(values[members])]
            rows.append(
                {
                    "bin": index,
                    "u_low": float(u[members].min()),
                    "u_high": float(u[members].max()),
                    "queries": len(members),
                    "metric": name,
                    "value": float(defined.mean()) if len(defined) else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=UNCERTAINTY_BIN_COLUMNS)
