"""``synthetic-cub``: drawn birds written in the on-disk format of CUB-200-2011 + text_c10.

A class is one combination of five part attributes (crown, wing and belly
colour; bill and tail length), as a species is on CUB; images of one class
differ in pose, size, position, background and shade. Each caption names one
to three of the class's attributes, so it is true of every class that shares
them, as a real bird description ("this bird has a red crown") is. The test
split also gets its complete ground truth: ``full_caption_to_image.json`` and
``full_image_to_caption.json`` at the dataset root. Its ``seen_test_images.txt`` is empty: no
image of the training classes is held out. See ``corpora.cub`` for the layout.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from PIL import Image, ImageDraw

from corpora.cub import CAPTION_ID_STRIDE, CubLayout
from corpora.synthetic.drawing import (
    PALETTE,
    draw_polygon,
    jitter,
    jpeg_bytes,
    regular_polygon,
    texture,
)
from corpora.synthetic.output import dataset_folder, ground_truth_json, write_json
from corpora.synthetic.wording import framed, wording_of_drawn_length

# Stamped into GENERATOR.json; raised whenever the same arguments come to give other files.
GENERATOR_VERSION = 3
BIRD_COLOURS = ("red", "yellow", "blue", "black", "white", "brown")
PARTS = {
    "crown": BIRD_COLOURS,
    "wing": BIRD_COLOURS,
    "belly": BIRD_COLOURS,
    "bill": ("short", "long"),
    "tail": ("short", "long"),
}
PART_NAMES = tuple(PARTS)
# Ways to name a part's attribute; synonyms ("head"/"crown") keep the meaning.
PHRASES = {
    "crown": ("a {} crown", "a {} head"),
    "wing": ("{} wings", "{} feathers on its wings"),
    "belly": ("a {} belly", "a {} breast"),
    "bill": ("a {} bill", "a {} beak"),
    "tail": ("a {} tail", "{} tail feathers"),
}
OPENERS = (
    "this bird has {}",
    "a bird with {}",
    "the bird has {}",
    "this is a bird with {}",
    "here is a bird with {}",
    "this is a picture of a small bird that has {}",
    "what we can see here is a bird that has {}",
)
# Filler closings: nothing about the bird's class, pose or perch.
CLOSINGS = ("", "as far as i can tell", "in this picture", "if you look at it closely", "which is easy to see here")
# A caption's length in words is drawn from this range (inclusive), apart from what it says.
CAPTION_LENGTHS = (6, 18)

BirdClass = tuple[str, ...]  # one value per part, in PART_NAMES order
CaptionSpec = frozenset  # of (part, value) pairs the caption asserts


def class_name(index: int, bird: BirdClass) -> str:
    """A CUB-style class folder name, e.g. ``007.Red_crowned_Blue_winged_Black_bellied_Long_billed_Short_tailed``."""
    crown, wing, belly, bill, tail = (v.capitalize() for v in bird)
    return f"{index:03d}.{crown}_crowned_{wing}_winged_{belly}_bellied_{bill}_billed_{tail}_tailed"


def sample_classes(n: int, rng: np.random.Generator) -> list[BirdClass]:
    everything = list(itertools.product(*PARTS.values()))
    if n > len(everything):
        raise ValueError(f"at most {len(everything)} distinct bird classes exist, asked for {n}")
    return [everything[i] for i in rng.choice(len(everything), size=n, replace=False)]


def sample_caption(bird: BirdClass, rng: np.random.Generator) -> tuple[CaptionSpec, str]:
    """A description of one to three of the class's attributes, and its meaning.

    Its length is drawn apart from how many attributes it names (``corpora.synthetic.wording``):
    the terse list ("red crown, long bill") or the full one between an opener and a filler
    closing, so naming one attribute often reads as long as naming three.
    """
    parts = rng.choice(len(PART_NAMES), size=int(rng.integers(1, 4)), replace=False)
    phrases, terse = [], []
    for p in parts:
        name = PART_NAMES[p]
        templates = PHRASES[name]
        phrases.append(templates[rng.integers(len(templates))].format(bird[p]))
        terse.append(f"{bird[p]} {name}")
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    text = wording_of_drawn_length([", ".join(terse)] + framed(listed, OPENERS, CLOSINGS), CAPTION_LENGTHS, rng)
    return frozenset((PART_NAMES[p], bird[p]) for p in parts), text


def caption_is_true(spec: CaptionSpec, bird: BirdClass) -> bool:
    return all(bird[PART_NAMES.index(part)] == value for part, value in spec)


def truth_by_class(specs: list[CaptionSpec], birds: list[BirdClass]) -> np.ndarray:
    """(len(specs), len(birds)) bool; each distinct spec is evaluated once."""
    table = np.array(birds, dtype=object)
    cache = {}
    for spec in specs:
        if spec not in cache:
            truth = np.ones(len(birds), dtype=bool)
            for part, value in spec:
                truth &= table[:, PART_NAMES.index(part)] == value
            cache[spec] = truth
    return np.stack([cache[s] for s in specs]) if specs else np.zeros((0, len(birds)), dtype=bool)


def draw_bird(bird: BirdClass, rng: np.random.Generator, size: int) -> Image.Image:
    """A side view: belly-coloured body, wing, crown-coloured head, bill and tail of the class."""
    crown, wing, belly, bill, tail = bird
    image = Image.fromarray(texture(rng, size))
    draw = ImageDraw.Draw(image)
    scale = size / 96 * rng.uniform(0.8, 1.1)
    facing = 1 if rng.random() < 0.5 else -1
    cx = size / 2 + rng.uniform(-0.12, 0.12) * size
    cy = size / 2 + rng.uniform(-0.08, 0.12) * size
    shade = rng.normal(0, 8)

    def colour(name):
        return jitter(tuple(int(np.clip(v + shade, 0, 255)) for v in PALETTE[name]), rng, 8)

    def point(dx, dy):
        return (cx + facing * dx * scale, cy + dy * scale)

    if rng.random() < 0.6:  # a perch
        y = cy + 24 * scale
        draw.line(
            [(0, y + rng.uniform(-3, 3)), (size, y + rng.uniform(-3, 3))], fill=colour("brown"), width=max(2, round(3 * scale))
        )
    tail_length = {"short": 14, "long": 30}[tail]
    draw_polygon(draw, [point(-14, -4), point(-14 - tail_length, -10), point(-14 - tail_length, 4), point(-14, 6)], colour(wing))
    body = [point(22 * math.cos(t), 13 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 28, endpoint=False)]
    draw_polygon(draw, body, colour(belly))
    wing_shape = [point(-16 + 26 * (k / 10), -9 + 9 * math.sin(math.pi * k / 10) * 0.6 - 2) for k in range(11)]
    wing_shape += [point(10 - 26 * (k / 10), -2 + 6 * math.sin(math.pi * k / 10)) for k in range(11)]
    draw_polygon(draw, wing_shape, colour(wing))
    head = point(20, -14)
    draw_polygon(draw, regular_polygon(head[0], head[1], 10 * scale, 20, 0.0), colour(crown))
    bill_length = {"short": 7, "long": 17}[bill]
    draw_polygon(draw, [point(27, -17), point(28 + bill_length, -13), point(27, -10)], colour("orange"))
    eye = point(23, -16)
    ring = "white" if crown in ("black", "brown", "blue") else "black"
    draw_polygon(draw, regular_polygon(eye[0], eye[1], 2.2 * scale, 10, 0.0), PALETTE[ring])
    for dx in (-4, 4):
        draw.line([point(dx, 12), point(dx, 24)], fill=PALETTE["black"], width=max(1, round(1.5 * scale)))
    return image


def write_synthetic_cub(
    out_dir,
    seed: int = 0,
    image_size: int = 96,
    classes: int = 40,
    test_classes: int = 10,
    images_per_class: int = 30,
    captions_per_image: int = 10,
    jpeg_quality: int = 90,
) -> None:
    """Generate the dataset into ``out_dir``; the same arguments give the same bytes."""
    if not 0 < test_classes < classes:
        raise ValueError(f"test_classes must be between 1 and classes - 1, got {test_classes} of {classes}")
    if not 0 < captions_per_image < CAPTION_ID_STRIDE:
        raise ValueError(f"captions_per_image must be between 1 and {CAPTION_ID_STRIDE - 1}")
    rng = np.random.default_rng(seed)
    birds = sample_classes(classes, rng)
    names = [class_name(i + 1, b) for i, b in enumerate(birds)]
    test = set(rng.choice(classes, size=test_classes, replace=False).tolist())
    stamp = {
        "dataset": "synthetic-cub",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "classes": classes,
        "test_classes": test_classes,
        "images_per_class": images_per_class,
        "captions_per_image": captions_per_image,
        "jpeg_quality": jpeg_quality,
        "class_attributes": {name: dict(zip(PART_NAMES, bird)) for name, bird in zip(names, birds)},
    }
    with dataset_folder(out_dir, stamp) as root:
        layout = CubLayout(root)
        images_txt, labels_txt = [], []
        test_image_ids, test_image_classes, test_caption_ids, test_specs = [], [], [], []
        image_id = 0
        for c, (bird, name) in enumerate(zip(birds, names)):
            for k in range(images_per_class):
                image_id += 1
                relative = f"{name}/Bird_{c + 1:03d}_{k + 1:04d}.jpg"
                captions = _write_bird(layout, relative, bird, rng, image_size, captions_per_image, jpeg_quality)
                images_txt.append(f"{image_id} {relative}")
                labels_txt.append(f"{image_id} {c + 1}")
                if c in test:
                    test_image_ids.append(image_id)
                    test_image_classes.append(c)
                    test_caption_ids.extend(CAPTION_ID_STRIDE * image_id + j for j in range(captions_per_image))
                    test_specs.extend(spec for spec, _ in captions)
        _write_lists(layout, names, test, images_txt, labels_txt)
        truth = truth_by_class(test_specs, birds)[:, test_image_classes]
        write_json(layout.ground_truth("caption_to_image"), ground_truth_json(truth, test_caption_ids, test_image_ids))
        write_json(layout.ground_truth("image_to_caption"), ground_truth_json(truth.T, test_image_ids, test_caption_ids))


def _write_bird(
    layout: CubLayout,
    relative: str,
    bird: BirdClass,
    rng: np.random.Generator,
    image_size: int,
    captions_per_image: int,
    jpeg_quality: int,
) -> list[tuple[CaptionSpec, str]]:
    """Draw one image of ``bird`` and its captions (in that order, from ``rng``), write both
    files, and return the captions with their meanings."""
    path = layout.image(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(draw_bird(bird, rng, image_size), jpeg_quality))
    captions = [sample_caption(bird, rng) for _ in range(captions_per_image)]
    text_file = layout.caption_file(relative)
    text_file.parent.mkdir(parents=True, exist_ok=True)
    text_file.write_text("".join(text + "\n" for _, text in captions), encoding="utf-8")
    return captions


def _write_lists(layout: CubLayout, names: list[str], test: set[int], images_txt: list[str], labels_txt: list[str]) -> None:
    """classes.txt, images.txt, image_class_labels.txt, the two split class files and seen_test_images.txt."""
    layout.classes_txt.write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)), encoding="utf-8")
    layout.images_txt.write_text("".join(line + "\n" for line in images_txt), encoding="utf-8")
    layout.image_class_labels_txt.write_text("".join(line + "\n" for line in labels_txt), encoding="utf-8")
    for split, chosen in (
        ("train", [n for i, n in enumerate(names) if i not in test]),
        ("test", [n for i, n in enumerate(names) if i in test]),
    ):
        layout.split_classes(split).write_text("".join(n + "\n" for n in chosen), encoding="utf-8")
    # PCME holds some images of the training classes out of training (real CUB's
    # seen_test_images.txt); the synthetic twin trains on all of them, as its settings and
    # measured numbers assume, and says so with an empty list in the same layout.
    layout.seen_test_images.write_text("", encoding="utf-8")
