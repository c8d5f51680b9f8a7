"""The download stage: fetch one file of the config's ``sources``, or extract a downloaded archive.

    python -m pcmebench.download fetch --key coco.train_ids --output data/coco/annotations/coco_train_ids.npy \
        --sources "$PCMEBENCH_SOURCES"
    python -m pcmebench.download extract --key cub.captions --archive data/downloads/cvpr2016_cub.tar.gz \
        --root data/cub --sources "$PCMEBENCH_SOURCES"

``--sources`` is the config's ``sources`` section as JSON. ``fetch`` verifies what it downloads
(corpora.download); ``extract`` verifies the archive, then extracts its members into the dataset's
layout, read to its end intact and checked against the dataset's own index (corpora.archives,
corpora.sources.extraction_check). A file without a published checksum has its SHA-256 recorded
only once it is known intact: an archive after its whole extraction, another zip (GloVe) after
every member has been read to its end. A refused file is moved aside, so the rerun downloads it again.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from corpora.archives import check_integrity, extract, move_aside
from corpora.download import DownloadError, NotEnoughSpace, fetch, record_first_digest, verify
from corpora.errors import DataError
from corpora.sources import ARCHIVES, archive_of, extraction_check, source
from pcmebench.logs import log_to_stderr

log = logging.getLogger("pcmebench.download")


def download(key: str, target: Path, sources: dict, root: Path | None = None) -> None:
    """Fetch sources.<key> to ``target``; ``root``: the dataset root an archive's members go to
    (named in the message that says how to get the file by hand)."""
    expected = source(sources, key)
    archive = key in ARCHIVES.values()
    log.info("%s: fetching %s to %s", key, expected.describe(), target)
    try:
        # An archive also needs room for what it unpacks to: about its own size (its images are compressed).
        fetch(expected, target, reserve=(expected.size or 0) if archive else 0, record=False)
    except NotEnoughSpace:
        raise
    except DownloadError as error:
        by_hand = f"download {expected.url} in a browser and save it as {target} (exactly this name)"
        if archive and root is not None:
            members = archive_of(key)[1].members
            by_hand += ", or put what it holds in place: " + ", ".join(f"its {m} at {root / t}" for m, t in members.items())
        raise DownloadError(
            f"{error}\nTo get sources.{key} by hand: {by_hand}; then run the workflow again: what is in place is "
            "verified and used, nothing is downloaded."
        ) from None
    if not expected.has_checksum and not archive:
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


def extract_archive(key: str, archive: Path, root: Path, sources: dict) -> None:
    """Verify the archive of sources.<key>, then extract its members under ``root``."""
    expected = source(sources, key)
    members = archive_of(key)[1].members
    try:
        # The download verified it already; an archive placed here by hand is verified now.
        digests = verify(archive, expected, what=f"sources.{key}")
        log.info("%s: verified; extracting %s into %s", archive, sorted(members), root)
        extract(archive, root, dict(members), check=extraction_check(key, root))
    except DataError as error:
        aside = move_aside(archive)
        raise DataError(
            error.path,
            error.item,
            f"{error.problem}\nThe archive was moved aside to {aside}; the next run downloads "
            f"sources.{key} again (delete {aside.name} once you no longer need it).",
        ) from None
    if not expected.has_checksum:
        record_first_digest(archive, digests["sha256"], expected.url)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    fetching = actions.add_parser("fetch", help="fetch one file of the config's sources")
    fetching.add_argument("--output", type=Path, required=True)
    fetching.add_argument("--root", type=Path, help="an archive's dataset root (for the message on getting it by hand)")
    unpacking = actions.add_parser("extract", help="verify an archive and extract its members")
    unpacking.add_argument("--archive", type=Path, required=True)
    unpacking.add_argument("--root", type=Path, required=True, help="the dataset root its members go under")
    for action in (fetching, unpacking):
        action.add_argument("--key", required=True, help='its key in sources, e.g. "coco.train2014"')
        action.add_argument("--sources", type=json.loads, required=True, help="the config's sources section (JSON)")
    args = parser.parse_args(argv)
    log_to_stderr()
    if args.action == "fetch":
        download(args.key, args.output.resolve(), args.sources, args.root and args.root.resolve())
    else:
        extract_archive(args.key, args.archive, args.root, args.sources)


if __name__ == "__main__":
    main()
