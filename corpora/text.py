"""Tokenizer, vocabulary and word vectors shared by every dataset.

The tokenizer is a lower-casing regular expression, so nothing (no NLTK data)
has to be downloaded. The vocabulary is built from the training split only: a
word that appears only in test captions maps to ``<unk>``, as it would for a
model that never saw it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpora.errors import DataError
from corpora.readers import read_json

TOKEN_PATTERN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIAL_TOKENS = (PAD, UNK, START, END)


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and return its words and numbers; punctuation is dropped."""
    return TOKEN_PATTERN.findall(text.lower())


@dataclass
class Vocabulary:
    """Words in index order; the four special tokens come first (``<pad>`` is 0)."""

    words: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if tuple(self.words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}")
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("a vocabulary lists each word once")

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Words seen at least ``min_count`` times, most frequent first, ties alphabetical."""
        counts = Counter(token for caption in captions for token in tokenize(caption))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIAL_TOKENS) + kept)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def encode(self, text: str) -> list[int]:
        """``<start>`` + token ids (``<unk>`` for unknown words) + ``<end>``."""
        unk = self.index[UNK]
        return [self.index[START], *(self.index.get(t, unk) for t in tokenize(text)), self.index[END]]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"words": self.words}, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        words = read_json(path, ("words",))["words"]
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DataError(path, "words", "expected a list of words")
        return cls(words)


def word_vectors(vocab: Vocabulary, dim: int, seed: int, glove_path: str | Path | None = None) -> tuple[np.ndarray, int]:
    """A (len(vocab), dim) float32 matrix of initial word vectors, and how many came from GloVe.

    Rows start as N(0, 0.1^2) from ``seed``; ``<pad>`` is zero. With ``glove_path``
    (a GloVe text file such as glove.840B.300d.txt: a word, then ``dim`` numbers,
    per line) every vocabulary word found there takes its GloVe vector. Words in
    the 840B file may contain spaces, so the vector is read from the right.
    """
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0.0, 0.1, size=(len(vocab), dim)).astype(np.float32)
    vectors[vocab.index[PAD]] = 0.0
    found = 0
    if glove_path is None:
        return vectors, found
    glove_path = Path(glove_path)
    if not glove_path.is_file():
        raise DataError(glove_path, "word vectors", "file not found; download GloVe or set word_vectors to null")
    with glove_path.open(encoding="utf-8", errors="strict") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip("\n").rstrip(" ").split(" ")
            if len(fields) < dim + 1:
                raise DataError(glove_path, f"line {number}", f"expected a word and {dim} numbers, found {len(fields)} fields")
            word = " ".join(fields[:-dim])
            row = vocab.index.get(word)
            if row is None or word in SPECIAL_TOKENS:
                continue
            try:
                vectors[row] = np.asarray(fields[-dim:], dtype=np.float32)
            except ValueError as error:
                raise DataError(glove_path, f"line {number} ({word!r})", f"not a number: {error}") from None
            found += 1
    return vectors, found
