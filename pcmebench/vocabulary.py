"""The protocol vocabulary every stage shares: directions, protocols, RSUM, display order (torch-free).

``pcmebench.protocols`` builds the protocols' retrieval tasks; evaluation, aggregation, the plots
and the report name them with these constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from corpora import SYNTHETIC_FORMAT, dataset_format
from pcmebench.tables import ResultsError

# i2t: image queries against captions; t2i: caption queries against images.
DIRECTIONS = {"i2t": "image → text", "t2i": "text → image"}
# σ of a modality is the u of the queries of that modality.
QUERY_MODALITY = {"i2t": "images", "t2i": "captions"}
BOTH = "both"  # the direction of metrics over both directions (RSUM)

# The protocol of a dataset's headline numbers, by format: COCO's 1K folds, CUB's test classes.
PRIMARY_PROTOCOL = {"coco": "1K", "cub": "CUB"}
FULL_PROTOCOL = "full"  # synthetic data: the generator's complete ground truth
# The protocols of the σ analysis's bins and summary statistics (those of uncertainty_protocols(dataset)).
UNCERTAINTY_PROTOCOLS = (*PRIMARY_PROTOCOL.values(), FULL_PROTOCOL)
# PCME++'s uncertainty analysis (Chun, ICLR 2024): bins of the sum of σ² on COCO 5K and ECCV Caption.
PCMEPP_PROTOCOLS = ("5K", "ECCV")
PCMEPP_STATISTIC = "sum_sigma_sq"  # the uncertainty statistic PCME++ bins by (models.registry.UNCERTAINTY_STATISTICS)

# RSUM = R@1 + R@5 + R@10 of image-to-text plus the same of text-to-image (VSE++'s rsum), on these protocols.
RSUM = "RSUM"
RSUM_RECALLS = ("R@1", "R@5", "R@10")
RSUM_PARTS = tuple((direction, metric) for direction in DIRECTIONS for metric in RSUM_RECALLS)
RSUM_PROTOCOLS = ("1K", "5K")

# The uncertainty column of the score-margin baseline, which every method has.
MARGIN = "score_margin"

# uncertainty_summary.csv's statistics in display order, with what each measures (the page's legend; results/README.md
# names the same). A statistic with a bootstrap interval also has the rows <statistic><end> for each of INTERVAL_ENDS.
SUMMARY_STATISTICS = {
    "auroc_u": "AUROC of the row's σ statistic predicting an R@1 failure",
    "auroc_margin": "AUROC of the negative top-1 minus top-2 score margin predicting an R@1 failure",
    "spearman_u_rank": "Spearman correlation of the σ statistic with the rank of the first correct item",
    "pearson_bin_r1": "Pearson correlation of σ-bin index with the bin's R@1",
    "spearman_u_log_matches": "Spearman correlation of the σ statistic with log(true number of matches), synthetic data only",
    "partial_spearman_u_log_matches": "the same with the query's length held fixed (partial rank correlation given a caption's "
    "word count, an image's number of instance categories): the control for length, which alone predicts ambiguity",
    "within_length_spearman_u_log_matches": "the same within each length of at least 50 queries, "
    "averaged weighted by their queries",
}
INTERVAL_ENDS = ("_ci_low", "_ci_high")  # a statistic's 95% bootstrap interval over queries

# Display order of tables (results/README.md lists these names); other names go last.
PROTOCOL_ORDER = ("1K", "5K", "CUB", "ECCV", FULL_PROTOCOL)
DIRECTION_ORDER = (*DIRECTIONS, BOTH)
METRIC_ORDER = (
    "R@1", "R@5", "R@10", RSUM, "R-P", "mAP@R", "PMRP", "PMRP@0", "PMRP@1", "PMRP@2",
    "ECCV mAP@R", "ECCV R-P", "ECCV R@1", "CxC R@1", "full mAP@R", "full R-P", "full R@1",
)  # fmt: skip


def primary_protocol(dataset: str) -> str:
    """The protocol of a dataset's headline numbers, by its format."""
    try:
        return PRIMARY_PROTOCOL[dataset_format(dataset)]
    except KeyError:
        known = ", ".join([*PRIMARY_PROTOCOL, *SYNTHETIC_FORMAT])
        raise ResultsError(f"unknown dataset {dataset!r}; known: {known}") from None


def uncertainty_protocols(dataset: str) -> list[str]:
    """The protocols of the σ analysis: the primary one, and the complete ground truth on synthetic data."""
    return [primary_protocol(dataset)] + ([FULL_PROTOCOL] if dataset in SYNTHETIC_FORMAT else [])


Value = TypeVar("Value")  # a number or an array


def rsum(parts: Mapping[tuple[str, str], Value]) -> Value | None:
    """RSUM from ``parts`` {(direction, metric): value}: the sum of the RSUM_PARTS, in their order; None when one is missing.

    The metrics table sums a run's values, the bootstrap the replicates' arrays (element-wise).
    """
    values = [parts.get(part) for part in RSUM_PARTS]
    return None if any(value is None for value in values) else sum(values)


def rank_in(order) -> callable:
    """A sort key: the position of a name in ``order``, names not in it after every name that is."""
    order = list(order)
    return lambda name: order.index(name) if name in order else len(order)


def check_summary_statistic(statistic: str) -> None:
    """A statistic written to uncertainty_summary.csv must be described in SUMMARY_STATISTICS (it names the page's legend)."""
    if not any(statistic == name + end for name in SUMMARY_STATISTICS for end in ("", *INTERVAL_ENDS)):
        raise ValueError(f"statistic {statistic!r} is not in pcmebench.vocabulary.SUMMARY_STATISTICS; describe it there")
