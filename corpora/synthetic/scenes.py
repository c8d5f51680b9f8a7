"""The world of ``synthetic-coco``: scenes of shapes and captions with exact truth values.

A scene is one to three objects on a 3x3 grid of cells, each with a shape, a
colour and a size; the background texture carries no meaning. A caption is a
``CaptionSpec`` rendered into words, from "a shape" (true of every scene) to "a
small red circle left of a blue star". Because the truth of a spec on a scene
is a computable predicate, the generator knows every image each caption is
true of: the complete ground truth that COCO itself lacks.

Semantics: "a X" means at least one object matches X; two descriptors need two
different objects; "left of"/"right of" compare grid columns, "above"/"below"
grid rows; a count ("two shapes") is the exact number of objects; "on the
left"/"on the right" mean the left/right column, "at the top"/"at the bottom"
the top/bottom row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from corpora.synthetic.wording import framed, wording_of_drawn_length

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "white", "orange", "cyan")
SIZES = ("small", "large")
GRID = 3
SIDES = ("left", "right", "top", "bottom")
RELATIONS = ("left of", "right of", "above", "below")
COUNT_WORDS = {1: "a single shape", 2: "two shapes", 3: "three shapes"}
MAX_OBJECTS = 3
# Wording that says nothing about the scene: names for an object of no named shape, openers
# and closings (none holds a colour, shape, size, side, relation or count word).
VAGUE_NOUNS = ("shape", "shape of some kind", "object of some sort")
OPENERS = (
    "",
    "there is",
    "a picture of",
    "an image with",
    "this shows",
    "we can see",
    "this image shows",
    "in this picture there is",
    "somewhere in this image there is",
    "here we can see what looks like",
)
COUNT_OPENERS = ("", "this picture has", "we can see", "the image contains", "what we can see here is")
CLOSINGS = (
    "",
    "in the picture",
    "somewhere in this picture",
    "on a textured background",
    "if you look closely",
    "drawn on a patterned background",
    "in this image as far as one can tell",
)
# A caption's length in words is drawn from this range (inclusive), apart from what it says.
CAPTION_LENGTHS = (5, 15)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    col: int  # 0 left .. 2 right
    row: int  # 0 top .. 2 bottom

    @property
    def category(self) -> str:
        """The COCO-style instance category: colour x shape, e.g. "red circle"."""
        return f"{self.colour} {self.shape}"


Scene = tuple[SceneObject, ...]


@dataclass(frozen=True)
class Descriptor:
    """Attributes one object must have; None means "any"."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    side: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        return (
            (self.shape is None or obj.shape == self.shape)
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
            and (self.side is None or _on_side(obj, self.side))
        )

    def phrase(self, terse: bool = False, vague_noun: str = "shape") -> str:
        """The descriptor in words: "a small red circle on the left", or without the article
        (``terse``); an object of no named shape is a ``vague_noun`` ("shape", "shape of some kind")."""
        words = [w for w in (self.size, self.colour) if w] + [self.shape or vague_noun]
        text = " ".join(words)
        if not terse:
            text = ("an " if text[0] in "aeiou" else "a ") + text
        if self.side in ("left", "right"):
            text += f" on the {self.side}"
        elif self.side:
            text += f" at the {self.side}"
        return text


@dataclass(frozen=True)
class CaptionSpec:
    """What a caption asserts: one or two descriptors (and a relation), or an object count."""

    objects: tuple[Descriptor, ...] = ()
    relation: str | None = None
    count: int | None = None

    def __post_init__(self):
        if (self.count is None) == (len(self.objects) == 0):
            raise ValueError("a caption spec has either descriptors or a count")
        if self.relation is not None and (self.relation not in RELATIONS or len(self.objects) != 2):
            raise ValueError(f"a relation joins two descriptors and is one of {RELATIONS}")
        if len(self.objects) > 2:
            raise ValueError("a caption spec names at most two objects")

    def is_true(self, scene: Scene) -> bool:
        """The reference (one scene at a time) truth of this spec."""
        if self.count is not None:
            return len(scene) == self.count
        if len(self.objects) == 1:
            return any(self.objects[0].matches(o) for o in scene)
        first, second = self.objects
        return any(
            first.matches(a) and second.matches(b) and _related(a, b, self.relation) for a, b in itertools.permutations(scene, 2)
        )

    def body(self, rng: np.random.Generator, terse: bool) -> str:
        """What the spec asserts, in full ("a small red circle left of a blue star") or ``terse``
        ("small red circle, blue star at its right"): the same meaning either way."""
        if self.count is not None:
            return COUNT_WORDS[self.count]
        noun = VAGUE_NOUNS[rng.integers(len(VAGUE_NOUNS))]
        first = self.objects[0].phrase(terse, noun)
        if len(self.objects) == 1:
            return first
        second = self.objects[1].phrase(terse, noun)
        if terse:  # the second object's place relative to the first
            after = {None: "", "left of": " at its right", "right of": " at its left", "above": " below it", "below": " above it"}
            return f"{first}, {second}{after[self.relation]}"
        if self.relation is None:
            link = "and"
        elif self.relation in ("left of", "right of") and rng.random() < 0.5:
            link = f"to the {self.relation}"
        else:
            link = self.relation
        return f"{first} {link} {second}"

    def render(self, rng: np.random.Generator) -> str:
        """This spec in words, of a length drawn apart from its meaning (``corpora.synthetic.wording``):
        the terse body, or the full one between a filler opener and closing, so a vague spec often
        reads long ("there is a shape of some kind somewhere in this picture") and a specific
        one short ("small red circle, blue star at its right")."""
        openers = COUNT_OPENERS if self.count is not None else OPENERS
        wordings = [self.body(rng, terse=True)] + framed(self.body(rng, terse=False), openers, CLOSINGS)
        return wording_of_drawn_length(wordings, CAPTION_LENGTHS, rng)


def _on_side(obj: SceneObject, side: str) -> bool:
    return {"left": obj.col == 0, "right": obj.col == GRID - 1, "top": obj.row == 0, "bottom": obj.row == GRID - 1}[side]


def _related(a: SceneObject, b: SceneObject, relation: str | None) -> bool:
    if relation is None:
        return True
    return {
        "left of": a.col < b.col,
        "right of": a.col > b.col,
        "above": a.row < b.row,
        "below": a.row > b.row,
    }[relation]


def sample_scene(rng: np.random.Generator) -> Scene:
    """One to three objects in distinct cells, attributes uniform."""
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    cells = rng.choice(GRID * GRID, size=count, replace=False)
    return tuple(
        SceneObject(
            shape=SHAPES[rng.integers(len(SHAPES))],
            colour=COLOURS[rng.integers(len(COLOURS))],
            size=SIZES[rng.integers(len(SIZES))],
            col=int(cell % GRID),
            row=int(cell // GRID),
        )
        for cell in cells
    )


def _describe(obj: SceneObject, n_attributes: int, rng: np.random.Generator, allow_side: bool) -> Descriptor:
    candidates = ["shape", "colour", "size"]
    sides = [s for s in SIDES if _on_side(obj, s)]
    if allow_side and sides:
        candidates.append("side")
    chosen = set(rng.choice(candidates, size=min(n_attributes, len(candidates)), replace=False).tolist())
    return Descriptor(
        shape=obj.shape if "shape" in chosen else None,
        colour=obj.colour if "colour" in chosen else None,
        size=obj.size if "size" in chosen else None,
        side=sides[rng.integers(len(sides))] if "side" in chosen else None,
    )


# Kinds of caption from generic to specific, with the odds of each. Mostly specific, so a
# caption fits tens of the 1,000 test images rather than hundreds: ambiguous as COCO is
# (ECCV Caption finds several positives per caption), not far more.
CAPTION_KINDS = {
    "any": 0.01,
    "count": 0.02,
    "one attribute": 0.05,
    "two attributes": 0.12,
    "three attributes": 0.3,
    "pair": 0.15,
    "relation": 0.35,
}


def _relations_between(a: SceneObject, b: SceneObject) -> list[str]:
    return [r for r in RELATIONS if _related(a, b, r)]


def _spec_of_kind(kind: str, scene: Scene, rng: np.random.Generator) -> CaptionSpec:
    if kind == "any":
        return CaptionSpec((Descriptor(),))
    if kind == "count":
        return CaptionSpec(count=len(scene))
    if kind in ("one attribute", "two attributes", "three attributes"):
        n = ("one attribute", "two attributes", "three attributes").index(kind) + 1
        obj = scene[rng.integers(len(scene))]
        return CaptionSpec((_describe(obj, n, rng, allow_side=True),))
    i, j = rng.choice(len(scene), size=2, replace=False)
    a, b = scene[i], scene[j]
    first = _describe(a, int(rng.integers(2, 4)), rng, allow_side=False)
    second = _describe(b, int(rng.integers(1, 4)), rng, allow_side=False)
    if kind == "pair":
        return CaptionSpec((first, second))
    relations = _relations_between(a, b)
    return CaptionSpec((first, second), relation=relations[rng.integers(len(relations))])


def sample_captions(scene: Scene, n: int, rng: np.random.Generator) -> list[CaptionSpec]:
    """``n`` distinct specs true of ``scene``; the first is as specific as the scene allows."""
    pairs = [(a, b) for a, b in itertools.permutations(scene, 2) if _relations_between(a, b)]
    kinds = [k for k in CAPTION_KINDS if len(scene) > 1 or k not in ("pair", "relation")]
    if not pairs and "relation" in kinds:
        kinds.remove("relation")
    odds = np.array([CAPTION_KINDS[k] for k in kinds])
    odds /= odds.sum()
    specs: list[CaptionSpec] = [_spec_of_kind("relation" if "relation" in kinds else "three attributes", scene, rng)]
    for _ in range(1000):
        if len(specs) == n:
            break
        spec = _spec_of_kind(kinds[rng.choice(len(kinds), p=odds)], scene, rng)
        if spec not in specs:
            specs.append(spec)
    else:  # pragma: no cover - a one-object scene still has far more than five distinct specs
        raise RuntimeError(f"could not find {n} distinct captions for {scene}")
    assert all(spec.is_true(scene) for spec in specs)
    return specs


# ---- vectorised truth over many scenes ---------------------------------------------------


def encode_scenes(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Scenes as (N, MAX_OBJECTS) integer arrays (-1 where a scene has fewer objects)."""
    codes = {key: np.full((len(scenes), MAX_OBJECTS), -1, dtype=np.int16) for key in ("shape", "colour", "size", "col", "row")}
    for n, scene in enumerate(scenes):
        for k, obj in enumerate(scene):
            codes["shape"][n, k] = SHAPES.index(obj.shape)
            codes["colour"][n, k] = COLOURS.index(obj.colour)
            codes["size"][n, k] = SIZES.index(obj.size)
            codes["col"][n, k] = obj.col
            codes["row"][n, k] = obj.row
    return codes


def _match_matrix(d: Descriptor, codes: dict[str, np.ndarray]) -> np.ndarray:
    match = codes["shape"] >= 0
    if d.shape is not None:
        match &= codes["shape"] == SHAPES.index(d.shape)
    if d.colour is not None:
        match &= codes["colour"] == COLOURS.index(d.colour)
    if d.size is not None:
        match &= codes["size"] == SIZES.index(d.size)
    if d.side is not None:
        axis, value = {"left": ("col", 0), "right": ("col", GRID - 1), "top": ("row", 0), "bottom": ("row", GRID - 1)}[d.side]
        match &= codes[axis] == value
    return match


def truth_vector(spec: CaptionSpec, codes: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: is ``spec`` true of each encoded scene. Same answers as ``spec.is_true``."""
    if spec.count is not None:
        return (codes["shape"] >= 0).sum(axis=1) == spec.count
    if len(spec.objects) == 1:
        return _match_matrix(spec.objects[0], codes).any(axis=1)
    first, second = (_match_matrix(d, codes) for d in spec.objects)
    truth = np.zeros(len(first), dtype=bool)
    for a, b in itertools.permutations(range(MAX_OBJECTS), 2):
        related = {
            None: True,
            "left of": codes["col"][:, a] < codes["col"][:, b],
            "right of": codes["col"][:, a] > codes["col"][:, b],
            "above": codes["row"][:, a] < codes["row"][:, b],
            "below": codes["row"][:, a] > codes["row"][:, b],
        }[spec.relation]
        truth |= first[:, a] & second[:, b] & related
    return truth


def truth_matrix(specs: list[CaptionSpec], scenes: list[Scene]) -> np.ndarray:
    """(len(specs), len(scenes)) bool; each distinct spec is evaluated once."""
    codes = encode_scenes(scenes)
    unique = {spec: None for spec in specs}
    for spec in unique:
        unique[spec] = truth_vector(spec, codes)
    return np.stack([unique[spec] for spec in specs]) if specs else np.zeros((0, len(scenes)), dtype=bool)
