"""Export: each scoring's matrix and top-k lists with ids, in the metrics' order; the round trip; 1K folds; eccv-caption; bad input."""

import dataclasses
import functools
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import metrics.ranking
from corpora.prepared import PreparedDataset
from metrics.ranking import ranks_of_items
from models.registry import registered
from pcmebench import export, protocols
from pcmebench.export import RANKING_COLUMNS, eccv_caption_lists, export_files, export_run, ranked_groups, top_columns
from pcmebench.external import evaluate_external, read_external
from pcmebench.protocols import full_ground_truth_files, own_caption_tasks, protocol_tasks
from pcmebench.scoring import load_embeddings, score_matrix
from tests.test_evaluate import split_of
from tests.test_external import damaged, good_file, save, trained_run

REGISTRY = registered()
TOP_K = 7
DATASETS = {"prepared": "synthetic-coco", "prepared_cub": "synthetic-cub"}


@pytest.fixture(scope="module")
def pcme_export(prepared, tmp_path_factory):
    """A PCME run's embeddings file, its evaluation and its export (top 7, every scoring)."""
    folder = tmp_path_factory.mktemp("pcme")
    path, evaluation = trained_run(prepared, "synthetic-coco", "pcme", folder)
    written = export_run(prepared, load_embeddings(path), folder / "export", top_k=TOP_K)
    return path, evaluation, folder / "export", written


def external_embeddings(prepared_dir, dataset, scorings=("cosine",), tensors=None, folder=None):
    """A user's file (default: random cosine embeddings), read as the export takes it."""
    split = split_of(prepared_dir)
    path = save(tensors or good_file(prepared_dir), folder / "mine.safetensors")
    return read_external(path, PreparedDataset(prepared_dir), split, scorings, settings={"dataset": dataset})


def two_image_folds(monkeypatch):
    """1K as five folds of two images (ten captions), as eccv-caption splits 50 captions."""
    monkeypatch.setattr(protocols, "coco_folds", functools.partial(protocols.coco_folds, fold_images=2))


def no_staging(out) -> bool:
    """No staging folder of an export to ``out`` is left beside it."""
    return not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def assert_lists_follow_the_metrics(rankings: pd.DataFrame, split, matrix: np.ndarray, tasks, top_k: int):
    """Every (protocol, fold, direction): each query of its tasks once, its min(top_k, gallery) best items named by
    id, in the order metrics.ranking ranks them in the task's gallery (ties by the lower row), with their scores."""
    by_direction = {"i2t": (split.image_ids, split.caption_ids, matrix), "t2i": (split.caption_ids, split.image_ids, matrix.T)}
    groups = {}
    for task in tasks:
        key = (task.protocol, task.fold, task.direction)
        groups[key] = (task.gallery, np.union1d(groups[key][1], task.queries) if key in groups else task.queries)
    for (protocol, fold, direction), (gallery, queries) in groups.items():
        lists = rankings[(rankings["protocol"] == protocol) & (rankings["fold"] == fold) & (rankings["direction"] == direction)]
        query_ids, item_ids, scores = by_direction[direction]
        depth = min(top_k, len(gallery))
        assert (lists["query_id"].to_numpy() == np.repeat(query_ids[queries], depth)).all(), (protocol, fold, direction)
        assert (lists["rank"].to_numpy() == np.tile(np.arange(1, depth + 1), len(queries))).all()
        block = np.ascontiguousarray(scores[:, gallery])
        rows = np.repeat(queries, depth)
        position = {int(g): c for c, g in enumerate(item_ids[gallery])}
        columns = np.array([position[i] for i in lists["item_id"]])  # an id outside the gallery: KeyError
        assert (ranks_of_items(block, np.sort(block, axis=1), rows, columns) == lists["rank"].to_numpy()).all()
        assert (block[rows, columns] == lists["score"].to_numpy()).all()
    assert len(rankings.groupby(["protocol", "fold", "direction"], observed=True)) == len(groups)


def test_the_top_columns_are_the_metrics_order_with_ties_across_chunks(monkeypatch):
    monkeypatch.setattr(metrics.ranking, "DEFAULT_CHUNK_ENTRIES", 1000)  # 14 queries a chunk
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(300, 70)).astype(np.float32)  # many ties, across every cut
    scores[5, :] = 2.0  # a row of one value
    sorted_rows = np.sort(scores, axis=1)
    reference = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 10, 69, 70, 90):
        columns, values = top_columns(scores, k)
        depth = min(k, 70)
        assert columns.shape == (300, depth) and values.dtype == np.float32
        assert (columns == reference[:, :depth]).all(), k
        rows = np.repeat(np.arange(300), depth)
        assert (ranks_of_items(scores, sorted_rows, rows, columns.ravel()) == np.tile(np.arange(1, depth + 1), 300)).all()
        assert (values == np.take_along_axis(scores, columns, axis=1)).all()
    assert (top_columns(scores, 3)[0][5] == [0, 1, 2]).all()


def test_every_scorings_matrix_and_lists_with_ids(pcme_export, prepared):
    path, _, out, written = pcme_export
    scorings = REGISTRY["pcme"].scorings
    assert written == export_files(out, scorings)
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(written) and no_staging(out)
    split, embeddings = split_of(prepared), load_embeddings(path)
    assert not np.array_equal(split.image_ids, np.arange(split.n_images))  # ids are not rows here
    tasks = protocol_tasks(split, "synthetic-coco", PreparedDataset(prepared).raw_root)
    for scoring in scorings:
        matrix = score_matrix(embeddings, scoring)
        tensors = load_file(str(out / "scores" / f"{scoring}.safetensors"))
        assert sorted(tensors) == ["caption_ids", "image_ids", "scores"]
        assert (tensors["image_ids"].numpy() == split.image_ids).all() and (
            tensors["caption_ids"].numpy() == split.caption_ids
        ).all()
        assert tensors["scores"].dtype == torch.float32 and np.array_equal(tensors["scores"].numpy(), matrix)
        with safe_open(str(out / "scores" / f"{scoring}.safetensors"), "pt") as file:
            about = json.loads(file.metadata()["export"])
        assert (
            about["scoring"] == scoring and about["settings"]["method"] == "pcme" and about["orientation"].startswith("images x")
        )
        rankings = pd.read_parquet(out / "rankings" / f"{scoring}.parquet")
        assert list(rankings.columns) == RANKING_COLUMNS and set(rankings["scoring"]) == {scoring}
        assert set(rankings["protocol"]) == {"1K", "full"}
        assert rankings[["query_id", "item_id"]].dtypes.tolist() == [np.int64, np.int64] and rankings["score"].dtype == np.float32
        assert_lists_follow_the_metrics(rankings, split, matrix, tasks, TOP_K)
    assert set(pd.read_parquet(out / "rankings")["scoring"]) == set(scorings)  # the folder reads as one table


def test_a_second_export_writes_the_same_bytes(pcme_export, prepared, tmp_path):
    path, _, _, written = pcme_export
    again = export_run(prepared, load_embeddings(path), tmp_path / "again", top_k=TOP_K)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


def test_an_exported_matrix_evaluates_to_the_runs_metrics(pcme_export, prepared):
    _, reference, out, _ = pcme_export
    for scoring in REGISTRY["pcme"].scorings:
        ours = evaluate_external(prepared, out / "scores" / f"{scoring}.safetensors", "synthetic-coco", ["precomputed"], "mine",
                                 device="cpu")  # fmt: skip
        for name in ("metrics", "per_query"):
            theirs = getattr(reference, name)
            theirs = theirs[theirs["scoring"] == scoring].assign(scoring="precomputed")
            if "method" in theirs:
                theirs = theirs.assign(method="mine")
            pd.testing.assert_frame_equal(getattr(ours, name).reset_index(drop=True), theirs.reset_index(drop=True),
                                          check_exact=True, obj=f"{scoring} {name}")  # fmt: skip


@pytest.mark.parametrize("fixture", list(DATASETS))
def test_an_external_files_lists_on_coco_and_cub(fixture, request, tmp_path):
    prepared_dir = request.getfixturevalue(fixture)
    embeddings = external_embeddings(prepared_dir, DATASETS[fixture], folder=tmp_path)
    export_run(prepared_dir, embeddings, tmp_path / "out", top_k=3)
    split = split_of(prepared_dir)
    tasks = protocol_tasks(split, DATASETS[fixture], PreparedDataset(prepared_dir).raw_root)
    rankings = pd.read_parquet(tmp_path / "out" / "rankings" / "cosine.parquet")
    assert set(rankings["protocol"]) == {t.protocol for t in tasks}
    assert_lists_follow_the_metrics(rankings, split, score_matrix(embeddings, "cosine"), tasks, 3)
    only_full = export_run(prepared_dir, embeddings, tmp_path / "full", top_k=3, protocols=["full"])
    assert set(pd.read_parquet(only_full[1])["protocol"]) == {"full"}


def test_1k_lists_stay_in_their_fold(prepared, tmp_path, monkeypatch):
    two_image_folds(monkeypatch)
    split = split_of(prepared)
    embeddings = external_embeddings(prepared, "synthetic-coco", folder=tmp_path)
    export_run(prepared, embeddings, tmp_path / "out", top_k=4)
    rankings = pd.read_parquet(tmp_path / "out" / "rankings" / "cosine.parquet")
    one_k = rankings[rankings["protocol"] == "1K"]
    assert sorted(set(one_k["fold"])) == [0, 1, 2, 3, 4]
    image_fold = dict(zip(split.image_ids, np.arange(split.n_images) // 2, strict=True))
    caption_fold = dict(zip(split.caption_ids, split.caption_image // 2, strict=True))
    fold_of = {"i2t": (image_fold, caption_fold), "t2i": (caption_fold, image_fold)}
    for direction, (query_fold, item_fold) in fold_of.items():
        lists = one_k[one_k["direction"] == direction]
        assert (lists["query_id"].map(query_fold) == lists["fold"]).all() and (
            lists["item_id"].map(item_fold) == lists["fold"]
        ).all()
        assert set(lists.groupby("query_id").size()) == {4 if direction == "i2t" else 2}  # ten captions, two images a fold
        assert lists["query_id"].nunique() == len(query_fold)  # each query in one fold
    tasks = protocol_tasks(split, "synthetic-coco", PreparedDataset(prepared).raw_root)
    assert_lists_follow_the_metrics(rankings, split, score_matrix(embeddings, "cosine"), tasks, 4)


def test_the_lists_in_eccv_captions_shape(pcme_export):
    _, _, out, _ = pcme_export
    rankings = pd.read_parquet(out / "rankings" / "mu.parquet")
    lists = eccv_caption_lists(rankings, "1K")
    assert list(lists) == ["i2t", "t2i"]
    for direction, queries in lists.items():
        part = rankings[(rankings["protocol"] == "1K") & (rankings["direction"] == direction)]
        assert len(queries) == part["query_id"].nunique() and all(type(q) is int for q in queries)
        assert all(type(i) is int for items in queries.values() for i in items)
        for query, group in part.groupby("query_id"):
            assert queries[query] == group.sort_values("rank")["item_id"].tolist()
    with pytest.raises(ValueError, match=r"rankings: no lists of protocol '5K'; they have \['1K', 'full'\]"):
        eccv_caption_lists(rankings)
    with pytest.raises(ValueError, match=r"rankings: lists of the scorings \['csd', 'mu'\]; pass one scoring's"):
        eccv_caption_lists(pd.read_parquet(out / "rankings").query("scoring in ['mu', 'csd']"), "1K")


def test_eccv_caption_computes_our_metrics_from_the_lists(prepared, tmp_path, monkeypatch):
    """eccv-caption's own Metrics on the lists, with its ground truth replaced by the tiny split's (its
    COCO 1K: five folds of the caption ids; ECCV: the synthetic complete ground truth): our values / 100."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eccv_caption warns when ujson is absent
        eccv_caption = pytest.importorskip("eccv_caption")
    two_image_folds(monkeypatch)
    split = split_of(prepared)
    assert (np.diff(split.caption_image) >= 0).all()  # captions by image: eccv-caption's folds of ten captions are ours
    path = save(good_file(prepared), tmp_path / "mine.safetensors")
    ours = evaluate_external(prepared, path, "synthetic-coco", ["cosine"], device="cpu").metrics
    ours = {(p, d, m): v for p, d, m, v in ours[["protocol", "direction", "metric", "value"]].itertuples(index=False)}
    embeddings = external_embeddings(prepared, "synthetic-coco", folder=tmp_path)
    export_run(prepared, embeddings, tmp_path / "out", top_k=50)  # the whole gallery: eccv-caption's 1K filters it
    rankings = pd.read_parquet(tmp_path / "out" / "rankings" / "cosine.parquet")
    metric = eccv_caption.Metrics()
    own = {"i2t": {int(i): split.caption_ids[split.caption_image == r].tolist() for r, i in enumerate(split.image_ids)},
           "t2i": {int(c): [int(split.image_ids[r])] for c, r in zip(split.caption_ids, split.caption_image, strict=True)}}  # fmt: skip
    full = full_ground_truth_files("coco", PreparedDataset(prepared).raw_root)
    full = {d: {int(k): v for k, v in json.loads(full[d].read_text()).items()} for d in full}
    metric.coco_gts, metric.cxc_gts, metric.eccv_gts, metric.coco_ids = own, own, full, split.caption_ids
    lists = eccv_caption_lists(rankings, "full")
    scores = metric.compute_all_metrics(lists["i2t"], lists["t2i"], Ks=(1, 5, 10), verbose=False,
                                        target_metrics=("eccv_r1", "eccv_map_at_r", "eccv_rprecision", "coco_1k_recalls"))  # fmt: skip
    fold_lists = eccv_caption_lists(rankings, "1K")
    for direction in ("i2t", "t2i"):
        for name, metric_name in (("eccv_r1", "R@1"), ("eccv_map_at_r", "mAP@R"), ("eccv_rprecision", "R-P")):
            assert 100 * scores[name][direction] == pytest.approx(ours[("full", direction, f"full {metric_name}")], rel=1e-12)
        for k in (1, 5, 10):
            assert 100 * scores[f"coco_1k_r{k}"][direction] == pytest.approx(ours[("1K", direction, f"R@{k}")], rel=1e-12)
            from_folds = metric.coco_1k_recalls(fold_lists, "all", K=k)[direction]  # the 1K lists give the same
            assert 100 * from_folds == pytest.approx(ours[("1K", direction, f"R@{k}")], rel=1e-12)
    assert 0 < ours[("1K", "i2t", "R@1")] < 100 and 0 < ours[("full", "t2i", "full mAP@R")] < 100  # not trivial


def test_groups_of_one_protocol_share_their_gallery(prepared):
    split = split_of(prepared)
    images, captions = np.arange(split.n_images), np.arange(split.n_captions)
    eccv, cxc = (dataclasses.replace(t, protocol="ECCV") for t in own_caption_tasks(split, "x", images, captions)[:1] * 2)
    eccv, cxc = dataclasses.replace(eccv, queries=images[[1, 4]]), dataclasses.replace(cxc, queries=images[[0, 4, 7]])
    (group,) = ranked_groups([eccv, cxc])
    assert group.queries.tolist() == [0, 1, 4, 7] and group.gallery is eccv.gallery
    with pytest.raises(ValueError, match="ECCV fold 0 i2t: tasks of one protocol with two galleries"):
        ranked_groups([eccv, dataclasses.replace(cxc, gallery=captions[:5])])
    assert ranked_groups([eccv, cxc], protocols=["1K"]) == []


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"scorings": ["nope"]}, r"pcme.safetensors: scoring 'nope': unknown; allowed: "),
        ({"scorings": ["cosine"]}, r"pcme.safetensors: scoring 'cosine' reads image_embeddings, caption_embeddings, which the"),
        ({"scorings": ["mu", "mu"]}, r"scorings \['mu', 'mu'\]: give one or more, each once"),
        ({"top_k": 0}, r"top_k: 0; expected a positive number of items per query"),
        ({"protocols": ["ECCV"]}, r"protocols \['ECCV'\]: not protocols of dataset 'synthetic-coco'; its: \['1K', 'full'\]"),
    ],
)
def test_a_bad_request_names_the_file_and_item_and_writes_nothing(arguments, error, pcme_export, prepared, tmp_path):
    path = pcme_export[0]
    with pytest.raises(ValueError, match=error):
        export_run(prepared, load_embeddings(path), tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists() and no_staging(tmp_path / "out")


def test_embeddings_of_another_split_are_refused(pcme_export, prepared, tmp_path):
    embeddings = load_embeddings(pcme_export[0])
    embeddings.caption_ids = embeddings.caption_ids[::-1].copy()
    with pytest.raises(ValueError, match=r"pcme.safetensors: caption_ids\[0\] is \d+ but row 0 of the test split of"):
        export_run(prepared, embeddings, tmp_path / "out")
    assert not (tmp_path / "out").exists() and no_staging(tmp_path / "out")


def test_a_scoring_that_fails_after_another_leaves_the_folder_as_it_was(pcme_export, prepared, tmp_path):
    embeddings = load_embeddings(pcme_export[0])
    for name in ("image_samples", "caption_samples"):
        embeddings.tensors[name] = embeddings.tensors[name] * 1e30  # sample-dot overflows float32
    out = tmp_path / "out"
    (out / "scores").mkdir(parents=True)
    (out / "scores" / "mu.safetensors").write_bytes(b"an earlier export")
    with pytest.raises(ValueError, match=r"pcme.safetensors: scoring 'sample-dot' produced non-finite scores"):
        export_run(prepared, embeddings, out, scorings=["mu", "sample-dot"])
    assert [p.relative_to(out).as_posix() for p in out.rglob("*")] == ["scores", "scores/mu.safetensors"]
    assert (out / "scores" / "mu.safetensors").read_bytes() == b"an earlier export" and no_staging(out)


def test_the_command_line_exports_a_run_and_an_external_file(pcme_export, prepared, tmp_path):
    common = ["--prepared", str(prepared), "--device", "cpu", "--threads", "1", "--top-k", "5"]
    export.main([*common, "--embeddings", str(pcme_export[0]), "--out", str(tmp_path / "run"), "--scoring", "mu"])
    assert sorted(p for p in (tmp_path / "run").rglob("*") if p.is_file()) == sorted(export_files(tmp_path / "run", ["mu"]))
    path = save(good_file(prepared), tmp_path / "clip.npz")
    export.main([*common, "--embeddings", str(path), "--out", str(tmp_path / "clip"), "--external", "--dataset", "synthetic-coco",
                 "--scoring", "cosine"])  # fmt: skip
    rankings = pd.read_parquet(tmp_path / "clip" / "rankings" / "cosine.parquet")
    assert set(rankings.groupby(["protocol", "direction", "query_id"], observed=True).size()) == {5}
    with pytest.raises(SystemExit) as stopped:
        export.main([*common, "--embeddings", str(path), "--out", str(tmp_path / "x"), "--external", "--scoring", "cosine"])
    assert stopped.value.code == 2  # argparse: --external needs --dataset


@pytest.mark.parametrize(("how", "error"), [("nan", r"caption_embeddings: NaN or infinite values in 2 row"),
                                            ("orientation", r"scores: is captions x images \(50, 10\)")])  # fmt: skip
def test_a_bad_external_file_stops_the_command_before_anything_is_written(how, error, prepared, tmp_path):
    path = save(damaged(prepared, how), tmp_path / "bad.safetensors")
    scoring = "precomputed" if how == "orientation" else "cosine"
    with pytest.raises(SystemExit) as stopped:
        export.main(["--prepared", str(prepared), "--embeddings", str(path), "--out", str(tmp_path / "out"), "--external",
                     "--dataset", "synthetic-coco", "--scoring", scoring, "--device", "cpu"])  # fmt: skip
    message = str(stopped.value.code)
    assert message.startswith(f"pcmebench-export: {path}: ") and re.search(error, message), message
    assert not (tmp_path / "out").exists() and no_staging(tmp_path / "out")
