"""Rules download_*: fetch one file of the config's `sources` to the rule's output (corpora.download)."""

import logging
from pathlib import Path

from corpora.download import DownloadError, NotEnoughSpace, fetch
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
        fetch(expected, target, reserve=reserve)
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
