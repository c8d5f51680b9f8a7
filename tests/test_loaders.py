"""The shared loaders, the tokenizer and vocabulary, and prepared (Arrow) splits."""

import json
import zipfile

import numpy as np
import pytest
import yaml

from corpora.coco import CocoLayout, load_coco
from corpora.cub import CubLayout, load_cub
from corpora.errors import DataError
from corpora.prepared import PreparedDataset, prepare_dataset
from corpora.synthetic import write_synthetic
from corpora.text import UNK, Vocabulary, tokenize, word_vectors
from tests.conftest import REPO


@pytest.fixture(scope="module")
def default_settings():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())["dataset_settings"]


@pytest.mark.parametrize("name", ["synthetic-coco", "synthetic-cub"])
def test_default_synthetic_datasets_load_with_expected_counts(name, default_settings, tmp_path):
    generator = default_settings[name]["generator"]
    write_synthetic(name, tmp_path / name, **generator)
    if name == "synthetic-coco":
        splits = load_coco(tmp_path / name)
        for split, count in generator["images"].items():
            assert len(splits[split].images) == count
            assert (splits[split].captions_per_image == generator["captions_per_image"]).all()
        assert len(splits["test"].images) == 1000  # one COCO "1K" fold
        assert splits["test"].labels.shape == (1000, 40) and splits["test"].labels.any(axis=1).all()
    else:
        splits = load_cub(tmp_path / name)
        test_images = generator["test_classes"] * generator["images_per_class"]
        train_images = (generator["classes"] - generator["test_classes"]) * generator["images_per_class"]
        assert (len(splits["train"].images), len(splits["test"].images)) == (train_images, test_images)
        assert len(splits["test"].captions) == test_images * generator["captions_per_image"]
        assert (splits["test"].labels.sum(axis=1) == 1).all()


def test_coco_split_keeps_the_split_file_order(tiny_coco_source):
    test = load_coco(tiny_coco_source, splits=["test"])["test"]
    ids = np.load(CocoLayout(tiny_coco_source).split_ids("test"))
    np.testing.assert_array_equal(test.captions["caption_id"], ids)
    assert list(test.images["image_id"]) == list(dict.fromkeys(test.captions["image_id"]))
    np.testing.assert_array_equal(test.images["image_id"].to_numpy()[test.captions["image_index"]], test.captions["image_id"])


def test_coco_labels_are_category_id_minus_one(tiny_coco_source):
    test = load_coco(tiny_coco_source, splits=["test"])["test"]
    instances = json.loads(CocoLayout(tiny_coco_source).instances_json("val2014").read_text())
    expected = {}
    for ann in instances["annotations"]:
        expected.setdefault(ann["image_id"], set()).add(ann["category_id"] - 1)
    for row, image_id in enumerate(test.images["image_id"]):
        assert set(np.flatnonzero(test.labels[row])) == expected[image_id]


def test_cub_training_leaves_out_the_held_out_images(tiny_cub):
    """PCME's seen_test_images.txt: listed images of training classes leave training; the test split
    keeps every image of its classes, listed or not (PCME applies the list to training only)."""
    layout = CubLayout(tiny_cub)
    before = load_cub(tiny_cub)
    assert layout.seen_test_images.read_text() == ""  # the synthetic twin holds nothing out
    train_image, test_image = before["train"].images["image_file"][1], before["test"].images["image_file"][0]
    layout.seen_test_images.write_text(f"{train_image.removeprefix('images/')}\n{test_image.removeprefix('images/')}\n")
    after = load_cub(tiny_cub)
    assert list(after["train"].images["image_file"]) == [f for f in before["train"].images["image_file"] if f != train_image]
    assert list(after["test"].images["image_file"]) == list(before["test"].images["image_file"])
    assert len(after["train"].captions) == len(before["train"].captions) - 10
    assert after["train"].captions["image_index"].max() == len(after["train"].images) - 1


def test_cub_caption_ids(tiny_cub_source):
    test = load_cub(tiny_cub_source)["test"]
    image_ids = test.captions["image_id"].to_numpy()
    np.testing.assert_array_equal(test.captions["caption_id"] // 100, image_ids)
    assert test.captions["caption_id"].is_unique


def test_tokenizer_lowercases_and_drops_punctuation():
    assert tokenize("A Small, RED circle -- left of 2 stars!") == ["a", "small", "red", "circle", "left", "of", "2", "stars"]
    assert tokenize("the bird's beak") == ["the", "bird's", "beak"]
    assert tokenize(" .,; ") == []


def test_vocabulary_order_counts_and_encoding():
    vocab = Vocabulary.build(["a red circle", "a blue circle", "a circle"], min_count=2)
    assert vocab.words == ["<pad>", "<unk>", "<start>", "<end>", "a", "circle"]
    assert vocab.decode(vocab.encode("A red circle")) == ["<start>", "a", UNK, "circle", "<end>"]


def test_vocabulary_comes_from_training_captions_only(tiny_coco, tmp_path):
    layout = CocoLayout(tiny_coco)
    captions = json.loads(layout.captions_json("val2014").read_text())
    test_ids = set(np.load(layout.split_ids("test")).tolist())
    dev_ids = set(np.load(layout.split_ids("dev")).tolist())
    for ann in captions["annotations"]:
        if ann["id"] in test_ids:
            ann["caption"] += " zebra"
        if ann["id"] in dev_ids:
            ann["caption"] += " giraffe"
    layout.captions_json("val2014").write_text(json.dumps(captions))
    prepare_dataset("coco", tiny_coco, tmp_path / "prepared", train_splits=["train", "restval"])
    prepared = PreparedDataset(tmp_path / "prepared")
    assert "zebra" not in prepared.vocab and "giraffe" not in prepared.vocab
    train_words = {w for s in ("train", "restval") for c in load_coco(tiny_coco)[s].captions["caption"] for w in tokenize(c)}
    assert set(prepared.vocab.words[4:]) == train_words
    test = prepared.split("test")
    assert all(tokens[-2] == prepared.vocab.index[UNK] for tokens in test.captions["tokens"])


def test_prepare_refuses_evaluation_splits_for_the_vocabulary(tiny_coco, tmp_path):
    with pytest.raises(ValueError, match="evaluation splits"):
        prepare_dataset("coco", tiny_coco, tmp_path / "prepared", train_splits=["train", "test"])


@pytest.mark.parametrize(
    "kind, fixture, train_splits", [("coco", "tiny_coco_source", ["train", "restval"]), ("cub", "tiny_cub_source", ["train"])]
)
def test_prepared_dataset_round_trip(kind, fixture, train_splits, request, tmp_path):
    raw = request.getfixturevalue(fixture)
    meta = prepare_dataset(kind, raw, tmp_path / "prepared", train_splits=train_splits, word_dim=8)
    prepared = PreparedDataset(tmp_path / "prepared")
    loaded = (load_coco if kind == "coco" else load_cub)(raw)
    assert prepared.split_names == list(loaded)
    for name, split in loaded.items():
        arrow = prepared.split(name)
        assert arrow.captions["caption_id"] == split.captions["caption_id"].tolist()
        assert arrow.captions["image_index"] == split.captions["image_index"].tolist()
        np.testing.assert_array_equal(arrow.label_matrix(), split.labels)
        image = arrow.image(len(arrow.images) - 1)
        assert image.mode == "RGB" and image.size == (48, 48)
    assert prepared.word_vectors().shape == (meta["vocab_size"], 8)
    with pytest.raises(KeyError, match="has no split"):
        prepared.split("nope")


def test_word_vectors_from_a_glove_file(tmp_path):
    vocab = Vocabulary.build(["red circle", "blue star"])
    glove = tmp_path / "glove.txt"
    glove.write_text("red 1 2 3\n. . . 4 5 6\nstar 7 8 9\nunseen 0 0 0\n")
    vectors, found = word_vectors(vocab, 3, seed=0, glove_path=glove)
    assert found == 2
    np.testing.assert_array_equal(vectors[vocab.index["red"]], [1, 2, 3])
    np.testing.assert_array_equal(vectors[vocab.index["star"]], [7, 8, 9])
    assert not vectors[0].any()  # <pad>
    random_only, _ = word_vectors(vocab, 3, seed=0)
    np.testing.assert_array_equal(vectors[vocab.index["blue"]], random_only[vocab.index["blue"]])


def test_words_without_a_glove_vector_start_as_the_originals_embedding_rows():
    """nn.Embedding's default N(0, 1) (naver-ai/pcme caption_encoder.py): GloVe-less words and <start>, <end>, <unk>."""
    vocab = Vocabulary.build([f"word{i} other{i}" for i in range(2000)])
    vectors, _ = word_vectors(vocab, 50, seed=0)
    rows = vectors[1:]  # all but <pad>
    assert abs(rows.mean()) < 0.01 and rows.std() == pytest.approx(1.0, abs=0.01)
    for token in ("<start>", "<end>", "<unk>"):
        assert np.linalg.norm(vectors[vocab.index[token]]) == pytest.approx(np.sqrt(50), rel=0.5)
    narrow, _ = word_vectors(vocab, 50, seed=0, std=0.1)
    np.testing.assert_allclose(narrow, 0.1 * vectors, rtol=1e-6)


def test_bad_glove_line_names_file_and_line(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("red 1 2 3\nstar 7 eight 9\n")
    with pytest.raises(DataError, match=r"glove.txt: line 2 \('star'\): not a number"):
        word_vectors(Vocabulary.build(["red star"]), 3, seed=0, glove_path=glove)
    glove.write_text("red 1 2\n")
    with pytest.raises(DataError, match="line 1: expected a word and 3 numbers"):
        word_vectors(Vocabulary.build(["red star"]), 3, seed=0, glove_path=glove)


def test_word_vectors_from_a_glove_zip_and_a_broken_one(tmp_path):
    vocab = Vocabulary.build(["red circle", "blue star"])
    text = "red 1 2 3\nat red 9 9 9\nstar 7 8 9\n"
    with zipfile.ZipFile(tmp_path / "glove.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("glove.txt", text)
    vectors, found = word_vectors(vocab, 3, seed=0, glove_path=tmp_path / "glove.zip")
    assert found == 2  # "at red" is one word of the file, not "red"
    np.testing.assert_array_equal(vectors[vocab.index["red"]], [1, 2, 3])
    cut = tmp_path / "cut.zip"
    cut.write_bytes((tmp_path / "glove.zip").read_bytes()[:-30])
    with pytest.raises(DataError, match=r"cut.zip: archive: not a readable zip archive \(cut short\?\)"):
        word_vectors(vocab, 3, seed=0, glove_path=cut)
