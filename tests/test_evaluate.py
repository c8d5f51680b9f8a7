"""The evaluation stage end to end on tiny prepared datasets with embeddings built by hand."""

import json
import logging
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from corpora.prepared import PreparedDataset
from metrics import pmrp, recall_at_k
from models.registry import registered
from pcmebench.evaluate import evaluate_run
from pcmebench.protocols import EvaluationSplit
from pcmebench.tables import (
    METRICS_COLUMNS,
    PER_QUERY_COLUMNS,
    QUERIES_COLUMNS,
    UNCERTAINTY_COLUMNS,
    UNCERTAINTY_SUMMARY_COLUMNS,
)
from tests.conftest import REPO

DIM = 16
SAMPLES = 3
REGISTRY = registered()
PRIMARY = {name: m.primary_scoring for name, m in REGISTRY.items()}
LEARNED = {"a": 10.0, "b": 5.0}  # PCME's scale and shift; any other learned scalar is 1


def split_of(prepared_dir) -> EvaluationSplit:
    return EvaluationSplit.from_prepared(PreparedDataset(prepared_dir))


def write_embeddings(path, split: EvaluationSplit, method: str, dataset: str, image_vectors, caption_vectors, log_sigma=None):
    """An embeddings file as pcmebench.embed writes it for ``method``'s registry entry, from (N_i, D)
    and (N_c, D) vectors.

    ``embeddings``: the vectors, and K - 1 more random ones per item for a method whose K (the
    ``embeddings`` setting's default) is above 1 (PVSE K=2); ``mu``: the vectors; ``log_sigma``:
    the given (or a small constant) log sigma; ``samples``: mu + eps * sigma.
    """
    entry = REGISTRY[method]
    generator = torch.Generator().manual_seed(1)
    images, captions = torch.as_tensor(image_vectors, dtype=torch.float32), torch.as_tensor(caption_vectors, dtype=torch.float32)
    tensors = {
        "image_ids": torch.as_tensor(split.image_ids),
        "caption_ids": torch.as_tensor(split.caption_ids),
        "caption_image_index": torch.as_tensor(split.caption_image),
    }
    k = entry.defaults.get("embeddings", 1)
    for prefix, vectors in (("image", images), ("caption", captions)):
        sigma = torch.full_like(vectors, -6.0) if log_sigma is None else torch.as_tensor(log_sigma[prefix], dtype=torch.float32)
        eps = torch.randn((len(vectors), SAMPLES, vectors.shape[1]), generator=generator)
        extra = [
            torch.nn.functional.normalize(torch.randn(vectors.shape, generator=generator), dim=1) * 0.1 for _ in range(k - 1)
        ]
        made = {
            "embeddings": torch.stack([vectors, *extra], dim=1),
            "mu": vectors,
            "log_sigma": sigma,
            "samples": vectors[:, None] + eps * sigma.exp()[:, None],
        }
        tensors.update({f"{prefix}_{item}": made[item] for item in entry.items})
    tensors.update({name: torch.tensor([LEARNED.get(name, 1.0)]) for name in entry.learned})
    settings = {"dataset": dataset, "method": method, "seed": 0, "device": "cpu"}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"settings": json.dumps(settings)})
    return settings


def perfect_vectors(split: EvaluationSplit):
    """Orthonormal image vectors; each caption gets its image's vector: its own image is its unique best match."""
    basis = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(0)))[0]
    images = basis[: split.n_images]
    return images, images[split.caption_image]


@pytest.mark.parametrize("method", list(REGISTRY))
def test_perfect_embeddings_score_100_and_the_tables_have_their_schemas(method, prepared, tmp_path):
    split = split_of(prepared)
    assert split.n_images <= DIM
    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, split, method, "synthetic-coco", *perfect_vectors(split))
    result = evaluate_run(prepared, path, settings, device="cpu")

    metrics = result.metrics
    assert list(metrics.columns) == METRICS_COLUMNS
    assert list(result.per_query.columns) == PER_QUERY_COLUMNS
    assert list(result.queries.columns) == QUERIES_COLUMNS
    assert list(result.uncertainty.columns) == UNCERTAINTY_COLUMNS
    assert list(result.uncertainty_summary.columns) == UNCERTAINTY_SUMMARY_COLUMNS
    assert set(metrics["scoring"]) == set(REGISTRY[method].scorings)
    # 10 test images: 1K is one fold of all of them; no 5K, no ECCV (synthetic); full from the generator
    assert set(metrics["protocol"]) == {"1K", "full"}
    expected_rows = (
        {("1K", d, m) for d in ("i2t", "t2i") for m in ("R@1", "R@5", "R@10", "PMRP@0", "PMRP@1", "PMRP@2", "PMRP")}
        | {("1K", "both", "RSUM")}
        | {("full", d, m) for d in ("i2t", "t2i") for m in ("full mAP@R", "full R-P", "full R@1")}
    )
    for scoring, rows in metrics.groupby("scoring"):
        assert set(zip(rows["protocol"], rows["direction"], rows["metric"])) == expected_rows, scoring
    assert not metrics.duplicated(["protocol", "scoring", "direction", "metric"]).any()
    assert (metrics[["dataset", "method", "seed"]] == ["synthetic-coco", method, 0]).all().all()

    own = metrics[metrics["scoring"] == PRIMARY[method]].set_index(["protocol", "direction", "metric"])["value"]
    for direction in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert own["1K", direction, f"R@{k}"] == 100.0
        # every caption of the image ties at the top; each is a true match of its own image
        assert own["full", direction, "full R@1"] == 100.0
    assert own["1K", "both", "RSUM"] == 600.0

    # queries.parquet: one row per image and per caption; u only for a probabilistic method; true matches
    # from the generator
    queries = result.queries
    assert len(queries) == split.n_images + split.n_captions
    assert queries["true_matches"].notna().all() and (queries["true_matches"] >= 1).all()
    if REGISTRY[method].probabilistic:
        if REGISTRY[method].uncertainty_statistic == "mean_log_sigma":
            assert np.allclose(queries["u"], -6.0)
        assert queries["u"].notna().all()
        assert len(result.uncertainty) > 0 and set(result.uncertainty["metric"]) == {"R@1", "PMRP", "R-P"}
        assert set(result.uncertainty["scoring"]) == {PRIMARY[method]}
        assert set(result.uncertainty["uncertainty"]) == set(REGISTRY[method].statistics)
    else:
        assert queries["u"].isna().all()
        assert result.uncertainty.empty
        assert set(result.uncertainty_summary["statistic"]) <= {"auroc_margin"}
        assert set(result.uncertainty_summary["scoring"]) <= {PRIMARY[method]}


def test_1k_values_are_the_mean_of_the_folds_means(prepared, tmp_path, monkeypatch):
    """The original's 1K (naver-ai/pcme evaluate_pmrp_coco.py: one value per fold, then their mean);
    folds of 3 and 7 images here, so the mean of fold means and the pooled mean differ."""
    from pcmebench import protocols
    from pcmebench.aggregate import check_per_query_means

    split = split_of(prepared)
    assert split.n_images == 10
    blocks = [np.arange(0, 3), np.arange(3, 10)]
    monkeypatch.setattr(
        protocols, "coco_folds", lambda split: [(b, np.flatnonzero(np.isin(split.caption_image, b))) for b in blocks]
    )
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(split.n_images, DIM, generator=generator)
    captions = torch.randn(split.n_captions, DIM, generator=generator)
    path = tmp_path / "embeddings.safetensors"
    result = evaluate_run(prepared, path, write_embeddings(path, split, "vse0", "synthetic-coco", images, captions), device="cpu")
    table = result.metrics.set_index(["protocol", "scoring", "direction", "metric"])["value"]

    scores = (torch.nn.functional.normalize(images, dim=1) @ torch.nn.functional.normalize(captions, dim=1).T).numpy()
    per_fold, pooled = {}, {}
    for b in blocks:
        rows = np.flatnonzero(np.isin(split.caption_image, b))
        fold_scores, positives = scores[np.ix_(b, rows)], split.caption_image[rows][None, :] == b[:, None]
        per_fold.setdefault("i2t R@1", []).append(recall_at_k(fold_scores, positives)["R@1"])
        per_fold.setdefault("t2i R@1", []).append(recall_at_k(fold_scores.T, positives.T)["R@1"])
        labels = split.labels[split.caption_image[rows]], split.labels[b]
        per_fold.setdefault("t2i PMRP", []).append(pmrp(fold_scores.T, *labels)["PMRP"])
        per_fold.setdefault("i2t PMRP", []).append(pmrp(fold_scores, labels[1], labels[0])["PMRP"])
    for name, values in per_fold.items():
        direction, metric = name.split()
        assert table["1K", "cosine", direction, metric] == pytest.approx(np.mean(values), abs=1e-9), name
        pooled[name] = (3 * values[0] + 7 * values[1]) / 10
    assert any(abs(pooled[n] - np.mean(v)) > 1 for n, v in per_fold.items())  # the two definitions differ here
    check_per_query_means(result.metrics, result.per_query, path)  # aggregate reads the same means back


def test_per_query_means_equal_the_metrics_and_the_metrics_package(prepared, tmp_path):
    split = split_of(prepared)
    generator = torch.Generator().manual_seed(5)
    images, captions = (
        torch.randn(split.n_images, DIM, generator=generator),
        torch.randn(split.n_captions, DIM, generator=generator),
    )
    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, split, "vse0", "synthetic-coco", images, captions)
    result = evaluate_run(prepared, path, settings, device="cpu")

    means = result.per_query.groupby(["protocol", "scoring", "direction", "metric"])["value"].mean()
    table = result.metrics[result.metrics["metric"] != "RSUM"].set_index(["protocol", "scoring", "direction", "metric"])["value"]
    assert len(means) == len(table)
    for key, value in table.items():
        assert means[key] == pytest.approx(value, abs=1e-9), key

    # the same numbers straight from the metrics package on the cosine matrix
    scores = (torch.nn.functional.normalize(images, dim=1) @ torch.nn.functional.normalize(captions, dim=1).T).numpy()
    positives = split.caption_image[None, :] == np.arange(split.n_images)[:, None]
    recalls = recall_at_k(scores, positives)
    for name, value in recalls.items():
        assert table["1K", "cosine", "i2t", name] == pytest.approx(value, abs=1e-4)
    plausible = pmrp(scores.T, split.labels[split.caption_image], split.labels)
    assert table["1K", "cosine", "t2i", "PMRP"] == pytest.approx(plausible["PMRP"], abs=1e-4)
    rsum = sum(table["1K", "cosine", d, f"R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert result.metrics.set_index(["protocol", "direction", "metric"])["value"]["1K", "both", "RSUM"] == pytest.approx(rsum)

    # per-query rows: query indices inside the split, R@K values 0 or 100, no NaN
    pq = result.per_query
    assert pq["value"].notna().all()
    i2t = pq[pq["direction"] == "i2t"]
    assert i2t["query"].between(0, split.n_images - 1).all()
    assert pq[pq["metric"].str.startswith("R@")]["value"].isin([0.0, 100.0]).all()


def test_cub_protocol_and_csd_and_uncertainty(prepared_cub, tmp_path):
    split = split_of(prepared_cub)
    classes = np.unique(split.class_ids)
    class_vectors = torch.eye(DIM)[: len(classes)]
    row = {c: i for i, c in enumerate(classes)}
    images = class_vectors[[row[c] for c in split.class_ids]]
    captions = images[split.caption_image]
    # u grows with the image row: the analysis must see it
    log_sigma = {
        "image": torch.linspace(-5, -3, split.n_images)[:, None].expand(-1, DIM),
        "caption": torch.linspace(-5, -3, split.n_captions)[:, None].expand(-1, DIM),
    }
    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, split, "pcme", "synthetic-cub", images, captions, log_sigma)
    result = evaluate_run(prepared_cub, path, settings, device="cpu")
    metrics = result.metrics.set_index(["protocol", "scoring", "direction", "metric"])["value"]
    assert set(result.metrics["protocol"]) == {"CUB", "full"}
    for scoring in ("match-prob", "sample-dot", "mu", "csd"):
        for direction in ("i2t", "t2i"):
            for metric in ("R@1", "R@5", "R@10", "R-P", "mAP@R"):
                assert metrics["CUB", scoring, direction, metric] == pytest.approx(100.0), (scoring, direction, metric)
    assert not (result.metrics["metric"] == "RSUM").any()
    u = result.queries.set_index(["direction", "query"])["u"]
    assert u["i2t", 0] == pytest.approx(-5.0) and u["i2t", split.n_images - 1] == pytest.approx(-3.0)
    # 60 caption queries: ten bins of six on CUB and full, R@1 and R-P each
    t2i_bins = result.uncertainty[(result.uncertainty["direction"] == "t2i") & (result.uncertainty["protocol"] == "CUB")]
    assert list(t2i_bins["bin"].unique()) == list(range(10)) and set(t2i_bins["metric"]) == {"R@1", "R-P"}
    assert (t2i_bins["queries"] == split.n_captions // 10).all()
    # synthetic: u against the log of the true number of matches is reported
    summary = result.uncertainty_summary
    assert set(summary[summary["statistic"] == "spearman_u_log_matches"]["protocol"]) == {"full"}
    assert set(summary["scoring"]) == {"match-prob"}
    # and its control for the caption's length (CUB: no image length, so captions only)
    controlled = summary[summary["statistic"] == "partial_spearman_u_log_matches"]
    assert set(zip(controlled["protocol"], controlled["direction"])) == {("full", "t2i")}


def test_uncertainty_that_marks_the_failures_is_found(prepared, tmp_path):
    """The ten captions with the highest u are matched to the wrong image: u predicts failure perfectly."""
    split = split_of(prepared)
    images, captions = perfect_vectors(split)
    failing = np.arange(split.n_captions - 10, split.n_captions)
    captions = captions.clone()
    captions[failing] = images[(split.caption_image[failing] + 1) % split.n_images]
    caption_sigma = torch.full((split.n_captions, DIM), -6.0)
    caption_sigma[failing] = -4.0 + torch.linspace(0, 0.1, 10)[:, None]
    log_sigma = {"image": torch.full((split.n_images, DIM), -6.0), "caption": caption_sigma}
    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, split, "pcme", "synthetic-coco", images, captions, log_sigma)
    result = evaluate_run(prepared, path, settings, device="cpu")

    r1 = result.metrics.set_index(["protocol", "scoring", "direction", "metric"])["value"]["1K", "match-prob", "t2i", "R@1"]
    assert r1 == pytest.approx(100.0 * 40 / 50)
    bins = result.uncertainty
    t2i = bins[(bins["protocol"] == "1K") & (bins["direction"] == "t2i") & (bins["metric"] == "R@1")]
    mean_log = t2i[t2i["uncertainty"] == "mean_log_sigma"]
    assert mean_log["value"].tolist() == [100.0] * 8 + [0.0, 0.0]  # 50 captions: bins of 5
    assert (mean_log["queries"] == 5).all() and mean_log["u_low"].iloc[8] == pytest.approx(-4.0)
    assert mean_log["u_high"].iloc[7] == -6.0
    # PCME++'s statistic, the sum of sigma^2, orders these queries alike: the same bins, in its own units
    sum_sq = t2i[t2i["uncertainty"] == "sum_sigma_sq"]
    assert sum_sq["value"].tolist() == mean_log["value"].tolist()
    assert sum_sq["u_low"].iloc[8] == pytest.approx(DIM * math.exp(-8.0), rel=1e-5)
    everything = result.uncertainty_summary.set_index(["protocol", "direction", "uncertainty", "statistic"])["value"]
    assert everything["1K", "t2i", "sum_sigma_sq", "auroc_u"] == everything["1K", "t2i", "mean_log_sigma", "auroc_u"]
    summary = result.uncertainty_summary[result.uncertainty_summary["uncertainty"] != "sum_sigma_sq"]
    summary = summary.set_index(["protocol", "direction", "statistic"])["value"]
    assert summary["1K", "t2i", "auroc_u"] == 1.0
    assert summary["1K", "t2i", "pearson_bin_r1"] < -0.5
    assert summary["1K", "t2i", "spearman_u_rank"] > 0.5
    assert 0.0 <= summary["1K", "t2i", "auroc_margin"] <= 1.0
    # every image has the same u: its rank correlation is undefined, so not written (and logged)
    assert ("1K", "i2t", "spearman_u_rank") not in summary.index and ("1K", "i2t", "auroc_margin") in summary.index


def test_embeddings_of_another_split_are_refused(prepared, tmp_path):
    split = split_of(prepared)
    images, captions = perfect_vectors(split)
    shuffled = EvaluationSplit(split.format, split.image_ids[::-1].copy(), split.caption_ids, split.caption_image, split.labels)
    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, shuffled, "vse0", "synthetic-coco", images, captions)
    with pytest.raises(ValueError, match=r"embeddings.safetensors: image_ids\[0\] is .* another prepared dataset"):
        evaluate_run(prepared, path, settings, device="cpu")

    fewer = EvaluationSplit(split.format, split.image_ids, split.caption_ids[:-5], split.caption_image[:-5], split.labels)
    settings = write_embeddings(path, fewer, "vse0", "synthetic-coco", images, captions[:-5])
    with pytest.raises(ValueError, match="caption_ids but the test split"):
        evaluate_run(prepared, path, settings, device="cpu")


def test_a_method_that_does_not_match_the_file_is_refused(prepared, tmp_path):
    split = split_of(prepared)
    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, split, "vse0", "synthetic-coco", *perfect_vectors(split))
    with pytest.raises(ValueError, match="embeddings of method 'vse0'"):
        evaluate_run(prepared, path, {**settings, "method": "pcme"}, device="cpu")


def test_queries_without_a_positive_are_left_out_and_logged(prepared, tmp_path, caplog):
    split = split_of(prepared)
    source = PreparedDataset(prepared).raw_root
    truth = json.loads((source / "annotations" / "full_caption_to_image.json").read_text())
    emptied = str(split.caption_ids[3])
    damaged = tmp_path / "raw"
    shutil.copytree(source, damaged)
    truth[emptied] = []
    (damaged / "annotations" / "full_caption_to_image.json").write_text(json.dumps(truth))
    meta = json.loads((prepared / "meta.json").read_text())
    moved = tmp_path / "prepared"
    shutil.copytree(prepared, moved)
    (moved / "meta.json").write_text(json.dumps({**meta, "raw_root": str(damaged)}))

    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, split, "vse0", "synthetic-coco", *perfect_vectors(split))
    with caplog.at_level(logging.WARNING, logger="pcmebench"):
        result = evaluate_run(moved, path, settings, device="cpu")
    assert "full fold 0 t2i R@1: 1 of 50 queries left out" in caplog.text
    full = result.per_query[(result.per_query["protocol"] == "full") & (result.per_query["direction"] == "t2i")]
    assert 3 not in set(full["query"]) and len(full) == 3 * (split.n_captions - 1)

    truth[emptied] = [999999]
    (damaged / "annotations" / "full_caption_to_image.json").write_text(json.dumps(truth))
    with pytest.raises(
        ValueError, match=rf"full_caption_to_image.json: caption id {emptied}: its image id 999999 is not in the test split"
    ):
        evaluate_run(moved, path, settings, device="cpu")


def test_the_command_line_writes_every_file(prepared, tmp_path):
    split = split_of(prepared)
    path = tmp_path / "embeddings.safetensors"
    settings = write_embeddings(path, split, "pcme", "synthetic-coco", *perfect_vectors(split))
    out = {
        name: tmp_path / "run" / name
        for name in ("metrics.csv", "per_query.parquet", "queries.parquet", "uncertainty.csv", "uncertainty_summary.csv")
    }
    command = [
        sys.executable, "-m", "pcmebench.evaluate", "--prepared", str(prepared), "--embeddings", str(path),
        "--metrics", str(out["metrics.csv"]), "--per-query", str(out["per_query.parquet"]),
        "--queries", str(out["queries.parquet"]), "--uncertainty", str(out["uncertainty.csv"]),
        "--uncertainty-summary", str(out["uncertainty_summary.csv"]), "--settings", json.dumps(settings),
        "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    metrics = pd.read_csv(out["metrics.csv"])
    assert list(metrics.columns) == METRICS_COLUMNS and len(metrics) > 0
    assert list(pd.read_parquet(out["per_query.parquet"]).columns) == PER_QUERY_COLUMNS
    assert list(pd.read_parquet(out["queries.parquet"]).columns) == QUERIES_COLUMNS
    assert list(pd.read_csv(out["uncertainty.csv"]).columns) == UNCERTAINTY_COLUMNS
    summary = pd.read_csv(out["uncertainty_summary.csv"])
    assert list(summary.columns) == UNCERTAINTY_SUMMARY_COLUMNS
    assert not any(p.name.startswith(".") for p in (tmp_path / "run").iterdir())  # no temporary file left behind
    # deterministic: the same numbers again (other thread count: equal to rounding)
    again = evaluate_run(prepared, path, settings, device="cpu").metrics
    np.testing.assert_allclose(again["value"].to_numpy(), metrics["value"].to_numpy(), rtol=0, atol=1e-9)
