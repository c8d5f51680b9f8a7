"""Each method's loss against its original code's formula, written out here independently, and by hand.

The reference functions below restate the originals' objectives from their source
(naver-ai/pcme criterions/probemb.py, yalesong/pvse loss.py, fartashf/vsepp
model.py) with plain loops in float64; they do not call the code under test.
"""

import itertools
import math

import pytest
import torch

from models.heads import FeatureDims
from models.pcme import (
    PCME,
    TextUncertaintyHead,
    UncertaintyHead,
    kl_divergence,
    match_probability,
    sample_embeddings,
    soft_contrastive_nll,
    uniformity_loss,
)
from models.pvse import PVSE, diversity_loss, max_cosine, mmd_loss
from models.vse import VSE, hinge_triplet_loss
from pcmebench.train import make_optimizer

SIM = torch.tensor([[0.5, 0.6, 0.1], [0.4, 0.3, 0.35], [0.0, 0.2, 0.7]])
DIMS = FeatureDims(6, 4)


# --- the originals' objectives, restated ---------------------------------------------------------


def official_sigmoid(x: float) -> float:
    """PCME's "sigmoid": e^x / (e^x + e^-x)."""
    return math.exp(x) / (math.exp(x) + math.exp(-x))


def official_pcme_objective(image_samples, caption_samples, image_log_sigma, caption_log_sigma, shift, scale, beta, lam):
    """MCSoftContrastiveLoss.forward of naver-ai/pcme: pairwise NLL summed, i2t + t2i, + lam U + beta KL (official a, b)."""
    x, y = image_samples.double(), caption_samples.double()
    n, j, d = x.shape

    def direction(anchors, candidates):
        total = 0.0
        for p, q in itertools.product(range(n), range(n)):
            matched = 1.0 if p == q else -1.0
            probability = 0.0
            for s, t in itertools.product(range(j), range(j)):
                distance = math.sqrt(float(((anchors[p, s] - candidates[q, t]) ** 2).sum()) + 1e-6)
                logit = -scale * distance + shift
                probability += official_sigmoid(matched * logit)
            total += -math.log(probability / j**2)
        return total

    def kl(samples, log_sigma):
        mean = samples.mean(dim=1)
        return float(-0.5 * (1 + log_sigma.double() - mean**2 - log_sigma.double().exp()).sum())

    points = torch.cat([x.reshape(-1, d), y.reshape(-1, d)])
    assert len(points) ** 2 <= 16384, "the reference covers batches the official code does not subsample"
    pairs = [float(((points[p] - points[q]) ** 2).sum()) for p, q in itertools.combinations(range(len(points)), 2)]
    uniformity = math.log(sum(math.exp(-2 * s) for s in pairs) / len(pairs))
    return (
        direction(x, y)
        + direction(y, x)
        + lam * uniformity
        + beta * (kl(image_samples, image_log_sigma) + kl(caption_samples, caption_log_sigma))
    )


def official_pvse_loss(images, captions, image_residuals, caption_residuals, margin, div_weight, mmd_weight):
    """PVSELoss.forward of yalesong/pvse (max violation, reduction 'mean')."""
    n, k, _ = images.shape
    scores = [[max(float(images[p, a] @ captions[q, b]) for a in range(k) for b in range(k)) for q in range(n)] for p in range(n)]
    i2t = sum(max(max(0.0, margin + scores[p][q] - scores[p][p]) for q in range(n) if q != p) for p in range(n)) / n
    t2i = sum(max(max(0.0, margin + scores[p][q] - scores[q][q]) for p in range(n) if p != q) for q in range(n)) / n
    loss = i2t + t2i
    if k > 1:

        def diversity(residuals):
            unit = residuals / residuals.norm(dim=-1, keepdim=True)
            terms = []
            for item in unit:
                gram = item @ item.T
                terms.append(math.sqrt(sum(float(gram[a, b]) ** 2 for a in range(k) for b in range(k) if a != b)) / k**2)
            return sum(terms) / len(terms)

        def kernel_mean(u, v):
            return sum(math.exp(-0.5 * float((p - q).norm())) for p in u for q in v) / (len(u) * len(v))

        x, y = images.reshape(-1, images.shape[-1]), captions.reshape(-1, captions.shape[-1])
        mmd = kernel_mean(x, x) - 2 * kernel_mean(x, y) + kernel_mean(y, y)
        loss += div_weight * (diversity(image_residuals) + diversity(caption_residuals)) + mmd_weight * mmd
    return loss


def official_vsepp_loss(similarity, margin, max_violation):
    """ContrastiveLoss.forward of fartashf/vsepp: hinge sums, or sums of each anchor's hardest."""
    n = len(similarity)
    s = similarity.tolist()
    caption_costs = [[max(0.0, margin + s[p][q] - s[p][p]) if p != q else 0.0 for q in range(n)] for p in range(n)]
    image_costs = [[max(0.0, margin + s[p][q] - s[q][q]) if p != q else 0.0 for q in range(n)] for p in range(n)]
    if max_violation:
        return sum(max(row) for row in caption_costs) + sum(max(image_costs[p][q] for p in range(n)) for q in range(n))
    return sum(map(sum, caption_costs)) + sum(map(sum, image_costs))


def gaussian_batch(n, j, d, log_sigma, seed):
    generator = torch.Generator().manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(n, d, generator=generator), dim=-1)
    spread = torch.full((n, d), float(log_sigma)) + 0.3 * torch.randn(n, d, generator=generator)
    return {"mu": mu, "log_sigma": spread, "samples": sample_embeddings(mu, spread, j, generator)}


# --- PCME -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pcme_objective_is_the_official_one_up_to_one_constant(reduction):
    shift = scale = 5.0  # official CUB a = b, official sigmoid: 10 here
    beta, lam = 1e-3, 10.0
    n, j, d = 4, 3, 6  # 24 samples: the official code uses every one for the uniformity
    method = PCME(DIMS, DIMS, d, samples=j, init_scale=2 * scale, kl_weight=beta, uniformity_weight=lam, reduction=reduction)
    ratios = []
    for seed, log_sigma in enumerate((-4.0, -2.0, 0.0)):
        images, captions = gaussian_batch(n, j, d, log_sigma, seed), gaussian_batch(n, j, d, log_sigma, seed + 10)
        ours, _ = method.loss(images, captions, torch.eye(n, dtype=torch.bool))
        reference = official_pcme_objective(
            images["samples"], captions["samples"], images["log_sigma"], captions["log_sigma"], shift, scale, beta, lam
        )
        ratios.append(ours.item() / reference)
    expected = 1.0 if reduction == "sum" else 1 / (2 * n * n)
    assert ratios == pytest.approx([expected] * 3, rel=1e-4)


def test_pcme_regularisers_carry_weight_in_the_objective():
    n, j, d = 4, 3, 6
    images, captions = gaussian_batch(n, j, d, -1.0, 0), gaussian_batch(n, j, d, -1.0, 1)
    match = torch.eye(n, dtype=torch.bool)
    plain = PCME(DIMS, DIMS, d, samples=j, init_scale=10.0, kl_weight=0.0, uniformity_weight=0.0)
    weighted = PCME(DIMS, DIMS, d, samples=j, init_scale=10.0, kl_weight=1e-3, uniformity_weight=10.0)
    base, _ = plain.loss(images, captions, match)
    total, stats = weighted.loss(images, captions, match)
    assert total.item() == pytest.approx(base.item() + 1e-3 * stats["kl"].item() + 10.0 * stats["uniformity"].item(), rel=1e-6)


def test_pcme_soft_contrastive_nll_by_hand():
    a, b = torch.tensor(1.0), torch.tensor(0.5)
    image = torch.tensor([[[0.0], [1.0]]])  # one image, J = 2 samples in 1-D
    caption = torch.tensor([[[0.0], [3.0]]])
    p = sum(1 / (1 + math.exp(a.item() * math.sqrt(d * d + 1e-6) - b.item())) for d in (0, 3, 1, 2)) / 4
    matched = soft_contrastive_nll(image, caption, torch.tensor([[True]]), a, b)
    unmatched = soft_contrastive_nll(image, caption, torch.tensor([[False]]), a, b)
    assert matched.item() == pytest.approx(-math.log(p), rel=1e-5)
    assert unmatched.item() == pytest.approx(-math.log(1 - p), rel=1e-5)


def test_pcme_kl_forms_by_hand():
    mu, log_sigma = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    samples = torch.tensor([[[2.0, 1.0], [0.0, -3.0]]])  # sample mean (1, -1)
    # the official reading: s = log sigma taken as a log variance, the samples' mean for mu
    official = -0.5 * ((1 + 0 - 1 - 1) + (1 + math.log(2) - 1 - 2))
    assert kl_divergence(mu, log_sigma, samples, "log-variance").item() == pytest.approx(official)
    # the Gaussian that sampling uses: N(mu, sigma^2)
    assert kl_divergence(mu, log_sigma, samples, "log-sigma").item() == pytest.approx(0.5 * (1 + 3 - 2 * math.log(2)))


def test_pcme_uniformity_forms_by_hand():
    points = torch.tensor([[[3.0, 0.0]], [[0.0, 0.5]], [[-1.0, 0.0]]])
    # normalised: squared distances 2, 4, 2
    assert uniformity_loss(points, "normalised").item() == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3))
    # raw: squared distances 9.25, 16, 1.25
    raw = math.log((math.exp(-18.5) + math.exp(-32) + math.exp(-2.5)) / 3)
    assert uniformity_loss(points, "raw-subsampled").item() == pytest.approx(raw)


def test_pcme_raw_uniformity_draws_128_points_with_replacement():
    points = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    ours = uniformity_loss(points, "raw-subsampled", generator=torch.Generator().manual_seed(7))
    drawn = torch.randint(300, (128,), generator=torch.Generator().manual_seed(7))  # uniform, with replacement
    chosen = points[drawn].double()
    pairs = [float(((chosen[p] - chosen[q]) ** 2).sum()) for p, q in itertools.combinations(range(128), 2)]
    assert ours.item() == pytest.approx(math.log(sum(math.exp(-2 * s) for s in pairs) / len(pairs)), rel=1e-5)
    assert len(set(drawn.tolist())) < 128  # with 300 points, 128 draws repeat one almost surely (seeded)


def test_pcme_raw_uniformity_has_no_lower_bound():
    points = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    values = [uniformity_loss(scale * points, "raw-subsampled").item() for scale in (1, 10, 100)]
    assert values[0] > values[1] > values[2]
    bounded = [uniformity_loss(scale * points, "normalised").item() for scale in (1, 10, 100)]
    assert bounded == pytest.approx([bounded[0]] * 3, rel=1e-5)


def test_pcme_a_and_b_are_the_loss_parameters_left_out_of_clipping():
    method = PCME(DIMS, DIMS, 8, samples=2, init_scale=10.0, kl_weight=0.0, uniformity_weight=0.0)
    assert [id(p) for p in method.loss_parameters()] == [id(method.negative_scale), id(method.shift)]
    assert (method.a.item(), method.b.item()) == (10.0, 10.0)  # standard units, twice the official 5


@pytest.mark.parametrize("lr", [2e-4, 2e-3])
@pytest.mark.slow
def test_pcme_a_and_b_follow_the_official_parametrisation_under_the_trainers_optimiser(lr):
    """N AdamW steps on the same batches: a and b (standard units) move as twice the official
    criterion's negative_scale and shift (official sigmoid e^x / (e^x + e^-x), a = b = 15 at start)
    moved; a standard-unit parameter of its own would move half as far."""
    n, j, d, steps = 4, 3, 6, 200
    batches = [(gaussian_batch(n, j, d, -2.0, s), gaussian_batch(n, j, d, -2.0, s + 100)) for s in range(5)]
    matched = 2 * torch.eye(n, dtype=torch.float64) - 1  # the official matching indicator: 1 or -1

    def official_nll(image_samples, caption_samples, negative_scale, shift):
        distance = ((image_samples.double()[:, None, :, None] - caption_samples.double()[None, :, None, :]) ** 2).sum(-1)
        logit = -negative_scale * (distance + 1e-6).sqrt() + shift  # (N, N, J, J)
        probability = (torch.exp(matched[:, :, None, None] * logit) / (logit.exp() + (-logit).exp())).mean((2, 3))
        return -probability.log().sum() * 2  # both directions, summed

    negative_scale = torch.tensor(15.0, dtype=torch.float64, requires_grad=True)
    shift = torch.tensor(15.0, dtype=torch.float64, requires_grad=True)
    official_optimiser = torch.optim.Adam([negative_scale, shift], lr=lr)
    method = PCME(DIMS, DIMS, d, samples=j, init_scale=30.0, kl_weight=0.0, uniformity_weight=0.0).double()
    ours_optimiser = make_optimizer(method, {"weight_decay": 0.0}, lr)
    standard = torch.tensor([30.0, 30.0], dtype=torch.float64, requires_grad=True)  # a, b as plain parameters
    standard_optimiser = torch.optim.Adam([standard], lr=lr)
    official, ours, plain = [], [], []
    for step in range(steps):
        images, captions = batches[step % len(batches)]
        images, captions = {k: v.double() for k, v in images.items()}, {k: v.double() for k, v in captions.items()}
        official_optimiser.zero_grad()
        official_nll(images["samples"], captions["samples"], negative_scale, shift).backward()
        official_optimiser.step()
        official.append((2 * negative_scale.item(), 2 * shift.item()))
        ours_optimiser.zero_grad()
        method.loss(images, captions, torch.eye(n, dtype=torch.bool))[0].backward()
        ours_optimiser.step()
        ours.append((method.a.item(), method.b.item()))
        standard_optimiser.zero_grad()
        nll = soft_contrastive_nll(images["samples"], captions["samples"], torch.eye(n, dtype=torch.bool), *standard)
        (2 * nll.sum()).backward()
        standard_optimiser.step()
        plain.append(tuple(standard.tolist()))
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(official), rtol=0, atol=1e-5)
    moved_official = official[-1][0] - 30.0
    assert abs(moved_official) > 50 * lr  # the trajectory moved: the comparison is not of constants
    assert plain[-1][0] - 30.0 == pytest.approx(moved_official / 2, rel=0.1)  # standard units: half the pace


def test_match_probability_equals_the_float64_reference():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(13, 7, 16, generator=generator)
    captions = torch.randn(29, 7, 16, generator=generator)
    a, b = torch.tensor(3.0), torch.tensor(8.0)
    fast = match_probability(images, captions, a, b, tile_bytes=4 * 7 * 7 * 8 * 3, tile_captions=8)  # several tiles
    distance = (images.double()[:, None, :, None, :] - captions.double()[None, :, None, :, :]).norm(dim=-1)
    reference = torch.sigmoid(-a.double() * distance + b.double()).mean(dim=(2, 3))
    torch.testing.assert_close(fast.double(), reference, atol=1e-5, rtol=1e-5)


def test_samples_are_mean_plus_scaled_noise():
    mu, log_sigma = torch.zeros(4, 3), torch.full((4, 3), math.log(0.5))
    draws = sample_embeddings(mu, log_sigma, 5, torch.Generator().manual_seed(1))
    again = sample_embeddings(mu, log_sigma, 5, torch.Generator().manual_seed(1))
    assert draws.shape == (4, 5, 3) and torch.equal(draws, again)
    eps = torch.randn((4, 5, 3), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(draws, 0.5 * eps)


def test_init_log_sigma_sets_where_sigma_starts():
    torch.manual_seed(0)
    head = UncertaintyHead(FeatureDims(6, 4), embed_dim=8, init_log_sigma=-5.0)
    zeros = head(torch.zeros(3, 6), torch.zeros(3, 2, 4), torch.ones(3, 2, dtype=torch.bool))
    torch.testing.assert_close(zeros, torch.full((3, 8), -5.0))
    default = UncertaintyHead(FeatureDims(6, 4), embed_dim=8)  # the official initialisation: biases near 0
    assert default.global_fc.bias.abs().max() < 1
    text = TextUncertaintyHead(FeatureDims(8, 4, True), embed_dim=8, init_log_sigma=-5.0)
    words = torch.zeros(3, 2, 4)
    out = text(torch.zeros(3, 8), words, torch.tensor([[True, True], [True, False], [True, True]]))
    # zero word vectors: the attention branch gives its bias, the GRU its biases' output, within (-1, 1)
    assert ((out + 5.0).abs() < 1).all()


# --- PVSE -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2])
def test_pvse_objective_is_the_official_mean_reduced_one(k):
    generator = torch.Generator().manual_seed(k)
    n, d = 5, 6
    method = PVSE(DIMS, DIMS, d, embeddings=k, margin=0.1, diversity_weight=0.1, mmd_weight=0.01)
    images = torch.nn.functional.normalize(torch.randn(n, k, d, generator=generator), dim=-1)
    captions = torch.nn.functional.normalize(torch.randn(n, k, d, generator=generator), dim=-1)
    image_residuals, caption_residuals = torch.rand(n, k, d, generator=generator), torch.rand(n, k, d, generator=generator)
    ours, stats = method.loss(
        {"embeddings": images, "residuals": image_residuals},
        {"embeddings": captions, "residuals": caption_residuals},
        torch.eye(n, dtype=torch.bool),
    )
    reference = official_pvse_loss(
        images.double(), captions.double(), image_residuals.double(), caption_residuals.double(), 0.1, 0.1, 0.01
    )
    assert ours.item() == pytest.approx(reference, rel=1e-5)
    assert ("diversity" in stats) == (k > 1) and ("mmd" in stats) == (k > 1)


def test_pvse_similarity_is_the_best_of_k_by_k():
    images = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one image, K = 2
    captions = torch.tensor([[[0.6, 0.8], [-1.0, 0.0]], [[-0.6, -0.8], [0.0, -1.0]]])
    torch.testing.assert_close(max_cosine(images, captions), torch.tensor([[0.8, 0.0]]))


def test_pvse_diversity_and_mmd():
    orthogonal = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    same = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    assert diversity_loss(orthogonal).item() == pytest.approx(0.0)
    assert diversity_loss(same).item() == pytest.approx(math.sqrt(2) / 4)  # ||[[0,1],[1,0]]||_F / K^2
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    assert mmd_loss(x, y).item() == pytest.approx(2 - 2 * math.exp(-0.5 * 5))
    assert mmd_loss(x, x).item() == pytest.approx(0.0)


# --- VSE0 / VSE++ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("negatives", ["all", "hardest"])
def test_vse_objective_is_the_official_sum(negatives):
    generator = torch.Generator().manual_seed(3)
    n, d = 6, 5
    method = VSE(DIMS, DIMS, d, margin=0.2, negatives=negatives)
    images = torch.nn.functional.normalize(torch.randn(n, 1, d, generator=generator), dim=-1)
    captions = torch.nn.functional.normalize(torch.randn(n, 1, d, generator=generator), dim=-1)
    ours, _ = method.loss({"embeddings": images}, {"embeddings": captions}, torch.eye(n, dtype=torch.bool))
    reference = official_vsepp_loss(images[:, 0].double() @ captions[:, 0].double().T, 0.2, negatives == "hardest")
    assert ours.item() == pytest.approx(reference, rel=1e-5)


def test_vse0_sums_every_violation():
    # rows (image anchors): .3 | .3 + .25 | 0 ; columns (caption anchors): .1 | .5 + .1 | 0
    assert hinge_triplet_loss(SIM, torch.eye(3, dtype=torch.bool), 0.2, hardest=False).item() == pytest.approx(1.55)
    assert hinge_triplet_loss(SIM, torch.eye(3, dtype=torch.bool), 0.2, hardest=False, reduction="mean").item() == pytest.approx(
        (0.85 + 0.7) / 9
    )


def test_vsepp_keeps_the_hardest_violation():
    # rows: max .3, .3, 0 ; columns: max .1, .5, 0
    assert hinge_triplet_loss(SIM, torch.eye(3, dtype=torch.bool), 0.2, hardest=True).item() == pytest.approx(1.2)
    assert hinge_triplet_loss(SIM, torch.eye(3, dtype=torch.bool), 0.2, hardest=True, reduction="mean").item() == pytest.approx(
        0.4
    )


def test_another_caption_of_the_same_image_is_not_a_negative_when_it_matches():
    match = torch.eye(3, dtype=torch.bool)
    match[0, 1] = match[1, 0] = True  # pairs 0 and 1 show the same image (batch_positives: image)
    # left: row 1 -> caption 2 (.25), column 1 <- image 2 (.1)
    assert hinge_triplet_loss(SIM, match, 0.2, hardest=False).item() == pytest.approx(0.35)
    assert hinge_triplet_loss(SIM, match, 0.2, hardest=True).item() == pytest.approx(0.35)
