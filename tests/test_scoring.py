"""Score matrices: chunked match probability against a float64 reference, CSD, max-cosine, embeddings files."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from models.pcme import match_probability
from models.scorings import csd_scores, max_cosine_scores, sample_dot_scores
from pcmebench.scoring import Embeddings, load_embeddings, score_matrix, scorings_for


def reference_match_probability(images, captions, a, b):
    """Float64, one image query at a time against every caption: the J x J x D differences, as the original evaluation."""
    images, captions = images.double(), captions.double()
    rows = []
    for query in images:  # (J, D)
        distance = (query[None, :, None, :] - captions[:, None, :, :]).norm(dim=-1)  # (N_c, J, J)
        rows.append(torch.sigmoid(-float(a) * distance + float(b)).mean(dim=(1, 2)))
    return torch.stack(rows)


@pytest.mark.parametrize(
    ("tile_bytes", "tile_captions", "workers"),
    [(1, None, 1), (4 * 5 * 5 * 31 * 3, None, 1), (2**30, None, 2), (4 * 5 * 5 * 8 * 3, 8, 3), (1, 1, 2)],
)
def test_tiled_match_probability_equals_the_float64_reference(tile_bytes, tile_captions, workers):
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(17, 5, 24, generator=generator) * 0.3
    captions = torch.randn(31, 5, 24, generator=generator) * 0.3
    a, b = torch.tensor([6.0]), torch.tensor([4.0])  # stored as one-element tensors in the embeddings file
    fast = match_probability(images, captions, a, b, tile_bytes, tile_captions, workers)
    reference = reference_match_probability(images, captions, a, b)
    assert fast.shape == (17, 31) and fast.dtype == torch.float32
    torch.testing.assert_close(fast.double(), reference, atol=2e-6, rtol=1e-5)
    # the same top-10 ranking for every query
    assert torch.equal(
        fast.double().argsort(dim=1, descending=True, stable=True)[:, :10],
        reference.argsort(dim=1, descending=True, stable=True)[:, :10],
    )


def test_match_probability_tiles_agree_with_row_blocks_and_leave_torch_as_found():
    """The CPU's tiles and workers against the GPU's layout (row blocks of every caption in turn), on inputs
    that take several tiles of 128 captions; inputs that require grad give a plain result; a failing
    worker leaves torch's thread count as it was."""
    generator = torch.Generator().manual_seed(4)
    images = (torch.randn(40, 7, 32, generator=generator) * 0.2).requires_grad_()
    captions = torch.randn(300, 7, 32, generator=generator) * 0.2
    a, b = torch.tensor([20.0]), torch.tensor([15.0])
    threads = torch.get_num_threads()
    tiles = match_probability(images, captions, a, b, tile_bytes=4 * 49 * 128 * 9, tile_captions=128, workers=2)
    rows = match_probability(images, captions, a, b, tile_bytes=2**28, tile_captions=300, workers=1)
    assert not tiles.requires_grad and torch.get_num_threads() == threads
    torch.testing.assert_close(tiles, rows, rtol=0, atol=1.2e-7)  # at most one float32 step below 1
    with pytest.raises(RuntimeError):
        match_probability(images, captions[:, :, :16], a, b, workers=2)  # D differs: each product fails
    assert torch.get_num_threads() == threads
    assert match_probability(images, captions[:0], a, b, workers=2).shape == (40, 0)


def test_match_probability_of_identical_points_is_sigmoid_b():
    point = torch.zeros(1, 2, 3)
    assert match_probability(point, point, 7.0, 2.0).item() == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-6)


def test_csd_is_the_expected_squared_sample_distance_and_ranks_by_it():
    mu_i = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    log_sigma_i = torch.log(torch.tensor([[0.1, 0.1], [0.5, 0.5]]))
    mu_c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
    log_sigma_c = torch.log(torch.tensor([[0.1, 0.1], [0.3, 0.3], [0.1, 0.1]]))
    scores = csd_scores(mu_i, log_sigma_i, mu_c, log_sigma_c, block_bytes=1)
    expected = torch.tensor(
        [
            [-(0 + 0.02 + 0.02), -(0 + 0.02 + 0.18), -(0.16 + 0.64 + 0.02 + 0.02)],
            [-(2 + 0.5 + 0.02), -(2 + 0.5 + 0.18), -(0.36 + 0.04 + 0.5 + 0.02)],
        ]
    )
    torch.testing.assert_close(scores, expected)
    # same mean, larger sigma: farther under CSD, equal under the cosine of mu
    assert scores[0, 0] > scores[0, 1]
    # a Monte-Carlo estimate of E||z_i - z_c||^2 agrees
    generator = torch.Generator().manual_seed(0)
    z_i = mu_i[1] + torch.randn(200_000, 2, generator=generator) * log_sigma_i[1].exp()
    z_c = mu_c[2] + torch.randn(200_000, 2, generator=generator) * log_sigma_c[2].exp()
    assert -((z_i - z_c) ** 2).sum(1).mean().item() == pytest.approx(scores[1, 2].item(), rel=0.01)


def test_sample_dot_sums_every_sample_pairs_inner_product():
    """The official CUB scoring (evaluate_cub.py, eval_method matmul): the sum over J x J of z_i . z_c."""
    generator = torch.Generator().manual_seed(2)
    images, captions = torch.randn(3, 4, 5, generator=generator), torch.randn(6, 4, 5, generator=generator)
    expected = torch.tensor(
        [[sum(float(images[i, s] @ captions[c, t]) for s in range(4) for t in range(4)) for c in range(6)] for i in range(3)]
    )
    torch.testing.assert_close(sample_dot_scores(images, captions), expected, rtol=1e-5, atol=1e-5)


def test_max_cosine_is_the_best_of_k_by_k_and_normalises():
    generator = torch.Generator().manual_seed(1)
    images, captions = torch.randn(6, 2, 5, generator=generator) * 3, torch.randn(9, 2, 5, generator=generator)
    scores = max_cosine_scores(images, captions, block_bytes=1)
    brute = torch.nn.functional.cosine_similarity(images[:, None, :, None, :], captions[None, :, None, :, :], dim=-1).amax(
        dim=(2, 3)
    )
    torch.testing.assert_close(scores, brute)


def embeddings(method: str, n_images=4, n_captions=8, dim=6) -> Embeddings:
    generator = torch.Generator().manual_seed(2)
    ids = {
        "image_ids": np.arange(n_images),
        "caption_ids": np.arange(n_captions),
        "caption_image_index": np.arange(n_captions) % n_images,
    }
    if method == "pcme":
        tensors = {}
        for prefix, n in (("image", n_images), ("caption", n_captions)):
            mu = torch.randn(n, dim, generator=generator)
            log_sigma = torch.randn(n, dim, generator=generator) - 2
            tensors.update(
                {
                    f"{prefix}_mu": mu,
                    f"{prefix}_log_sigma": log_sigma,
                    f"{prefix}_samples": mu[:, None] + torch.randn(n, 3, dim, generator=generator) * log_sigma.exp()[:, None],
                }
            )
        tensors.update(a=torch.tensor([5.0]), b=torch.tensor([1.0]))
    else:
        k = 2 if method == "pvse-k2" else 1
        tensors = {
            f"{p}_embeddings": torch.randn(n, k, dim, generator=generator)
            for p, n in (("image", n_images), ("caption", n_captions))
        }
    return Embeddings(path="embeddings.safetensors", tensors=tensors, settings={"method": method}, **ids)


def test_each_method_gets_its_scorings_and_each_matrix_is_images_by_captions():
    assert scorings_for("vse0") == ("cosine",) and scorings_for("pvse-k2") == ("max-cosine",)
    assert scorings_for("pcme") == ("match-prob", "sample-dot", "mu", "csd")
    with pytest.raises(ValueError, match="unknown method"):
        scorings_for("clip")
    for method in ("vse0", "pvse-k2", "pcme"):
        emb = embeddings(method)
        for scoring in scorings_for(method):
            scores = score_matrix(emb, scoring, "cpu")
            assert scores.shape == (4, 8) and scores.dtype == np.float32 and np.isfinite(scores).all()
    pcme = embeddings("pcme")
    t = pcme.tensors
    np.testing.assert_allclose(
        score_matrix(pcme, "mu"),
        torch.nn.functional.normalize(t["image_mu"], dim=1).numpy()
        @ torch.nn.functional.normalize(t["caption_mu"], dim=1).numpy().T,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        score_matrix(pcme, "match-prob"),
        reference_match_probability(t["image_samples"], t["caption_samples"], 5.0, 1.0).numpy(),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="'cosine' needs one embedding per item"):
        score_matrix(embeddings("pvse-k2"), "cosine")
    with pytest.raises(ValueError, match=r"'match-prob' reads \['image_samples', 'caption_samples', 'a', 'b'\], which these"):
        score_matrix(embeddings("vse0"), "match-prob")
    with pytest.raises(ValueError, match="unknown scoring 'dot'"):
        score_matrix(embeddings("vse0"), "dot")


def test_bad_embeddings_files_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "embeddings.safetensors"
    ids = {"image_ids": torch.arange(3), "caption_ids": torch.arange(6), "caption_image_index": torch.arange(6) // 2}
    good = {"image_embeddings": torch.randn(3, 1, 4), "caption_embeddings": torch.randn(6, 1, 4)}
    save_file({**ids, **good}, str(path), metadata={"settings": json.dumps({"method": "vse0"})})
    loaded = load_embeddings(path)
    assert loaded.settings == {"method": "vse0"} and loaded.caption_image_index.tolist() == [0, 0, 1, 1, 2, 2]

    def written_by(method):
        return {"settings": json.dumps({"method": method})}

    save_file({**ids, "image_embeddings": good["image_embeddings"]}, str(path), metadata=written_by("vse0"))
    with pytest.raises(ValueError, match=r"embeddings.safetensors: not an embeddings file .* missing \['caption_embeddings'\]"):
        load_embeddings(path)
    save_file({**ids, **good, "caption_embeddings": torch.randn(5, 1, 4)}, str(path), metadata=written_by("vse0"))
    with pytest.raises(ValueError, match="caption_embeddings has 5 rows, expected 6"):
        load_embeddings(path)
    nan = good["image_embeddings"].clone()
    nan[1, 0, 2] = float("nan")
    save_file({**ids, **good, "image_embeddings": nan}, str(path), metadata=written_by("vse0"))
    with pytest.raises(ValueError, match="image_embeddings holds NaN"):
        load_embeddings(path)
    save_file({**ids, **good}, str(path))
    with pytest.raises(ValueError, match="no method in its settings metadata; rerun the embed rule"):
        load_embeddings(path)
    save_file({**ids, **good}, str(path), metadata=written_by("clip"))
    with pytest.raises(ValueError, match="embeddings.safetensors: unknown method 'clip': no file in models/ declares it"):
        load_embeddings(path)
    pcme = {**ids, "image_samples": torch.randn(3, 2, 4), "caption_samples": torch.randn(6, 2, 4)}
    save_file(pcme, str(path), metadata=written_by("pcme"))
    with pytest.raises(
        ValueError, match=r"missing \['image_mu', 'image_log_sigma', 'caption_mu', 'caption_log_sigma', 'a', 'b'\]"
    ):
        load_embeddings(path)
    with pytest.raises(FileNotFoundError, match="run the embed rule"):
        load_embeddings(tmp_path / "absent.safetensors")
