"""Bad input stops the run with an error naming the file and the item, never a silent skip."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpora.coco import CocoLayout, load_coco
from corpora.cub import CubLayout, load_cub
from corpora.errors import DataError
from corpora.prepared import PreparedDataset, prepare_dataset


def first_test_image(root):
    layout = CocoLayout(root)
    test = load_coco(root, splits=["test"], check_images=False)["test"]
    return test.images["image_id"][0], root / test.images["image_file"][0], layout


def test_missing_coco_image(tiny_coco):
    image_id, path, _ = first_test_image(tiny_coco)
    path.unlink()
    with pytest.raises(DataError, match=rf"{re.escape(path.name)}: image id {image_id} of split 'test': image file is missing"):
        load_coco(tiny_coco)


def test_corrupt_coco_image(tiny_coco):
    image_id, path, _ = first_test_image(tiny_coco)
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=rf"{re.escape(path.name)}: image id {image_id} .*cannot be decoded"):
        load_coco(tiny_coco)


def test_image_damaged_after_prepare_fails_when_read(tiny_coco, tmp_path):
    prepare_dataset("coco", tiny_coco, tmp_path / "prepared", train_splits=["train"])
    image_id, path, _ = first_test_image(tiny_coco)
    path.write_bytes(path.read_bytes()[:40])  # truncated
    split = PreparedDataset(tmp_path / "prepared").split("test")
    with pytest.raises(DataError, match=rf"{re.escape(path.name)}: image id {image_id} of split 'test': image cannot be decoded"):
        split.image(0)


def test_empty_coco_caption(tiny_coco):
    layout = CocoLayout(tiny_coco)
    captions = json.loads(layout.captions_json("val2014").read_text())
    victim = int(np.load(layout.split_ids("dev"))[2])
    for ann in captions["annotations"]:
        if ann["id"] == victim:
            ann["caption"] = " . "
    layout.captions_json("val2014").write_text(json.dumps(captions))
    with pytest.raises(DataError, match=rf"captions_val2014.json: caption id {victim} \(image \d+\): caption is empty"):
        load_coco(tiny_coco)


def test_caption_id_absent_from_json(tiny_coco):
    layout = CocoLayout(tiny_coco)
    ids = np.load(layout.split_ids("test"))
    np.save(layout.split_ids("test"), np.append(ids, 987654321))
    with pytest.raises(DataError, match=r"coco_test_ids.npy: caption id 987654321: absent from .*captions_val2014.json"):
        load_coco(tiny_coco)


def test_caption_of_unknown_image(tiny_coco):
    layout = CocoLayout(tiny_coco)
    captions = json.loads(layout.captions_json("train2014").read_text())
    captions["annotations"][0]["image_id"] = 424242424
    layout.captions_json("train2014").write_text(json.dumps(captions))
    with pytest.raises(DataError, match=r"captions_train2014.json: caption id \d+: its image id 424242424 is not in 'images'"):
        load_coco(tiny_coco)


def test_instance_with_unknown_category(tiny_coco):
    layout = CocoLayout(tiny_coco)
    instances = json.loads(layout.instances_json("val2014").read_text())
    instances["annotations"][1]["category_id"] = 99
    layout.instances_json("val2014").write_text(json.dumps(instances))
    with pytest.raises(DataError, match=r"instances_val2014.json: annotation id \d+: category_id 99 is not among the categories"):
        load_coco(tiny_coco)


def test_missing_and_malformed_annotation_files(tiny_coco):
    layout = CocoLayout(tiny_coco)
    layout.instances_json("train2014").write_text("{not json")
    with pytest.raises(DataError, match=r"instances_train2014.json: file: not valid JSON"):
        load_coco(tiny_coco)
    layout.instances_json("train2014").unlink()
    with pytest.raises(DataError, match=r"instances_train2014.json: file: not found"):
        load_coco(tiny_coco)


def test_cub_class_in_split_file_without_images(tiny_cub):
    layout = CubLayout(tiny_cub)
    with layout.classes_txt.open("a") as f:
        f.write("7 007.Imaginary_Bird\n")
    with layout.split_classes("test").open("a") as f:
        f.write("007.Imaginary_Bird\n")
    with pytest.raises(DataError, match=r"testclasses.txt: class 007.Imaginary_Bird: has no images in .*images.txt"):
        load_cub(tiny_cub)


def test_cub_class_in_split_file_unknown(tiny_cub):
    layout = CubLayout(tiny_cub)
    with layout.split_classes("train").open("a") as f:
        f.write("201.Nobody\n")
    with pytest.raises(DataError, match=r"trainvalclasses.txt: class 201.Nobody: not in .*classes.txt"):
        load_cub(tiny_cub)


def test_cub_classes_shared_between_splits(tiny_cub):
    layout = CubLayout(tiny_cub)
    shared = layout.split_classes("train").read_text().splitlines()[0]
    with layout.split_classes("test").open("a") as f:
        f.write(shared + "\n")
    with pytest.raises(DataError, match=rf"testclasses.txt: class {re.escape(shared)}: also in the training classes"):
        load_cub(tiny_cub)


def first_cub_image(root):
    line = CubLayout(root).images_txt.read_text().splitlines()[0]
    image_id, relative = line.split(" ")
    return image_id, relative


def test_cub_missing_and_corrupt_image(tiny_cub):
    image_id, relative = first_cub_image(tiny_cub)
    path = CubLayout(tiny_cub).image(relative)
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match=rf"{re.escape(path.name)}: image id {image_id} .*cannot be decoded"):
        load_cub(tiny_cub)
    path.unlink()
    with pytest.raises(DataError, match=rf"{re.escape(path.name)}: image id {image_id} .*image file is missing"):
        load_cub(tiny_cub)


def test_cub_missing_caption_file_and_empty_caption(tiny_cub):
    image_id, relative = first_cub_image(tiny_cub)
    text = CubLayout(tiny_cub).caption_file(relative)
    lines = text.read_text().splitlines()
    text.write_text("\n".join(lines[:3] + ["   "] + lines[4:]) + "\n")
    with pytest.raises(DataError, match=rf"{re.escape(text.name)}: image id {image_id} .*, line 4: caption is empty"):
        load_cub(tiny_cub)
    text.write_text("\n".join(lines[:9]) + "\n")
    with pytest.raises(DataError, match=rf"{re.escape(text.name)}: image id {image_id} .*has 9 captions, expected 10"):
        load_cub(tiny_cub)
    text.unlink()
    with pytest.raises(DataError, match=rf"{re.escape(text.name)}: image id {image_id} .*caption file is missing"):
        load_cub(tiny_cub)


def test_cub_malformed_index_line(tiny_cub):
    layout = CubLayout(tiny_cub)
    with layout.image_class_labels_txt.open("a") as f:
        f.write("oops\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt: line \d+: expected '<image id> <value>'"):
        load_cub(tiny_cub)


# --- bad files found by the stage that reads them, each named ------------------------------------


def truncate_keeping_header(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_truncated_jpeg_stops_prepare_naming_it(tiny_coco, tmp_path, workers):
    test = load_coco(tiny_coco, splits=["test"], check_images=False)["test"]
    path = tiny_coco / test.images["image_file"][3]
    truncate_keeping_header(path)  # its header still reads: only a full decode finds it
    with pytest.raises(
        DataError, match=rf"{re.escape(path.name)}: image id {test.images['image_id'][3]} of split 'test': .*truncated"
    ):
        prepare_dataset("coco", tiny_coco, tmp_path / "prepared", train_splits=["train"], workers=workers)
    assert not (tmp_path / "prepared").exists()


def test_a_truncated_cub_image_stops_prepare_naming_it(tiny_cub, tmp_path):
    image_id, relative = first_cub_image(tiny_cub)
    path = CubLayout(tiny_cub).image(relative)
    truncate_keeping_header(path)
    with pytest.raises(DataError, match=rf"{re.escape(path.name)}: image id {image_id} of split '\w+': .*truncated"):
        prepare_dataset("cub", tiny_cub, tmp_path / "prepared", train_splits=["train"])


@pytest.mark.parametrize(
    "source, section, key, value, message",
    [
        ("captions", "images", "id", "abc", r"captions_val2014.json: entry #0 .*'id' is not an integer: 'abc'"),
        ("captions", "annotations", "image_id", None, r"captions_val2014.json: entry #0 .*'image_id' is not an integer: None"),
        ("captions", "images", "file_name", 7, r"captions_val2014.json: entry #0 .*'file_name' is not text: 7"),
        ("instances", "annotations", "category_id", [1], r"instances_val2014.json: entry #0 .*'category_id' is not an integer"),
        ("instances", "categories", "id", 1.5, r"instances_val2014.json: entry #0 .*'id' is not an integer: 1.5"),
    ],
)
def test_a_coco_json_field_of_the_wrong_type_is_named(tiny_coco, source, section, key, value, message):
    layout = CocoLayout(tiny_coco)
    path = layout.captions_json("val2014") if source == "captions" else layout.instances_json("val2014")
    content = json.loads(path.read_text())
    content[section][0][key] = value
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=message):
        load_coco(tiny_coco, check_images=False)


def test_a_coco_json_section_that_is_not_a_list_is_named(tiny_coco):
    path = CocoLayout(tiny_coco).captions_json("train2014")
    content = json.loads(path.read_text())
    content["annotations"] = {"not": "a list"}
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=r"captions_train2014.json: annotations: expected a list, found dict"):
        load_coco(tiny_coco, check_images=False)


def test_a_damaged_split_file_or_prepared_file_is_named(tiny_coco, tmp_path):
    ids = CocoLayout(tiny_coco).split_ids("dev")
    ids.write_bytes(ids.read_bytes()[:100])
    with pytest.raises(DataError, match=r"coco_dev_ids.npy: file: not a readable numeric .npy array"):
        load_coco(tiny_coco, check_images=False)


def test_damaged_prepared_files_are_named(prepared, tmp_path):
    import shutil

    copy = Path(shutil.copytree(prepared, tmp_path / "prepared"))
    (copy / "word_vectors.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"word_vectors.npy: file: not a readable numeric .npy array"):
        PreparedDataset(copy).word_vectors()
    (copy / "vocab.json").write_text('{"words": ')
    with pytest.raises(DataError, match=r"vocab.json: file: not valid JSON"):
        PreparedDataset(copy)


# --- damaged tensor files and checkpoints, a full disk -------------------------------------------


def damage(path, how: str):
    if how == "header too large":
        path.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.write_bytes(b"PK\x03\x04 this is not what it should be")


@pytest.fixture(scope="module")
def trained_run(prepared, tmp_path_factory):
    from pcmebench.embed import export
    from pcmebench.train import train
    from tests.test_training import tiny_settings

    run = tmp_path_factory.mktemp("run")
    train(prepared, run, tiny_settings("pcme", epochs=1), threads=1)
    export(prepared, run / "model.safetensors", run / "embeddings.safetensors")
    return run


@pytest.mark.parametrize("how", ["header too large", "truncated", "garbage"])
def test_damaged_safetensors_files_are_named(prepared, trained_run, tmp_path, how):
    from models.encoders import SmallCNN
    from pcmebench.embed import export
    from pcmebench.runs import load_backbone
    from pcmebench.scoring import load_embeddings

    weights, embeddings, backbone = (
        tmp_path / name for name in ("model.safetensors", "embeddings.safetensors", "backbone.safetensors")
    )
    shutil.copy(trained_run / "model.safetensors", weights)
    shutil.copy(trained_run / "embeddings.safetensors", embeddings)
    shutil.copy(trained_run / "model.safetensors", backbone)
    for path in (weights, embeddings, backbone):
        damage(path, how)
    with pytest.raises(
        DataError, match=rf"{re.escape(str(weights))}: a run's weights: not a readable safetensors file .*rerun the train rule"
    ):
        export(prepared, weights, tmp_path / "out.safetensors")
    with pytest.raises(
        DataError, match=rf"{re.escape(str(embeddings))}: embeddings: not a readable safetensors file .*rerun the embed rule"
    ):
        load_embeddings(embeddings)
    with pytest.raises(
        DataError,
        match=rf"{re.escape(str(backbone))}: pretrained backbone: not a readable safetensors file .*rerun the pretrain rule",
    ):
        load_backbone(SmallCNN(), backbone)


@pytest.mark.parametrize("content", [b"garbage that is no checkpoint", b""])
@pytest.mark.slow
def test_a_garbage_checkpoint_is_named_with_the_fix(prepared, tmp_path, content):
    from pcmebench.train import CHECKPOINT, train
    from tests.test_training import tiny_settings

    (tmp_path / CHECKPOINT).write_bytes(content)
    with pytest.raises(
        DataError,
        match=rf"{re.escape(str(tmp_path / CHECKPOINT))}: checkpoint: cannot be read .*delete it to start this run afresh",
    ):
        train(prepared, tmp_path, tiny_settings("vse0", epochs=1), threads=1)


def train_in_subprocess(prepared, run_dir, preamble: str = "") -> subprocess.CompletedProcess:
    from tests.test_training import tiny_settings

    settings = tiny_settings("vse0", epochs=1)
    code = f"{preamble}\nfrom pcmebench.train import train\ntrain({str(prepared)!r}, {str(run_dir)!r}, {settings!r}, threads=1)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_a_file_size_limit_during_a_checkpoint_save_names_the_file(prepared, tmp_path):
    """torch's own message was `RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos`."""
    preamble = "import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nresource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))"
    result = train_in_subprocess(prepared, tmp_path, preamble)
    assert result.returncode != 0
    assert f"WriteError: could not write {tmp_path / 'checkpoint.pt'}: " in result.stderr, result.stderr[-2000:]
    assert "MiB free of" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no partial file left, not even the temporary one


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a small file system needs root")
@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_save_names_the_file_and_the_free_space(prepared, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], check=False).returncode != 0:
        pytest.skip("this machine does not let the test mount a tmpfs")
    try:
        result = train_in_subprocess(prepared, disk / "run")
        assert result.returncode != 0
        assert f"WriteError: could not write {disk / 'run' / 'checkpoint.pt'}: " in result.stderr, result.stderr[-2000:]
        assert "MiB free of 0.0 GiB" in result.stderr
        assert not (disk / "run" / "checkpoint.pt").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_cub_text_that_is_not_utf8_names_file_and_line(tiny_cub):
    image_id, relative = first_cub_image(tiny_cub)
    text = CubLayout(tiny_cub).caption_file(relative)
    lines = text.read_bytes().split(b"\n")
    lines[2] = b"this bird has a r\xe9d crown"  # Latin-1, not UTF-8
    text.write_bytes(b"\n".join(lines))
    with pytest.raises(
        DataError, match=rf"{re.escape(text.name)}: image id {image_id} .*, line 3: not UTF-8 text \(byte 0xe9 at column 18\)"
    ):
        load_cub(tiny_cub)
    classes = CubLayout(tiny_cub).classes_txt
    classes.write_bytes(classes.read_bytes() + b"99 099.Caf\xe9_Bird\n")
    with pytest.raises(DataError, match=r"classes.txt: line \d+: not UTF-8 text \(byte 0xe9"):
        load_cub(tiny_cub)


def test_cub_held_out_image_unknown(tiny_cub):
    layout = CubLayout(tiny_cub)
    layout.seen_test_images.write_text("001.Nobody/Nobody_0001.jpg\n")
    with pytest.raises(
        DataError, match=r"seen_test_images.txt: line 1: '001.Nobody/Nobody_0001.jpg' is not an image of .*images.txt"
    ):
        load_cub(tiny_cub)
    layout.seen_test_images.unlink()
    with pytest.raises(DataError, match=r"seen_test_images.txt: file: not found"):
        load_cub(tiny_cub)


def test_imagenet_weights_are_read_as_tensors_only(monkeypatch):
    """torchvision's own loader unpickles the weight file in full; the encoder asks for tensors only."""
    import torchvision
    from torchvision.models import _api

    from models.encoders import ResNetBackbone

    calls = []

    def fake_load(url, **kwargs):
        calls.append((url, kwargs))
        return torchvision.models.resnet50().state_dict()

    monkeypatch.setattr(_api, "load_state_dict_from_url", fake_load)
    ResNetBackbone("resnet50", pretrained=True)
    assert len(calls) == 1
    url, kwargs = calls[0]
    assert url.endswith("resnet50-0676ba61.pth") and kwargs["weights_only"] is True and kwargs["check_hash"] is True
    ResNetBackbone("resnet50", pretrained=False)
    assert len(calls) == 1
