"""Gradients, learning, resuming, the non-finite guard and the embedding export, on tiny data."""

import copy
import json
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file

import pcmebench.train as train_module
from corpora.batches import CaptionNoise, CaptionPairs, collate_pairs, image_transform, unk_then_delete
from corpora.prepared import PreparedDataset
from corpora.text import SPECIAL_TOKENS, UNK
from models import CrossModalModel
from models.registry import registered
from pcmebench.embed import export
from pcmebench.runs import merge_config, method_setting, model_for
from pcmebench.train import CHECKPOINT, NonFiniteLossError, make_loader, phase_of, train
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # trains

METHODS = list(registered())  # every method file of models/
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def tiny_settings(method: str, dataset: str = "synthetic-coco", epochs: int = 2) -> dict:
    data = copy.deepcopy(CONFIG["dataset_settings"][dataset])
    data["embed_dim"] = 16
    data["training"].update(input_size=32, frozen_epochs=0, finetune_epochs=epochs, batch_size=8)
    return {
        "dataset": dataset,
        "method": method,
        "seed": 0,
        "device": "cpu",
        "dataset_settings": data,
        # the dataset's batches of 8, whatever the method's own batch_size (tested below)
        "method_settings": {**CONFIG["method_settings"][method], "batch_size": None},
    }


def one_batch(prepared_dir, size=8):
    split = PreparedDataset(prepared_dir).split("train")
    pairs = CaptionPairs([split], image_transform("none", 32, train=True))
    return collate_pairs([pairs[i] for i in range(0, 5 * size, 5)])  # one caption per image: no duplicates


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(method, prepared):
    torch.manual_seed(0)
    settings = tiny_settings(method)
    settings["method_settings"] = {**settings["method_settings"], "word_vectors_training": "finetune"}  # PCME's GloVe
    model = model_for(settings, PreparedDataset(prepared))
    model.set_phase(frozen=True)  # backbone and word vectors frozen
    loss, _ = model(*one_batch(prepared))
    loss.backward()
    frozen = {id(p) for p in model.image_encoder.parameters()} | {id(model.text_encoder.words.weight)}
    for name, parameter in model.named_parameters():
        if id(parameter) in frozen:
            assert parameter.grad is None, f"frozen {name} got a gradient"
        elif name.endswith("gru.weight_hh_l0_reverse"):
            # the backward GRU output at the last word has seen that word alone (PVSE --legacy,
            # PCME): its state-to-state weights act on the zero initial state only
            assert parameter.grad is not None and not parameter.grad.any(), name
        else:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("method", METHODS)
def test_a_few_steps_lower_the_loss(method, prepared):
    torch.manual_seed(0)
    model = model_for(tiny_settings(method), PreparedDataset(prepared))
    batch = one_batch(prepared)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss, _ = model(*batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("method, dataset", [("pcme", "synthetic-coco"), ("pvse-k2", "synthetic-cub")])
def test_resumed_run_ends_with_the_same_weights(method, dataset, prepared, prepared_cub, tmp_path):
    prepared_dir = prepared if dataset == "synthetic-coco" else prepared_cub
    settings = tiny_settings(method, dataset, epochs=3)
    whole = train(prepared_dir, tmp_path / "whole", settings, threads=1)
    assert train(prepared_dir, tmp_path / "split", settings, threads=1, stop_after_epoch=1) is None
    state = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 0 and not (tmp_path / "split" / "model.safetensors").exists()
    resumed = train(prepared_dir, tmp_path / "split", settings, threads=1)
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "split" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["final_loss"] == whole["final_loss"]
    curve = (tmp_path / "split" / "train_log.csv").read_text().splitlines()
    assert len(curve) == 4 and curve[0].startswith("epoch,phase,lr,loss")


def test_run_record_and_curve(prepared, tmp_path):
    record = train(prepared, tmp_path, tiny_settings("pcme", epochs=1), threads=1)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved == record
    assert set(record) >= {
        "dataset",
        "method",
        "seed",
        "epochs",
        "device",
        "wall_seconds",
        "samples_per_second",
        "parameters",
        "final_loss",
        "config_hash",
        "code_version",
    }
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "a", "b", "image_log_sigma", "caption_log_sigma", "lr", "wall_seconds", "samples_per_second"} <= set(header)


def test_non_finite_loss_stops_with_epoch_and_step(prepared, tmp_path, monkeypatch):
    settings = tiny_settings("vsepp", epochs=3)
    calls = {"n": 0}
    forward = CrossModalModel.forward

    def poisoned(self, *args):
        calls["n"] += 1
        loss, stats = forward(self, *args)
        return (loss * float("nan"), stats) if calls["n"] == 13 else (loss, stats)  # epoch 2, step 3

    monkeypatch.setattr(CrossModalModel, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss nan at epoch 2, step 3 .*after epoch 1"):
        train(prepared, tmp_path, settings, threads=1)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 0  # the last good checkpoint stays
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize(
    "method, keys, k",
    [
        ("pvse-k2", {"image_embeddings", "caption_embeddings"}, 2),
        ("vse0", {"image_embeddings", "caption_embeddings"}, 1),
        (
            "pcme",
            {"image_mu", "image_log_sigma", "image_samples", "caption_mu", "caption_log_sigma", "caption_samples", "a", "b"},
            None,
        ),
    ],
)
def test_embedding_export(method, keys, k, prepared, tmp_path):
    train(prepared, tmp_path, tiny_settings(method, epochs=1), threads=1)
    export(prepared, tmp_path / "model.safetensors", tmp_path / "emb.safetensors")
    tensors = load_file(tmp_path / "emb.safetensors")
    assert keys | {"image_ids", "caption_ids", "caption_image_index"} == set(tensors)
    test = PreparedDataset(prepared).split("test")
    assert tensors["image_ids"].tolist() == test.images["image_id"]
    assert tensors["caption_ids"].tolist() == test.captions["caption_id"]
    n_images, n_captions = len(test.images), len(test.captions)
    if k:
        assert tensors["image_embeddings"].shape == (n_images, k, 16)
        assert tensors["caption_embeddings"].shape == (n_captions, k, 16)
        torch.testing.assert_close(tensors["image_embeddings"].norm(dim=-1), torch.ones(n_images, k))
    else:
        assert tensors["image_samples"].shape == (n_images, 7, 16)
        export(prepared, tmp_path / "model.safetensors", tmp_path / "again.safetensors")
        assert torch.equal(load_file(tmp_path / "again.safetensors")["caption_samples"], tensors["caption_samples"])


def test_merge_config_merges_nested_mappings_and_leaves_its_inputs():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    update = {"a": {"c": {"d": 3}, "f": 4}, "e": [2]}
    assert merge_config(base, update) == {"a": {"b": 1, "c": {"d": 3}, "f": 4}, "e": [2]}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": [1]} and update == {"a": {"c": {"d": 3}, "f": 4}, "e": [2]}


def test_cub_schedule_anneals_both_phases_over_t_max_50():
    """PCME's CUB recipe (config/cub/pcme_cub.yaml): T_max 50 over a 10-epoch frozen phase and the 50 fine-tuning epochs."""
    training = CONFIG["dataset_settings"]["cub"]["training"]
    lrs = [phase_of(epoch, training)[1] for epoch in range(60)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 9 / 50)))
    assert lrs[9] > 0.9e-4  # the frozen phase ends near 90% of its rate
    assert lrs[10] == pytest.approx(1e-4) and lrs[59] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 49 / 50)))
    coco = CONFIG["dataset_settings"]["coco"]["training"]
    assert phase_of(29, coco)[1] == pytest.approx(2e-4 * 0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert phase_of(30, coco) == ("finetune", pytest.approx(2e-5), False)


def test_fine_tuning_starts_with_a_fresh_optimiser(prepared, tmp_path, monkeypatch):
    built = []
    original = train_module.make_optimizer

    def recording(model, training, lr):
        built.append(lr)
        return original(model, training, lr)

    monkeypatch.setattr(train_module, "make_optimizer", recording)
    settings = tiny_settings("vse0", epochs=1)
    settings["dataset_settings"]["training"].update(frozen_epochs=1, lr=1e-3, finetune_lr=1e-4)
    train(prepared, tmp_path, settings, threads=1)
    assert built == [1e-3, 1e-4]  # the run's optimiser, then a new one for fine-tuning


def test_clipping_leaves_out_the_loss_parameters(prepared):
    model = model_for(tiny_settings("pcme"), PreparedDataset(prepared))
    clipped = {id(p) for p in model.parameters_to_clip()}
    assert id(model.method.negative_scale) not in clipped and id(model.method.shift) not in clipped
    assert len(clipped) == len(list(model.parameters())) - 2
    vse = model_for(tiny_settings("vse0"), PreparedDataset(prepared))
    assert len(vse.parameters_to_clip()) == len(list(vse.parameters()))


@pytest.mark.parametrize(
    "when, frozen_phase, finetune_phase", [("never", False, False), ("finetune", False, True), ("always", True, True)]
)
def test_word_vectors_learn_when_the_method_says(when, frozen_phase, finetune_phase, prepared):
    settings = tiny_settings("pvse-k1")
    settings["method_settings"] = {**settings["method_settings"], "word_vectors_training": when}
    model = model_for(settings, PreparedDataset(prepared))
    model.set_phase(frozen=True)
    assert model.text_encoder.words.weight.requires_grad == frozen_phase
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    model.set_phase(frozen=False)
    assert model.text_encoder.words.weight.requires_grad == finetune_phase
    assert all(p.requires_grad for p in model.image_encoder.parameters())


def test_pcme_caption_noise_replaces_then_deletes():
    """datasets/_transforms.py of naver-ai/pcme: each word -> <unk> with p, then floor(p * words) words deleted."""
    unk = SPECIAL_TOKENS.index(UNK)
    tokens = [2, *range(10, 40), 3]  # <start>, 30 words, <end>
    torch.manual_seed(0)
    noisy = [unk_then_delete(tokens, 0.1) for _ in range(2000)]
    assert all(n[0] == 2 and n[-1] == 3 and len(n) == 2 + 30 - 3 for n in noisy)
    unk_rate = sum(n.count(unk) for n in noisy) / (2000 * 27)
    assert unk_rate == pytest.approx(0.1, abs=0.01)
    assert unk_then_delete([2, 10, 11, 3], 0.1)[1:-1] in ([10, 11], [unk, 11], [10, unk], [unk, unk])  # short: none deleted
    with pytest.raises(ValueError, match="unknown caption noise"):
        CaptionNoise(0.1, "shuffle")


def test_random_erasing_only_in_training():
    image = torch.full((3, 40, 40), 200, dtype=torch.uint8)
    torch.manual_seed(0)
    erased = [(image_transform("none", 32, train=True, random_erasing=1.0)(image) == 0).all(0).sum().item() for _ in range(50)]
    assert all(e >= 16 for e in erased)  # one rectangle of 2% to 1/3 of the image, zero after normalising
    assert all(e <= 32 * 32 / 3 + 32 for e in erased)
    assert not (image_transform("none", 32, train=False, random_erasing=1.0)(image) == 0).all(0).any()


@pytest.mark.parametrize("method, grad_clip", [("pcme", None), ("vse0", 2.0), ("vsepp", 2.0), ("pvse-k1", 2.0), ("pvse-k2", 2.0)])
def test_each_method_clips_as_its_original_runs_did(method, grad_clip, prepared, tmp_path, monkeypatch):
    """PCME's fp16 runs stepped unclipped fp32 master weights; VSE++ and PVSE clip at 2 in fp32. The
    synthetic datasets clip PCME at 2 too (docs/deviations.md)."""
    assert registered()[method].defaults["grad_clip"] == grad_clip  # the method file's own default
    for dataset in ("coco", "cub", "synthetic-coco", "synthetic-cub"):
        settings = {"dataset": dataset, "method": method, "method_settings": CONFIG["method_settings"][method]}
        expected = 2.0 if dataset.startswith("synthetic") else grad_clip
        assert method_setting(settings, "grad_clip") == expected, dataset
    norms = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda parameters, norm: norms.append(norm))
    settings = tiny_settings(method, epochs=1)
    train(prepared, tmp_path, settings, threads=1)
    assert norms and set(norms) == {2.0}
    settings["method_settings"] = {**settings["method_settings"], "grad_clip": None}
    norms.clear()
    train(prepared, tmp_path / "unclipped", settings, threads=1)
    assert norms == []


@pytest.mark.parametrize("remainder", [3, 1])
def test_the_last_partial_batch_is_kept_unless_it_holds_one_pair(remainder, prepared):
    """The original's COCO loader keeps it (drop_last False); a batch of one pair has no negative."""
    pairs = CaptionPairs([PreparedDataset(prepared).split("train")], image_transform("none", 32, train=True))
    training = tiny_settings("vse0")["dataset_settings"]["training"]
    training["batch_size"] = next(b for b in range(len(pairs) - 1, remainder, -1) if len(pairs) % b == remainder)
    full = len(pairs) // training["batch_size"]
    loader = make_loader(pairs, training, seed=0, device=torch.device("cpu"))
    loader.batch_sampler.set_epoch(0)
    sizes = [len(image_ids) for _, _, _, image_ids in loader]
    assert sizes == [training["batch_size"]] * full + ([remainder] if remainder > 1 else [])


def test_imagenet_weights_found_in_place_must_be_torchvisions(tmp_path, monkeypatch):
    """torch.hub checks the hash in a file's name only when it downloads it; a copy in place is checked here."""
    pytest.importorskip("torchvision")
    from models.encoders import build_image_encoder

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet50-0676ba61.pth").write_bytes(b"placed by hand")
    with pytest.raises(
        ValueError, match=r"resnet50-0676ba61.pth: ImageNet weights: SHA-256 \w+\.\.\. does not start with 0676ba61"
    ):
        build_image_encoder("resnet50", pretrained=True)


def test_a_methods_batch_size_replaces_the_datasets(prepared, tmp_path, monkeypatch):
    sizes = []
    forward = CrossModalModel.forward

    def watched(self, images, *args):
        sizes.append(len(images))
        return forward(self, images, *args)

    monkeypatch.setattr(CrossModalModel, "forward", watched)
    settings = tiny_settings("vse0", epochs=1)
    own = train(prepared, tmp_path / "dataset", settings, threads=1)
    dataset_batches, sizes[:] = list(sizes), []
    settings["method_settings"]["batch_size"] = {"coco": None, "cub": None, "synthetic-coco": 4}
    halved = train(prepared, tmp_path / "method", settings, threads=1)
    assert max(dataset_batches) == 8 and max(sizes) == 4 and sum(sizes) == sum(dataset_batches)  # every pair, once
    assert own["config_hash"] != halved["config_hash"]  # a setting of the run
