"""The pretrain stage: labelled draws of each synthetic world, the backbone file, and runs that start from it."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from corpora.synthetic.birds import PARTS
from corpora.synthetic.scenes import COLOURS, GRID, SHAPES, SIZES
from models.encoders import SmallCNN
from pcmebench.pretrain import bird_labels, draw_labelled, pretrain, scene_labels
from pcmebench.runs import load_backbone
from pcmebench.train import CHECKPOINT, train
from tests.test_training import tiny_settings

pytestmark = pytest.mark.slow  # trains the backbone


def tiny_recipe(**changes) -> dict:
    recipe = {"seed": 7, "images": 96, "epochs": 3, "lr": 3e-3, "batch_size": 32}
    return {"pretraining": recipe | changes, "image_size": 48, "input_size": 32, "flip": False}


def test_scene_labels_name_what_each_drawn_scene_holds():
    images, labels, names = draw_labelled("synthetic-coco", 40, 48, seed=3)
    assert names == scene_labels()
    assert len(names) == len(COLOURS) * len(SHAPES) + len(SIZES) * len(SHAPES) + GRID * GRID
    assert len(images) == 40 and images[0].size == (48, 48) and labels.shape == (40, len(names))
    categories = labels[:, : len(COLOURS) * len(SHAPES)].sum(axis=1)
    cells = labels[:, -GRID * GRID :].sum(axis=1)
    assert ((cells >= 1) & (cells <= 3)).all()  # one to three objects, each in its own cell
    assert (categories >= 1).all() and (categories <= cells).all()  # two objects may share a category


def test_bird_labels_are_one_value_per_part():
    _, labels, names = draw_labelled("synthetic-cub", 30, 48, seed=3)
    assert names == bird_labels()
    start = 0
    for values in PARTS.values():
        assert (labels[:, start : start + len(values)].sum(axis=1) == 1).all()
        start += len(values)


def test_draws_depend_on_the_seed_only():
    a = draw_labelled("synthetic-cub", 5, 48, seed=1)
    b = draw_labelled("synthetic-cub", 5, 48, seed=1)
    c = draw_labelled("synthetic-cub", 5, 48, seed=2)
    assert np.array_equal(np.asarray(a[0][0]), np.asarray(b[0][0]))
    assert not np.array_equal(np.asarray(a[0][0]), np.asarray(c[0][0]))


def test_only_the_synthetic_worlds_can_be_pretrained_on():
    with pytest.raises(ValueError, match="synthetic-coco and synthetic-cub, not 'coco'"):
        draw_labelled("coco", 4, 48, seed=0)


def test_fewer_images_than_a_batch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"images \(8\) must be at least batch_size \(32\)"):
        pretrain("synthetic-coco", tiny_recipe(images=8), tmp_path / "backbone.safetensors", threads=1)


@pytest.mark.parametrize("dataset", ["synthetic-coco", "synthetic-cub"])
def test_pretraining_learns_and_writes_a_loadable_backbone(dataset, tmp_path):
    output = tmp_path / "backbone.safetensors"
    record = pretrain(dataset, tiny_recipe(epochs=4, lr=1e-2) | {"flip": dataset == "synthetic-cub"}, output, threads=1)
    losses = [row["loss"] for row in record["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert json.loads(output.with_suffix(".json").read_text())["labels"] == record["labels"]
    encoder = SmallCNN()
    load_backbone(encoder, output)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, load_file(output)[key]), key


def test_a_backbone_of_another_shape_is_refused_with_its_path(tmp_path):
    output = tmp_path / "backbone.safetensors"
    pretrain("synthetic-coco", tiny_recipe(epochs=1), output, threads=1)
    with pytest.raises(ValueError, match=f"{output}: pretrained backbone: does not fit this image encoder"):
        load_backbone(SmallCNN(width=8), output)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backbones")
    for seed in (1, 2):
        pretrain("synthetic-coco", tiny_recipe(seed=seed, epochs=1), folder / f"seed{seed}.safetensors", threads=1)
    return folder


def test_the_frozen_phase_keeps_the_pretrained_backbone(prepared, backbones, tmp_path):
    settings = tiny_settings("vse0", epochs=1)
    settings["dataset_settings"]["training"]["frozen_epochs"] = 1
    train(prepared, tmp_path, settings, threads=1, backbone=backbones / "seed1.safetensors", stop_after_epoch=1)
    after_frozen = torch.load(tmp_path / CHECKPOINT, weights_only=True)["model"]
    pretrained = load_file(backbones / "seed1.safetensors")
    weights = [k for k in pretrained if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert weights
    for key in weights:
        assert torch.equal(after_frozen[f"image_encoder.{key}"], pretrained[key]), key
    final = load_file(tmp_path / "model.safetensors") if (tmp_path / "model.safetensors").exists() else None
    assert final is None  # stopped after the frozen epoch
    train(prepared, tmp_path, settings, threads=1, backbone=backbones / "seed1.safetensors")
    tuned = load_file(tmp_path / "model.safetensors")
    assert any(not torch.equal(tuned[f"image_encoder.{key}"], pretrained[key]) for key in weights)


def test_a_checkpoint_from_another_backbone_is_not_resumed(prepared, backbones, tmp_path, caplog):
    settings = tiny_settings("vse0", epochs=2)
    train(prepared, tmp_path, settings, threads=1, backbone=backbones / "seed1.safetensors", stop_after_epoch=1)
    with caplog.at_level("INFO", logger="pcmebench.train"):
        record = train(prepared, tmp_path, settings, threads=1, backbone=backbones / "seed2.safetensors")
    assert "starting afresh" in caplog.text and "other settings or backbone" in caplog.text
    assert record["epochs"] == 2 and len((tmp_path / "train_log.csv").read_text().splitlines()) == 3
