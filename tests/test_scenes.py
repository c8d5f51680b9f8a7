"""The shapes world: rendering, and exact truth of captions on hand-built scenes."""

import numpy as np
import pytest

from corpora.synthetic.scenes import (
    CLOSINGS,
    COUNT_OPENERS,
    OPENERS,
    CaptionSpec,
    Descriptor,
    SceneObject,
    sample_captions,
    sample_scene,
    truth_matrix,
)

RED_CIRCLE_LEFT = SceneObject("circle", "red", "small", col=0, row=1)
BLUE_STAR_RIGHT = SceneObject("star", "blue", "large", col=2, row=0)
GREEN_SQUARE_MID = SceneObject("square", "green", "small", col=1, row=2)

SCENES = [
    (RED_CIRCLE_LEFT, BLUE_STAR_RIGHT),  # 0
    (BLUE_STAR_RIGHT,),  # 1
    (GREEN_SQUARE_MID, RED_CIRCLE_LEFT, BLUE_STAR_RIGHT),  # 2
    (SceneObject("circle", "red", "large", col=2, row=2), SceneObject("star", "blue", "small", col=0, row=2)),  # 3
]

# spec -> the scenes (indices into SCENES) it is true of, worked out by hand
CASES = [
    (CaptionSpec((Descriptor(),)), {0, 1, 2, 3}),  # "a shape"
    (CaptionSpec(count=2), {0, 3}),
    (CaptionSpec(count=1), {1}),
    (CaptionSpec((Descriptor(shape="circle"),)), {0, 2, 3}),
    (CaptionSpec((Descriptor(shape="circle", colour="red", size="small"),)), {0, 2}),
    (CaptionSpec((Descriptor(colour="red", side="left"),)), {0, 2}),
    (CaptionSpec((Descriptor(shape="star", side="top"),)), {0, 1, 2}),
    (CaptionSpec((Descriptor(side="bottom"),)), {2, 3}),
    (CaptionSpec((Descriptor(shape="circle", colour="red"), Descriptor(shape="star")), relation="left of"), {0, 2}),
    (CaptionSpec((Descriptor(shape="circle", colour="red"), Descriptor(shape="star")), relation="right of"), {3}),
    (CaptionSpec((Descriptor(shape="circle"), Descriptor(shape="star")), relation=None), {0, 2, 3}),
    (CaptionSpec((Descriptor(shape="star"), Descriptor(shape="circle")), relation="above"), {0, 2}),
    (CaptionSpec((Descriptor(shape="square"), Descriptor()), relation="below"), {2}),
    # two descriptors need two different objects: one star cannot be "a star and a shape" alone
    (CaptionSpec((Descriptor(shape="star"), Descriptor())), {0, 2, 3}),
    (CaptionSpec((Descriptor(colour="blue"), Descriptor(colour="blue"))), set()),
]


@pytest.mark.parametrize("spec, expected", CASES)
def test_truth_on_hand_built_scenes(spec, expected):
    assert {i for i, scene in enumerate(SCENES) if spec.is_true(scene)} == expected
    assert set(np.flatnonzero(truth_matrix([spec], SCENES)[0])) == expected


def test_vectorised_truth_equals_reference_on_random_scenes():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(150)]
    specs = [spec for scene in scenes[:60] for spec in sample_captions(scene, 5, rng)]
    fast = truth_matrix(specs, scenes)
    slow = np.array([[spec.is_true(scene) for scene in scenes] for spec in specs])
    np.testing.assert_array_equal(fast, slow)


def test_sampled_captions_are_true_distinct_and_varied():
    rng = np.random.default_rng(1)
    lengths = []
    for _ in range(200):
        scene = sample_scene(rng)
        specs = sample_captions(scene, 5, rng)
        assert len(set(specs)) == 5
        assert all(spec.is_true(scene) for spec in specs)
        if len(scene) > 1:
            assert specs[0].relation is not None  # the most specific kind comes first
        lengths += [len(spec.objects) for spec in specs]
    assert {0, 1, 2} <= set(lengths)


SMALL_RED_CIRCLE = Descriptor(shape="circle", colour="red", size="small")
BLUE_STAR = Descriptor(shape="star", colour="blue")
# spec -> its full wording (the vague noun and the relation's wording vary) and its terse one
WORDINGS = [
    (CaptionSpec((SMALL_RED_CIRCLE,)), {"a small red circle"}, "small red circle"),
    (CaptionSpec((Descriptor(),)), {"a shape", "a shape of some kind", "an object of some sort"}, None),
    (CaptionSpec(count=2), {"two shapes"}, "two shapes"),
    (
        CaptionSpec((Descriptor(colour="red", side="left"),)),
        {"a red shape on the left", "a red shape of some kind on the left", "a red object of some sort on the left"},
        None,
    ),
    (
        CaptionSpec((SMALL_RED_CIRCLE, BLUE_STAR), relation="above"),
        {"a small red circle above a blue star"},
        "small red circle, blue star below it",
    ),
    (
        CaptionSpec((SMALL_RED_CIRCLE, BLUE_STAR), relation="left of"),
        {"a small red circle left of a blue star", "a small red circle to the left of a blue star"},
        "small red circle, blue star at its right",
    ),
    (CaptionSpec((SMALL_RED_CIRCLE, BLUE_STAR), relation="right of"), None, "small red circle, blue star at its left"),
    (CaptionSpec((SMALL_RED_CIRCLE, BLUE_STAR), relation="below"), None, "small red circle, blue star above it"),
    (CaptionSpec((SMALL_RED_CIRCLE, BLUE_STAR)), {"a small red circle and a blue star"}, "small red circle, blue star"),
]


@pytest.mark.parametrize("spec, full, terse", WORDINGS)
def test_wordings_say_what_the_spec_means(spec, full, terse):
    for seed in range(40):
        if full is not None:
            assert spec.body(np.random.default_rng(seed), terse=False) in full
        if terse is not None:
            assert spec.body(np.random.default_rng(seed), terse=True) == terse


@pytest.mark.parametrize("spec, full, terse", WORDINGS)
def test_a_rendering_is_the_terse_wording_or_the_full_one_between_fillers(spec, full, terse):
    fillers = set(OPENERS + COUNT_OPENERS + CLOSINGS) - {""}
    lengths = set()
    for seed in range(60):
        text = spec.render(np.random.default_rng(seed))
        lengths.add(len(text.split()))
        if text == spec.body(np.random.default_rng(seed), terse=True):
            continue
        for filler in sorted(fillers, key=len, reverse=True):
            text = text.replace(filler, " ")
        assert full is None or " ".join(text.split()) in full
    assert len(lengths) >= 4  # the length varies with the draw, not only with the meaning


def test_invalid_specs_are_refused():
    with pytest.raises(ValueError):
        CaptionSpec()
    with pytest.raises(ValueError):
        CaptionSpec((Descriptor(),), relation="left of")
