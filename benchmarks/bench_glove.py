"""Time reading GloVe's vocabulary rows (corpora.text.word_vectors) against a line-by-line reference.

    python benchmarks/bench_glove.py [--lines 200000] [--vocab 11000] [--seed 0]

Writes a GloVe-840B-like file in a temporary folder: ``--lines`` lines of a word and 300 numbers
as GloVe prints them (about 1 in 1,000 words contains spaces), plain and zipped like
glove.840B.300d.zip, and a vocabulary of ``--vocab`` words (COCO's is about 11,000) of which 90%
are in the file. Times ``word_vectors`` on the .txt and on the .zip (read as a stream) against a
reference that decodes and splits every line in text mode, as a straightforward reader does, and
checks that all three give the same matrix. The real file has 2,196,017 lines: the script also
prints the time extrapolated to it.

Measured on this project's 2-core CPU: see the GloVe section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from corpora.text import PAD, SPECIAL_TOKENS, Vocabulary, word_vectors

DIM = 300
REAL_LINES = 2_196_017


def reference(vocab: Vocabulary, path: Path, seed: int) -> np.ndarray:
    """Decode every line, split all its fields, take the last DIM as the vector."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0.0, 0.1, size=(len(vocab), DIM)).astype(np.float32)
    vectors[vocab.index[PAD]] = 0.0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            fields = line.rstrip("\n").rstrip(" ").split(" ")
            word = " ".join(fields[:-DIM])
            row = vocab.index.get(word)
            if row is not None and word not in SPECIAL_TOKENS:
                vectors[row] = np.asarray(fields[-DIM:], dtype=np.float32)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--vocab", type=int, default=11_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    words = [f"w{i}" for i in range(args.lines)]
    for i in rng.choice(args.lines, size=args.lines // 1000, replace=False):
        words[i] = f"w{i} and more"  # multi-word entries, as in the 840B file
    in_file = [w for w in words if " " not in w][: int(args.vocab * 0.9)]
    vocab = Vocabulary([*SPECIAL_TOKENS, *in_file, *(f"absent{i}" for i in range(args.vocab - len(in_file)))])
    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "glove.840B.300d.txt"
        with text.open("w") as out:
            for word in words:
                out.write(word + " " + " ".join(f"{v:.4f}" for v in rng.normal(0, 0.4, DIM)) + "\n")
        archive = Path(folder) / "glove.840B.300d.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.write(text, text.name)
        print(f"{args.lines:,} lines, {text.stat().st_size / 1e6:.0f} MB text, {archive.stat().st_size / 1e6:.0f} MB zip, "
              f"vocabulary {len(vocab):,}")  # fmt: skip
        timings = {}
        results = {}
        for name, run in (
            ("word_vectors .txt", lambda: word_vectors(vocab, DIM, args.seed, text)[0]),
            ("word_vectors .zip", lambda: word_vectors(vocab, DIM, args.seed, archive)[0]),
            ("reference .txt", lambda: reference(vocab, text, args.seed)),
        ):
            start = time.perf_counter()
            results[name] = run()
            timings[name] = time.perf_counter() - start
        for name, seconds in timings.items():
            print(f"{name:20s} {seconds:7.2f} s   {seconds * REAL_LINES / args.lines:7.0f} s for the real file's lines   "
                  f"ratio to reference {timings['reference .txt'] / seconds:.2f}x")  # fmt: skip
        same = all(np.array_equal(results["reference .txt"], r) for r in results.values())
        print("identical matrices" if same else "MATRICES DIFFER")


if __name__ == "__main__":
    main()
