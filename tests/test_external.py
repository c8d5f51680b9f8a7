"""External models: the lists, a file of embeddings or scores in any row order, its checks and the command line."""

import hashlib
import json
import re
import shutil
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from corpora.prepared import PreparedDataset, prepare_dataset
from models.registry import registered
from pcmebench import external, lists
from pcmebench.evaluate import evaluate_run
from pcmebench.external import evaluate_external
from pcmebench.scoring import load_embeddings, score_matrix
from pcmebench.tables import EXTERNAL_COLUMNS, RUN_TABLES
from tests.conftest import REPO
from tests.test_evaluate import DIM, split_of, write_embeddings

REGISTRY = registered()
TABLES = ("metrics", "per_query", "queries", "uncertainty", "uncertainty_summary")


def trained_run(prepared, dataset, method, folder):
    """A run's embeddings file (as embed writes it) from noisy vectors and varied log σ, and its evaluation."""
    split = split_of(prepared)
    generator = torch.Generator().manual_seed(11)
    images = torch.randn(split.n_images, DIM, generator=generator)
    captions = images[split.caption_image] + 1.5 * torch.randn(split.n_captions, DIM, generator=generator)
    log_sigma = {
        m: 0.3 * torch.randn(n, DIM, generator=generator) - 2
        for m, n in (("image", split.n_images), ("caption", split.n_captions))
    }
    path = folder / f"{method}.safetensors"
    settings = write_embeddings(path, split, method, dataset, images, captions, log_sigma)
    return path, evaluate_run(prepared, path, settings, device="cpu")


def shuffled(tensors: dict, seed: int = 0) -> dict:
    """The file's rows in another order, each modality's own, with their ids; no caption_image_index."""
    rng = np.random.default_rng(seed)
    order = {m: torch.from_numpy(rng.permutation(len(tensors[f"{m}_ids"]))) for m in ("image", "caption")}
    out = {}
    for key, value in tensors.items():
        modality = key.split("_")[0]
        if key != "caption_image_index":
            out[key] = value[order[modality]].contiguous() if modality in order else value
    return out


def save(tensors: dict, path):
    if path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in tensors.items()})
    else:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def assert_same_tables(ours, theirs, **replaced):
    """Every table equal to the last digit, once ``replaced`` columns (method, scoring) take ``theirs``' values."""
    for name in TABLES:
        mine, reference = getattr(ours, name), getattr(theirs, name)
        for column, value in replaced.items():
            if column in reference.columns and len(reference):
                reference = reference.assign(**{column: value})
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), reference.reset_index(drop=True), check_exact=True, obj=name)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("method", list(REGISTRY))
def test_a_runs_embeddings_in_shuffled_order_give_the_runs_tables(method, suffix, prepared, tmp_path):
    path, reference = trained_run(prepared, "synthetic-coco", method, tmp_path)
    entry = REGISTRY[method]
    external_file = save(shuffled(load_file(str(path))), tmp_path / f"mine{suffix}")
    ours = evaluate_external(
        prepared, external_file, "synthetic-coco", entry.scorings, "mine", 0, entry.statistics or None, "cpu"
    )
    assert_same_tables(ours, reference, method="mine")
    assert set(ours.metrics["scoring"]) == set(entry.scorings) and ours.uncertainty.empty != entry.probabilistic
    assert 0 < ours.metrics["value"].min() and (ours.metrics["value"] < 100).any()  # not a trivial (perfect) retrieval


def test_cub_and_rows_without_ids_in_the_lists_order(prepared_cub, tmp_path):
    path, reference = trained_run(prepared_cub, "synthetic-cub", "pcme", tmp_path)
    entry = REGISTRY["pcme"]
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.endswith("_ids") and k != "caption_image_index"}
    ours = evaluate_external(prepared_cub, save(tensors, tmp_path / "mine.npz"), "synthetic-cub", entry.scorings, "mine", 0,
                             entry.statistics)  # fmt: skip
    assert_same_tables(ours, reference, method="mine")
    assert set(ours.metrics["protocol"]) == {"CUB", "full"}


@pytest.mark.parametrize("method", ["vse0", "pcme"])
def test_a_score_matrix_gives_the_metrics_of_its_embeddings(method, prepared, tmp_path):
    path, reference = trained_run(prepared, "synthetic-coco", method, tmp_path)
    entry = REGISTRY[method]
    matrix = torch.from_numpy(score_matrix(load_embeddings(path), entry.primary_scoring))
    run = load_file(str(path))
    tensors = {"image_ids": run["image_ids"], "caption_ids": run["caption_ids"]}
    tensors |= {k: run[k] for k in ("image_log_sigma", "caption_log_sigma") if k in run}  # σ: the analysis runs too
    rng = np.random.default_rng(1)
    rows, columns = (torch.from_numpy(rng.permutation(len(run[k]))) for k in ("image_ids", "caption_ids"))
    tensors = {k: v[columns] if k.startswith("caption") else v[rows] for k, v in tensors.items()}
    tensors["scores"] = matrix[rows][:, columns]
    ours = evaluate_external(prepared, save(tensors, tmp_path / "scores.safetensors"), "synthetic-coco", ["precomputed"], "mine",
                             statistics=entry.statistics or None, device="cpu")  # fmt: skip
    own = {name: getattr(reference, name) for name in TABLES}
    for name in ("metrics", "per_query"):
        own[name] = own[name][own[name]["scoring"] == entry.primary_scoring]
    assert_same_tables(ours, type(reference)(**own), method="mine", scoring="precomputed")
    assert ours.uncertainty.empty != entry.probabilistic


def good_file(prepared) -> dict:
    """A valid external file of cosine embeddings, in the split's order."""
    split = split_of(prepared)
    generator = torch.Generator().manual_seed(2)
    return {
        "image_ids": torch.as_tensor(split.image_ids),
        "caption_ids": torch.as_tensor(split.caption_ids),
        "image_embeddings": torch.randn(split.n_images, DIM, generator=generator),
        "caption_embeddings": torch.randn(split.n_captions, DIM, generator=generator),
    }


def damaged(prepared, how: str) -> dict:
    tensors = good_file(prepared)
    ids, split = tensors["caption_ids"], split_of(prepared)
    if how == "missing":
        tensors = {k: v[:-1] if k.startswith("caption") else v for k, v in tensors.items()}
    elif how == "extra":
        ids[4] = 999999
    elif how == "duplicate":
        ids[7] = ids[2]
    elif how == "another split":
        dev = np.asarray(PreparedDataset(prepared).split("dev").images["image_id"], dtype=np.int64)
        tensors["image_ids"][:2] = torch.from_numpy(dev[:2])
    elif how == "rows":
        tensors["caption_embeddings"] = tensors["caption_embeddings"][:-3]
    elif how == "dimensions":
        tensors["image_embeddings"] = tensors["image_embeddings"][:, :5]
    elif how == "two per item":
        tensors |= {k: torch.stack([v, v], dim=1) for k, v in tensors.items() if k.endswith("embeddings")}
    elif how == "nan":
        tensors["caption_embeddings"][[3, 9], 0] = float("nan")
    elif how == "absent":
        del tensors["caption_embeddings"]
    elif how in ("orientation", "inf"):
        scores = torch.randn(split.n_images, split.n_captions)
        scores[1, 6] = float("inf")
        tensors = {"image_ids": tensors["image_ids"], "caption_ids": ids, "scores": scores.T if how == "orientation" else scores}
    return tensors


def expected_error(prepared, how: str) -> str:
    split = split_of(prepared)
    dev = np.asarray(PreparedDataset(prepared).split("dev").images["image_id"])
    return {
        "missing": rf"caption_ids: lacks 1 of the test split's {split.n_captions} captions: {split.caption_ids[-1]};",
        "extra": r"caption_ids: ids that are not captions of the test split of .*: 999999;",
        "duplicate": rf"caption_ids: ids listed more than once: {split.caption_ids[2]};",
        "another split": rf"image_ids: ids that are not images of the test split of .*: {dev[0]}, {dev[1]} \(2 in its 'dev' split\)",
        "rows": r"caption_embeddings: is torch.float32 of shape \(47, 16\); expected .* one row per id \(50 rows",
        "dimensions": r"image_embeddings, caption_embeddings: shapes \(10, 1, 5\), \(50, 1, 16\): need one shape but for the rows",
        "two per item": r"scoring 'cosine': cannot read image_embeddings \(10, 2, 16\), caption_embeddings \(50, 2, 16\) \(needs one",
        "nan": rf"caption_embeddings: NaN or infinite values in 2 row\(s\), of ids {split.caption_ids[3]}, {split.caption_ids[9]}$",
        "absent": r"caption_embeddings: absent: the scorings \['cosine'\] .* the file holds caption_ids, image_embeddings, image_ids",
        "orientation": r"scores: is captions x images \(50, 10\); it must be images x captions \(10, 50\): transpose it",
        "inf": rf"scores: NaN or infinite at 1 \(image id, caption id\) pair\(s\): \({split.image_ids[1]}, {split.caption_ids[6]}\)",
    }[how]


@pytest.mark.parametrize(
    "how",
    [
        "missing",
        "extra",
        "duplicate",
        "another split",
        "rows",
        "dimensions",
        "two per item",
        "nan",
        "absent",
        "orientation",
        "inf",
    ],
)
@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_a_bad_file_is_named_with_its_tensor_and_ids_and_nothing_is_written(how, suffix, prepared, tmp_path):
    path = save(damaged(prepared, how), tmp_path / f"bad{suffix}")
    scoring = "precomputed" if how in ("orientation", "inf") else "cosine"
    out = tmp_path / "out"
    argv = ["--dataset", "synthetic-coco", "--prepared", str(prepared), "--embeddings", str(path), "--scoring", scoring]
    with pytest.raises(SystemExit) as stopped:
        external.main([*argv, "--out", str(out), "--device", "cpu"])
    message = str(stopped.value.code)
    assert message.startswith(f"pcmebench-evaluate: {path}: "), message
    assert re.search(expected_error(prepared, how), message), message
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("mine.csv", b"1,2\n", r"mine.csv: file: is neither .safetensors nor .npz"),
        ("mine.safetensors", b"not a tensor file", r"mine.safetensors: file: not a readable safetensors file"),
        ("mine.npz", b"not a zip", r"mine.npz: file: not a readable .npz file"),
        ("absent.npz", None, r"absent.npz: file: not found"),
    ],
)
def test_a_file_that_is_not_safetensors_or_npz_is_refused(name, content, error, prepared, tmp_path):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=error):
        evaluate_external(prepared, path, "synthetic-coco", ["cosine"], device="cpu")


def test_text_arrays_a_label_of_a_method_and_statistics_without_sigma_are_refused(prepared, tmp_path):
    tensors = good_file(prepared)
    path = save(tensors, tmp_path / "mine.npz")
    np.savez(tmp_path / "text.npz", image_ids=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"text.npz: image_ids: holds <U1 values"):
        evaluate_external(prepared, tmp_path / "text.npz", "synthetic-coco", ["cosine"], device="cpu")
    with pytest.raises(ValueError, match="name 'pcme' is the name of a method of this suite"):
        evaluate_external(prepared, path, "synthetic-coco", ["cosine"], name="pcme", device="cpu")
    with pytest.raises(ValueError, match=r"image_log_sigma, caption_log_sigma: absent: the statistics \['sum_sigma_sq'\]"):
        evaluate_external(prepared, path, "synthetic-coco", ["cosine"], statistics=["sum_sigma_sq"], device="cpu")


def test_the_console_command_writes_the_five_tables(prepared, tmp_path):
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pcmebench-evaluate"] == "pcmebench.external:main"
    path = save(good_file(prepared), tmp_path / "clip.safetensors")
    out = tmp_path / "results" / "clip"
    external.main(["--dataset", "synthetic-coco", "--prepared", str(prepared), "--embeddings", str(path), "--scoring", "cosine",
                   "--out", str(out), "--device", "cpu", "--threads", "1"])  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted([*RUN_TABLES, "external.json"])
    record = json.loads((out / "external.json").read_text())
    assert list(record) == EXTERNAL_COLUMNS and record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["method"], record["label"], record["scorings"], record["statistics"]) == ("clip", "clip", "cosine", "")
    for name, columns in RUN_TABLES.items():
        table = pd.read_csv(out / name) if name.endswith(".csv") else pd.read_parquet(out / name)
        assert list(table.columns) == columns, name
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["method"]) == {"clip"} and set(metrics["seed"]) == {0} and set(metrics["scoring"]) == {"cosine"}
    assert len(metrics) == 21  # 1K: R@1/5/10, PMRP@0/1/2, PMRP per direction and RSUM; full: three per direction


def test_the_lists_are_the_splits_rows_in_order(prepared, tmp_path):
    lists.main(["--prepared", str(prepared), "--out", str(tmp_path / "lists")])
    images, captions = pd.read_csv(tmp_path / "lists" / "images.csv"), pd.read_csv(tmp_path / "lists" / "captions.csv")
    assert list(images.columns) == lists.IMAGE_LIST_COLUMNS and list(captions.columns) == lists.CAPTION_LIST_COLUMNS
    split, dataset = split_of(prepared), PreparedDataset(prepared)
    assert (images["row"] == np.arange(split.n_images)).all() and (captions["row"] == np.arange(split.n_captions)).all()
    assert (images["image_id"] == split.image_ids).all() and (captions["caption_id"] == split.caption_ids).all()
    assert (captions["image_id"] == split.image_ids[split.caption_image]).all()
    assert captions["text"].tolist() == list(dataset.split("test").captions["caption"])
    assert all((dataset.raw_root / file).is_file() for file in images["file"])
    # a file keyed by the lists' ids, in their order reversed, is the split's
    tensors = good_file(prepared)
    tensors = {k: v.flip(0) for k, v in tensors.items()}
    tensors["image_ids"] = torch.as_tensor(images["image_id"].to_numpy()[::-1].copy())
    tensors["caption_ids"] = torch.as_tensor(captions["caption_id"].to_numpy()[::-1].copy())
    read = external.read_external(save(tensors, tmp_path / "mine.npz"), dataset, split, ["cosine"])
    assert torch.equal(read.tensors["image_embeddings"][:, 0], good_file(prepared)["image_embeddings"])


@pytest.mark.parametrize("kind", ["coco", "cub"])
def test_the_lists_from_the_annotations_alone_are_the_prepared_splits(kind, tiny_coco_source, tiny_cub_source, tmp_path):
    source = {"coco": tiny_coco_source, "cub": tiny_cub_source}[kind]
    prepared = tmp_path / "prepared"
    prepare_dataset(kind, source, prepared, train_splits=["train"], word_dim=8)
    annotations = shutil.copytree(source, tmp_path / "annotations", ignore=shutil.ignore_patterns("*.jpg", "*.png"))
    assert not any(p.suffix in (".jpg", ".png") for p in annotations.rglob("*"))  # no image left to read
    lists.main(["--raw", str(annotations), "--format", kind, "--out", str(tmp_path / "raw")])
    lists.main(["--prepared", str(prepared), "--out", str(tmp_path / "from-prepared")])
    for name in lists.LIST_FILES.values():
        assert (tmp_path / "raw" / name).read_bytes() == (tmp_path / "from-prepared" / name).read_bytes(), name
    with pytest.raises(SystemExit):
        lists.main(["--raw", str(annotations), "--out", str(tmp_path / "nowhere")])  # neither format nor dataset
    with pytest.raises(ValueError, match="has no split 'val'"):
        lists.raw_lists(kind, annotations, "val")
