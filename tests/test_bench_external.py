"""benchmarks/bench_external.py: its COCO-format dataset (COCO 5K's ids, order and pairs, no image files)
is evaluated like any prepared split, and its quick mode times every protocol but 5K."""

import json
import sys
import warnings

import numpy as np
import pytest

from corpora.prepared import PreparedDataset
from metrics import ExcludedQueriesWarning, pmrp
from pcmebench.external import evaluate_external, read_external
from pcmebench.protocols import PMRP_ZETAS, EvaluationSplit, eccv_caption_data
from pcmebench.scoring import score_matrix
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # benchmarks/ is not a package
import bench_external


def test_the_quick_dataset_is_coco_5k_order_and_evaluates_like_any_split(tmp_path):
    prepared, path, eccv_data = bench_external.build(tmp_path, quick=True, dim=32, seed=1)
    split = EvaluationSplit.from_prepared(PreparedDataset(prepared), "test")
    assert split.n_images == bench_external.QUICK_IMAGES and split.n_captions == 5 * bench_external.QUICK_IMAGES
    order = np.load(eccv_caption_data() / "coco_test_ids.npy")
    assert np.array_equal(split.caption_ids, order[np.isin(order, split.caption_ids)])  # COCO 5K's order
    owner = json.loads((eccv_caption_data() / "original_caption_to_image.json").read_text())
    assert [owner[str(c)][0] for c in split.caption_ids] == split.image_ids[split.caption_image].tolist()
    assert (~split.labels.any(axis=1)).sum() < split.n_images // 10 and split.labels.sum(axis=1).max() > 1

    evaluation = evaluate_external(prepared, path, "coco", ("cosine",), device="cpu", eccv_data=eccv_data)
    metrics = evaluation.metrics.set_index(["protocol", "direction", "metric"])["value"]
    assert set(evaluation.metrics["protocol"]) == {"1K", "ECCV"}  # 5K needs 5,000 images
    assert {"ECCV mAP@R", "CxC R@1"} <= set(evaluation.metrics["metric"])
    # the evaluation's 1K PMRP is metrics.pmrp on the file's cosine scores (the one fold: every image)
    scores = score_matrix(read_external(path, PreparedDataset(prepared), split, ("cosine",)), "cosine")
    caption_labels = split.labels[split.caption_image]
    for direction, args in (("i2t", (scores, split.labels, caption_labels)), ("t2i", (scores.T, caption_labels, split.labels))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExcludedQueriesWarning)  # the images without labels
            expected = pmrp(*args, zetas=PMRP_ZETAS)["PMRP"]
        assert metrics["1K", direction, "PMRP"] == pytest.approx(expected, abs=1e-9)


def test_quick_mode_times_the_evaluation_against_one_sort(capsys):
    summary = bench_external.run(["--quick"])
    assert summary["protocols"] == ["1K", "ECCV"]
    seconds = summary["seconds"]
    assert set(seconds) == {
        "whole evaluation",
        "read and check the file",
        "score matrix (cosine)",
        "PMRP, both directions",
        "np.sort of the score matrix",
    }
    assert all(value > 0 for value in seconds.values())
    assert summary["ratio_to_sort"]["np.sort of the score matrix"] == 1.0
    assert summary["ratio_to_sort"]["whole evaluation"] == seconds["whole evaluation"] / seconds["np.sort of the score matrix"]
    assert "whole evaluation" in capsys.readouterr().out
