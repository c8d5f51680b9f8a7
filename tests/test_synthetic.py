"""The generators: deterministic bytes, the real formats, and complete ground truth."""

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import spearmanr

from corpora.coco import CocoLayout, load_coco
from corpora.cub import CubLayout, load_cub
from corpora.synthetic import write_synthetic_coco, write_synthetic_cub
from corpora.synthetic.birds import caption_is_true, truth_by_class
from corpora.text import tokenize
from tests.conftest import TINY_COCO, TINY_CUB

EMBEDDED = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_coco_generator_is_deterministic(tiny_coco_source, tmp_path):
    again = tmp_path / "again"
    write_synthetic_coco(again, **TINY_COCO)
    assert digest(again) == digest(tiny_coco_source)
    other = tmp_path / "other"
    write_synthetic_coco(other, **{**TINY_COCO, "seed": TINY_COCO["seed"] + 1})
    assert digest(other) != digest(tiny_coco_source)


def test_cub_generator_is_deterministic(tiny_cub_source, tmp_path):
    again = tmp_path / "again"
    write_synthetic_cub(again, **TINY_CUB)
    assert digest(again) == digest(tiny_cub_source)
    other = tmp_path / "other"
    write_synthetic_cub(other, **{**TINY_CUB, "seed": TINY_CUB["seed"] + 1})
    assert digest(other) != digest(tiny_cub_source)


def test_coco_files_follow_cocos_schema(tiny_coco_source):
    layout = CocoLayout(tiny_coco_source)
    captions = json.loads(layout.captions_json("val2014").read_text())
    instances = json.loads(layout.instances_json("val2014").read_text())
    assert set(captions) >= {"info", "licenses", "images", "annotations"}
    assert set(instances) >= {"images", "annotations", "categories"}
    assert set(captions["annotations"][0]) == {"id", "image_id", "caption"}
    assert {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"} <= set(instances["annotations"][0])
    assert len(instances["categories"]) == 40  # 8 colours x 5 shapes
    images = {im["id"]: im for im in captions["images"]}
    val = TINY_COCO["images"]
    assert len(images) == val["restval"] + val["dev"] + val["test"]
    for image in images.values():
        assert image["file_name"].startswith("COCO_val2014_")
        assert (layout.images_dir("val2014") / image["file_name"]).is_file()
    per_image = np.bincount([a["image_id"] for a in instances["annotations"]])
    assert set(per_image[list(images)]) <= {1, 2, 3}
    # split files: caption ids, five per image, grouped by image
    ids = np.load(layout.split_ids("test"))
    assert ids.dtype == np.int64 and len(ids) == 5 * val["test"]
    image_of = {a["id"]: a["image_id"] for a in captions["annotations"]}
    groups = np.array([image_of[i] for i in ids]).reshape(-1, 5)
    assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == val["test"]


def test_coco_ground_truth_is_complete_and_consistent(tiny_coco_source):
    layout = CocoLayout(tiny_coco_source)
    to_image = json.loads(layout.ground_truth("caption_to_image").read_text())
    to_caption = json.loads(layout.ground_truth("image_to_caption").read_text())
    test = load_coco(tiny_coco_source, splits=["test"])["test"]
    assert set(map(int, to_image)) == set(test.captions["caption_id"])
    assert set(map(int, to_caption)) == set(test.images["image_id"])
    pairs = {(int(c), i) for c, images in to_image.items() for i in images}
    assert pairs == {(c, int(i)) for i, captions in to_caption.items() for c in captions}
    for caption_id, image_id in zip(test.captions["caption_id"], test.captions["image_id"]):
        assert (caption_id, image_id) in pairs  # a caption is true of its own image
    assert max(len(v) for v in to_image.values()) > 1  # and of others: the point of the benchmark


def test_cub_split_is_class_disjoint_and_captions_describe_the_class(tiny_cub_source):
    splits = load_cub(tiny_cub_source)
    train, test = splits["train"], splits["test"]
    assert not set(train.images["class_id"]) & set(test.images["class_id"])
    assert test.images["class_id"].nunique() == TINY_CUB["test_classes"]
    assert (test.captions_per_image == TINY_CUB["captions_per_image"]).all()
    stamp = json.loads((tiny_cub_source / "GENERATOR.json").read_text())
    attributes = {int(name[:3]): set(b.values()) for name, b in stamp["class_attributes"].items()}
    colours = {"red", "yellow", "blue", "black", "white", "brown"}
    for caption, image_index in zip(test.captions["caption"], test.captions["image_index"]):
        named = (set(caption.split()) & colours) | ({"long", "short"} & set(caption.split()))
        assert named and named <= attributes[test.images["class_id"][image_index]], caption


def test_bird_caption_truth_on_hand_built_classes():
    red_long = ("red", "blue", "white", "long", "short")
    red_short = ("red", "yellow", "white", "short", "short")
    blue = ("blue", "blue", "black", "long", "long")
    specs = [
        frozenset({("crown", "red")}),
        frozenset({("crown", "red"), ("bill", "long")}),
        frozenset({("wing", "blue")}),
        frozenset({("belly", "white"), ("tail", "short")}),
        frozenset({("tail", "long"), ("crown", "red")}),
    ]
    expected = [[1, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 0], [0, 0, 0]]
    truth = truth_by_class(specs, [red_long, red_short, blue])
    np.testing.assert_array_equal(truth, np.array(expected, dtype=bool))
    assert [[caption_is_true(s, b) for b in (red_long, red_short, blue)] for s in specs] == [
        [bool(v) for v in row] for row in expected
    ]


def test_cub_ground_truth_matches_class_attributes(tiny_cub_source):
    layout = CubLayout(tiny_cub_source)
    to_image = json.loads(layout.ground_truth("caption_to_image").read_text())
    test = load_cub(tiny_cub_source, splits=["test"])["test"]
    same_class = {}
    for caption_id, image_id in zip(test.captions["caption_id"], test.captions["image_id"]):
        positives = set(to_image[str(caption_id)])
        own_class = set(
            test.images.loc[test.images["class_id"] == test.images.set_index("image_id").loc[image_id, "class_id"], "image_id"]
        )
        assert own_class <= positives  # true of every image of its class
        same_class[caption_id] = len(positives) > len(own_class)
    assert any(same_class.values())  # some captions also fit other classes


def test_a_captions_length_does_not_give_its_ambiguity_away(tmp_path):
    """Over the embedded default's test captions, |Spearman(word count, log true matches)| <= 0.2
    (it was -0.71 on synthetic-coco and -0.64 on synthetic-cub when specific meant long)."""
    rhos = {}
    for name, write, layout, load in (
        ("synthetic-coco", write_synthetic_coco, CocoLayout, lambda root: load_coco(root, splits=["test"])),
        ("synthetic-cub", write_synthetic_cub, CubLayout, lambda root: load_cub(root, splits=["test"])),
    ):
        root = tmp_path / name
        write(root, **EMBEDDED["dataset_settings"][name]["generator"])
        truth = json.loads(layout(root).ground_truth("caption_to_image").read_text())
        captions = load(root)["test"].captions
        words = [len(tokenize(text)) for text in captions["caption"]]
        matches = [len(truth[str(c)]) for c in captions["caption_id"]]
        rhos[name] = spearmanr(words, np.log(matches)).statistic
        assert min(matches) >= 1 and len(set(words)) >= 8
    print(f"Spearman(word count, log true matches): {rhos}")
    assert all(abs(rho) <= 0.2 for rho in rhos.values()), rhos
