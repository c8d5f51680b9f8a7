"""Captions whose length is drawn apart from their meaning, for both synthetic datasets.

Left to itself a generator's vague caption is short ("a shape") and a specific one long
("a small red circle left of a large blue star"): the caption's length then tells its
ambiguity as well as any uncertainty a model could learn, and a study of sigma measures
length. So each caption draws a target length first, whatever it says, and takes the
wording closest to it among a terse one and full ones between filler words that say
nothing about the image.
"""

from __future__ import annotations

import numpy as np


def wording_of_drawn_length(wordings: list[str], lengths: tuple[int, int], rng: np.random.Generator) -> str:
    """One of ``wordings`` (the same meaning), the closest in words to a length drawn from
    ``lengths`` (inclusive), ties broken at random."""
    target = int(rng.integers(lengths[0], lengths[1] + 1))
    gaps = np.array([abs(len(w.split()) - target) for w in wordings])
    closest = np.flatnonzero(gaps == gaps.min())
    return wordings[closest[rng.integers(len(closest))]]


def framed(body: str, openers: tuple[str, ...], closings: tuple[str, ...]) -> list[str]:
    """``body`` between every opener and closing ("" for none); an opener may hold ``{}`` for the body."""
    out = []
    for opener in openers:
        start = opener.format(body) if "{}" in opener else " ".join(w for w in (opener, body) if w)
        out.extend(" ".join(w for w in (start, closing) if w) for closing in closings)
    return out
