"""Each method's loss and similarity against values worked out by hand."""

import math

import pytest
import torch

from models.pcme import (
    UncertaintyHead,
    kl_to_standard_normal,
    match_probability,
    sample_embeddings,
    soft_contrastive_loss,
    uniformity_loss,
)
from models.pvse import diversity_loss, max_cosine, mmd_loss
from models.vse import hinge_triplet_loss

SIM = torch.tensor([[0.5, 0.6, 0.1], [0.4, 0.3, 0.35], [0.0, 0.2, 0.7]])


def test_vse0_sums_every_violation():
    # rows (image anchors): .3 | .3 + .25 | 0 ; columns (caption anchors): .1 | .5 + .1 | 0
    assert hinge_triplet_loss(SIM, torch.eye(3, dtype=torch.bool), 0.2, hardest=False).item() == pytest.approx(1.55)


def test_vsepp_keeps_the_hardest_violation():
    # rows: max .3, .3, 0 ; columns: max .1, .5, 0
    assert hinge_triplet_loss(SIM, torch.eye(3, dtype=torch.bool), 0.2, hardest=True).item() == pytest.approx(1.2)


def test_another_caption_of_the_same_image_is_not_a_negative():
    match = torch.eye(3, dtype=torch.bool)
    match[0, 1] = match[1, 0] = True  # pairs 0 and 1 show the same image
    # left: row 1 -> caption 2 (.25), column 1 <- image 2 (.1)
    assert hinge_triplet_loss(SIM, match, 0.2, hardest=False).item() == pytest.approx(0.35)
    assert hinge_triplet_loss(SIM, match, 0.2, hardest=True).item() == pytest.approx(0.35)


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


def test_pcme_soft_contrastive_loss_by_hand():
    a, b = torch.tensor(1.0), torch.tensor(0.5)
    image = torch.tensor([[[0.0], [1.0]]])  # one image, J = 2 samples in 1-D
    caption = torch.tensor([[[0.0], [3.0]]])
    p = sum(1 / (1 + math.exp(a.item() * d - b.item())) for d in (0, 3, 1, 2)) / 4
    matched = soft_contrastive_loss(image, caption, torch.tensor([[True]]), a, b)
    unmatched = soft_contrastive_loss(image, caption, torch.tensor([[False]]), a, b)
    assert matched.item() == pytest.approx(-math.log(p), rel=1e-5)
    assert unmatched.item() == pytest.approx(-math.log(1 - p), rel=1e-5)
    both = soft_contrastive_loss(torch.cat([image, caption]), torch.cat([image, caption]), torch.eye(2, dtype=torch.bool), a, b)
    assert both.item() > 0


def test_pcme_kl_and_uniformity_by_hand():
    mu, log_sigma = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    assert kl_to_standard_normal(mu, log_sigma).item() == pytest.approx(0.5 * (1 + 3 - 2 * math.log(2)))
    points = torch.tensor([[[3.0, 0.0]], [[0.0, 0.5]], [[-1.0, 0.0]]])  # normalised: squared distances 2, 4, 2
    assert uniformity_loss(points).item() == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3))


def test_match_probability_equals_the_float64_reference():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(13, 7, 16, generator=generator)
    captions = torch.randn(29, 7, 16, generator=generator)
    a, b = torch.tensor(3.0), torch.tensor(8.0)
    fast = match_probability(images, captions, a, b, chunk_bytes=4 * 7 * 7 * 29 * 3)  # several chunks
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
    head = UncertaintyHead(global_dim=6, local_dim=4, embed_dim=8, init_log_sigma=-5.0)
    zeros = head(torch.zeros(3, 6), torch.zeros(3, 2, 4), torch.ones(3, 2, dtype=torch.bool))
    torch.testing.assert_close(zeros, torch.full((3, 8), -5.0))
    default = UncertaintyHead(global_dim=6, local_dim=4, embed_dim=8)  # PyTorch's initialisation: biases near 0
    assert default.global_fc.bias.abs().max() < 1
