"""Bad input stops the run with an error naming the file and the item, never a silent skip."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from corpora.coco import CocoLayout, load_coco
from corpora.cub import CubLayout, load_cub
from corpora.errors import DataError
from corpora.prepared import PreparedDataset, prepare_dataset
from tests.conftest import REPO


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


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ('datasets=["synthetic-coco","imagenet"]', "datasets", "'synthetic-coco', 'synthetic-cub', 'coco', 'cub'"),
        ('methods=["pcme","clip"]', "methods", "'vse0', 'vsepp', 'pvse-k1', 'pvse-k2', 'pcme'"),
        ("device=tpu", "device", "'auto', 'cpu', 'cuda'"),
    ],
)
def test_config_outside_schema_names_key_and_allowed_values(override, key, allowed):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "all", "--nolock", "--config", override],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error validating config file" in output
    assert f"is not one of [{allowed}]" in output
    assert f"On instance['{key}']" in output


def test_cub_text_that_is_not_utf8_names_file_and_line(tiny_cub):
    image_id, relative = first_cub_image(tiny_cub)
    text = CubLayout(tiny_cub).caption_file(relative)
    lines = text.read_bytes().split(b"\n")
    lines[2] = b"this bird has a r\xe9d crown"  # Latin-1, not UTF-8
    text.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=rf"{re.escape(text.name)}: image id {image_id} .*, line 3: not UTF-8 text \(byte 0xe9 at column 18\)"):
        load_cub(tiny_cub)
    classes = CubLayout(tiny_cub).classes_txt
    classes.write_bytes(classes.read_bytes() + b"99 099.Caf\xe9_Bird\n")
    with pytest.raises(DataError, match=r"classes.txt: line \d+: not UTF-8 text \(byte 0xe9"):
        load_cub(tiny_cub)


def test_cub_held_out_image_unknown(tiny_cub):
    layout = CubLayout(tiny_cub)
    layout.seen_test_images.write_text("001.Nobody/Nobody_0001.jpg\n")
    with pytest.raises(DataError, match=r"seen_test_images.txt: line 1: '001.Nobody/Nobody_0001.jpg' is not an image of .*images.txt"):
        load_cub(tiny_cub)
    layout.seen_test_images.unlink()
    with pytest.raises(DataError, match=r"seen_test_images.txt: file: not found"):
        load_cub(tiny_cub)
