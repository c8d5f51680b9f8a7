"""Rule prepare: raw dataset -> Arrow splits, vocabulary and word vectors (see corpora.prepared)."""

import json
import logging

from corpora.prepared import prepare_dataset
from pcmebench.logs import log_to

log = logging.getLogger("pcmebench.prepare")

with log_to(snakemake.log[0]):  # noqa: F821 - snakemake is injected by the script directive
    params = snakemake.params  # noqa: F821
    meta = prepare_dataset(
        params.format,
        params.raw_root,
        snakemake.output[0],  # noqa: F821
        train_splits=params.train_splits,
        min_word_count=params.min_word_count,
        word_dim=params.word_dim,
        word_vectors_file=params.word_vectors,
        stored_shorter_side=params.stored_shorter_side,
        workers=snakemake.threads,  # noqa: F821 - processes that decode every image once
    )
    log.info("prepared %s", json.dumps(meta, indent=2))
