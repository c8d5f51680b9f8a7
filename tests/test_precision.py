"""The GPU's precision and memory-format paths, run on the CPU: bf16 autocast, channels_last, the fp32
loss under autocast and PCME's sampling under autocast, for every method.

Tolerances (measured on the tiny synthetic-coco data, embed_dim 16, batch 8, torch 2.14 on x86-64):
one batch at the same weights, bf16 autocast against fp32, loss within 2% (measured at most 0.7%) and
gradient cosine above 0.98 (measured at least 0.997); PCME's samples within 0.02 of fp32's
(measured 0.007, samples up to 0.6 in size); one trainer epoch of 10 steps, bf16 + channels_last
against fp32, mean loss within 3% (measured at most 1.3%); channels_last in fp32 within 1e-5 relative.
"""

import csv

import pytest
import torch

from corpora.prepared import PreparedDataset
from models.model import CrossModalModel
from models.pcme import sample_embeddings
from pcmebench.runs import Precision, model_for
from pcmebench.train import train
from tests.test_training import METHODS, one_batch, tiny_settings


def autocast_on() -> bool:
    """Whether a matrix product here runs in bf16, i.e. CPU autocast is on (version-independent)."""
    return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_precision_follows_the_settings_on_any_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = {"precision": "auto", "memory_format": "auto"}
    assert Precision.for_run(auto, cpu) == Precision(cpu, bf16=False, channels_last=False)
    assert Precision.for_run(auto, cuda) == Precision(cuda, bf16=True, channels_last=True)
    forced = Precision.for_run({"precision": "bf16", "memory_format": "channels_last"}, cpu)
    assert forced.bf16 and forced.memory_format == torch.channels_last
    assert Precision.for_run({"precision": "fp32", "memory_format": "contiguous"}, cuda).describe() == "fp32, contiguous"
    with forced.autocast():
        assert autocast_on()
    assert not autocast_on()


@pytest.fixture
def fresh_model(prepared):
    def build(method):
        torch.manual_seed(0)
        return model_for(tiny_settings(method), PreparedDataset(prepared))

    return build


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_agrees_with_fp32_and_the_loss_runs_in_fp32(method, fresh_model, prepared, monkeypatch):
    model = fresh_model(method)
    batch = one_batch(prepared)
    seen = []
    loss_function = type(model.method).loss

    def watched(self, images, captions, match):
        seen.append((autocast_on(), {v.dtype for v in [*images.values(), *captions.values()]}))
        return loss_function(self, images, captions, match)

    monkeypatch.setattr(type(model.method), "loss", watched)
    results = {}
    for name, precision in {"fp32": "fp32", "bf16": "bf16"}.items():
        model.zero_grad()
        torch.manual_seed(1)  # the same PCME samples' noise in both
        with Precision.for_run({"precision": precision, "memory_format": "contiguous"}, torch.device("cpu")).autocast():
            loss, stats = model(*batch)
        loss.backward()
        assert loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in stats.values())
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[name] = (loss.item(), grads)
    # the loss ran with autocast off, on fp32 inputs, also when the encoders ran under autocast
    assert seen == [(False, {torch.float32})] * 2
    (fp32_loss, fp32_grads), (bf16_loss, bf16_grads) = results["fp32"], results["bf16"]
    assert bf16_loss == pytest.approx(fp32_loss, rel=0.02)
    assert torch.nn.functional.cosine_similarity(fp32_grads, bf16_grads, dim=0) > 0.98


def test_pcme_samples_under_autocast(fresh_model, prepared):
    model = fresh_model("pcme")
    images = one_batch(prepared)[0]
    samples = {}
    for bf16 in (False, True):
        torch.manual_seed(1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            encoded = model.encode_images(images)
        samples[bf16] = encoded["samples"].float()
        assert encoded["samples"].shape == (len(images), 7, 16) and torch.isfinite(samples[bf16]).all()
    assert (samples[True] - samples[False]).abs().max() < 0.02
    # fp32 mean and log sigma sampled under autocast stay fp32, with the same noise as outside it
    mu, log_sigma = torch.randn(4, 16), torch.randn(4, 16) - 3
    torch.manual_seed(2)
    plain = sample_embeddings(mu, log_sigma, 7)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = sample_embeddings(mu, log_sigma, 7)
    assert under.dtype == torch.float32 and torch.equal(under, plain)


@pytest.mark.parametrize("method", METHODS)
def test_channels_last_gives_the_contiguous_loss(method, fresh_model, prepared):
    model = fresh_model(method)
    images, *rest = one_batch(prepared)
    torch.manual_seed(1)
    contiguous, _ = model(images, *rest)
    model = model.to(memory_format=torch.channels_last)
    assert model.image_encoder.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)
    channels_last, _ = model(images.to(memory_format=torch.channels_last), *rest)
    assert channels_last.item() == pytest.approx(contiguous.item(), rel=1e-5)


def epoch_losses(run_dir) -> list[float]:
    with open(run_dir / "train_log.csv") as file:
        return [float(row["loss"]) for row in csv.DictReader(file)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow
def test_trainer_steps_in_bf16_and_channels_last_on_the_cpu(method, prepared, tmp_path, monkeypatch):
    formats = []
    forward = CrossModalModel.forward

    def watched(self, images, *args):
        formats.append((images.is_contiguous(memory_format=torch.channels_last), autocast_on()))
        return forward(self, images, *args)

    monkeypatch.setattr(CrossModalModel, "forward", watched)
    records = {}
    for precision, memory_format in (("fp32", "contiguous"), ("bf16", "channels_last")):
        settings = tiny_settings(method, epochs=1)
        settings["dataset_settings"]["training"].update(precision=precision, memory_format=memory_format)
        records[precision] = train(prepared, tmp_path / precision, settings, threads=1)
    steps = len(formats) // 2
    assert steps >= 10 and formats == [(False, False)] * steps + [(True, True)] * steps
    assert records["bf16"]["precision"] == "bf16 autocast, channels_last"
    assert records["fp32"]["precision"] == "fp32, contiguous"
    (fp32,), (bf16,) = epoch_losses(tmp_path / "fp32"), epoch_losses(tmp_path / "bf16")
    assert bf16 == pytest.approx(fp32, rel=0.03)
