"""Tokenizer, vocabulary and word vectors shared by every dataset.

The tokenizer is a lower-casing regular expression, so nothing (no NLTK data)
has to be downloaded. The vocabulary is built from the training split only: a
word that appears only in test captions maps to ``<unk>``, as it would for a
model that never saw it.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
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


def word_vectors(
    vocab: Vocabulary, dim: int, seed: int, glove_path: str | Path | None = None, std: float = 1.0
) -> tuple[np.ndarray, int]:
    """A (len(vocab), dim) float32 matrix of initial word vectors, and how many came from GloVe.

    Rows start as N(0, ``std``^2) from ``seed``: the originals' nn.Embedding starts every row N(0, 1)
    and overwrites those GloVe has, so words GloVe lacks and ``<start>``, ``<end>``, ``<unk>`` keep
    it (naver-ai/pcme models/caption_encoder.py ``EncoderText``; yalesong/pvse model.py).
    ``<pad>`` is zero. With ``glove_path`` (a GloVe text
    file such as glove.840B.300d.txt: a word, then ``dim`` numbers, per line; or the .zip that
    holds it, read as a stream so the 5.6 GB text never lands on disk) every vocabulary word found
    there takes its GloVe vector, and only those rows are kept. Words in the 840B file may contain
    spaces, so each line is read from the right. A word listed twice takes its last vector.
    """
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0.0, std, size=(len(vocab), dim)).astype(np.float32)
    vectors[vocab.index[PAD]] = 0.0
    if glove_path is None:
        return vectors, 0
    glove_path = Path(glove_path)
    if not glove_path.is_file():
        raise DataError(glove_path, "word vectors", "file not found (the download rule fetches GloVe; see the README)")
    # Lines are compared as bytes: only lines of vocabulary words are decoded and parsed.
    rows = {word.encode("utf-8"): i for i, word in enumerate(vocab.words) if word not in SPECIAL_TOKENS}
    from_file = np.zeros(len(vocab), dtype=bool)
    for number, raw in enumerate(_glove_lines(glove_path), start=1):
        line = raw.rstrip(b"\r\n").rstrip(b" ")
        spaces = line.count(b" ")
        if spaces < dim:
            raise DataError(glove_path, f"line {number}", f"expected a word and {dim} numbers, found {spaces + 1} fields")
        word = line[: line.index(b" ")] if spaces == dim else line.rsplit(b" ", dim)[0]
        row = rows.get(word)
        if row is None:
            continue
        try:
            vectors[row] = np.array(line[len(word) + 1 :].split(b" "), dtype=np.float32)
        except ValueError as error:
            shown = word.decode("utf-8", errors="replace")
            raise DataError(glove_path, f"line {number} ({shown!r})", f"not a number: {error}") from None
        from_file[row] = True
    return vectors, int(from_file.sum())


def _glove_lines(path: Path):
    """The lines (bytes) of a GloVe text file, or of the one .txt file inside a GloVe .zip."""
    if path.suffix == ".zip" and not zipfile.is_zipfile(path):
        raise DataError(path, "archive", "not a readable zip archive (cut short?); delete it to download it again")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as lines:
            yield from lines
        return
    try:
        with zipfile.ZipFile(path) as bundle:
            texts = [name for name in bundle.namelist() if name.endswith(".txt")]
            if len(texts) != 1:
                raise DataError(path, "archive", f"expected one .txt file of word vectors inside, found {texts}")
            with bundle.open(texts[0]) as member:
                yield from io.BufferedReader(member, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:  # truncated download, CRC mismatch
        raise DataError(path, "archive", f"cannot be read to the end ({error}); delete it to download it again") from None
