"""Retrieval metrics on score matrices (queries x gallery, higher = more similar), values in percent.

Pure functions on numpy arrays or torch tensors. Ranks: descending score, ties by lower gallery
index. Queries without a positive (or, for PMRP, without a label or a plausible match) are NaN
per query and left out of the means with an ExcludedQueriesWarning; bad input raises ValueError.
The uncertainty analysis (``metrics.uncertainty``) and the percentile bootstrap (``metrics.bootstrap``)
work on per-query values.
"""

from metrics.bootstrap import percentile_interval, resample_counts, resample_indices, series_replicates
from metrics.pmrp import pmrp, pmrp_per_query
from metrics.ranking import ExcludedQueriesWarning
from metrics.retrieval import map_at_r, r_precision, recall_at_k, retrieval_per_query, score_margin
from metrics.uncertainty import (
    auroc,
    partial_spearman,
    pearson,
    spearman,
    spearman_interval,
    uncertainty_bins,
    within_strata_spearman,
)

__all__ = [
    "ExcludedQueriesWarning",
    "auroc",
    "map_at_r",
    "partial_spearman",
    "pearson",
    "percentile_interval",
    "pmrp",
    "pmrp_per_query",
    "r_precision",
    "recall_at_k",
    "resample_counts",
    "resample_indices",
    "retrieval_per_query",
    "score_margin",
    "series_replicates",
    "spearman",
    "spearman_interval",
    "uncertainty_bins",
    "within_strata_spearman",
]
