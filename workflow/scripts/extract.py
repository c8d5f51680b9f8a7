"""Rules extract_*: verify a downloaded archive, then extract its members into the dataset's layout
(corpora.archives: checked members, a temporary folder moved into place when complete)."""

import logging
from pathlib import Path

from corpora.archives import extract
from corpora.download import record_first_digest, verify
from corpora.sources import source
from pcmebench.logs import log_to

log = logging.getLogger("pcmebench.extract")

with log_to(snakemake.log[0]):  # noqa: F821 - snakemake is injected by the script directive
    params = snakemake.params  # noqa: F821
    archive = Path(snakemake.input[0])  # noqa: F821
    expected = source(snakemake.config["sources"], params.key)  # noqa: F821
    # The download verified it already; an archive placed here by hand is verified now.
    digests = verify(archive, expected, what=f"sources.{params.key}")
    if not expected.has_checksum:
        record_first_digest(archive, digests["sha256"], expected.url)
    log.info("%s: verified; extracting %s into %s", archive, sorted(params.members), params.root)
    extract(archive, params.root, dict(params.members))
