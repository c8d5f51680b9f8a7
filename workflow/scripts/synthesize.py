"""Rule synthesize: generate one embedded dataset (see corpora.synthetic)."""

import logging

from corpora.synthetic import write_synthetic
from pcmebench.logs import log_to

log = logging.getLogger("pcmebench.synthesize")

with log_to(snakemake.log[0]):  # noqa: F821 - snakemake is injected by the script directive
    name = snakemake.wildcards.synthetic  # noqa: F821
    log.info("generating %s with %s", name, snakemake.params.generator)  # noqa: F821
    write_synthetic(name, snakemake.output[0], **snakemake.params.generator)  # noqa: F821
    log.info("done")
