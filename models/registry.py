"""Every method of the suite, each described once, read from the method's own file without importing torch.

A method file in ``models/`` declares its methods in a module-level literal ``METHODS``, a list of
dicts, one per method (``vse.py`` declares two variants of one class; README, 'Adding a method',
writes one out). This module reads it without running the file (``ast.literal_eval``, once the
names of literals assigned above it in the same file stand for their values), so the workflow,
the plots and the report know every method at planning time without loading torch; the models
package's builder imports the class. :data:`ENTRY_SCHEMA` is the fields' reference (each one's
``description``) and checks them; what a schema cannot say is checked after it: the class is
defined in the file, the tensors each scoring reads are exported, a name is declared once.
``models/__init__.py`` describes the class's interface.
"""

from __future__ import annotations

import ast
import copy
import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from models.scorings import SCORINGS, UNCERTAINTY_STATISTICS

MODELS = Path(__file__).resolve().parent
DECLARATION = "METHODS"
# Settings of the shared encoder stack and trainer that every method carries (models/model.py and
# pcmebench/train.py read them); a method's entry may give one its own default.
STACK_SETTINGS = {
    "word_vectors_training": {"$ref": "#/$defs/word_vectors_training"},
    "grad_clip": {"$ref": "#/$defs/grad_clip", "default": None},
    "batch_size": {"$ref": "#/$defs/batch_size", "default": None},
}
ADDING = "README, 'Adding a method'"
# How an error names the kind of value a field wants (the schema's "type").
KINDS = {"object": "a dict", "array": "a list", "string": "text", "boolean": "True or False", "integer": "an integer"}
_NAMES = {"type": "array", "items": {"type": "string"}}
_STACK = {"type": "object", "required": ["default"], "properties": {"default": {}}, "additionalProperties": False}
# One entry of METHODS. Beside "description", a field may carry "fix" (how to mend it) and "problem" (what is wrong
# when it fails) for the error message; the validator ignores them. entry_schema() adds the names of the scorings
# and statistics (the enums of "scorings" and "uncertainty.statistics").
ENTRY_SCHEMA = {
    "type": "object", "fix": "write each method as a dict", "additionalProperties": False,
    "required": ["name", "label", "color", "class", "scorings", "probabilistic", "exports", "settings"],
    "properties": {
        "name": {"description": "The config's and the paths' name, unique across files.", "type": "string",
                 "pattern": "^[a-z0-9][a-z0-9+._-]*$", "fix": "give it a lower-case name of letters, digits, -+._"},
        "label": {"description": "Its name in tables, figures and the report.", "type": "string", "pattern": r"\S",
                  "fix": "give 'label' a display name"},
        "color": {"description": "Its colour in every figure.", "type": "string", "pattern": "^#[0-9a-fA-F]{6}$",
                  "fix": "use '#rrggbb'"},
        "class": {"description": "The nn.Module class of this file that the builder makes.", "type": "string"},
        "scorings": {"description": "Names of models/scorings.py's SCORINGS, the method's own first.", **_NAMES,
                     "minItems": 1, "fix": "list at least its own scoring"},
        "probabilistic": {"description": "True: the uncertainty analysis runs on it.", "type": "boolean"},
        "exports": {
            "description": "What the embed stage writes per run: items, keys of the dicts embed_images and embed_captions "
            "return (saved as image_<key>, caption_<key>); drawn, the item of samples that the method's draw_samples(encoded, "
            "generator) draws again from a fixed seed; learned, its learned scalars a scoring reads (attributes of its module).",
            "type": "object", "required": ["items"], "additionalProperties": False,
            "properties": {"items": {**_NAMES, "minItems": 1, "fix": "list the embedding tensors embed writes"},
                           "drawn": {"type": "string"}, "learned": _NAMES},
        },
        "uncertainty": {
            "description": "A probabilistic method's: sigma, the exported item of log σ; statistics, names of "
            "models/scorings.py's UNCERTAINTY_STATISTICS, its own first (its σ figures'), by which the analysis bins its own "
            "scoring's retrieval.",
            "type": "object", "required": ["sigma", "statistics"], "additionalProperties": False,
            "properties": {"sigma": {"type": "string"}, "statistics": {**_NAMES, "minItems": 1, "fix": "list its own first"}},
        },
        "settings": {
            "description": "Each setting of the class as a JSON-schema fragment ($ref may name the config schema's $defs) with "
            "an optional default (one without must be in the config); a mapping value holds one value per dataset name or "
            "format. Every method has the STACK_SETTINGS too: an entry may give one a default, nothing else.",
            "type": "object",
            "properties": {key: {**_STACK, "problem": f"setting {key!r} is a stack setting",
                                 "fix": "every method has it already: drop it, or give only its default ({'default': ...})"}
                           for key in STACK_SETTINGS},
            "additionalProperties": {"type": "object", "fix": "give it a JSON-schema fragment, e.g. {'type': 'number'}"},
        },
        "note": {"description": "One sentence the report adds under the retrieval table.", "type": "string"},
    },
    "if": {"required": ["probabilistic"], "properties": {"probabilistic": {"const": True}}},
    "then": {"required": ["uncertainty"], "problem": "probabilistic without 'uncertainty'",
             "fix": "add {'sigma': ..., 'statistics': [...]}"},
    "else": {"not": {"required": ["uncertainty"]}, "problem": "'uncertainty' on a method that is not probabilistic",
             "fix": "set probabilistic: True or drop it"},
}  # fmt: skip


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
    external: bool = False  # a model trained elsewhere, evaluated from its files (config `external`)

    @property
    def module(self) -> str:
        """The import path of the method's file, e.g. ``models.pcme``."""
        return f"{MODELS.name}.{self.file.stem}"

    @property
    def where(self) -> str:
        return f"config external.{self.name}" if self.external else f"models/{self.file.name}"

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


def entry_schema() -> dict:
    """:data:`ENTRY_SCHEMA` with the names of the scorings and statistics as the tables hold them now."""
    schema = copy.deepcopy(ENTRY_SCHEMA)
    schema["properties"]["scorings"]["items"] = {"enum": list(SCORINGS)}
    schema["properties"]["uncertainty"]["properties"]["statistics"]["items"] = {"enum": list(UNCERTAINTY_STATISTICS)}
    return schema


def _fail(path: Path, what: str, fix: str) -> RegistryError:
    return RegistryError(f"models/{path.name}: {what}; {fix} ({ADDING})")


def _schema_error(path: Path, who: str, error: jsonschema.ValidationError) -> RegistryError:
    """A schema error in the entry's words: the field, what is wrong and how to mend it."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    fix = error.schema.get("fix") or f"make it {KINDS.get(str(error.validator_value), error.validator_value)}"  # "type"
    if "problem" in error.schema:
        what = error.schema["problem"]
    elif error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        what, fix = f"no {where + '.' * bool(where) + missing!r}", f"add {missing!r} to its {where or 'entry'} in {DECLARATION}"
    elif error.validator == "additionalProperties":
        fields = error.schema["properties"]
        what = f"{where + ': ' * bool(where)}unknown field(s) {sorted(set(error.instance) - set(fields))}"
        fix = f"the fields are {', '.join(fields)}"
    elif error.validator == "enum":  # a name of models/scorings.py's tables
        what, fix = f"{where}: unknown {error.instance!r}", f"use {', '.join(error.validator_value)} (models/scorings.py)"
    else:
        what = f"{where or 'it'} is {error.instance!r}"
    return _fail(path, f"{who}: {what}", fix)


class _Names(ast.NodeTransformer):
    """Puts the values of a file's earlier literals in place of their names, and merges ``{**name, ...}``,
    so that ``ast.literal_eval`` reads the rest."""

    def __init__(self, names: dict):
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Constant(copy.deepcopy(self.names[node.id])) if node.id in self.names else node

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        node = self.generic_visit(node)
        if None not in node.keys:
            return node
        merged = {}
        for key, value in zip(node.keys, node.values, strict=True):
            merged |= ast.literal_eval(value) if key is None else {ast.literal_eval(key): ast.literal_eval(value)}
        return ast.Constant(merged)


def _literal(node: ast.expr, names: dict, path: Path):
    """The value of a literal expression, in which names of the file's earlier literals may stand for their values."""
    try:
        return ast.literal_eval(_Names(names).visit(node))
    except (ValueError, TypeError):
        literal = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.UnaryOp, ast.expr_context, ast.unaryop)
        culprit = next((n for n in ast.walk(node) if not isinstance(n, literal)), node)
        raise _fail(
            path,
            f"{DECLARATION} holds {ast.unparse(culprit)!r} (line {culprit.lineno}), which is not a literal",
            "write plain values, or names of literals assigned above it in the file (no calls)",
        ) from None


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


def _entry(path: Path, entry, classes: set[str], validator: jsonschema.Draft202012Validator) -> Method:
    """One entry as a Method: the schema's checks, then those it cannot make."""
    named = isinstance(entry, dict) and validator.evolve(schema=ENTRY_SCHEMA["properties"]["name"]).is_valid(entry.get("name"))
    who = f"method {entry['name']!r}" if named else f"an entry of {DECLARATION}"
    error = next(validator.iter_errors(entry), None)
    if error is not None:
        raise _schema_error(path, who, error)
    exports, uncertainty = entry["exports"], entry.get("uncertainty", {})
    items, learned, drawn = tuple(exports["items"]), tuple(exports.get("learned", ())), exports.get("drawn")
    reads = {s: [*(i for i in SCORINGS[s].items if i not in items), *(p for p in SCORINGS[s].learned if p not in learned)]
             for s in entry["scorings"]}  # fmt: skip
    for wrong, what, fix in (
        (entry["class"] not in classes, f"class {entry['class']!r} is not defined in this file", "name a class of this file"),
        (drawn not in (None, *items), f"exports.drawn {drawn!r} is not one of its items", "add it to exports.items"),
        (uncertainty and uncertainty["sigma"] not in items,
         f"uncertainty.sigma {uncertainty.get('sigma')!r} is not one of its exported items", "name the item holding log σ"),
        *((bool(r), f"scoring {s!r} reads {r}, which it does not export", "add them to exports") for s, r in reads.items()),
    ):  # fmt: skip
        if wrong:
            raise _fail(path, f"{who}: {what}", fix)
    return Method(
        entry["name"], entry["label"], entry["color"], entry["class"], path, tuple(entry["scorings"]), entry["probabilistic"],
        items, learned, drawn, uncertainty.get("sigma"), tuple(uncertainty.get("statistics", ())), dict(entry["settings"]),
        entry.get("note", ""),
    )  # fmt: skip


@functools.cache
def registered(models: Path = MODELS) -> dict[str, Method]:
    """Every method declared by a file of ``models``, by name, in file then declaration order."""
    methods: dict[str, Method] = {}
    validator = jsonschema.Draft202012Validator(entry_schema())
    for path in sorted(models.glob("*.py")):
        if path.name in ("__init__.py", "registry.py"):
            continue
        value, classes = declaration(path)
        if value is None:
            continue
        if not isinstance(value, list | tuple):
            raise _fail(path, f"{DECLARATION} is a {type(value).__name__}", "make it a list of dicts, one per method")
        for entry in value:
            method = _entry(path, entry, classes, validator)
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


def external_method(name: str, label: str, color: str, scorings, statistics=()) -> Method:
    """A model trained elsewhere (config ``external``), as the tables, figures and report see a method:
    probabilistic when it has σ statistics (its files hold ``log_sigma``)."""
    statistics = tuple(statistics)
    return Method(
        name, label, color, "", Path(), tuple(scorings), bool(statistics), (), statistics=statistics,
        sigma="log_sigma" if statistics else None, external=True,
    )  # fmt: skip


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
