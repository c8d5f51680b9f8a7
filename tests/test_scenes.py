"""The shapes world: rendering, and exact truth of captions on hand-built scenes."""

import numpy as np
import pytest

from corpora.synthetic.scenes import (
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


@pytest.mark.parametrize(
    "spec, text",
    [
        (CaptionSpec((Descriptor(shape="circle", colour="red", size="small"),)), "a small red circle"),
        (CaptionSpec((Descriptor(),)), "a shape"),
        (CaptionSpec(count=2), "two shapes"),
        (CaptionSpec((Descriptor(colour="red", side="left"),)), "a red shape on the left"),
        (
            CaptionSpec(
                (Descriptor(shape="circle", colour="red", size="small"), Descriptor(shape="star", colour="blue")),
                relation="above",
            ),
            "a small red circle above a blue star",
        ),
    ],
)
def test_rendering_says_what_the_spec_means(spec, text):
    rendered = [spec.render(np.random.default_rng(s)) for s in range(30)]
    assert all(r.endswith(text) for r in rendered)


def test_invalid_specs_are_refused():
    with pytest.raises(ValueError):
        CaptionSpec()
    with pytest.raises(ValueError):
        CaptionSpec((Descriptor(),), relation="left of")
