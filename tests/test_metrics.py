"""Retrieval metrics (R@K, R-P, mAP@R, PMRP, score margin): hand-worked cases, literal-loop equivalence, bad input."""

import re
import warnings

import numpy as np
import pytest
import torch

from metrics import (
    ExcludedQueriesWarning,
    map_at_r,
    pmrp,
    pmrp_per_query,
    r_precision,
    recall_at_k,
    retrieval_per_query,
    score_margin,
)


def literal_ranking(row, candidates):
    """Gallery indices in rank order: descending score, then ascending index (a plain Python sort)."""
    return sorted(candidates, key=lambda j: (-row[j], j))


def literal_retrieval(scores, positives, ks):
    """Every retrieval metric written out per query from its definition, one item at a time."""
    out = {key: [] for key in [f"R@{k}" for k in ks] + ["R-P", "mAP@R", "first_rank"]}
    for row, row_positives in zip(scores, positives):
        relevant = [bool(row_positives[j]) for j in literal_ranking(row, range(len(row)))]
        r = sum(relevant)
        if r == 0:
            for values in out.values():
                values.append(np.nan)
            continue
        first = relevant.index(True) + 1
        for k in ks:
            out[f"R@{k}"].append(100.0 * (first <= k))
        out["R-P"].append(100.0 * sum(relevant[:r]) / r)
        precision_sum = sum(sum(relevant[:rank]) / rank for rank in range(1, r + 1) if relevant[rank - 1])
        out["mAP@R"].append(100.0 * precision_sum / r)
        out["first_rank"].append(float(first))
    return {key: np.array(values) for key, values in out.items()}


def literal_pmrp(scores, query_labels, gallery_labels, zetas):
    """PMRP per query from its definition: Hamming distances item by item, unlabeled items dropped."""
    labeled = [j for j in range(len(gallery_labels)) if gallery_labels[j].any()]
    out = {}
    for z in zetas:
        values = []
        for row, labels in zip(scores, query_labels):
            if not labels.any():
                values.append(np.nan)
                continue
            plausible = [int(np.sum(labels != gallery_labels[j])) <= z for j in literal_ranking(row, labeled)]
            r = sum(plausible)
            values.append(np.nan if r == 0 else 100.0 * sum(plausible[:r]) / r)
        out[f"PMRP@{z}"] = np.array(values)
    return out


def random_case(seed):
    """Small random scores with many ties (rounded), random positives and labels, some unlabeled rows."""
    rng = np.random.default_rng(seed)
    n_queries, n_gallery = int(rng.integers(1, 15)), int(rng.integers(2, 40))
    decimals = int(rng.integers(0, 3))
    dtype = np.float32 if seed % 2 else np.float64
    scores = np.round(rng.normal(size=(n_queries, n_gallery)), decimals).astype(dtype)
    positives = rng.random((n_queries, n_gallery)) < rng.choice([0.05, 0.3, 0.9])
    query_labels = rng.random((n_queries, 5)) < 0.35
    gallery_labels = rng.random((n_gallery, 5)) < 0.35
    return scores, positives, query_labels, gallery_labels, int(rng.integers(1, 6))


# --- R@K, R-P, mAP@R ---------------------------------------------------------------------------


def test_tied_scores_rank_by_gallery_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])
    # item 1 first, then the tie 0.5: index 0 before index 2
    lower_index = retrieval_per_query(scores, np.array([[True, False, False, False]]), ks=(1, 2))
    higher_index = retrieval_per_query(scores, np.array([[False, False, True, False]]), ks=(1, 2, 3))
    assert lower_index["first_rank"][0] == 2 and lower_index["R@2"][0] == 100.0 and lower_index["R@1"][0] == 0.0
    assert higher_index["first_rank"][0] == 3 and higher_index["R@2"][0] == 0.0 and higher_index["R@3"][0] == 100.0


def test_all_scores_equal_rank_in_index_order():
    result = retrieval_per_query(np.zeros((1, 6)), np.array([[0, 0, 0, 1, 0, 1]]), ks=(3, 4))
    # ranks of the positives are 4 and 6: R = 2, none in the top 2
    assert result["first_rank"][0] == 4 and result["R@3"][0] == 0.0 and result["R@4"][0] == 100.0
    assert result["R-P"][0] == 0.0 and result["mAP@R"][0] == 0.0


def test_hand_worked_r_precision_and_map_at_r():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    positives = np.array([[True, False, True, False, True]])  # ranks 1, 3, 5; R = 3
    result = retrieval_per_query(scores, positives)
    assert result["R-P"][0] == pytest.approx(100 * 2 / 3)
    assert result["mAP@R"][0] == pytest.approx(100 * (1 / 1 + 2 / 3) / 3)  # P@1 = 1, P@3 = 2/3; rank 5 > R
    assert result["R@1"][0] == 100.0 and result["first_rank"][0] == 1
    assert r_precision(scores, positives) == pytest.approx(100 * 2 / 3)
    assert map_at_r(scores, positives) == pytest.approx(100 * 5 / 9)


def test_single_positive():
    scores = np.array([[0.1, 0.7, 0.3], [0.1, 0.7, 0.3]])
    positives = np.array([[False, True, False], [False, False, True]])
    result = retrieval_per_query(scores, positives, ks=(1, 2))
    np.testing.assert_array_equal(result["first_rank"], [1, 2])
    np.testing.assert_array_equal(result["R-P"], [100, 0])  # R = 1: R-P = mAP@R = R@1
    np.testing.assert_array_equal(result["mAP@R"], [100, 0])
    np.testing.assert_array_equal(result["R@2"], [100, 100])
    assert recall_at_k(scores, positives, ks=(1, 2)) == {"R@1": 50.0, "R@2": 100.0}


def test_every_positive_at_the_bottom():
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    positives = np.array([[False, False, True, True]])
    result = retrieval_per_query(scores, positives, ks=(1, 2, 3))
    assert result["first_rank"][0] == 3 and result["R@2"][0] == 0.0 and result["R@3"][0] == 100.0
    assert result["R-P"][0] == 0.0 and result["mAP@R"][0] == 0.0


def test_query_without_positive_is_excluded_and_counted():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.4]])
    positives = np.array([[True, False], [False, False], [False, True]])
    per_query = retrieval_per_query(scores, positives)
    assert all(np.isnan(values[1]) for values in per_query.values())
    with pytest.warns(ExcludedQueriesWarning, match=r"recall_at_k: 1 of 3 queries excluded .*no positive"):
        assert recall_at_k(scores, positives) == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0}
    with pytest.warns(ExcludedQueriesWarning, match="r_precision: 1 of 3"):
        assert r_precision(scores, positives) == 50.0
    with pytest.warns(ExcludedQueriesWarning, match="map_at_r: 1 of 3"):
        assert map_at_r(scores, positives) == 50.0


def test_no_warning_when_every_query_has_a_positive():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recall_at_k(np.eye(3), np.eye(3, dtype=bool))


def test_all_queries_excluded_is_an_error():
    with pytest.raises(ValueError, match="all 2 queries are excluded"):
        recall_at_k(np.ones((2, 3)), np.zeros((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="all 2 queries are excluded"):
        map_at_r(np.ones((2, 3)), np.zeros((2, 3), dtype=bool))


@pytest.mark.parametrize("seed", range(12))
def test_retrieval_equals_literal_loop(seed):
    scores, positives, _, _, chunk_size = random_case(seed)
    ks = (1, 2, 5, 50)
    expected = literal_retrieval(scores, positives, ks)
    result = retrieval_per_query(scores, positives, ks=ks, chunk_size=chunk_size)
    assert set(result) == set(expected)
    for key in expected:
        np.testing.assert_allclose(result[key], expected[key], rtol=1e-12, err_msg=key)


def test_dense_positives_equal_literal_loop():
    """CUB-like ground truth: a third of the gallery positive for every query."""
    rng = np.random.default_rng(7)
    classes_query, classes_gallery = rng.integers(0, 3, 20), rng.integers(0, 3, 60)
    scores = np.round(rng.normal(size=(20, 60)), 1)
    positives = classes_query[:, None] == classes_gallery[None, :]
    expected = literal_retrieval(scores, positives, (1, 5, 10))
    result = retrieval_per_query(scores, positives, chunk_size=7)
    for key in expected:
        np.testing.assert_allclose(result[key], expected[key], rtol=1e-12, err_msg=key)


def test_scalar_metrics_are_means_of_per_query_values():
    scores, positives, _, _, _ = random_case(3)
    positives[:, 0] = True  # every query has a positive
    per_query = retrieval_per_query(scores, positives)
    assert recall_at_k(scores, positives) == {key: pytest.approx(per_query[key].mean()) for key in ("R@1", "R@5", "R@10")}
    assert r_precision(scores, positives) == pytest.approx(per_query["R-P"].mean())
    assert map_at_r(scores, positives) == pytest.approx(per_query["mAP@R"].mean())


def test_positives_as_numbers_and_torch_input_match_numpy():
    scores, positives, _, _, _ = random_case(5)
    expected = retrieval_per_query(scores, positives)
    as_torch = retrieval_per_query(torch.from_numpy(scores).requires_grad_(), torch.from_numpy(positives))
    as_float_positives = retrieval_per_query(scores, positives.astype(np.float32))
    for key in expected:
        np.testing.assert_array_equal(as_torch[key], expected[key])
        np.testing.assert_array_equal(as_float_positives[key], expected[key])


def test_transposed_scores_serve_the_other_direction():
    scores, positives, _, _, _ = random_case(8)
    expected = literal_retrieval(scores.T, positives.T, (1, 5, 10))
    result = retrieval_per_query(scores.T, positives.T)  # non-contiguous views
    for key in expected:
        np.testing.assert_allclose(result[key], expected[key], rtol=1e-12)


# --- score margin --------------------------------------------------------------------------------


def test_score_margin():
    scores = np.array([[0.1, 0.9, 0.4], [0.7, 0.7, 0.2], [-3.0, -1.0, -2.5]], dtype=np.float32)
    np.testing.assert_allclose(score_margin(scores), [0.5, 0.0, 1.5], rtol=1e-6)
    np.testing.assert_array_equal(score_margin(torch.from_numpy(scores)), score_margin(scores))
    with pytest.raises(ValueError, match="at least 2 gallery items"):
        score_margin(np.ones((3, 1)))


# --- PMRP ----------------------------------------------------------------------------------------


def test_pmrp_hand_worked_with_unlabeled_gallery_item():
    query_labels = np.array([[1, 1, 0]])
    gallery_labels = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]])  # distances 0, 1, 3, -, 1
    scores = np.array([[0.2, 0.9, 0.8, 0.95, 0.1]])
    # the unlabeled item 3 scores highest but takes no rank: the ranking is items 1, 2, 0, 4
    result = pmrp_per_query(scores, query_labels, gallery_labels)
    assert result["PMRP@0"][0] == 0.0  # R = 1 (item 0), the top 1 is item 1
    assert result["PMRP@1"][0] == pytest.approx(100 * 2 / 3)  # R = 3 (0, 1, 4), top 3 = 1, 2, 0
    assert result["PMRP@2"][0] == pytest.approx(100 * 2 / 3)  # item 2 is 3 away
    assert result["PMRP"][0] == pytest.approx(100 * 4 / 9)
    assert pmrp(scores, query_labels, gallery_labels) == pytest.approx(
        {"PMRP": 100 * 4 / 9, "PMRP@0": 0.0, "PMRP@1": 100 * 2 / 3, "PMRP@2": 100 * 2 / 3}
    )


def test_pmrp_ties_rank_by_gallery_index():
    query_labels = np.array([[1, 0]])
    gallery_labels = np.array([[0, 1], [1, 0], [1, 0]])  # distances 2, 0, 0
    result = pmrp_per_query(np.full((1, 3), 0.5), query_labels, gallery_labels)
    assert result["PMRP@0"][0] == 50.0  # R = 2: top 2 = items 0, 1 (by index), not 1, 2
    assert result["PMRP@2"][0] == 100.0


def test_pmrp_unlabeled_item_tied_at_the_cut_takes_no_slot():
    query_labels = np.array([[1, 0]])
    gallery_labels = np.array([[0, 0], [1, 0], [0, 1], [1, 0]])  # unlabeled, 0, 2, 0
    scores = np.array([[0.5, 0.5, 0.5, 0.9]])
    # R = 2 at zeta 0: item 3, then the tie at 0.5 in index order among labeled items -> item 1
    assert pmrp_per_query(scores, query_labels, gallery_labels, zetas=(0,))["PMRP@0"][0] == 100.0


def test_pmrp_single_plausible_match_at_the_bottom():
    result = pmrp_per_query(np.array([[0.9, 0.5, 0.1]]), np.array([[1, 0, 0]]), np.array([[0, 1, 1], [0, 1, 1], [1, 0, 0]]))
    assert result["PMRP@0"][0] == 0.0 and result["PMRP@2"][0] == 0.0  # R = 1 up to zeta 2 (others are 3 away)


def test_pmrp_excludes_unlabeled_queries_and_queries_without_plausible_match():
    query_labels = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    gallery_labels = np.array([[0, 1, 0], [1, 1, 0]])
    scores = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    result = pmrp_per_query(scores, query_labels, gallery_labels)
    # query 0: no exact label match (zeta 0 undefined); zeta 1: R = 1 (item 1), top 1 = item 0 -> 0; zeta 2: R = 2 -> 100
    np.testing.assert_array_equal(result["PMRP@0"], [np.nan, np.nan, 100.0])
    np.testing.assert_array_equal(result["PMRP@1"], [0.0, np.nan, 100.0])
    np.testing.assert_array_equal(result["PMRP@2"], [100.0, np.nan, 100.0])
    np.testing.assert_array_equal(result["PMRP"], [np.nan, np.nan, 100.0])
    with pytest.warns(ExcludedQueriesWarning) as caught:
        summary = pmrp(scores, query_labels, gallery_labels)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "zeta=0: 2 of 3 (1 without labels, 1 with no plausible match)" in message
    assert "zeta=1: 1 of 3 (1 without labels, 0 with no plausible match)" in message
    assert summary == {"PMRP": pytest.approx((100 + 50 + 100) / 3), "PMRP@0": 100.0, "PMRP@1": 50.0, "PMRP@2": 100.0}


def test_pmrp_same_exclusions_at_every_zeta_warn_once():
    query_labels = np.array([[1, 0], [0, 0], [0, 1]])
    with pytest.warns(
        ExcludedQueriesWarning, match=r"pmrp: 1 of 3 \(1 without labels, 0 with no plausible match\) .* at every zeta"
    ):
        assert pmrp(np.eye(3), query_labels, query_labels)["PMRP"] == 100.0


def test_pmrp_all_queries_excluded_is_an_error():
    with pytest.raises(ValueError, match=r"all 2 queries are excluded \(2 without labels"):
        pmrp(np.ones((2, 2)), np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"at zeta=0 all 1 queries are excluded \(0 without labels, 1 with no plausible match"):
        pmrp(np.ones((1, 2)), np.array([[1, 0, 0]]), np.array([[0, 1, 0], [0, 1, 1]]), zetas=(0, 1))
    with pytest.raises(ValueError, match="all 1 queries are excluded"):
        pmrp(np.ones((1, 2)), np.array([[1, 0]]), np.zeros((2, 2)))  # no labeled gallery item


@pytest.mark.parametrize("seed", range(12))
def test_pmrp_equals_literal_loop(seed):
    scores, _, query_labels, gallery_labels, chunk_size = random_case(seed)
    zetas = (0, 1, 2, 3)
    expected = literal_pmrp(scores, query_labels, gallery_labels, zetas)
    result = pmrp_per_query(scores, query_labels, gallery_labels, zetas=zetas, chunk_size=chunk_size)
    for key, values in expected.items():
        np.testing.assert_array_equal(result[key], values, err_msg=key)
    np.testing.assert_allclose(result["PMRP"], np.mean([expected[f"PMRP@{z}"] for z in zetas], axis=0))


def test_pmrp_coco_like_structure_equals_literal_loop():
    """Captions inherit their image's labels; both directions, many ties."""
    rng = np.random.default_rng(11)
    image_labels = rng.random((12, 6)) < 0.3
    caption_labels = np.repeat(image_labels, 5, axis=0)
    scores = np.round(rng.normal(size=(12, 60)), 1).astype(np.float32)
    for query_labels, gallery_labels, matrix in (
        (image_labels, caption_labels, scores),
        (caption_labels, image_labels, scores.T),
    ):
        expected = literal_pmrp(matrix, query_labels, gallery_labels, (0, 1, 2))
        result = pmrp_per_query(matrix, query_labels, gallery_labels, chunk_size=4)
        for key, values in expected.items():
            np.testing.assert_array_equal(result[key], values, err_msg=key)


def test_pmrp_torch_input_matches_numpy():
    scores, _, query_labels, gallery_labels, _ = random_case(4)
    expected = pmrp_per_query(scores, query_labels, gallery_labels)
    result = pmrp_per_query(torch.from_numpy(scores), torch.from_numpy(query_labels), torch.from_numpy(gallery_labels).float())
    for key in expected:
        np.testing.assert_array_equal(result[key], expected[key])


def test_pmrp_custom_zetas_keys():
    result = pmrp(np.eye(3), np.eye(3), np.eye(3), zetas=(0, 4))
    assert result == {"PMRP": 100.0, "PMRP@0": 100.0, "PMRP@4": 100.0}


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.ones(3), "expected a 2-D (queries, gallery) matrix, got shape (3,)"),
        (np.ones((2, 2, 2)), "expected a 2-D"),
        (np.ones((0, 3)), "empty matrix"),
        (np.array([[0.1, np.nan], [0.2, 0.3]]), "scores: nan at query 0, gallery item 1"),
        (np.array([[0.1, 0.2], [np.inf, 0.3]]), "scores: inf at query 1, gallery item 0"),
        (np.array([[True, False]]), "expected real numbers"),
        (np.array([["a", "b"]]), "expected real numbers"),
    ],
)
def test_bad_scores(scores, message):
    positives = np.ones(scores.shape, dtype=bool) if scores.ndim == 2 else np.ones((3,), dtype=bool)
    with pytest.raises(ValueError, match=re.escape(message)):
        retrieval_per_query(scores, positives)
    labels = np.ones((scores.shape[0], 2)) if scores.ndim >= 1 else None
    gallery = np.ones((scores.shape[1] if scores.ndim > 1 else 1, 2))
    with pytest.raises(ValueError, match=re.escape(message)):
        pmrp(scores, labels, gallery)


def test_bad_positives():
    scores = np.ones((2, 3))
    with pytest.raises(ValueError, match=re.escape("positives: shape (3, 2) does not match the expected (2, 3)")):
        recall_at_k(scores, np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match=re.escape("positives: value 2 at (1, 0) is not binary")):
        r_precision(scores, np.array([[1, 0, 0], [2, 0, 1]]))
    with pytest.raises(ValueError, match="positives: value nan"):
        map_at_r(scores, np.array([[1, 0, 0], [np.nan, 0, 1]]))
    with pytest.raises(ValueError, match="positives: expected a 2-D"):
        recall_at_k(scores, np.ones(6, dtype=bool))


def test_bad_labels():
    scores = np.ones((2, 3))
    with pytest.raises(ValueError, match="query_labels has 4 label columns but gallery_labels has 5"):
        pmrp(scores, np.ones((2, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"query_labels: 3 rows, but scores has 2 queries"):
        pmrp(scores, np.ones((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"gallery_labels: 2 rows, but scores has 3 gallery items"):
        pmrp_per_query(scores, np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=re.escape("gallery_labels: value 0.5 at (2, 1) is not binary")):
        pmrp(scores, np.ones((2, 2)), np.array([[1, 0], [0, 1], [1, 0.5]]))
    with pytest.raises(ValueError, match="query_labels: expected a 2-D"):
        pmrp(scores, np.ones(2), np.ones((3, 1)))


def test_bad_parameters():
    scores, positives = np.eye(3), np.eye(3, dtype=bool)
    for ks in [(), (0,), (1, 1), (1.5,)]:
        with pytest.raises(ValueError, match="ks"):
            recall_at_k(scores, positives, ks=ks)
    for zetas in [(), (-1,), (0, 0), (0.5,)]:
        with pytest.raises(ValueError, match="zetas"):
            pmrp(scores, np.eye(3), np.eye(3), zetas=zetas)
    for chunk_size in [0, -2, 1.5]:
        with pytest.raises(ValueError, match="chunk_size"):
            retrieval_per_query(scores, positives, chunk_size=chunk_size)
        with pytest.raises(ValueError, match="chunk_size"):
            pmrp_per_query(scores, np.eye(3), np.eye(3), chunk_size=chunk_size)
