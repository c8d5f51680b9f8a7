"""The data path that feeds a GPU: the prepare stage's stored copies, and a training loader whose
batches do not depend on its worker processes."""

import io
import re

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torchvision.transforms.functional import pil_to_tensor, resize

from corpora.batches import CaptionNoise, CaptionPairs, SeededItems, image_transform
from corpora.coco import load_coco
from corpora.errors import DataError
from corpora.prepared import PreparedDataset, prepare_dataset
from pcmebench.train import loader_workers, train
from tests.test_bad_input import truncate_keeping_header
from tests.test_training import tiny_settings

STORED = {"folder": "stored", "shorter_side": 32, "jpeg_quality": 95}


@pytest.fixture(scope="module")
def prepared_stored(tiny_coco_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared-stored") / "synthetic-coco"
    prepare_dataset(
        "coco", tiny_coco_source, out, train_splits=["train", "restval"], word_dim=8, stored_shorter_side=32, workers=2
    )
    return out


def test_prepare_stores_every_image_resized_once_and_the_jobs_read_those(prepared_stored, prepared):
    stored, raw = PreparedDataset(prepared_stored), PreparedDataset(prepared)
    assert stored.meta["stored_images"] == STORED and raw.meta["stored_images"] is None
    assert stored.image_root == prepared_stored / "stored" and raw.image_root == raw.raw_root
    assert stored.content_sha256 != raw.content_sha256  # runs on one are not resumed on the other
    for name in stored.split_names:
        copies, originals = stored.split(name), raw.split(name)
        files = copies.images["image_file"]
        assert all((prepared_stored / "stored" / file).is_file() for file in files)
        for row in range(len(files)):
            image, original = copies.image(row), originals.image(row)
            assert original.size == (48, 48) and image.size == (32, 32)
            # torchvision's Resize(32) of the original, stored as a quality-95 JPEG: the same pixels
            resized = Image.fromarray(resize(pil_to_tensor(original), [32], antialias=True).permute(1, 2, 0).numpy())
            buffer = io.BytesIO()
            resized.save(buffer, "JPEG", quality=95)
            assert torch.equal(pil_to_tensor(image), pil_to_tensor(Image.open(buffer)))


def test_stored_copies_make_resize_and_centre_crop_a_lookup(prepared_stored, prepared):
    """cub's (and every evaluation's) Resize(256 / 224 x size) + CenterCrop(size) on copies stored at that side."""
    transform = image_transform("cub", 28, train=False)  # Resize(32) + CenterCrop(28)
    stored, raw = PreparedDataset(prepared_stored).split("test"), PreparedDataset(prepared).split("test")
    differences = [
        (transform(pil_to_tensor(stored.image(row))) - transform(pil_to_tensor(raw.image(row)))).abs().mean()
        for row in range(len(stored.images["image_file"]))
    ]
    assert max(differences) < 0.1  # normalised units (one grey level is about 0.017)


def test_stored_copies_are_never_enlarged(tiny_coco_source, tmp_path):
    prepare_dataset("coco", tiny_coco_source, tmp_path / "p", train_splits=["train"], word_dim=8, stored_shorter_side=64)
    assert PreparedDataset(tmp_path / "p").split("dev").image(0).size == (48, 48)


def test_a_truncated_jpeg_stops_storing_naming_it(tiny_coco, tmp_path):
    test = load_coco(tiny_coco, splits=["test"], check_images=False)["test"]
    path = tiny_coco / test.images["image_file"][2]
    truncate_keeping_header(path)
    message = rf"{re.escape(path.name)}: image id {test.images['image_id'][2]} of split 'test': .*truncated"
    with pytest.raises(DataError, match=message):
        prepare_dataset("coco", tiny_coco, tmp_path / "p", train_splits=["train"], stored_shorter_side=32, workers=2)
    assert not (tmp_path / "p").exists()


def test_loader_workers_auto_leaves_one_cpu_to_training():
    assert loader_workers("auto", 16) == 15
    assert loader_workers("auto", 1) == 1
    assert loader_workers(3, 16) == 3 and loader_workers(0, None) == 0
    assert loader_workers("auto", None) >= 1


def test_seeded_items_repeat_per_epoch_and_leave_the_callers_random_state(prepared):
    split = PreparedDataset(prepared).split("train")
    items = SeededItems(
        CaptionPairs([split], image_transform("coco", 32, train=True, random_erasing=0.5), CaptionNoise(0.3, "unk-then-delete")),
        seed=5,
    )
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first, again, other = items[(0, 3)], items[(0, 3)], items[(1, 3)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
    assert not torch.equal(first[0], other[0])  # another epoch, another crop


def loader_settings(**training):
    settings = tiny_settings("pcme", epochs=3)
    settings["dataset_settings"]["training"].update(augment="coco", input_size=32, **training)  # random crops and flips
    return settings


def weights(run_dir):
    return load_file(run_dir / "model.safetensors")


@pytest.mark.slow
def test_batches_do_not_depend_on_workers_persistence_or_a_resume(prepared, tmp_path):
    """On the CPU: the same weights from a single-process loader, from two persistent workers, and from
    two persistent workers stopped after the first epoch and resumed."""
    single = loader_settings(workers=0)
    workers = loader_settings(workers=2, persistent_workers=True, prefetch_factor=1)
    train(prepared, tmp_path / "single", single, threads=1)
    train(prepared, tmp_path / "workers", workers, threads=1)
    assert train(prepared, tmp_path / "resumed", workers, threads=1, stop_after_epoch=1) is None
    train(prepared, tmp_path / "resumed", workers, threads=1)
    reference = weights(tmp_path / "single")
    for run in ("workers", "resumed"):
        other = weights(tmp_path / run)
        assert all(torch.equal(reference[key], other[key]) for key in reference), run
