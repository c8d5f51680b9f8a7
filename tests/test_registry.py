"""The method registry: read from the method files without torch, every field checked with a message
that names the file, the method and the fix; the workflow and the evaluation derive from it."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from models.registry import STACK_SETTINGS, RegistryError, method_entry, registered, with_method_settings
from models.scorings import SCORINGS, UNCERTAINTY_STATISTICS
from pcmebench.configcheck import load_schema, schema_problems
from tests.conftest import REPO, copy_packages, copy_workflow, snakemake, tail

ENTRY = """
METHODS = [
    {
        "name": "toy",
        "label": "Toy",
        "color": "#123456",
        "class": "Toy",
        "scorings": ["cosine"],
        "probabilistic": False,
        "exports": {"items": ["embeddings"]},
        "settings": {"width": {"type": "integer", "default": 3}},
    }
]


class Toy:
    pass
"""


def models_with(tmp_path, text: str, name: str = "toy.py"):
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_the_registry_and_the_modules_the_workflow_imports_load_no_torch():
    code = (
        "import sys; import models.registry, models, pcmebench.plots, pcmebench.report, pcmebench.configcheck; "
        "print(len(models.registry.registered()), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120)
    count, torch_loaded = result.stdout.split()
    assert int(count) == len(registered()) > 0 and torch_loaded == "False"


def test_each_method_file_declares_its_methods():
    methods = registered()
    for name, method in methods.items():
        assert method.file.parent == REPO / "models" and method.name == name
        assert method.primary_scoring == method.scorings[0] and set(method.scorings) <= set(SCORINGS)
        assert method.probabilistic == (method.uncertainty_statistic is not None)
        assert set(STACK_SETTINGS) <= set(method.all_settings)
    # variants of one class share its file
    assert {m.file.name for m in methods.values()} == {"vse.py", "pvse.py", "pcme.py", "pcmepp.py"}
    assert method_entry("pvse-k2").defaults["embeddings"] == 2 and method_entry("pvse-k1").defaults["embeddings"] == 1


def test_every_scoring_and_statistic_the_registry_names_is_implemented():
    import numpy as np
    import torch

    from pcmebench import scoring

    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for prefix, n in (("image", 4), ("caption", 8)):
        tensors |= {
            f"{prefix}_embeddings": torch.nn.functional.normalize(torch.randn(n, 1, 6, generator=generator), dim=-1),
            f"{prefix}_mu": torch.randn(n, 6, generator=generator),
            f"{prefix}_log_sigma": torch.randn(n, 6, generator=generator) - 2,
            f"{prefix}_samples": torch.randn(n, 3, 6, generator=generator),
        }
    tensors |= {"a": torch.tensor([5.0]), "b": torch.tensor([1.0])}
    matrix = torch.randn(4, 8, generator=generator)  # an external model's scores (the precomputed scoring)
    tensors |= {"image_scores": matrix, "caption_scores": matrix.T}
    ids = {"image_ids": np.arange(4), "caption_ids": np.arange(8), "caption_image_index": np.arange(8) % 4}
    embeddings = scoring.Embeddings(path="all.safetensors", tensors=tensors, settings={}, **ids)
    for name in SCORINGS:
        scores = scoring.score_matrix(embeddings, name)
        assert scores.shape == (4, 8) and np.isfinite(scores).all(), name
    for name, statistic in UNCERTAINTY_STATISTICS.items():
        assert statistic.compute(tensors["image_log_sigma"].double()).shape == (4,), name


def test_an_entry_is_read_with_names_of_literals_and_without_running_the_file(tmp_path):
    folder = models_with(
        tmp_path,
        """
        import torch  # never imported: the file is only parsed
        SHARED = {"width": {"type": "integer", "default": 3}}
        METHODS = [{"name": "toy", "label": "Toy", "color": "#123456", "class": "Toy", "scorings": ["cosine"],
                    "probabilistic": False, "exports": {"items": ["embeddings"]}, "settings": {**SHARED, "depth": {"type": "integer"}}}]
        class Toy:
            pass
        """,
    )
    toy = registered(folder)["toy"]
    assert toy.defaults == {"grad_clip": None, "batch_size": None, "width": 3}
    assert toy.required == ["word_vectors_training", "depth"]
    assert toy.module == "models.toy" and toy.where == "models/toy.py"
    assert toy.complete({"depth": 2}) == {"grad_clip": None, "batch_size": None, "width": 3, "depth": 2}


@pytest.mark.parametrize(
    "change, message",
    [
        (('"color": "#123456",', ""), "models/toy.py: method 'toy': no 'color'; add 'color' to its entry in METHODS"),
        (('"color": "#123456"', '"color": "red"'), "method 'toy': color is 'red'; use '#rrggbb'"),
        (('"label": "Toy"', '"label": ""'), "method 'toy': label is ''; give 'label' a display name"),
        (('"class": "Toy"', '"class": "Missing"'), "class 'Missing' is not defined in this file"),
        (('["cosine"]', '["dot"]'), "method 'toy': scorings[0]: unknown 'dot'; use cosine, max-cosine"),
        (('["cosine"]', "[]"), "method 'toy': scorings is []; list at least its own scoring"),
        (('["cosine"]', '["match-prob"]'), "scoring 'match-prob' reads ['samples', 'a', 'b'], which it does not export"),
        (('"probabilistic": False', '"probabilistic": True'), "probabilistic without 'uncertainty'"),
        (('"probabilistic": False', '"probabilistic": "no"'), "method 'toy': probabilistic is 'no'; make it True or False"),
        (
            (
                '"probabilistic": False',
                '"probabilistic": False, "uncertainty": {"sigma": "embeddings", "statistics": ["sum_sigma_sq"]}',
            ),
            "'uncertainty' on a method that is not probabilistic; set probabilistic: True or drop it",
        ),
        (
            ('"probabilistic": False', '"probabilistic": True, "uncertainty": {"sigma": "log_sigma", "statistics": ["u"]}'),
            "method 'toy': uncertainty.statistics[0]: unknown 'u'; use mean_log_sigma, sum_sigma_sq",
        ),
        (
            (
                '"probabilistic": False',
                '"probabilistic": True, "uncertainty": {"sigma": "log_sigma", "statistics": ["sum_sigma_sq"]}',
            ),
            "uncertainty.sigma 'log_sigma' is not one of its exported items; name the item holding log σ",
        ),
        (('["embeddings"]}', '["embeddings"], "drawn": "samples"}'), "exports.drawn 'samples' is not one of its items"),
        (('["embeddings"]}', '["embeddings"], "sampled": 1}'), "exports: unknown field(s) ['sampled']; the fields are items"),
        (('"exports": {"items": ["embeddings"]}', '"exports": {}'), "no 'exports.items'; add 'items' to its exports in METHODS"),
        (('"name": "toy"', '"name": "Toy Method"'), "an entry of METHODS: name is 'Toy Method'; give it a lower-case name"),
        (('"width": {', '"word_vectors_training": {'), "setting 'word_vectors_training' is a stack setting"),
        (('{"type": "integer", "default": 3}', "3"), "method 'toy': settings.width is 3; give it a JSON-schema fragment"),
        (('"settings":', '"colour": 1, "settings":'), "unknown field(s) ['colour']"),
        (('["embeddings"]}', "[EMBEDDINGS]}"), "METHODS holds 'EMBEDDINGS' (line 10), which is not a literal"),
        (('["embeddings"]}', '[str("embeddings")]}'), """METHODS holds "str('embeddings')" (line 10), which is not a literal"""),
        (("METHODS = [\n    {", "METHODS = [\n    'toy', {"), "an entry of METHODS: it is 'toy'; write each method as a dict"),
    ],
)
def test_a_broken_entry_names_the_file_the_method_and_the_fix(tmp_path, change, message):
    folder = models_with(tmp_path, ENTRY.replace(*change))
    with pytest.raises(RegistryError, match=re.escape(message)):
        registered(folder)
    assert "README, 'Adding a method'" in str(pytest.raises(RegistryError, registered, folder).value)


def test_one_name_in_two_files_is_refused(tmp_path):
    folder = models_with(tmp_path, ENTRY)
    models_with(tmp_path, ENTRY, "other.py")
    with pytest.raises(RegistryError, match=r"models/toy.py: method 'toy' is also declared in models/other.py"):
        registered(folder)


def test_the_schema_holds_each_method_and_its_settings_and_refuses_others(tmp_path):
    schema = with_method_settings(
        load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"), registered(models_with(tmp_path, ENTRY))
    )
    config = {"datasets": ["synthetic-coco"], "methods": ["toy"], "method_settings": {"toy": {"width": 2, "widht": 1}}}
    problems = [p for p in schema_problems(config, schema) if "method_settings" in p]
    assert problems == [
        "config: method_settings.toy: unknown key 'widht' (did you mean 'width'?); allowed: batch_size, grad_clip, width, word_vectors_training"
    ]
    config["method_settings"] = {"toy": {"width": "wide"}, "pcme": {}}
    problems = [p for p in schema_problems(config, schema) if "method_settings" in p]
    assert "config: method_settings.toy.width: 'wide' is not of type 'integer'" in problems
    assert any("method_settings: unknown key 'pcme'" in p for p in problems)  # not a method of that registry


def test_the_workflow_constrains_the_method_wildcard_to_the_registry():
    snakefile = (REPO / "Snakefile").read_text()
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    # method=one_of(<methods>) in the Snakefile's wildcard_constraints, or through METHOD_NAMES = one_of(<methods>)
    found = re.search(r"^\s+method=one_of\((\w+)\),$", snakefile, re.MULTILINE) or (
        "method=METHOD_NAMES," in snakefile and re.search(r"METHOD_NAMES = .*one_of\((\w+)\)$", common, re.MULTILINE)
    )
    assert found, "the Snakefile constrains no method wildcard"
    # the registry's methods, as the config check returns them (pcmebench.configcheck.check_config)
    assert re.search(rf"^{found[1]} = (check_config|registered)\(", common, re.MULTILINE), found[1]


@pytest.mark.slow
def test_a_method_file_without_a_colour_stops_the_plan_naming_it(tmp_path):
    project = copy_packages(copy_workflow(tmp_path))
    (project / "models" / "toy.py").write_text(ENTRY.replace('"color": "#123456",', ""))
    result = snakemake(project, "-n", "all")
    assert result.returncode != 0
    assert "models/toy.py: method 'toy': no 'color'; add 'color' to its entry in METHODS" in tail(result)
