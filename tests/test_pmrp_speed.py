"""PMRP by partition (metrics.pmrp): per-query values equal a straightforward stable-argsort reference on
inputs that reach every path: ties at and across the cut (the full-sort path), unlabeled queries and
gallery items, one plausible item, every item plausible, -0.0 beside 0.0, several chunks, runs of queries
that share a label set, and the plausible-column lists built in several steps."""

import importlib
import re

import numpy as np
import pytest

from metrics import pmrp_per_query
from metrics.ranking import check_scores

PMRP_MODULE = importlib.import_module("metrics.pmrp")  # the package's name `pmrp` is the function


def reference_pmrp(scores, query_labels, gallery_labels, zetas):
    """Per query: drop unlabeled gallery items, rank the rest by a stable argsort of -score (ties by
    lower index), R = items within Hamming distance zeta, PMRP@zeta = 100 * plausible among the top R / R."""
    labeled = np.flatnonzero(gallery_labels.any(axis=1))
    distances = (query_labels[:, None, :] != gallery_labels[None, labeled, :]).sum(axis=2)
    out = {f"PMRP@{z}": np.full(len(scores), np.nan) for z in zetas}
    for i, row in enumerate(scores):
        if not query_labels[i].any():
            continue
        ranked = np.argsort(-row[labeled], kind="stable")
        for z in zetas:
            plausible = distances[i] <= z
            r = int(plausible.sum())
            if r:
                out[f"PMRP@{z}"][i] = 100.0 * plausible[ranked[:r]].sum() / r
    return out


def coco_like_case(seed, n_images=40, per_image=5, n_labels=8, decimals=None, dtype=np.float32):
    """Images with few labels (some without), captions inheriting them; scores optionally rounded (ties)."""
    rng = np.random.default_rng(seed)
    image_labels = rng.random((n_images, n_labels)) < 0.25
    image_labels[rng.random(n_images) < 0.1] = False  # unlabeled images
    caption_labels = np.repeat(image_labels, per_image, axis=0)
    scores = rng.normal(size=(n_images, n_images * per_image))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return image_labels, caption_labels, scores.astype(dtype)


def assert_equal_to_reference(scores, query_labels, gallery_labels, zetas=(0, 1, 2), **kwargs):
    expected = reference_pmrp(scores, query_labels, gallery_labels, zetas)
    result = pmrp_per_query(scores, query_labels, gallery_labels, zetas=zetas, **kwargs)
    for key, values in expected.items():
        np.testing.assert_array_equal(result[key], values, err_msg=key)
    return result


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_both_directions_equal_the_reference(seed, decimals):
    """Continuous scores, and rounded ones (many ties at every cut), float32 and float64, several chunk sizes."""
    dtype = np.float32 if seed % 2 else np.float64
    image_labels, caption_labels, scores = coco_like_case(seed, decimals=decimals, dtype=dtype)
    chunk_size = [None, 1, 3, 7, 64, 1000][seed]
    assert_equal_to_reference(scores, image_labels, caption_labels, chunk_size=chunk_size)
    assert_equal_to_reference(np.ascontiguousarray(scores.T), caption_labels, image_labels, chunk_size=chunk_size)


def test_ties_across_the_cut_are_settled_by_gallery_index():
    # query labels {0}; items 1, 2, 4 plausible at zeta 0 (R = 3); items 0, 1, 2, 3 tie at 0.5 behind item 4
    query_labels = np.array([[1, 0]])
    gallery_labels = np.array([[0, 1], [1, 0], [1, 0], [0, 1], [1, 0]])
    scores = np.array([[0.5, 0.5, 0.5, 0.5, 0.9]], dtype=np.float32)
    result = assert_equal_to_reference(scores, query_labels, gallery_labels, zetas=(0,))
    assert result["PMRP@0"][0] == pytest.approx(100 * 2 / 3)  # top 3 = items 4, 0, 1


def test_negative_zero_ties_with_zero():
    query_labels = np.array([[1, 0], [0, 1]])
    gallery_labels = np.array([[0, 1], [1, 0], [0, 1], [1, 0]])
    scores = np.array([[0.0, -0.0, 0.0, 1.0], [-0.0, 0.0, 0.0, -1.0]], dtype=np.float32)
    assert_equal_to_reference(scores, query_labels, gallery_labels, zetas=(0, 1))


def test_one_plausible_item_every_item_plausible_and_unlabeled_items():
    rng = np.random.default_rng(5)
    gallery_labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]])
    query_labels = np.array([[0, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]])
    scores = rng.normal(size=(4, 6)).astype(np.float32)
    scores[:, 2] = 5.0  # an unlabeled item on top of every row
    # zeta 0: query 0 has one plausible item; zeta 3: every labeled item is plausible for every query
    assert_equal_to_reference(scores, query_labels, gallery_labels, zetas=(3, 0, 1))


def test_queries_sharing_label_sets_in_several_steps(monkeypatch):
    """Few label sets, many queries each (long runs); the plausible-column lists rebuilt every few queries."""
    monkeypatch.setattr(PMRP_MODULE, "COLUMN_LIST_ENTRIES", 600)
    rng = np.random.default_rng(9)
    patterns = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]], dtype=bool)
    query_labels = patterns[rng.integers(0, 4, 90)]
    gallery_labels = patterns[rng.integers(0, 4, 150)]
    gallery_labels[::17] = False
    scores = np.round(rng.normal(size=(90, 150)), 2).astype(np.float32)
    for chunk_size in (None, 4, 11):
        assert_equal_to_reference(scores, query_labels, gallery_labels, zetas=(0, 1, 2, 4), chunk_size=chunk_size)


def test_non_finite_scores_are_reported_first_wherever_they_are():
    query_labels = np.array([[1, 0], [0, 0], [0, 1]])
    gallery_labels = np.array([[1, 0], [0, 1], [1, 1]])
    for row in range(3):  # a labeled query's row (read by the partition) or an unlabeled one (read nowhere else)
        scores = np.zeros((3, 3))
        scores[row, 1] = np.nan
        with pytest.raises(ValueError, match=re.escape(f"scores: nan at query {row}, gallery item 1")):
            pmrp_per_query(scores, query_labels, gallery_labels)
    scores = np.zeros((3, 3))
    scores[2, 0] = -np.inf
    with pytest.raises(ValueError, match=re.escape("scores: -inf at query 2, gallery item 0")):
        pmrp_per_query(scores, query_labels, np.zeros((3, 2)))  # no labeled gallery item: nothing is ranked
    with pytest.raises(ValueError, match=re.escape("scores: -inf at query 2")):  # before the label error
        pmrp_per_query(scores, query_labels, np.ones((4, 2)))


def test_finite_scores_whose_sum_overflows_are_accepted():
    scores = np.full((2, 3), 3e38, dtype=np.float32)
    scores[0, 0] = 1e38
    assert check_scores(scores) is scores  # the one-pass sum overflows: each entry is checked instead
    with pytest.raises(ValueError, match=re.escape("scores: nan at query 1, gallery item 2")):
        check_scores(np.where(np.arange(6).reshape(2, 3) == 5, np.nan, scores))
    result = assert_equal_to_reference(scores, np.array([[1, 0], [0, 1]]), np.array([[1, 0], [0, 1], [1, 0]]), zetas=(0,))
    np.testing.assert_array_equal(result["PMRP@0"], [50.0, 0.0])  # top 2 of query 0: items 1, 2; top 1 of query 1: item 0
