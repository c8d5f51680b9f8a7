"""Every method of the suite, each described once, read from the method's own file without importing torch.

A method file in ``models/`` declares its methods in a module-level literal::

    METHODS = [
        {
            "name": "infonce",                   # the config's and the paths' name
            "label": "InfoNCE",                  # tables, plots and the report
            "color": "#937860",                  # its colour in every figure
            "class": "InfoNCE",                  # an nn.Module class defined in this file
            "scorings": ["cosine"],              # SCORINGS below; the first is the method's own
            "probabilistic": False,              # True: the uncertainty analysis runs on it
            "exports": {"items": ["embeddings"]},
            "settings": {"init_temperature": {"type": "number", "exclusiveMinimum": 0, "default": 0.07}},
        },
    ]

This module reads that literal without running the file (plain values, and names of literals
assigned above it in the same file), so the workflow, the plots and the report know every method
at planning time without loading torch; the models package's builder imports the class. A file
may declare several variants of one class (VSE0 and VSE++ in ``vse.py``).
The fields (``models/__init__.py`` describes the class's interface):

- ``name``: lower-case letters, digits and ``-+._``; unique across files.
- ``label``, ``color`` (``#rrggbb``), ``class``.
- ``scorings``: names of :data:`SCORINGS`, the method's own first. Each names the tensors it
  reads, which ``exports`` must provide.
- ``exports``: what the embed stage writes per run. ``items``: keys of the dicts that
  ``embed_images`` and ``embed_captions`` return, saved per modality as ``image_<key>`` and
  ``caption_<key>``; ``drawn`` (optional): the item holding sample embeddings, drawn again at
  export from a fixed seed by the method's ``draw_samples(encoded, generator)``, so evaluation is
  deterministic; ``learned`` (optional): the method's learned scalars the scorings use (PCME's
  ``a`` and ``b``), attributes of its module.
- ``probabilistic`` and, when true, ``uncertainty``: ``{"sigma": <item with log σ>,
  "statistics": [...]}``, names of :data:`UNCERTAINTY_STATISTICS`, the method's own first (the
  one its σ figures plot). The analysis bins the method's own scoring's retrieval by them.
- ``settings``: each setting of the class as a JSON-schema fragment (``$ref`` may name the
  config schema's shared ``$defs``: ``per_dataset_number``, ``warmup_epochs``), with an optional
  ``default``; a setting without one must be in the config. Every method also has the shared
  stack's :data:`STACK_SETTINGS`; an entry may set one's default only (``"grad_clip": {"default":
  2.0}``). The builder reads a mapping value as one value per dataset
  name or format (``{coco: .., synthetic-coco: ..}``); the setting's schema says whether it
  allows one.
- ``note`` (optional): one sentence the report adds under the retrieval table (what the
  method's other scorings are).
"""

from __future__ import annotations

import ast
import copy
import difflib
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MODELS = Path(__file__).resolve().parent
DECLARATION = "METHODS"
NAME = re.compile(r"^[a-z0-9][a-z0-9+._-]*$")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

# Every scoring the evaluation implements (pcmebench/scoring.py), with the exported tensors it
# reads: per-item ones and the method's learned scalars.
SCORINGS = {
    "cosine": {"items": ("embeddings",), "learned": ()},
    "max-cosine": {"items": ("embeddings",), "learned": ()},
    "match-prob": {"items": ("samples",), "learned": ("a", "b")},
    "sample-dot": {"items": ("samples",), "learned": ()},
    "mu": {"items": ("mu",), "learned": ()},
    "csd": {"items": ("mu", "log_sigma"), "learned": ()},
}


@dataclass(frozen=True)
class UncertaintyStatistic:
    """A per-query uncertainty statistic of a Gaussian embedding: ``compute`` maps (N, D) log σ (a
    float64 tensor) to N values with tensor methods only, so this module needs no torch."""

    label: str  # figures' axes and legends
    description: str  # the report's legend
    compute: Callable


# Every uncertainty statistic; a method lists those it reports (its own first).
UNCERTAINTY_STATISTICS = {
    "mean_log_sigma": UncertaintyStatistic(
        "u = mean log σ",
        "u, the mean over dimensions of log σ (the log of σ's geometric mean)",
        lambda log_sigma: log_sigma.mean(1),
    ),
    "sum_sigma_sq": UncertaintyStatistic(
        "Σσ² (sum of σ²)",
        "Σσ², the sum over dimensions of σ² (the covariance's trace; PCME++ bins by it)",
        lambda log_sigma: (2 * log_sigma).exp().sum(1),
    ),
}
# Settings of the shared encoder stack and trainer that every method carries (models/model.py and
# pcmebench/train.py read them); a method's entry may give one its own default.
STACK_SETTINGS = {
    "word_vectors_training": {"$ref": "#/$defs/word_vectors_training"},
    "grad_clip": {"$ref": "#/$defs/grad_clip", "default": None},
    "batch_size": {"$ref": "#/$defs/batch_size", "default": None},
}
REQUIRED_FIELDS = ("name", "label", "color", "class", "scorings", "probabilistic", "exports", "settings")
OPTIONAL_FIELDS = ("uncertainty", "note")
ADDING = "README, 'Adding a method'"


class RegistryError(ValueError):
    """A method file's declaration that cannot be used; the message names the file, the method and the field."""


@dataclass(frozen=True)
class Method:
    """One registered method, as its file declares it."""

    name: str
    label: str
    color: str
    class_name: str
    file: Path
    scorings: tuple[str, ...]
    probabilistic: bool
    items: tuple[str, ...]
    learned: tuple[str, ...] = ()
    drawn: str | None = None
    sigma: str | None = None
    statistics: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    note: str = ""

    @property
    def module(self) -> str:
        """The import path of the method's file, e.g. ``models.pcme``."""
        return f"{MODELS.name}.{self.file.stem}"

    @property
    def where(self) -> str:
        return f"models/{self.file.name}"

    @property
    def primary_scoring(self) -> str:
        return self.scorings[0]

    @property
    def uncertainty_statistic(self) -> str | None:
        """The statistic the method's σ figures plot (its first), or None for a point method."""
        return self.statistics[0] if self.statistics else None

    @property
    def all_settings(self) -> dict:
        """The stack's settings (with this method's defaults for them) and the method's own."""
        stack = {k: {**v, **self.settings.get(k, {})} for k, v in STACK_SETTINGS.items()}
        return {**stack, **{k: v for k, v in self.settings.items() if k not in STACK_SETTINGS}}

    @property
    def defaults(self) -> dict:
        return {k: copy.deepcopy(v["default"]) for k, v in self.all_settings.items() if "default" in v}

    @property
    def required(self) -> list[str]:
        return [k for k, v in self.all_settings.items() if "default" not in v]

    def settings_schema(self) -> dict:
        """The JSON schema of ``method_settings.<name>``: its settings, no others (required ones are
        checked by :func:`settings_problems`, which says where to add them)."""
        properties = {k: {key: value for key, value in v.items() if key != "default"} for k, v in self.all_settings.items()}
        return {
            "description": f"{self.label} ({self.where}).",
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
        }

    def complete(self, given: dict | None) -> dict:
        """The method's settings: its defaults, overridden by ``given``."""
        return {**self.defaults, **(given or {})}

    def exported(self, modality: str) -> list[str]:
        """The per-item tensors of one modality ("image" or "caption") in an embeddings file."""
        return [f"{modality}_{item}" for item in self.items]


def _fail(path: Path, what: str, fix: str) -> RegistryError:
    return RegistryError(f"models/{path.name}: {what}; {fix} ({ADDING})")


def _literal(node: ast.AST, names: dict, path: Path):
    """The value of a literal expression: constants, lists, tuples, dicts (``**`` included), negated
    numbers, and names of the file's earlier literal assignments."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        values = [_literal(e, names, path) for e in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        out = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:  # {**shared, ...}
                out.update(_literal(value, names, path))
            else:
                out[_literal(key, names, path)] = _literal(value, names, path)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, names, path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in names:
        return copy.deepcopy(names[node.id])
    raise _fail(
        path,
        f"{DECLARATION} holds {ast.unparse(node)!r} (line {node.lineno}), which is not a literal",
        "write plain values, or names of literals assigned above it in the file (no calls)",
    )


def declaration(path: Path):
    """The value of the file's module-level ``METHODS`` (None when it declares none) and its classes.

    Read without running the file: the workflow plans without torch.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    value, names = None, {}
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
            continue
        if targets[0].id == DECLARATION:
            value = _literal(node.value, names, path)
        else:
            try:
                names[targets[0].id] = _literal(node.value, names, path)
            except RegistryError:
                pass  # not a literal: it cannot appear in METHODS
    return value, classes


def _entry(path: Path, entry, classes: set[str]) -> Method:
    if not isinstance(entry, dict):
        raise _fail(path, f"an entry of {DECLARATION} is {type(entry).__name__}, not a dict", "write each method as a dict")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise _fail(path, f"an entry of {DECLARATION} has name {name!r}", "give it a lower-case name of letters, digits, -+._")
    where = f"method {name!r}"

    def need(condition: bool, what: str, fix: str) -> None:
        if not condition:
            raise _fail(path, f"{where}: {what}", fix)

    for key in REQUIRED_FIELDS:
        need(key in entry, f"no {key!r}", f"add {key!r} to its entry in {DECLARATION}")
    unknown = sorted(set(entry) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    need(not unknown, f"unknown field(s) {unknown}", f"the fields are {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}")
    need(isinstance(entry["label"], str) and entry["label"].strip() != "", "no label", "give 'label' a display name")
    need(isinstance(entry["color"], str) and COLOR.match(entry["color"]), f"color {entry['color']!r}", "use '#rrggbb'")
    need(entry["class"] in classes, f"class {entry['class']!r} is not defined in this file", "name a class of this file")
    scorings = entry["scorings"]
    need(isinstance(scorings, list | tuple) and len(scorings) > 0, "no scorings", "list at least its own scoring")
    bad = [s for s in scorings if s not in SCORINGS]
    need(not bad, f"unknown scoring(s) {bad}", f"use {', '.join(SCORINGS)} (pcmebench/scoring.py implements them)")
    exports = entry["exports"]
    need(isinstance(exports, dict) and exports.get("items"), "no exports.items", "list the embedding tensors embed writes")
    need(set(exports) <= {"items", "drawn", "learned"}, f"exports has {sorted(exports)}", "use items, drawn, learned")
    items, learned, drawn = tuple(exports["items"]), tuple(exports.get("learned", ())), exports.get("drawn")
    need(drawn is None or drawn in items, f"exports.drawn {drawn!r} is not one of its items", "add it to exports.items")
    for scoring in scorings:
        lacking = [i for i in SCORINGS[scoring]["items"] if i not in items]
        lacking += [p for p in SCORINGS[scoring]["learned"] if p not in learned]
        need(not lacking, f"scoring {scoring!r} reads {lacking}, which it does not export", "add them to exports")
    probabilistic = entry["probabilistic"]
    need(isinstance(probabilistic, bool), "probabilistic is not true or false", "set it to True or False")
    uncertainty = entry.get("uncertainty")
    sigma, statistics = None, ()
    if probabilistic:
        need(isinstance(uncertainty, dict), "probabilistic without 'uncertainty'", "add {'sigma': ..., 'statistics': [...]}")
        sigma, statistics = uncertainty.get("sigma"), tuple(uncertainty.get("statistics", ()))
        need(sigma in items, f"uncertainty.sigma {sigma!r} is not one of its exported items", "name the item holding log σ")
        bad = [s for s in statistics if s not in UNCERTAINTY_STATISTICS]
        need(statistics and not bad, f"uncertainty.statistics {list(statistics)}", f"use {', '.join(UNCERTAINTY_STATISTICS)}")
    else:
        need(uncertainty is None, "'uncertainty' on a method that is not probabilistic", "set probabilistic: True or drop it")
    settings = entry["settings"]
    need(isinstance(settings, dict), "settings is not a dict", "map each setting to its JSON schema")
    for key, schema in settings.items():
        need(
            isinstance(schema, dict), f"setting {key!r} has no schema", "give it a JSON-schema fragment, e.g. {'type': 'number'}"
        )
        need(
            key not in STACK_SETTINGS or set(schema) == {"default"},
            f"setting {key!r} is a stack setting",
            "every method has it already: drop it, or give only its default ({'default': ...})",
        )
    note = entry.get("note", "")
    need(isinstance(note, str), "note is not text", "write the note as a string")
    return Method(
        name, entry["label"], entry["color"], entry["class"], path, tuple(scorings), probabilistic, items,
        learned, drawn, sigma, statistics, dict(settings), note,
    )  # fmt: skip


@functools.cache
def registered(models: Path = MODELS) -> dict[str, Method]:
    """Every method declared by a file of ``models``, by name, in file then declaration order."""
    methods: dict[str, Method] = {}
    for path in sorted(models.glob("*.py")):
        if path.name in ("__init__.py", "registry.py"):
            continue
        value, classes = declaration(path)
        if value is None:
            continue
        if not isinstance(value, list | tuple):
            raise _fail(path, f"{DECLARATION} is a {type(value).__name__}", "make it a list of dicts, one per method")
        for entry in value:
            method = _entry(path, entry, classes)
            if method.name in methods:
                raise _fail(path, f"method {method.name!r} is also declared in {methods[method.name].where}", "rename one")
            methods[method.name] = method
    return methods


def method_entry(name: str) -> Method:
    """The registered method ``name``; an unknown one raises RegistryError saying how to add it."""
    methods = registered()
    if name not in methods:
        raise RegistryError(unknown_message(name, methods))
    return methods[name]


def unknown_message(name: str, methods: dict[str, Method]) -> str:
    close = difflib.get_close_matches(name, list(methods), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown method {name!r}{hint}: no file in models/ declares it; registered: {', '.join(methods)}. "
        f"A method is one file models/<file>.py whose {DECLARATION} has an entry named {name!r} ({ADDING})"
    )


def probabilistic() -> list[str]:
    return [name for name, m in registered().items() if m.probabilistic]


def with_method_settings(schema: dict, methods: dict[str, Method] | None = None) -> dict:
    """The config schema with ``method_settings`` closed over the registered methods, each with its settings."""
    methods = registered() if methods is None else methods
    schema = copy.deepcopy(schema)
    schema["properties"]["method_settings"] = {
        **schema["properties"]["method_settings"],
        "type": "object",
        "additionalProperties": False,
        "properties": {name: m.settings_schema() for name, m in methods.items()},
    }
    return schema


def settings_problems(config: dict, methods: dict[str, Method] | None = None) -> list[str]:
    """Configured methods that no file declares, and settings they need that the config lacks:
    one line each, naming the method, the setting and where to add it."""
    methods = registered() if methods is None else methods
    problems = []
    for index, name in enumerate(config.get("methods", [])):
        if name not in methods:
            problems.append(f"config: methods[{index}]: {unknown_message(name, methods)}")
            continue
        m = methods[name]
        given = (config.get("method_settings") or {}).get(name) or {}
        missing = [k for k in m.required if k not in given]
        if missing:
            problems.append(
                f"config: method_settings.{name}: missing {', '.join(map(repr, missing))}, setting(s) of {name} "
                f"without a default in {m.where}; add them under method_settings.{name} in the config "
                f"(or a 'default' to the setting in {m.where})"
            )
    return problems
