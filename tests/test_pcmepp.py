"""PCME++ (models/pcmepp.py) against naver-ai/pcmepp: its objective restated here in plain loops,
its training targets and mixing, its registry entry, and its model on tiny inputs.

The reference below restates criterions/pcmepp.py (``ClosedFormSampledDistanceLoss``) in
float64 Python; it does not call the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.heads import FeatureDims
from models.model import CrossModalModel, build_model
from models.pcmepp import PCMEPP, draw_mixing
from models.registry import registered, with_method_settings
from models.scorings import csd_scores
from pcmebench.configcheck import load_schema, schema_problems
from tests.conftest import REPO

IMAGE_DIMS, TEXT_DIMS = (6, 4), (8, 5)


def method(**settings) -> PCMEPP:
    return PCMEPP(FeatureDims(*IMAGE_DIMS), FeatureDims(*TEXT_DIMS, global_is_joint=False), 8, **settings)


# --- the original's objective, restated -----------------------------------------------------------


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def bce_mean(logits, targets) -> float:
    """nn.BCEWithLogitsLoss(): mean over entries of -(t log s(x) + (1 - t) log(1 - s(x))) = softplus(x) - t x."""
    terms = [softplus(x) - t * x for row_x, row_t in zip(logits, targets, strict=True) for x, t in zip(row_x, row_t, strict=True)]
    return sum(terms) / len(terms)


def relabel(logits, targets):
    """``_recompute_matched``: the row's largest target (first column holding it) for every pair scoring >= that column."""
    out, count = [], 0
    for row_x, row_t in zip(logits, targets, strict=True):
        top = max(row_t)
        column = row_t.index(top)
        pseudo = [x >= row_x[column] for x in row_x]
        out.append([top if p else t for p, t in zip(pseudo, row_t, strict=True)])
        count += sum(pseudo) - 1
    return out, count


def vib(mu, log_variance) -> float:
    """``kl_divergence``: -1/2 mean(1 + s - mu^2 - e^s), dropped (0) above 1e4."""
    terms = [
        1 + s - m * m - math.exp(s)
        for row_m, row_s in zip(mu, log_variance, strict=True)
        for m, s in zip(row_m, row_s, strict=True)
    ]
    kl = -0.5 * sum(terms) / len(terms)
    return 0.0 if kl > 10000 else kl


def official_objective(image_mu, image_std, caption_mu, caption_std, targets, a, b, beta, alpha):
    """``forward``: 2 BCE + beta (VIB_i + VIB_c) + alpha (BCE_i2t(pseudo) + BCE_t2i(pseudo)); std = log variance."""
    image_mu, image_std, caption_mu, caption_std, targets = (
        t.double().tolist() for t in (image_mu, image_std, caption_mu, caption_std, targets)
    )
    logits = [
        [
            -a
            * (
                sum((x - y) ** 2 for x, y in zip(mi, mc, strict=True))
                + sum(math.exp(s) + math.exp(t) for s, t in zip(si, sc, strict=True))
            )
            + b
            for mc, sc in zip(caption_mu, caption_std, strict=True)
        ]
        for mi, si in zip(image_mu, image_std, strict=True)
    ]
    transposed = [list(col) for col in zip(*logits, strict=True)]
    i2t_targets, i2t_count = relabel(logits, targets)
    t2i_targets, t2i_count = relabel(transposed, [list(col) for col in zip(*targets, strict=True)])
    match = bce_mean(logits, targets)
    pseudo = bce_mean(logits, i2t_targets) + bce_mean(transposed, t2i_targets)
    total = 2 * match + beta * (vib(image_mu, image_std) + vib(caption_mu, caption_std)) + alpha * pseudo
    return total, {"match": match, "pseudo": pseudo, "count": i2t_count + t2i_count}


def gaussians(n: int, d: int, seed: int, scale: float = 0.5):
    generator = torch.Generator().manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(n, d, generator=generator), dim=1)
    return mu, scale * torch.randn(n, d, generator=generator) - 2


def run_loss(pcmepp: PCMEPP, image_mu, image_std, caption_mu, caption_std, targets):
    with torch.no_grad():
        return pcmepp.loss(
            {"mu": image_mu, "log_sigma": image_std / 2}, {"mu": caption_mu, "log_sigma": caption_std / 2}, targets
        )


def with_scale(pcmepp: PCMEPP, a: float, b: float) -> PCMEPP:
    with torch.no_grad():
        pcmepp.negative_scale.fill_(a)
        pcmepp.shift.fill_(b)
    return pcmepp


def test_objective_with_a_negative_outscoring_its_positive():
    image_mu, image_std = gaussians(5, 4, seed=0)
    caption_mu, caption_std = gaussians(5, 4, seed=1)
    caption_mu[1] = image_mu[0]  # caption 1 sits on image 0: it outscores image 0's own caption
    caption_std[3] = image_std[3] - 1.0
    s = 1e-3
    eye = torch.eye(5)
    targets = (1 - s) * eye + s * (1 - eye)
    targets[2, 4] = targets[4, 2] = 1 - s  # pairs 2 and 4 show the same image
    pcmepp = with_scale(method(vib_beta=0.3, smoothness_alpha=0.7), 2.5, 3.0)
    total, stats = run_loss(pcmepp, image_mu, image_std, caption_mu, caption_std, targets)
    expected, parts = official_objective(image_mu, image_std, caption_mu, caption_std, targets, 2.5, 3.0, 0.3, 0.7)
    assert parts["count"] >= 1  # the case exercises the relabelling
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert stats["match_loss"].item() == pytest.approx(parts["match"], rel=1e-5)
    assert stats["pseudo_loss"].item() == pytest.approx(parts["pseudo"], rel=1e-5)
    assert stats["pseudo_positives"].item() == parts["count"]
    assert stats["a"].item() == 2.5 and stats["b"].item() == 3.0
    assert all(v.dtype == torch.float32 and v.dim() == 0 and not v.requires_grad for v in stats.values())


def test_objective_with_mixed_targets_whose_largest_is_the_partner():
    image_mu, image_std = gaussians(4, 3, seed=2)
    caption_mu, caption_std = gaussians(4, 3, seed=3)
    s, lam = 1e-4, torch.tensor([0.3, 1.0, 1.0, 0.8])  # row 0's largest target is column 3, its partner
    own = torch.full((4, 4), s).fill_diagonal_(1 - s)
    targets = own * lam[:, None] + own.flip(0) * (1 - lam[:, None])
    assert targets[0].argmax() == 3
    pcmepp = with_scale(method(vib_beta=0.05, smoothness_alpha=0.1), 1.5, 2.0)
    total, stats = run_loss(pcmepp, image_mu, image_std, caption_mu, caption_std, targets)
    expected, parts = official_objective(image_mu, image_std, caption_mu, caption_std, targets, 1.5, 2.0, 0.05, 0.1)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert stats["pseudo_positives"].item() == parts["count"]


def test_a_bool_match_and_its_float_give_the_same_loss():
    image_mu, image_std = gaussians(4, 3, seed=4)
    caption_mu, caption_std = gaussians(4, 3, seed=5)
    pcmepp = method()
    as_bool, _ = run_loss(pcmepp, image_mu, image_std, caption_mu, caption_std, torch.eye(4, dtype=torch.bool))
    as_float, _ = run_loss(pcmepp, image_mu, image_std, caption_mu, caption_std, torch.eye(4))
    expected, _ = official_objective(image_mu, image_std, caption_mu, caption_std, torch.eye(4), 5.0, 5.0, 1e-4, 0.1)
    assert as_bool.item() == as_float.item() == pytest.approx(expected, rel=1e-5)


def test_an_exploding_vib_term_is_dropped_per_modality():
    image_mu, image_std = gaussians(3, 4, seed=6)
    caption_mu, caption_std = gaussians(3, 4, seed=7)
    image_std = image_std + 13  # e^s ~ 6e4: the image term exceeds 1e4
    pcmepp = with_scale(method(vib_beta=0.5, smoothness_alpha=0.0), 0.001, 0.0)
    total, stats = run_loss(pcmepp, image_mu, image_std, caption_mu, caption_std, torch.eye(3))
    expected, _ = official_objective(image_mu, image_std, caption_mu, caption_std, torch.eye(3), 0.001, 0.0, 0.5, 0.0)
    assert stats["vib_skipped"].item() == 1
    assert stats["vib"].item() == pytest.approx(vib(caption_mu.double().tolist(), caption_std.double().tolist()), rel=1e-5)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert stats["pseudo_positives"].item() == 0 and stats["pseudo_loss"].item() == 0  # alpha 0: no pseudo-positives


def test_similarity_is_minus_the_suites_csd_scoring():
    image_mu, image_std = gaussians(5, 6, seed=8)
    caption_mu, caption_std = gaussians(7, 6, seed=9)
    images, captions = {"mu": image_mu, "log_sigma": image_std / 2}, {"mu": caption_mu, "log_sigma": caption_std / 2}
    similarity = method().similarity(images, captions)
    expected = [
        [
            -(float(((mi - mc) ** 2).sum()) + float(si.exp().sum() + sc.exp().sum()))
            for mc, sc in zip(caption_mu, caption_std, strict=True)
        ]
        for mi, si in zip(image_mu, image_std, strict=True)
    ]
    assert torch.allclose(similarity.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5)
    scored = csd_scores(image_mu, images["log_sigma"], caption_mu, captions["log_sigma"])
    assert torch.allclose(similarity, scored, rtol=1e-5, atol=1e-5)


# --- training targets -----------------------------------------------------------------------------


def distinct_images(n: int, size: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(11))


def lam_of(targets: torch.Tensor, i: int, s: float) -> float:
    return float((targets[i, i] - s) / (1 - 2 * s))


def test_mixed_rows_are_blends_or_pasted_boxes_with_matching_targets():
    s, n = 1e-4, 16
    images = distinct_images(n)
    pcmepp = method(mix_batch_ratio=1.0).train()
    torch.manual_seed(0)
    mixed, targets = pcmepp.training_targets(images.clone(), torch.arange(n), torch.eye(n, dtype=torch.bool))
    assert mixed.shape == images.shape and targets.shape == (n, n) and targets.dtype == torch.float32
    kinds = set()
    for i in range(n):
        j = n - 1 - i
        lam = lam_of(targets, i, s)
        expected_row = torch.full((n,), s, dtype=torch.float64)
        expected_row[i] = lam * (1 - s) + (1 - lam) * s
        expected_row[j] = lam * s + (1 - lam) * (1 - s)
        assert torch.allclose(targets[i].double(), expected_row, atol=1e-6)
        assert targets[i].sum().item() == pytest.approx(1 + (n - 2) * s, abs=1e-5)
        changed = (mixed[i] != images[i]).any(0)
        if lam == 1:
            assert not changed.any()
            continue
        rows, columns = changed.any(1).nonzero()[:, 0], changed.any(0).nonzero()[:, 0]
        box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(columns.min()), int(columns.max()) + 1))
        pasted = torch.zeros_like(changed)
        pasted[box] = True
        if torch.equal(changed, pasted) and torch.equal(mixed[i][:, box[0], box[1]], images[j][:, box[0], box[1]]):
            kinds.add("cutmix")  # a box of the partner, lambda the area kept
            assert lam == pytest.approx(1 - pasted.sum().item() / 12**2, abs=1e-6)
        else:
            kinds.add("mixup")
            assert torch.allclose(mixed[i], lam * images[i] + (1 - lam) * images[j], atol=1e-5)
    assert kinds == {"cutmix", "mixup"}


def test_a_quarter_of_the_rows_mix_half_of_them_by_cutmix():
    torch.manual_seed(1)
    draws = [draw_mixing(64, 16, 16, 2.0, 2.0, 0.5, 0.25) for _ in range(200)]
    lam = torch.cat([d.lam for d in draws])
    mixed = lam != 1
    assert mixed.float().mean().item() == pytest.approx(0.25, abs=0.02)
    cutmix = torch.cat([d.cutmix for d in draws])
    assert cutmix[mixed].float().mean().item() == pytest.approx(0.5, abs=0.04)
    assert not cutmix[~mixed].any()
    torch.manual_seed(1)
    again = draw_mixing(64, 16, 16, 2.0, 2.0, 0.5, 0.25)
    assert torch.equal(again.lam, draws[0].lam) and torch.equal(again.boxes, draws[0].boxes)  # the seed decides


def test_an_odd_batch_drops_its_last_pair_and_the_captions_follow():
    n = 5
    model = tiny_model(mix_batch_ratio=1.0).train()
    seen = []
    loss = type(model.method).loss

    def watched(self, images, captions, match):
        seen.append((images["mu"].shape[0], captions["mu"].shape[0], match.shape, match.dtype))
        return loss(self, images, captions, match)

    model.method.loss = watched.__get__(model.method)
    images, tokens, lengths, image_ids = tiny_batch(n)
    torch.manual_seed(0)
    model(images, tokens, lengths, image_ids)
    assert seen == [(4, 4, (4, 4), torch.float32)]
    mixed, targets = model.method.training_targets(images, image_ids, torch.eye(n, dtype=torch.bool))
    assert mixed.shape[0] == 4 and targets.shape == (4, 4)
    model.eval()  # evaluation: no hook, the bool match of every pair
    model(images, tokens, lengths, image_ids)
    assert seen[-1] == (5, 5, (5, 5), torch.bool)


def test_mixing_stops_at_mixup_off_epoch_then_label_smoothing():
    n, s = 6, 0.01
    images = distinct_images(n)
    ids = torch.arange(n)
    pcmepp = method(mix_batch_ratio=1.0, mixup_off_epoch=2, label_smoothing=s, mixup_smoothing=0.0)
    eye = torch.eye(n)
    for epoch, mixing in ((0, True), (1, True), (2, False), (5, False)):
        pcmepp.set_epoch(epoch)
        torch.manual_seed(epoch)
        mixed, targets = pcmepp.training_targets(images.clone(), ids, eye.bool())
        assert pcmepp.mixing == mixing
        if mixing:
            assert not torch.equal(mixed, images) and targets.min() == 0  # mixup_smoothing 0
        else:
            assert torch.equal(mixed, images) and torch.equal(targets, (1 - s) * eye + s * (1 - eye))
    never = method(mix_batch_ratio=1.0)
    never.set_epoch(1000)
    assert never.mixing  # null: every epoch mixes (the original's 30 outlasts its 25 epochs)
    for off in (method(mix_batch_ratio=0.0), method(mixup_alpha=0.0, cutmix_alpha=0.0), method(mixup_off_epoch=0)):
        torch.manual_seed(0)
        mixed, targets = off.training_targets(images[:5].clone(), ids[:5], torch.eye(5, dtype=torch.bool))
        assert not off.mixing and torch.equal(mixed, images[:5])  # no mixing: the odd batch is kept whole
        assert torch.allclose(targets, (1 - 1e-4) * torch.eye(5) + 1e-4 * (1 - torch.eye(5)))


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha", [(2.0, 0.0), (0.0, 2.0)])
def test_one_kind_of_mixing_alone(mixup_alpha, cutmix_alpha):
    torch.manual_seed(3)
    mixing = draw_mixing(2000, 16, 16, mixup_alpha, cutmix_alpha, 0.5, 0.5)
    mixed = mixing.lam != 1
    assert mixed.float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert bool(mixing.cutmix[mixed].all()) == (cutmix_alpha > 0) and not mixing.cutmix[~mixed].any()


def test_duplicate_images_are_positives_unless_mixed():
    ids = torch.tensor([7, 3, 7, 9])
    images = distinct_images(4)
    s = 1e-4
    pcmepp = method(mix_batch_ratio=0.0)
    _, targets = pcmepp.training_targets(images, ids, torch.eye(4, dtype=torch.bool))
    positive = torch.eye(4)
    positive[0, 2] = positive[2, 0] = 1
    assert torch.allclose(targets, (1 - s) * positive + s * (1 - positive))
    # under mixing the mixed targets replace the duplicates' (engine.py forward_step): a ratio so
    # small that nothing mixes leaves the smoothed identity
    mixing = method(mix_batch_ratio=1e-12)
    torch.manual_seed(0)
    mixed, targets = mixing.training_targets(images.clone(), ids, torch.eye(4, dtype=torch.bool))
    assert torch.equal(mixed, images)
    assert torch.allclose(targets, (1 - s) * torch.eye(4) + s * (1 - torch.eye(4)))


# --- registry and model ---------------------------------------------------------------------------


def test_the_registry_entry_and_its_settings_schema():
    entry = registered()["pcmepp"]
    assert entry.label == "PCME++" and entry.class_name == "PCMEPP" and entry.scorings == ("csd", "mu")
    assert entry.probabilistic and entry.items == ("mu", "log_sigma") and entry.sigma == "log_sigma"
    assert entry.statistics == ("sum_sigma_sq", "mean_log_sigma") and entry.note
    assert entry.color not in {m.color for name, m in registered().items() if name != "pcmepp"}
    assert entry.defaults["grad_clip"] == 2.0 and entry.required == ["word_vectors_training"]
    schema = with_method_settings(load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))

    def problems(settings):
        config = {"methods": ["pcmepp"], "method_settings": {"pcmepp": settings}}
        return [p for p in schema_problems(config, schema) if "method_settings" in p]

    assert problems({**entry.defaults, "word_vectors_training": "always"}) == []
    ablations = {"smoothness_alpha": 0, "mix_batch_ratio": 0, "mixup_alpha": 0, "cutmix_alpha": 0, "mixup_off_epoch": 0}
    assert problems({**ablations, "vib_beta": {"coco": 1e-4, "cub": 0}, "init_log_sigma": {"coco": None, "cub": -2}}) == []
    assert problems({"mix_batch_ratio": 1.5}) and problems({"mixup_alpha": -1}) and problems({"mixup_off_epoch": 2.5})


WORDS = 20


def tiny_model(**settings) -> CrossModalModel:
    torch.manual_seed(0)
    return build_model(
        "pcmepp",
        {"word_vectors_training": "always", **settings},
        "synthetic-coco",
        "coco",
        embed_dim=16,
        image_encoder="small-cnn",
        word_vectors=torch.randn(WORDS, 8),
        pretrained=False,
    )


def tiny_batch(n: int = 8, size: int = 32):
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(n, 3, size, size, generator=generator)
    lengths = torch.randint(3, 7, (n,), generator=generator)
    tokens = torch.randint(4, WORDS, (n, int(lengths.max())), generator=generator)
    tokens = tokens * (torch.arange(tokens.shape[1])[None, :] < lengths[:, None])
    return images, tokens, lengths, torch.arange(n) // 2 * 3  # pairs 0-1, 2-3, ... show one image


@pytest.mark.slow
def test_a_model_builds_and_trains_a_few_steps_on_the_cpu():
    model = tiny_model(mix_batch_ratio=0.5, init_log_sigma=-3.0).train()
    assert model.method.image_sigma.global_fc.bias.detach().eq(-6.0).all()  # the head's output is log sigma^2
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    for epoch in range(3):
        model.set_epoch(epoch)
        loss, stats = model(*tiny_batch())
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in stats.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters_to_clip(), 2.0)
        optimizer.step()
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert "method.negative_scale" in changed and "method.shift" in changed and "method.image_sigma.global_fc.bias" in changed
    model.eval()
    with torch.no_grad():
        encoded = model.encode_images(tiny_batch()[0])
    assert set(encoded) == {"mu", "log_sigma"} and torch.allclose(encoded["mu"].norm(dim=1), torch.ones(8))


def test_bf16_autocast_and_channels_last_forward_and_backward():
    model = tiny_model(mix_batch_ratio=1.0).to(memory_format=torch.channels_last).train()
    images, *rest = tiny_batch(7)
    mixed_formats = []
    hook = model.method.training_targets

    def watched(images, *args):
        out = hook(images, *args)
        mixed_formats.append((out[0].dtype, out[0].is_contiguous(memory_format=torch.channels_last)))
        return out

    model.method.training_targets = watched
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = model(images.to(memory_format=torch.channels_last), *rest)
    assert all(v.dtype == torch.float32 for v in stats.values())
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert mixed_formats == [(torch.float32, True)]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.method.parameters())
    torch.manual_seed(2)
    plain, _ = tiny_model(mix_batch_ratio=1.0).train()(images, *rest)
    assert loss.item() == pytest.approx(plain.item(), rel=0.05)  # the same draws, bf16 encoders


def test_a_and_b_are_clipped_with_the_rest():
    model = tiny_model()
    clipped = {id(p) for p in model.parameters_to_clip()}
    assert id(model.method.negative_scale) in clipped and id(model.method.shift) in clipped
    assert len(clipped) == len(list(model.parameters()))


class BoolOnly(torch.nn.Module):
    """A method without the hook: records what its loss gets."""

    def __init__(self, pcmepp: PCMEPP):
        super().__init__()
        self.inner = pcmepp
        self.seen = []

    def embed_images(self, *features):
        return self.inner.embed_images(*features)

    def embed_captions(self, *features):
        return self.inner.embed_captions(*features)

    def loss(self, images, captions, match):
        self.seen.append(match)
        return self.inner.loss(images, captions, match)


@pytest.mark.parametrize("batch_positives", ["pair", "image"])
def test_a_method_without_the_hook_gets_the_bool_match_and_the_whole_batch(batch_positives):
    model = tiny_model()
    plain = CrossModalModel(model.image_encoder, model.text_encoder, BoolOnly(model.method), batch_positives).train()
    images, tokens, lengths, ids = tiny_batch(5)
    torch.manual_seed(0)
    plain(images.clone(), tokens, lengths, ids)
    (match,) = plain.method.seen
    expected = ids[:, None] == ids[None, :] if batch_positives == "image" else torch.eye(5, dtype=torch.bool)
    assert match.dtype == torch.bool and torch.equal(match, expected)
