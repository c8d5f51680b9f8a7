"""Protocols: COCO 1K folds on the real test-id layout, ECCV Caption id mapping, CUB and ground-truth positives."""

import json
import logging

import numpy as np
import pytest

from corpora.errors import DataError
from pcmebench.protocols import (
    CXC_METRICS,
    ECCV_METRICS,
    EvaluationSplit,
    coco_folds,
    cub_tasks,
    eccv_caption_data,
    eccv_tasks,
    own_caption_tasks,
    protocol_tasks,
    read_ground_truth,
)


@pytest.fixture(scope="module")
def eccv_data():
    return eccv_caption_data()


@pytest.fixture(scope="module")
def caption_image_ids(eccv_data) -> dict[int, int]:
    """COCO caption id -> its image id, from the original COCO positives shipped with eccv-caption."""
    original = json.loads((eccv_data / "original_caption_to_image.json").read_text())
    assert all(len(images) == 1 for images in original.values())
    return {int(c): int(images[0]) for c, images in original.items()}


def coco_like_split(caption_ids, caption_image_ids: dict[int, int]) -> EvaluationSplit:
    """A split as corpora.coco builds it: captions in the given order, images numbered by first caption."""
    image_row: dict[int, int] = {}
    rows = [image_row.setdefault(caption_image_ids[int(c)], len(image_row)) for c in caption_ids]
    return EvaluationSplit(
        format="coco",
        image_ids=np.array(list(image_row), dtype=np.int64),
        caption_ids=np.asarray(caption_ids, dtype=np.int64),
        caption_image=np.array(rows, dtype=np.int64),
        labels=np.zeros((len(image_row), 90), dtype=bool),
    )


@pytest.fixture(scope="module")
def coco_5k(eccv_data, caption_image_ids) -> EvaluationSplit:
    ids = np.load(eccv_data / "coco_test_ids.npy", allow_pickle=False)
    return coco_like_split(ids, caption_image_ids)


def test_1k_folds_on_the_real_test_id_layout(coco_5k, eccv_data, caption_image_ids):
    ids = np.load(eccv_data / "coco_test_ids.npy", allow_pickle=False)
    assert coco_5k.n_images == 5000 and coco_5k.n_captions == 25000
    folds = coco_folds(coco_5k)
    assert len(folds) == 5
    seen_images, seen_captions = set(), set()
    for f, (images, captions) in enumerate(folds):
        assert len(images) == 1000 and len(captions) == 5000
        # ECCV Caption's COCO 1K: fold f = caption ids [5000 f, 5000 (f + 1)) of the test-id file and their images
        assert np.array_equal(coco_5k.caption_ids[captions], ids[5000 * f : 5000 * (f + 1)])
        assert set(coco_5k.image_ids[images]) == {caption_image_ids[int(c)] for c in ids[5000 * f : 5000 * (f + 1)]}
        seen_images |= set(images.tolist())
        seen_captions |= set(captions.tolist())
    assert len(seen_images) == 5000 and len(seen_captions) == 25000


def test_1k_with_fewer_or_more_images_than_a_fold(caplog):
    def split_with(n_images):
        return EvaluationSplit(
            "coco", np.arange(n_images), np.arange(2 * n_images), np.repeat(np.arange(n_images), 2), np.zeros((n_images, 3), bool)
        )

    ((images, captions),) = coco_folds(split_with(10))
    assert np.array_equal(images, np.arange(10)) and np.array_equal(captions, np.arange(20))
    with caplog.at_level(logging.WARNING, logger="pcmebench"):
        folds = coco_folds(split_with(2500))
    assert [len(i) for i, _ in folds] == [1000, 1000] and [len(c) for _, c in folds] == [2000, 2000]
    assert np.array_equal(folds[1][1], np.arange(2000, 4000))
    assert "500 images after the last full 1000-image fold are left out" in caplog.text


def test_the_5k_split_gets_1k_5k_and_eccv(coco_5k, eccv_data, caplog):
    with caplog.at_level(logging.WARNING, logger="pcmebench"):
        tasks = protocol_tasks(coco_5k, "coco", eccv_data=eccv_data)
    # the two positives of ECCV Caption outside the 25,000 test captions are named in the log
    assert "eccv_image_to_caption.json: 2 positive caption id(s) not in the test split, left out" in caplog.text
    assert "144675" in caplog.text and "467259" in caplog.text
    protocols = [(t.protocol, t.direction, t.fold) for t in tasks]
    assert protocols[:10] == [("1K", d, f) for f in range(5) for d in ("i2t", "t2i")]
    assert protocols[10:12] == [("5K", "i2t", 0), ("5K", "t2i", 0)]
    assert [(p, d) for p, d, _ in protocols[12:]] == [("ECCV", "i2t"), ("ECCV", "t2i")] * 2
    five_k = tasks[10]
    assert five_k.positives.shape == (5000, 25000) and (five_k.positives.sum(axis=1) == 5).all()
    eccv_i2t, eccv_t2i, cxc_i2t, cxc_t2i = tasks[12:]
    assert eccv_i2t.metrics == ECCV_METRICS and cxc_t2i.metrics == CXC_METRICS
    # ECCV Caption evaluates a subset of the 5K queries against the whole 5K gallery
    assert len(eccv_i2t.queries) == 1261 and len(eccv_t2i.queries) == 1332
    assert eccv_i2t.positives.shape == (1261, 25000) and eccv_t2i.positives.shape == (1332, 5000)
    assert len(cxc_i2t.queries) == 5000 and len(cxc_t2i.queries) == 24972
    assert eccv_i2t.positives.sum(axis=1).min() >= 1


def test_eccv_ids_map_to_rows_on_a_small_split(eccv_data, caption_image_ids, tmp_path, caplog):
    """A fake split holding a few of the real ids, with ECCV/CxC files restricted to them."""
    eccv_i2t = json.loads((eccv_data / "eccv_image_to_caption.json").read_text())
    eccv_t2i = json.loads((eccv_data / "eccv_caption_to_image.json").read_text())
    image_queries = list(eccv_i2t)[:2]
    caption_queries = list(eccv_t2i)[:2]
    captions = {int(c) for q in image_queries for c in eccv_i2t[q]} | {int(c) for c in caption_queries}
    images = {caption_image_ids[c] for c in captions} | {int(i) for q in caption_queries for i in eccv_t2i[q]}
    images |= {int(i) for i in image_queries}
    # every image brings its captions (as in COCO: five per image)
    by_image: dict[int, list[int]] = {}
    for caption, image in caption_image_ids.items():
        if image in images:
            by_image.setdefault(image, []).append(caption)
    order = sorted(images)[::-1]  # rows in an order unlike the ids'
    caption_order = [c for image in order for c in sorted(by_image[image])]
    split = coco_like_split(caption_order, caption_image_ids)

    subset = {
        "eccv_image_to_caption": {q: eccv_i2t[q] for q in image_queries},
        "eccv_caption_to_image": {q: eccv_t2i[q] for q in caption_queries},
        "cxc_image_to_caption": {q: eccv_i2t[q][:1] for q in image_queries},
        "cxc_caption_to_image": {q: eccv_t2i[q][:1] for q in caption_queries},
    }
    for name, content in subset.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    tasks = eccv_tasks(split, tmp_path)
    assert [(t.metrics, t.direction) for t in tasks] == [
        (ECCV_METRICS, "i2t"),
        (ECCV_METRICS, "t2i"),
        (CXC_METRICS, "i2t"),
        (CXC_METRICS, "t2i"),
    ]
    for task, name in zip(tasks, subset):
        query_ids = split.image_ids if task.direction == "i2t" else split.caption_ids
        gallery_ids = split.caption_ids if task.direction == "i2t" else split.image_ids
        mapped = {
            str(query_ids[q]): sorted(int(gallery_ids[g]) for g in np.flatnonzero(row))
            for q, row in zip(task.queries, task.positives)
        }
        assert mapped == {q: sorted(v) for q, v in subset[name].items()}, name
        assert list(task.queries) == sorted(task.queries)

    # a positive the split does not hold cannot be retrieved: left out, named in the log (ECCV Caption
    # has two such caption ids); a query the split does not hold is an error naming the file and the id
    missing = int(subset["eccv_image_to_caption"][image_queries[0]][0])
    smaller = coco_like_split([c for c in caption_order if c != missing], caption_image_ids)
    with caplog.at_level(logging.WARNING, logger="pcmebench"):
        eccv_i2t_task = eccv_tasks(smaller, tmp_path)[0]
    assert f"eccv_image_to_caption.json: 1 positive caption id(s) not in the test split, left out: {missing}" in caplog.text
    assert eccv_i2t_task.positives.sum() == sum(len(v) for v in subset["eccv_image_to_caption"].values()) - 1
    query_image = int(image_queries[1])
    without_query = coco_like_split([c for c in caption_order if caption_image_ids[c] != query_image], caption_image_ids)
    with pytest.raises(
        DataError, match=f"eccv_image_to_caption.json: image id {query_image}: is not among the images of the test split"
    ):
        eccv_tasks(without_query, tmp_path)


def test_ground_truth_errors_name_the_file_and_the_id(tmp_path):
    path = tmp_path / "full_caption_to_image.json"
    captions, images = np.array([10, 11, 12]), np.array([7, 8])
    path.write_text(json.dumps({"11": [8], "10": [7, 8]}))
    queries, positives = read_ground_truth(path, captions, images, "caption", "image")
    assert queries.tolist() == [0, 1] and positives.tolist() == [[True, True], [False, True]]
    path.write_text(json.dumps({"13": [7]}))
    with pytest.raises(DataError, match="full_caption_to_image.json: caption id 13: is not among the captions of the test split"):
        read_ground_truth(path, captions, images, "caption", "image")
    path.write_text(json.dumps({"10": [9]}))
    with pytest.raises(DataError, match="caption id 10: its image id 9 is not in the test split"):
        read_ground_truth(path, captions, images, "caption", "image")
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a non-empty object"):
        read_ground_truth(path, captions, images, "caption", "image")
    with pytest.raises(DataError, match="not found"):
        read_ground_truth(tmp_path / "absent.json", captions, images, "caption", "image")


def test_cub_positives_are_the_same_class():
    split = EvaluationSplit(
        "cub",
        np.array([1, 2, 3]),
        np.array([100, 101, 200, 300]),
        np.array([0, 0, 1, 2]),
        np.eye(3, dtype=bool),
        class_ids=np.array([5, 5, 9]),
    )
    i2t, t2i = cub_tasks(split)
    assert i2t.positives.tolist() == [[True, True, True, False], [True, True, True, False], [False, False, False, True]]
    assert np.array_equal(t2i.positives, i2t.positives.T)
    assert set(i2t.metrics.values()) == {"R@1", "R@5", "R@10", "R-P", "mAP@R"}


def test_task_scores_take_the_right_block():
    split = EvaluationSplit("coco", np.arange(4), np.arange(8), np.repeat(np.arange(4), 2), np.zeros((4, 2), bool))
    matrix = np.arange(32, dtype=np.float32).reshape(4, 8)
    i2t, t2i = own_caption_tasks(split, "1K", np.array([1, 2]), np.array([2, 3, 4, 5]))
    assert np.array_equal(i2t.scores(matrix), matrix[1:3, 2:6])
    assert np.array_equal(t2i.scores(matrix), matrix[1:3, 2:6].T) and t2i.scores(matrix).flags.c_contiguous
    assert i2t.positives.tolist() == [[True, True, False, False], [False, False, True, True]]
    scattered_i2t, scattered_t2i = own_caption_tasks(split, "1K", np.array([0, 3]), np.array([0, 1, 6, 7]))
    assert np.array_equal(scattered_i2t.scores(matrix), matrix[np.ix_([0, 3], [0, 1, 6, 7])])
    # a t2i block from the (captions, images) copy: the same block, C-contiguous
    by_caption = np.ascontiguousarray(matrix.T)
    for task, expected in ((t2i, matrix[1:3, 2:6].T), (scattered_t2i, matrix[np.ix_([0, 3], [0, 1, 6, 7])].T)):
        block = task.scores(None, by_caption)
        assert np.array_equal(block, expected) and block.flags.c_contiguous
