"""Uncertainty analysis functions on constructed cases with known answers (scipy as a second opinion)."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from metrics import auroc, partial_spearman, pearson, spearman, spearman_interval, uncertainty_bins, within_strata_spearman
from metrics.bootstrap import percentile_interval, resample_counts, resample_indices

# --- uncertainty_bins ----------------------------------------------------------------------------


def test_equal_count_bins_with_exact_edges():
    u = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.0, 0.2, 0.8, 0.4, 0.6])
    r1 = 100.0 * (u < 0.45)  # low uncertainty succeeds
    table = uncertainty_bins(u, {"R@1": r1}, n_bins=3)  # 10 queries: bins of 4, 3, 3
    assert list(table.columns) == ["bin", "u_low", "u_high", "queries", "metric", "value"]
    assert table["bin"].tolist() == [0, 1, 2]
    assert table["queries"].tolist() == [4, 3, 3]
    assert table["u_low"].tolist() == [0.0, 0.4, 0.7]
    assert table["u_high"].tolist() == [0.3, 0.6, 0.9]
    assert table["value"].tolist() == pytest.approx([100.0, 100 / 3, 0.0])  # percent stays percent
    assert table["metric"].tolist() == ["R@1"] * 3


def test_bins_follow_stable_order_for_equal_u():
    u = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    table = uncertainty_bins(u, {"m": np.array([10.0, 20.0, 30.0, 40.0, 50.0])}, n_bins=2)
    # sorted: query 4 (u 0), then queries 0..3 in index order; bins of 3 and 2
    assert table["value"].tolist() == [pytest.approx((50 + 10 + 20) / 3), 35.0]
    assert table["u_low"].tolist() == [0.0, 1.0] and table["u_high"].tolist() == [1.0, 1.0]


def test_bins_one_row_per_metric_and_bin_skipping_nan_values():
    u = np.arange(6.0)
    per_query = {"R@1": np.array([100, 0, 100, 100, 0, 0.0]), "R-P": np.array([np.nan, 50, 20, 40, np.nan, np.nan])}
    table = uncertainty_bins(torch.from_numpy(u), per_query, n_bins=3)
    assert list(zip(table["metric"], table["bin"])) == [("R@1", 0), ("R@1", 1), ("R@1", 2), ("R-P", 0), ("R-P", 1), ("R-P", 2)]
    assert table["value"].tolist()[:3] == [50.0, 100.0, 0.0]
    assert table["value"].tolist()[3:5] == [50.0, 30.0] and np.isnan(table["value"].iloc[5])
    assert table["queries"].tolist() == [2] * 6


def test_bin_sizes_differ_by_at_most_one():
    for n_queries in (10, 11, 19, 101):
        sizes = uncertainty_bins(np.random.default_rng(n_queries).normal(size=n_queries), {"m": np.zeros(n_queries)})["queries"]
        assert sizes.sum() == n_queries and sizes.max() - sizes.min() <= 1


def test_pearson_of_bin_index_and_per_bin_r1():
    u = np.arange(50.0)
    # bin b (10 queries) has 10 - 2b successes: per-bin R@1 = 100, 80, 60, 40, 20
    r1 = np.concatenate([100.0 * (np.arange(10) < 10 - 2 * b) for b in range(5)])
    table = uncertainty_bins(u, {"R@1": r1}, n_bins=5)
    assert table["value"].tolist() == [100.0, 80.0, 60.0, 40.0, 20.0]
    assert pearson(table["bin"], table["value"]) == pytest.approx(-1.0)


def test_bins_bad_input():
    with pytest.raises(ValueError, match="u: 1 NaN values"):
        uncertainty_bins(np.array([0.1, np.nan, 0.3]), {"m": np.zeros(3)}, n_bins=1)
    with pytest.raises(ValueError, match=r"per_query\['m'\] has 2 values but u has 3"):
        uncertainty_bins(np.zeros(3), {"m": np.zeros(2)}, n_bins=1)
    with pytest.raises(ValueError, match="3 queries cannot fill 10 bins"):
        uncertainty_bins(np.zeros(3), {"m": np.zeros(3)})
    with pytest.raises(ValueError, match="n_bins"):
        uncertainty_bins(np.zeros(3), {"m": np.zeros(3)}, n_bins=0)
    with pytest.raises(ValueError, match="u: expected a 1-D"):
        uncertainty_bins(np.zeros((3, 1)), {"m": np.zeros(3)}, n_bins=1)


# --- correlations --------------------------------------------------------------------------------


def test_spearman_with_ties_is_pearson_of_average_ranks():
    x = np.array([1.0, 2.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0, 4.0])
    x_ranks, y_ranks = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4.0])
    dx, dy = x_ranks - x_ranks.mean(), y_ranks - y_ranks.mean()
    expected = (dx @ dy) / np.sqrt((dx @ dx) * (dy @ dy))
    assert spearman(x, y) == pytest.approx(expected)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_spearman_is_one_for_any_increasing_relation():
    x = np.linspace(0.1, 5, 30)
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0)
    assert spearman(x, -np.log(x)) == pytest.approx(-1.0)


def test_correlations_match_scipy_on_random_data_with_ties():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=200), 1)
    y = np.round(x + rng.normal(size=200), 1)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)


def test_correlations_drop_nan_pairs():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0])
    y = np.array([2.0, 1.0, 3.0, np.nan, 5.0, 7.0])
    keep = [0, 1, 4, 5]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x[keep], y[keep]).statistic)


def test_undefined_correlations_are_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN by the rules above, not scipy's ConstantInputWarning
        assert np.isnan(pearson(np.ones(5), np.arange(5.0)))
        assert np.isnan(pearson(np.full(3, 0.1), np.arange(3.0)))  # constant, though its mean is not exactly 0.1
        assert np.isnan(spearman(np.arange(5.0), np.full(5, 2.0)))
        assert np.isnan(spearman(np.array([1.0, np.nan]), np.array([1.0, 2.0])))  # one pair left
        assert np.isnan(partial_spearman(np.arange(6.0), np.arange(6.0) % 3, np.ones(6)))  # constant control
        assert np.isnan(partial_spearman(np.arange(2.0), np.arange(2.0), np.array([0.0, 1.0])))  # fewer than 3 triples
        assert np.isnan(within_strata_spearman(np.ones(60), np.arange(60.0), np.zeros(60)))  # its one stratum is constant


def test_spearman_interval_is_the_percentile_bootstrap_over_pairs():
    rng = np.random.default_rng(4)
    x = rng.normal(size=300)
    y = 0.5 * x + rng.normal(size=300)
    low, high = spearman_interval(x, y, replicates=400, seed=9)
    draws = np.random.default_rng(9).integers(0, 300, (400, 300))
    reference = np.percentile([stats.spearmanr(x[i], y[i]).statistic for i in draws], [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(reference))
    assert low < spearman(x, y) < high
    assert spearman_interval(x, y, replicates=400, seed=9) == (low, high)  # seeded
    assert all(np.isnan(spearman_interval([1.0], [2.0])))


def test_percentile_interval_ignores_undefined_replicates():
    replicates = np.concatenate([np.arange(101.0), [np.nan, np.inf]])
    assert percentile_interval(replicates) == pytest.approx((2.5, 97.5))
    assert percentile_interval(replicates, confidence=0.5) == pytest.approx((25.0, 75.0))
    assert all(np.isnan(percentile_interval(np.array([np.nan, np.nan]))))


def test_resamples_draw_every_item_count_with_replacement():
    indices = resample_indices(np.random.default_rng(0), 7, 50)
    assert indices.shape == (50, 7) and indices.min() >= 0 and indices.max() <= 6
    counts = resample_counts(np.random.default_rng(0), 7, 50)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all() and counts.dtype == np.float64
    assert (counts == 0).any() and (counts > 1).any()  # with replacement


def test_correlation_bad_input():
    with pytest.raises(ValueError, match="x has 3 values but y has 2"):
        spearman(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="inf"):
        pearson(np.array([1.0, np.inf, 2.0]), np.arange(3.0))


def test_pearson_perfect_linear():
    x = np.arange(10.0)
    assert pearson(x, 3 * x - 2) == pytest.approx(1.0)
    assert pearson(x, -0.5 * x) == pytest.approx(-1.0)


# --- AUROC ---------------------------------------------------------------------------------------


def test_auroc_perfect_inverted_and_constant_predictors():
    failure = np.array([0, 0, 1, 0, 1, 1], dtype=bool)
    assert auroc(np.array([0.1, 0.2, 0.8, 0.3, 0.9, 0.7]), failure) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3]), failure) == 0.0
    assert auroc(np.full(6, 0.4), failure) == 0.5


def test_auroc_counts_ties_half():
    # failures score 0.5 and 0.9, successes 0.1 and 0.5: pairs 1 + 0.5 + 1 + 1 of 4
    assert auroc(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 1, 0, 1])) == 0.875


def test_auroc_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(3)
    failure = rng.random(300) < 0.3
    predictor = np.round(rng.normal(size=300) + failure, 1)  # ties from rounding
    u_statistic = stats.mannwhitneyu(predictor[failure], predictor[~failure]).statistic
    assert auroc(predictor, failure) == pytest.approx(u_statistic / (failure.sum() * (~failure).sum()))
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in predictor[failure] for b in predictor[~failure]])
    assert auroc(torch.from_numpy(predictor), torch.from_numpy(failure)) == pytest.approx(brute)


def test_auroc_drops_nan_and_is_nan_without_both_classes():
    assert auroc(np.array([0.1, np.nan, 0.9]), np.array([0.0, 1.0, 1.0])) == 1.0
    assert auroc(np.array([0.1, 0.2, 0.9]), np.array([0.0, np.nan, 1.0])) == 1.0
    assert np.isnan(auroc(np.array([0.1, 0.2]), np.array([0, 0])))
    assert np.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_auroc_bad_input():
    with pytest.raises(ValueError, match="failure: expected binary"):
        auroc(np.array([0.1, 0.2]), np.array([0, 2]))
    with pytest.raises(ValueError, match="predictor has 2 values but failure has 3"):
        auroc(np.array([0.1, 0.2]), np.array([0, 1, 1]))


def test_partial_spearman_is_the_correlation_of_rank_residuals_given_the_control():
    """Written independently: regress the ranks of x and of y on the control's ranks, correlate the residuals."""
    from scipy.stats import pearsonr, rankdata

    rng = np.random.default_rng(0)
    length = rng.integers(2, 15, 3000).astype(float)
    ambiguity = -length + rng.normal(0, 2, 3000)  # longer captions: more specific
    u = 0.8 * length + 0.3 * ambiguity + rng.normal(0, 1, 3000)
    residuals = []
    for v in (u, ambiguity):
        ranks, control = rankdata(v), rankdata(length)
        slope, intercept = np.polyfit(control, ranks, 1)
        residuals.append(ranks - (slope * control + intercept))
    expected = pearsonr(*residuals).statistic
    assert partial_spearman(u, ambiguity, length) == pytest.approx(expected, abs=1e-9)
    assert spearman(u, ambiguity) < 0 < partial_spearman(u, ambiguity, length)  # the length confound flips the sign
    with_nan = u.copy()
    with_nan[:10] = np.nan
    assert partial_spearman(with_nan, ambiguity, length) == pytest.approx(partial_spearman(u[10:], ambiguity[10:], length[10:]))
    assert np.isnan(partial_spearman(length, ambiguity, length))  # x is the control itself: undefined


def test_within_strata_spearman_weights_each_large_enough_stratum_by_its_size():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    strata = np.repeat([3.0, 4.0, 5.0, 9.0], [100, 60, 200, 20])  # 9: too small, left out
    x, y = rng.normal(size=380), rng.normal(size=380)
    y[:100] += x[:100]  # a correlation in the first stratum only
    kept = [(s, (strata == s).sum()) for s in (3.0, 4.0, 5.0)]
    expected = sum(spearmanr(x[strata == s], y[strata == s]).statistic * n for s, n in kept) / sum(n for _, n in kept)
    assert within_strata_spearman(x, y, strata, min_size=50) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(within_strata_spearman(x, y, strata, min_size=500))
