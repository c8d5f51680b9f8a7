"""Rule prepare: raw dataset -> Arrow splits, vocabulary and word vectors (see corpora.prepared)."""

import json
import logging
from pathlib import Path

from corpora.prepared import prepare_dataset
from corpora.sources import REAL_DATASETS, verify_in_place
from pcmebench.logs import log_to

log = logging.getLogger("pcmebench.prepare")

with log_to(snakemake.log[0]):  # noqa: F821 - snakemake is injected by the script directive
    params = snakemake.params  # noqa: F821
    name = snakemake.wildcards.dataset  # noqa: F821
    if name in REAL_DATASETS:
        # Split files placed by hand are checked here (a download is checked as it lands): Reed
        # et al.'s CUB files carry the names of PCME's, with another split.
        checked = verify_in_place(name, Path(params.raw_root), snakemake.config["sources"])  # noqa: F821
        log.info("verified %s", ", ".join(map(str, checked)))
    meta = prepare_dataset(
        params.format,
        params.raw_root,
        snakemake.output[0],  # noqa: F821
        train_splits=params.train_splits,
        min_word_count=params.min_word_count,
        word_dim=params.word_dim,
        word_vectors_file=params.word_vectors,
        word_vector_std=params.word_vector_std,
        stored_shorter_side=params.stored_shorter_side,
        workers=snakemake.threads,  # noqa: F821 - processes that decode every image once
    )
    log.info("prepared %s", json.dumps(meta, indent=2))
