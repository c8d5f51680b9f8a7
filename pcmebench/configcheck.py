"""The workflow's config checked once, before anything runs (``check_config``): command-line text
typed as the schema wants it, the schema at every level, then what a schema cannot say (a schedule
of zero epochs, more test classes than classes, a setting a method needs and lacks).

Every problem is one line that names the key by its full path and says what is allowed:

    config: method_settings.vsepp: unknown key 'margni' (did you mean 'margin'?); allowed: margin, negatives, ...

The methods' settings are those their registry entries declare (``models.registry.with_method_settings``
puts them into the schema).

Torch-free: the Snakefile imports it on every plan.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

from corpora import SYNTHETIC_FORMAT
from models.registry import Method, RegistryError, external_method, registered, settings_problems, with_method_settings
from models.scorings import SCORINGS, UNCERTAINTY_STATISTICS
from pcmebench.files import array_names

STRICT_KEYWORDS = ("additionalProperties", "unevaluatedProperties")
# An external model's colour where the config gives none: the first of these no method uses.
EXTERNAL_COLORS = ("#7f7f7f", "#bcbd22", "#17becf", "#8c564b", "#e377c2", "#393b79", "#637939", "#843c39")
SIGMA_ARRAYS = ("image_log_sigma", "caption_log_sigma")  # in an external file: the σ analysis runs


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def check_config(config: dict, schema_path: str | Path) -> dict[str, Method]:
    """The workflow's one validation pass, in place: every problem of ``config`` (``config_problems``)
    in one WorkflowError; then each configured method's settings completed with its registry entry's
    defaults. Returns the registered methods (models/registry.py)."""
    try:
        methods = registered()
    except RegistryError as error:
        raise WorkflowError(str(error)) from None
    problems = config_problems(config, with_method_settings(load_schema(schema_path), methods), methods)
    if problems:
        raise WorkflowError("\n".join(["the config cannot run:", *problems]))
    given = {**{name: {} for name in config["methods"]}, **config["method_settings"]}
    config["method_settings"] = {
        name: methods[name].complete(settings) if name in config["methods"] else settings for name, settings in given.items()
    }
    return methods


def holds_log_sigma(file: str) -> bool:
    """Whether an external file holds both log σ arrays, from its header (ValueError: unreadable); read once per
    version of the file in a process, which asks twice (the file's problems, then the model's statistics)."""
    stat = Path(file).stat()
    return _holds_log_sigma(file, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _holds_log_sigma(file: str, _mtime_ns: int, _size: int) -> bool:
    return set(SIGMA_ARRAYS) <= set(array_names(Path(file)))


def external_files(entry: dict, dataset: str) -> list[str]:
    """An external model's files of ``dataset``, one per seed (none: the model has no file of it)."""
    files = entry["files"].get(dataset, [])
    return [files] if isinstance(files, str) else list(files)


def external_problems(config: dict, methods: dict[str, Method]) -> list[str]:
    """What the schema cannot say of config ``external``: a method's name, unknown scorings or
    statistics, and files that are missing, unreadable or disagree on log σ."""
    problems = []
    for name, entry in (config.get("external") or {}).items():
        where = f"config: external.{name}"
        if name in methods:
            problems.append(
                f"{where}: {name!r} is a method of models/ ({methods[name].where}); give the external model another name"
            )
        scorings = [entry["scoring"]] if isinstance(entry["scoring"], str) else entry["scoring"]
        for key, names, known in (
            ("scoring", scorings, SCORINGS),
            ("statistics", entry.get("statistics", []), UNCERTAINTY_STATISTICS),
        ):
            for unknown in (n for n in names if n not in known):
                close = difflib.get_close_matches(unknown, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{where}.{key}: unknown {unknown!r}{hint}; known: {', '.join(known)}")
        sigma = {}
        for dataset in (d for d in config["datasets"] if d in entry["files"]):
            for index, file in enumerate(external_files(entry, dataset)):
                try:
                    sigma[file] = holds_log_sigma(file)
                except (ValueError, OSError) as error:
                    missing = not Path(file).is_file()
                    problems.append(
                        f"{where}.files.{dataset}[{index}]: " + (f"{file}: file not found" if missing else str(error))
                    )
        if len(set(sigma.values())) > 1:
            without = [f for f, has in sigma.items() if not has]
            problems.append(
                f"{where}.files: some files hold log σ ({', '.join(SIGMA_ARRAYS)}), these do not: {', '.join(without)}"
            )
        elif entry.get("statistics") and not any(sigma.values()) and sigma:
            problems.append(f"{where}.statistics: its files hold no log σ ({', '.join(SIGMA_ARRAYS)}) for the statistics to read")
    return problems


def resolve_external(config: dict, methods: dict[str, Method]) -> dict[str, Method]:
    """Each entry of config ``external`` completed in place (``scoring`` a list; ``statistics``: those given,
    or every one when its files hold log σ, else none; ``color``), and returned as methods
    (``models.registry.external_method``) by name."""
    used = {m.color.lower() for m in methods.values()}
    free = iter([c for c in EXTERNAL_COLORS if c not in used] + list(EXTERNAL_COLORS))
    resolved = {}
    for name, entry in (config.get("external") or {}).items():
        entry["scoring"] = [entry["scoring"]] if isinstance(entry["scoring"], str) else list(entry["scoring"])
        files = [f for d in config["datasets"] for f in external_files(entry, d)]
        sigma = bool(files) and all(holds_log_sigma(f) for f in files)
        entry["statistics"] = list(entry.get("statistics") or (UNCERTAINTY_STATISTICS if sigma else []))
        entry["color"] = entry.get("color") or next(free)
        resolved[name] = external_method(name, entry["label"], entry["color"], entry["scoring"], entry["statistics"])
    return resolved


def config_problems(config: dict, schema: dict, methods: dict[str, Method] | None = None) -> list[str]:
    """Every way ``config`` cannot run, one line each: the schema's (with command-line text first
    read as the numbers, booleans and nulls the schema wants, in place), else the methods' missing
    settings (``models.registry.settings_problems``) and the recipe's (``recipe_problems``)."""
    coerce_command_line_scalars(config, schema)
    return schema_problems(config, schema) or (
        settings_problems(config, methods) + recipe_problems(config) + external_problems(config, methods or registered())
    )


def key_path(parts) -> str:
    """A config key's full path as a user writes it: ``dataset_settings.coco.training.lr``, ``seeds[1]``."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "(top level)"


def _leaf_errors(errors) -> Iterator[jsonschema.ValidationError]:
    """Validation errors with those inside oneOf/anyOf branches, flattened."""
    for error in errors:
        yield error
        yield from _leaf_errors(error.context or ())


UNREADABLE = object()


def _scalar_as(text: str, types: list[str]):
    """``text`` as the first of the JSON-schema ``types`` (integer, number, boolean, null) it spells, else UNREADABLE."""
    readers = {
        "integer": int,
        "number": lambda t: int(t) if t.lstrip("+-").isdigit() else float(t),
        "boolean": lambda t: {"true": True, "false": False}[t.lower()],
        "null": lambda t: {"null": None, "~": None}[t.lower()],
    }
    for kind in types:
        try:
            return readers[kind](text)
        except (KeyError, ValueError):
            continue
    return UNREADABLE


def coerce_command_line_scalars(config: dict, schema: dict) -> None:
    """--config reads every nested value as text (seeds=[0,1] gives "0", "1";
    method_settings={vsepp: {margin: 0.25}} gives "0.25"). Where the schema wants a number,
    an integer, a boolean or null and finds text that spells one, use that value (in place);
    validation then reports anything else."""
    validator = jsonschema.Draft202012Validator(schema)
    for _ in range(8):  # a fix can expose errors deeper down; a few passes reach them all
        fixed = False
        for error in _leaf_errors(validator.iter_errors(config)):
            if error.validator != "type" or not isinstance(error.instance, str):
                continue
            types = [error.validator_value] if isinstance(error.validator_value, str) else error.validator_value
            value = _scalar_as(error.instance, types)
            path = list(error.absolute_path)
            if value is UNREADABLE or not path:
                continue
            parent = functools.reduce(lambda node, key: node[key], path[:-1], config)
            parent[path[-1]] = value
            fixed = True
        if not fixed:
            return


def _resolve(node: dict, root: dict) -> dict:
    while "$ref" in node:
        node = functools.reduce(lambda n, key: n[key], node["$ref"].removeprefix("#/").split("/"), root)
    return node


def _allowed_keys(node: dict, root: dict) -> tuple[set[str], list[str]]:
    """(names, patterns) an object schema admits, through $ref and allOf."""
    node = _resolve(node, root)
    names, patterns = set(node.get("properties", {})), list(node.get("patternProperties", {}))
    for branch in node.get("allOf", []):
        more_names, more_patterns = _allowed_keys(branch, root)
        names |= more_names
        patterns += more_patterns
    return names, patterns


def _unknown_key_messages(error: jsonschema.ValidationError, root: dict) -> list[str]:
    names, patterns = _allowed_keys(error.schema, root)
    if not isinstance(error.instance, dict):
        return []
    unknown = [k for k in error.instance if k not in names and not any(re.search(p, k) for p in patterns)]
    allowed = sorted(names) + [f"keys matching {p}" for p in patterns]
    messages = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        messages.append(
            f"config: {key_path(error.absolute_path)}: unknown key {key!r}{hint}; allowed: {', '.join(allowed) or 'none'}"
        )
    return messages


def schema_problems(config: dict, schema: dict) -> list[str]:
    """Every way ``config`` breaks ``schema``, one line each, the key named by its full path."""
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        if error.validator in STRICT_KEYWORDS:
            problems += _unknown_key_messages(error, schema)
            continue
        if error.context:  # oneOf / anyOf: the branch that came closest says the most
            unknown = [e for e in error.context if e.validator in STRICT_KEYWORDS]
            if isinstance(error.instance, dict) and unknown:  # a mapping with a key no branch knows
                problems += [m for e in unknown for m in _unknown_key_messages(e, schema)]
                continue
            # the branch of the instance's own type (a mapping's, not the number's) says what is wrong
            same_type = [e for e in error.context if e.validator != "type"]
            error = jsonschema.exceptions.best_match(same_type or error.context)
        problems.append(f"config: {key_path(error.absolute_path)}: {error.message}")
    return list(dict.fromkeys(problems))


def evaluation_resize(augment: str, input_size: int) -> int:
    """The shorter side the evaluation transform resizes an image to (``corpora.batches.image_transform``:
    Resize(256 / 224 x input_size) for coco and cub, Resize(input_size) otherwise)."""
    return round(input_size * 256 / 224) if augment in ("coco", "cub") else input_size


def recipe_problems(config: dict) -> list[str]:
    """What the schema cannot say: settings that validate but cannot run, for the configured
    datasets (the methods' settings: ``models.registry.settings_problems``)."""
    problems = []
    for name in config["datasets"]:
        if name not in config["dataset_settings"]:
            problems.append(
                f"config: datasets lists {name!r} but dataset_settings has no entry for it; "
                f"settings exist for {sorted(config['dataset_settings'])}"
            )
    for name in config["datasets"]:
        data = config["dataset_settings"].get(name)
        if data is None:
            continue
        where = f"config: dataset_settings.{name}"
        training = data["training"]
        if training["frozen_epochs"] + training["finetune_epochs"] < 1:
            problems.append(
                f"{where}.training: frozen_epochs + finetune_epochs is 0, a run that trains nothing; set either to 1 or more"
            )
        if data["image_encoder"] == "small-cnn" and training["pretrained"] and name not in SYNTHETIC_FORMAT:
            problems.append(
                f"{where}: a pretrained small-cnn exists only for the synthetic datasets (the pretrain stage draws "
                f"their worlds); set training.pretrained: false, or use resnet50 or resnet152"
            )
        side, resized = training["stored_shorter_side"], evaluation_resize(training["augment"], training["input_size"])
        if side is not None and side < resized:
            problems.append(
                f"{where}.training: stored_shorter_side ({side}) is below the {resized} px its {training['augment']!r} "
                f"transforms resize images to, so every stored copy would be enlarged again; set it to {resized} or "
                f"more, or null"
            )
        pretraining = data.get("pretraining")
        if pretraining and pretraining["images"] < pretraining["batch_size"]:
            problems.append(
                f"{where}.pretraining: images ({pretraining['images']}) must be at least batch_size "
                f"({pretraining['batch_size']}); raise images or lower batch_size"
            )
        generator = data.get("generator", {})
        if "test_classes" in generator and generator["test_classes"] >= generator["classes"]:
            problems.append(
                f"{where}.generator: test_classes ({generator['test_classes']}) must be fewer than classes "
                f"({generator['classes']}): the training split gets the others"
            )
        elif (
            "test_classes" in generator
            and training["batching"] == "one-per-class"
            and generator["classes"] - generator["test_classes"] < 2
        ):
            problems.append(
                f"{where}.generator: one-per-class batching needs at least 2 training classes; "
                f"raise classes or lower test_classes"
            )
    return problems
