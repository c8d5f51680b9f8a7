"""A new scoring and a new uncertainty statistic are each one entry of ``models/scorings.py``: with the entry
added to its table (here by patching the table, as an edit of the file would), a method can list it, the
registry checks it against what the method exports, and the evaluation computes and reports it."""

from __future__ import annotations

import inspect
import json
import re
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from corpora.prepared import PreparedDataset
from models.registry import RegistryError, registered
from models.scorings import SCORINGS, UNCERTAINTY_STATISTICS, Scoring, UncertaintyStatistic
from pcmebench import scoring
from pcmebench.evaluate import evaluate_run
from pcmebench.protocols import EvaluationSplit

# A probabilistic toy method whose own scoring and own statistic are the new ones.
TOY = """
METHODS = [
    {
        "name": "toy",
        "label": "Toy",
        "color": "#123456",
        "class": "Toy",
        "scorings": ["neg-euclidean", "cosine"],
        "probabilistic": True,
        "exports": {"items": ["embeddings", "mu", "log_sigma"]},
        "uncertainty": {"sigma": "log_sigma", "statistics": ["max_log_sigma", "mean_log_sigma"]},
        "settings": {},
    }
]


class Toy:
    pass
"""


def negative_euclidean(images: dict, captions: dict, learned: dict) -> torch.Tensor:
    """Minus the Euclidean distance of the two (first) embeddings."""
    x, y = images["embeddings"][:, 0], captions["embeddings"][:, 0]
    return -(x[:, None, :] - y[None, :, :]).pow(2).sum(-1).sqrt()


# The two entries, as a reader adds them to SCORINGS and UNCERTAINTY_STATISTICS.
NEW_SCORING = Scoring("minus the Euclidean distance of the embeddings", ("embeddings",), (), negative_euclidean)
NEW_STATISTIC = UncertaintyStatistic("max log σ", "the largest log σ over dimensions", lambda log_sigma: log_sigma.amax(1))


def models_with(tmp_path, text: str):
    folder = tmp_path / "models"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.py").write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy method registered beside the suite's, with the new scoring and statistic in their tables."""
    monkeypatch.setitem(SCORINGS, "neg-euclidean", NEW_SCORING)
    monkeypatch.setitem(UNCERTAINTY_STATISTICS, "max_log_sigma", NEW_STATISTIC)
    method = registered(models_with(tmp_path, TOY))["toy"]
    monkeypatch.setitem(registered(), "toy", method)  # every stage looks methods up there
    return method


def test_a_method_can_list_a_new_scoring_and_statistic_only_once_their_table_has_them(tmp_path, monkeypatch):
    with pytest.raises(RegistryError, match=re.escape("scorings[0]: unknown 'neg-euclidean'; use cosine, max-cosine")):
        registered(models_with(tmp_path / "a", TOY))
    monkeypatch.setitem(SCORINGS, "neg-euclidean", NEW_SCORING)
    with pytest.raises(RegistryError, match=re.escape("uncertainty.statistics[0]: unknown 'max_log_sigma'; use mean_log_sigma")):
        registered(models_with(tmp_path / "b", TOY))
    monkeypatch.setitem(UNCERTAINTY_STATISTICS, "max_log_sigma", NEW_STATISTIC)
    method = registered(models_with(tmp_path / "c", TOY))["toy"]
    assert method.primary_scoring == "neg-euclidean" and method.uncertainty_statistic == "max_log_sigma"
    # the registry checks the new scoring's reads against what the method exports
    without = TOY.replace('["embeddings", "mu", "log_sigma"]', '["mu", "log_sigma"]')
    with pytest.raises(RegistryError, match=re.escape("scoring 'neg-euclidean' reads ['embeddings'], which it does not export")):
        registered(models_with(tmp_path / "d", without))


def test_score_matrix_computes_a_new_scoring_from_its_entry_alone(toy):
    generator = torch.Generator().manual_seed(0)
    tensors = {f"{m}_embeddings": torch.randn(n, 1, 5, generator=generator) for m, n in (("image", 3), ("caption", 7))}
    ids = {"image_ids": np.arange(3), "caption_ids": np.arange(7), "caption_image_index": np.arange(7) % 3}
    embeddings = scoring.Embeddings(path="toy.safetensors", tensors=tensors, settings={"method": "toy"}, **ids)
    expected = -torch.cdist(tensors["image_embeddings"][:, 0], tensors["caption_embeddings"][:, 0])
    np.testing.assert_allclose(scoring.score_matrix(embeddings, "neg-euclidean"), expected.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=re.escape("'neg-euclidean' reads ['image_embeddings', 'caption_embeddings']")):
        scoring.score_matrix(scoring.Embeddings(path="toy.safetensors", tensors={}, settings={}, **ids), "neg-euclidean")
    # score_matrix has no branch per scoring: it names none of them
    assert not [name for name in SCORINGS if f'"{name}"' in inspect.getsource(scoring)]


def write_toy_embeddings(path, split: EvaluationSplit, log_sigma: dict) -> dict:
    """Perfect embeddings (each caption its image's orthonormal vector) with the given log σ."""
    basis = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))[0][: split.n_images].contiguous()
    vectors = {"image": basis, "caption": basis[split.caption_image]}
    tensors = {
        "image_ids": torch.as_tensor(split.image_ids),
        "caption_ids": torch.as_tensor(split.caption_ids),
        "caption_image_index": torch.as_tensor(split.caption_image),
    }
    for m, v in vectors.items():
        tensors |= {f"{m}_embeddings": v[:, None].clone(), f"{m}_mu": v.clone(), f"{m}_log_sigma": log_sigma[m]}
    settings = {"dataset": "synthetic-coco", "method": "toy", "seed": 0, "device": "cpu"}
    save_file(tensors, str(path), metadata={"settings": json.dumps(settings)})
    return settings


def test_the_evaluation_reports_a_new_scoring_and_statistic(toy, prepared, tmp_path):
    split = EvaluationSplit.from_prepared(PreparedDataset(prepared))
    generator = torch.Generator().manual_seed(4)
    log_sigma = {
        m: torch.randn(n, 16, generator=generator) - 3 for m, n in (("image", split.n_images), ("caption", split.n_captions))
    }
    path = tmp_path / "embeddings.safetensors"
    result = evaluate_run(prepared, path, write_toy_embeddings(path, split, log_sigma), device="cpu")

    metrics = result.metrics
    assert set(metrics["scoring"]) == {"neg-euclidean", "cosine"}
    own = metrics[metrics["scoring"] == "neg-euclidean"].set_index(["protocol", "direction", "metric"])["value"]
    assert own["1K", "i2t", "R@1"] == own["1K", "t2i", "R@1"] == 100.0  # distance 0 to its own image
    # the statistic: per query in queries.parquet (the method's own), and the bins of each it lists
    statistics = scoring.uncertainty_statistics(scoring.load_embeddings(path))
    assert set(statistics) == {"max_log_sigma", "mean_log_sigma"}
    for direction, modality in (("i2t", "image"), ("t2i", "caption")):
        expected = log_sigma[modality].double().amax(1).numpy()
        np.testing.assert_array_equal(statistics["max_log_sigma"][direction], expected)
        queries = result.queries[result.queries["direction"] == direction].sort_values("query")
        np.testing.assert_allclose(queries["u"], expected)
    assert set(result.uncertainty["uncertainty"]) == {"max_log_sigma", "mean_log_sigma"}
    assert set(result.uncertainty["scoring"]) == {"neg-euclidean"}
    assert "max_log_sigma" in set(result.uncertainty_summary["uncertainty"])
