"""Rules download_*: fetch one file of the config's `sources` to the rule's output (corpora.download).

A file without a published checksum has its SHA-256 recorded only once it is known intact: an archive
by its extraction rule, after extracting it whole; another zip (GloVe) here, after reading every
member to its end."""

import logging
from pathlib import Path

from corpora.archives import check_integrity, move_aside
from corpora.download import DownloadError, NotEnoughSpace, fetch, record_first_digest, verify
from corpora.errors import DataError
from corpora.sources import REAL_DATASETS, dataset_root, source
from pcmebench.logs import log_to

log = logging.getLogger("pcmebench.download")

with log_to(snakemake.log[0]):  # noqa: F821 - snakemake is injected by the script directive
    key = snakemake.params.key  # noqa: F821
    target = Path(snakemake.output[0]).resolve()  # noqa: F821
    config = snakemake.config  # noqa: F821
    expected = source(config["sources"], key)
    archives = {f"{name}.{k}": (name, a) for name, data in REAL_DATASETS.items() for k, a in data.archives.items()}
    # An archive also needs room for what it unpacks to: about its own size (its images are compressed).
    reserve = (expected.size or 0) if key in archives else 0
    log.info("%s: fetching %s to %s", key, expected.describe(), target)
    try:
        fetch(expected, target, reserve=reserve, record=False)
    except NotEnoughSpace:
        raise
    except DownloadError as error:
        by_hand = f"download {expected.url} in a browser and save it as {target} (exactly this name)"
        if key in archives:
            name, archive = archives[key]
            root = dataset_root(name, Path(config["data_root"]), config["sources"]).resolve()
            by_hand += ", or put what it holds in place: " + ", ".join(
                f"its {m} at {root / t}" for m, t in archive.members.items()
            )
        raise DownloadError(
            f"{error}\nTo get sources.{key} by hand: {by_hand}; then run the workflow again: what is in place is "
            "verified and used, nothing is downloaded."
        ) from None
    if not expected.has_checksum and key not in archives:
        if target.suffix == ".zip":
            try:
                check_integrity(target)
            except DataError as error:
                aside = move_aside(target)
                raise DataError(
                    error.path,
                    error.item,
                    f"{error.problem}\nIt was moved aside to {aside}; the next run downloads sources.{key} again.",
                ) from None
        record_first_digest(target, verify(target, expected)["sha256"], expected.url)
