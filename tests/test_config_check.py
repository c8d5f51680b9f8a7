"""The config is refused before anything runs when a key is unknown at any level or a value cannot
run; every message names the key by its full path and says what is allowed or what to change."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from snakemake.exceptions import WorkflowError

from corpora import DATASETS, SYNTHETIC_FORMAT
from models.registry import settings_problems, with_method_settings
from pcmebench.configcheck import (
    check_config,
    coerce_command_line_scalars,
    load_schema,
    recipe_problems,
    resolve_external,
    schema_problems,
)
from pcmebench.runs import merge_config
from tests.conftest import REPO

# The schema as the workflow validates with it: each method's settings from its registry entry.
SCHEMA_FILE = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = with_method_settings(load_schema(SCHEMA_FILE))
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def dry_run(*config: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "all", "--nolock", "--config", *config],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def with_value(path: list, value) -> dict:
    """The default config with ``value`` at ``path`` (a new key where there was none)."""
    config = copy.deepcopy(DEFAULT)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


@pytest.mark.parametrize("preset", ["config.yaml", "smoke.yaml", "paper.yaml"])
def test_every_committed_preset_passes(preset):
    config = merge_config(DEFAULT, yaml.safe_load((REPO / "config" / preset).read_text()))
    assert schema_problems(config, SCHEMA) == []
    assert settings_problems(config) == [] and recipe_problems(config) == []


def test_the_schema_names_exactly_the_datasets_of_corpora():
    """corpora.DATASETS is where dataset names live; the schema, which cannot import it, must list the same."""
    schema = load_schema(SCHEMA_FILE)
    places = {
        "datasets": set(schema["properties"]["datasets"]["items"]["enum"]),
        "dataset_settings": set(schema["properties"]["dataset_settings"]["properties"]),
        "per_dataset_number": set(schema["$defs"]["per_dataset_number"]["oneOf"][1]["properties"]),
        "external files": set(schema["properties"]["external"]["additionalProperties"]["properties"]["files"]["properties"]),
    }
    for name, definition in schema["$defs"].items():
        for branch in definition.get("oneOf", []):
            for pattern in branch.get("patternProperties", {}):
                places[f"{name} pattern"] = {key for key in DATASETS + ("imagenet",) if re.fullmatch(pattern, key)}
    assert len(places) == 8 and all(names == set(DATASETS) for names in places.values()), places
    # the real datasets' sources, and the per-dataset values every format needs (the synthetic fall back on them)
    assert set(DATASETS) - set(SYNTHETIC_FORMAT) <= set(schema["properties"]["sources"]["properties"])
    assert set(schema["$defs"]["per_dataset_number"]["oneOf"][1]["required"]) == set(SYNTHETIC_FORMAT.values())


def test_one_pass_types_checks_and_completes_the_config_or_lists_every_problem():
    config = copy.deepcopy(DEFAULT)
    config["seeds"] = ["0", "1"]  # as --config gives them
    del config["method_settings"]["pcme"]["reduction"]
    methods = check_config(config, SCHEMA_FILE)
    assert config["seeds"] == [0, 1] and "pcme" in methods
    assert config["method_settings"]["pcme"]["reduction"] == methods["pcme"].complete({})["reduction"]
    config = with_value(["method_settings", "vsepp", "margni"], 0.25)
    config["dataset_settings"]["synthetic-cub"]["training"]["frozen_epochs"] = -1
    with pytest.raises(WorkflowError) as error:
        check_config(config, SCHEMA_FILE)
    message = str(error.value)
    assert message.startswith("the config cannot run:\n") and "margni" in message and "frozen_epochs" in message


def test_a_setting_without_value_or_default_names_the_method_the_setting_and_where():
    config = copy.deepcopy(DEFAULT)
    del config["method_settings"]["pcme"]["samples"]
    del config["method_settings"]["vse0"]
    assert schema_problems(config, SCHEMA) == []  # which settings a method needs: settings_problems says it better
    assert settings_problems(config) == [
        (
            "config: method_settings.vse0: missing 'word_vectors_training', 'margin', 'negatives', setting(s) of vse0 without "
            "a default in models/vse.py; add them under method_settings.vse0 in the config (or a 'default' to the setting in "
            "models/vse.py)"
        ),
        (
            "config: method_settings.pcme: missing 'samples', setting(s) of pcme without a default in models/pcme.py; add "
            "them under method_settings.pcme in the config (or a 'default' to the setting in models/pcme.py)"
        ),
    ]
    # a setting with a default (models/pcme.py: reduction) may be left out
    del config["method_settings"]["pcme"]["reduction"]
    assert "reduction" not in " ".join(settings_problems(config))


@pytest.mark.parametrize(
    "path, message",
    [
        (["colour"], "config: (top level): unknown key 'colour'"),
        (["bootstrap", "replicate"], "config: bootstrap: unknown key 'replicate' (did you mean 'replicates'?)"),
        (["method_settings", "vsepp", "margni"], "config: method_settings.vsepp: unknown key 'margni' (did you mean 'margin'?)"),
        (["method_settings", "pcme", "sample"], "config: method_settings.pcme: unknown key 'sample' (did you mean 'samples'?)"),
        (["method_settings", "pvse-k2", "mmd"], "config: method_settings.pvse-k2: unknown key 'mmd'"),
        (
            ["dataset_settings", "synthetic-coco", "embed_dims"],
            "config: dataset_settings.synthetic-coco: unknown key 'embed_dims' (did you mean 'embed_dim'?)",
        ),
        (["dataset_settings", "coco", "generator"], "config: dataset_settings.coco: unknown key 'generator'"),
        (
            ["dataset_settings", "synthetic-cub", "training", "lrr"],
            "config: dataset_settings.synthetic-cub.training: unknown key 'lrr' (did you mean 'lr'?)",
        ),
        (
            ["dataset_settings", "synthetic-coco", "generator", "images", "tset"],
            "config: dataset_settings.synthetic-coco.generator.images: unknown key 'tset' (did you mean 'test'?)",
        ),
        (
            ["method_settings", "pcme", "kl_weight", "synthtic-coco"],
            "config: method_settings.pcme.kl_weight: unknown key 'synthtic-coco' (did you mean 'synthetic-coco'?)",
        ),
        (
            ["method_settings", "pcme", "init_log_sigma", "cubb"],
            "config: method_settings.pcme.init_log_sigma: unknown key 'cubb'",
        ),
    ],
)
def test_an_unknown_key_is_refused_at_every_level_and_named(path, message):
    problems = schema_problems(with_value(path, 1), SCHEMA)
    assert len(problems) == 1 and problems[0].startswith(message), problems
    assert "allowed:" in problems[0]


def test_every_problem_is_reported_at_once_with_its_path():
    config = with_value(["method_settings", "vsepp", "margni"], 0.25)
    config["seeds"] = [0, -1]
    config["method_settings"]["pcme"]["uniformity_weight"] = {"coco": 1.0}
    problems = schema_problems(config, SCHEMA)
    assert any(p.startswith("config: seeds[1]: -1 is less than the minimum of 0") for p in problems), problems
    assert any(p == "config: method_settings.pcme.uniformity_weight: 'cub' is a required property" for p in problems), problems
    assert any("margni" in p for p in problems) and len(problems) == 3


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"frozen_epochs": 0, "finetune_epochs": 0},
            "config: dataset_settings.synthetic-coco.training: frozen_epochs + finetune_epochs is 0",
        ),
    ],
)
def test_a_schedule_that_trains_nothing_is_refused(change, message):
    config = copy.deepcopy(DEFAULT)
    config["dataset_settings"]["synthetic-coco"]["training"].update(change)
    assert schema_problems(config, SCHEMA) == []
    assert any(p.startswith(message) for p in recipe_problems(config))


def test_settings_that_validate_but_cannot_run_are_refused():
    config = copy.deepcopy(DEFAULT)
    config["dataset_settings"]["synthetic-cub"]["generator"]["test_classes"] = 40
    config["dataset_settings"]["synthetic-coco"]["pretraining"]["images"] = 10
    config["dataset_settings"]["synthetic-coco"]["embed_dim"] = 127
    config["dataset_settings"]["synthetic-cub"]["training"]["stored_shorter_side"] = 48
    assert schema_problems(config, SCHEMA) == ["config: dataset_settings.synthetic-coco.embed_dim: 127 is not a multiple of 2"]
    problems = recipe_problems(config)
    assert any("synthetic-cub.generator: test_classes (40) must be fewer than classes (40)" in p for p in problems)
    assert any("synthetic-cub.training: stored_shorter_side (48) is below the 64 px its 'flip'" in p for p in problems)
    assert any("synthetic-coco.pretraining: images (10) must be at least batch_size (64)" in p for p in problems)


# --- through Snakemake, as a user meets them ---------------------------------------------------


@pytest.mark.slow
def test_a_typo_in_a_method_setting_stops_the_plan_naming_the_key():
    code, output = dry_run('method_settings={"vsepp": {"margni": 0.25}}')
    assert code != 0
    assert "config: method_settings.vsepp: unknown key 'margni' (did you mean 'margin'?)" in output


@pytest.mark.slow
def test_zero_epochs_stop_the_plan_naming_the_key_and_the_fix():
    code, output = dry_run('dataset_settings={"synthetic-cub": {"training": {"frozen_epochs": 0, "finetune_epochs": 0}}}')
    assert code != 0
    assert "dataset_settings.synthetic-cub.training: frozen_epochs + finetune_epochs is 0" in output
    assert "set either to 1 or more" in output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device: cuda can run here")
@pytest.mark.slow
def test_device_cuda_without_cuda_stops_the_plan_before_any_job():
    code, output = dry_run("device=cuda")
    assert code != 0
    assert "config: device: cuda, but torch sees no CUDA device on this machine" in output
    assert "set device: auto" in output


@pytest.mark.parametrize(
    "override, message",
    [
        ('datasets=["synthetic-coco","imagenet"]', "config: datasets[1]: 'imagenet' is not one of ['synthetic-coco', 'synthetic-cub', 'coco', 'cub']"),
        ('methods=["pcme","clip"]', "config: methods[1]: unknown method 'clip': no file in models/ declares it; registered: "),
        ('methods=["pcme","vsepq"]', "config: methods[1]: unknown method 'vsepq' (did you mean 'vsepp'?)"),
        ("device=tpu", "config: device: 'tpu' is not one of ['auto', 'cpu', 'cuda']"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_a_value_outside_the_schema_names_the_key_and_the_allowed_values(override, message):
    code, output = dry_run(override)
    assert code != 0
    assert message in output


def test_command_line_text_becomes_the_null_or_number_the_schema_wants():
    """--config 'method_settings={"pcme": {"grad_clip": {"coco": null, ...}}}' reaches the config as text."""
    config = with_value(["method_settings", "pcme", "grad_clip"], {"coco": "null", "cub": "~", "synthetic-coco": "2.0"})
    coerce_command_line_scalars(config, SCHEMA)
    assert config["method_settings"]["pcme"]["grad_clip"] == {"coco": None, "cub": None, "synthetic-coco": 2.0}
    assert schema_problems(config, SCHEMA) == []
    config = with_value(["method_settings", "pcme", "grad_clip"], "none")
    coerce_command_line_scalars(config, SCHEMA)
    assert schema_problems(config, SCHEMA)  # not a spelling of null: refused, not read as one


# --- external models (config `external`) -------------------------------------------------------------


def external_file(path: Path, sigma: bool) -> str:
    """A small file of the external format (its arrays' names are all the planning reads)."""
    arrays = {"image_ids": np.arange(2), "caption_ids": np.arange(2), "image_mu": np.ones((2, 3), np.float32)}
    if sigma:
        arrays |= {"image_log_sigma": np.zeros((2, 3), np.float32), "caption_log_sigma": np.zeros((2, 3), np.float32)}
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        save_file({k: torch.from_numpy(v) for k, v in arrays.items()}, str(path))
    return str(path)


def test_external_models_are_checked_before_anything_runs(tmp_path):
    config = with_value(["external"], {
        "pcme": {"label": "Mine", "scoring": "cosin", "files": {"synthetic-coco": str(tmp_path / "nowhere.npz")}},
        "mixed": {"label": "Mixed", "scoring": ["csd", "mu"], "statistics": ["sum_sigma_sq"], "files": {
            "synthetic-coco": [external_file(tmp_path / "a.npz", True), external_file(tmp_path / "b.safetensors", False)],
            "synthetic-cub": str(tmp_path / "broken.safetensors")}},
        "flat": {"label": "Flat", "scoring": "mu", "statistics": ["mean_log_sigma"],
                 "files": {"synthetic-cub": external_file(tmp_path / "c.npz", False), "coco": str(tmp_path / "unused.npz")}},
    })  # fmt: skip
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 12)
    with pytest.raises(WorkflowError) as error:
        check_config(config, SCHEMA_FILE)
    message = str(error.value)
    for line in [
        "config: external.pcme: 'pcme' is a method of models/ (models/pcme.py); give the external model another name",
        "config: external.pcme.scoring: unknown 'cosin' (did you mean 'cosine'?)",
        f"config: external.pcme.files.synthetic-coco[0]: {tmp_path / 'nowhere.npz'}: file not found",
        f"config: external.mixed.files: some files hold log σ (image_log_sigma, caption_log_sigma), these do not: {tmp_path / 'b.safetensors'}",
        f"config: external.mixed.files.synthetic-cub[0]: {tmp_path / 'broken.safetensors'}: not a readable .safetensors file",
        "config: external.flat.statistics: its files hold no log σ",
    ]:
        assert line in message, (line, message)
    assert "unused.npz" not in message  # coco is not among the datasets: its file is not read


def test_the_schema_refuses_a_bad_external_entry(tmp_path):
    bad = {"Bad Name": {"label": "x", "scoring": "cosine", "files": {"synthetic-coco": "a.npz"}},
           "ok": {"label": "x", "scoring": "cosine", "files": {"synthetic-coco": "a.pt", "imagenet": "b.npz"}, "colour": "#000000"},
           "empty": {"label": "x", "scoring": [], "files": {}}}  # fmt: skip
    problems = "\n".join(schema_problems(with_value(["external"], bad), SCHEMA))
    assert "external: 'Bad Name' does not match" in problems
    assert "external.ok: unknown key 'colour' (did you mean 'color'?)" in problems
    assert "external.ok.files: unknown key 'imagenet'" in problems
    assert "external.ok.files.synthetic-coco: 'a.pt'" in problems
    assert (
        "external.empty.files: {} should be non-empty" in problems
        or "external.empty.files: {} does not have enough properties" in problems
    )
    assert "external.empty.scoring" in problems


def test_an_external_entry_is_completed_with_its_scorings_statistics_and_a_free_colour(tmp_path):
    config = with_value(["external"], {
        "plain": {"label": "Plain", "scoring": "cosine", "files": {"synthetic-coco": external_file(tmp_path / "a.npz", False)}},
        "gauss": {"label": "Gauss", "scoring": ["csd", "mu"], "color": "#123456",
                  "files": {"synthetic-cub": [external_file(tmp_path / f"{s}.safetensors", True) for s in "bc"]}},
    })  # fmt: skip
    methods = check_config(config, SCHEMA_FILE)
    resolved = resolve_external(config, methods)
    assert config["external"]["plain"]["scoring"] == ["cosine"] and config["external"]["plain"]["statistics"] == []
    assert config["external"]["gauss"]["statistics"] == ["mean_log_sigma", "sum_sigma_sq"]
    assert resolved["gauss"].probabilistic and not resolved["plain"].probabilistic and resolved["gauss"].external
    assert config["external"]["gauss"]["color"] == "#123456"
    assert config["external"]["plain"]["color"] not in {m.color for m in methods.values()}
    assert resolve_external(config, methods) == resolved  # completing twice changes nothing
