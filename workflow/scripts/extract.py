"""Rules extract_*: verify a downloaded archive, then extract its members into the dataset's layout
(corpora.archives: checked members, read to its end intact, every file the dataset's index names
present (corpora.sources.extraction_check), a temporary folder moved into place when complete).
A refused archive is moved aside, so the rerun downloads it again; a file without a published
checksum gets its SHA-256 recorded only once it has passed every check."""

import logging
from pathlib import Path

from corpora.archives import extract, move_aside
from corpora.download import record_first_digest, verify
from corpora.errors import DataError
from corpora.sources import extraction_check, source
from pcmebench.logs import log_to

log = logging.getLogger("pcmebench.extract")

with log_to(snakemake.log[0]):  # noqa: F821 - snakemake is injected by the script directive
    params = snakemake.params  # noqa: F821
    archive = Path(snakemake.input.archive)  # noqa: F821
    expected = source(snakemake.config["sources"], params.key)  # noqa: F821
    try:
        # The download verified it already; an archive placed here by hand is verified now.
        digests = verify(archive, expected, what=f"sources.{params.key}")
        log.info("%s: verified; extracting %s into %s", archive, sorted(params.members), params.root)
        extract(archive, params.root, dict(params.members), check=extraction_check(params.key, Path(params.root)))
    except DataError as error:
        aside = move_aside(archive)
        raise DataError(
            error.path,
            error.item,
            f"{error.problem}\nThe archive was moved aside to {aside}; the next run downloads "
            f"sources.{params.key} again (delete {aside.name} once you no longer need it).",
        ) from None
    if not expected.has_checksum:
        record_first_digest(archive, digests["sha256"], expected.url)
