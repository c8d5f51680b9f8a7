"""Resumable, verified downloads of the real data (``requests`` with HTTP Range).

``fetch(source, target)`` brings one file to ``target``:

- a file already at ``target`` is verified (size, checksum) and used: no request is made;
- otherwise the bytes go to ``<target>.part``; a transfer cut mid-way is resumed from where it
  stopped (``Range: bytes=<n>-``), with retries and exponential backoff for as long as attempts
  make progress; a progress bar shows the transfer;
- before the first byte, the free space must hold what is left to download plus ``reserve``
  (what extracting it will take);
- only when its size and checksum are right is ``<target>.part`` renamed to ``target``; a wrong
  one is deleted, never left as if valid;
- a file with no published checksum gets the SHA-256 of its first intact copy recorded next to
  it (``<target>.sha256``), and a warning when a later copy differs; an archive's caller records
  it only once the archive has passed every check (``record=False``): a damaged first copy
  must not become the reference.

Hosts such as Google Drive answer large files with a confirmation page; ``fetch`` follows its
"download anyway" form once and otherwise raises ``DownloadRefused``, so the caller can say
where to put the file by hand.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin

import requests
import urllib3
from tqdm import tqdm

from corpora.errors import DataError

log = logging.getLogger("pcmebench.download")

CHUNK_BYTES = 1 << 20
# Range offsets count the bytes as sent: ask hosts not to compress them on the fly.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}
HASH_CHUNK_BYTES = 8 << 20
# HTTP statuses worth retrying; any other 4xx is a wrong address and fails at once.
TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Source:
    """Where a file comes from and what is known to verify it (one entry of config ``sources``).

    ``sha256`` may be a prefix of the digest: torch.hub's file names carry its first 8 hex digits.
    ``url`` None: the file has no address and must be placed by hand.
    """

    url: str | None
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None

    @classmethod
    def from_config(cls, entry: dict) -> Source:
        return cls(entry.get("url"), entry.get("size"), entry.get("md5"), entry.get("sha256"))

    @property
    def has_checksum(self) -> bool:
        return bool(self.md5 or self.sha256)

    def describe(self) -> str:
        """The address with what is known about the file, for messages."""
        facts = [human_bytes(self.size)] if self.size else []
        if self.md5:
            facts.append(f"MD5 {self.md5}")
        elif self.sha256:
            facts.append(f"SHA-256 {self.sha256}{'' if len(self.sha256) == 64 else '...'}")
        address = self.url or "(no address configured)"
        return f"{address} ({', '.join(facts)})" if facts else address


class DownloadError(RuntimeError):
    """A transfer that could not be completed."""


class DownloadRefused(DownloadError):
    """The host answered with a web page instead of the file (quota, login or confirmation page)."""


class NotEnoughSpace(DownloadError):
    """Too little free disk space for a download and its extraction."""


class ChecksumError(DataError):
    """A file whose size or checksum is not the expected one."""


def human_bytes(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:,} bytes" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def file_digests(path: Path, md5: bool = True, sha256: bool = True) -> dict[str, str]:
    """Hex digests of ``path`` ("md5", "sha256"), read once."""
    hashes = {name: hashlib.new(name) for name, wanted in (("md5", md5), ("sha256", sha256)) if wanted}
    with path.open("rb") as stream:
        while block := stream.read(HASH_CHUNK_BYTES):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def verify(path: Path, source: Source, what: str | None = None) -> dict[str, str]:
    """Check ``path``'s size and checksum against ``source``; a ChecksumError names the file.

    Returns the digests computed (a file with no checksum gets its SHA-256, to be recorded).
    """
    what = what or path.name
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        raise ChecksumError(path, what, f"has {size:,} bytes, expected {source.size:,} (from {source.describe()})")
    digests = file_digests(path, md5=bool(source.md5), sha256=bool(source.sha256) or not source.has_checksum)
    if source.md5 and digests["md5"] != source.md5.lower():
        raise ChecksumError(path, what, f"MD5 is {digests['md5']}, expected {source.md5} (from {source.describe()})")
    if source.sha256 and not digests["sha256"].startswith(source.sha256.lower()):
        raise ChecksumError(path, what, f"SHA-256 is {digests['sha256']}, expected {source.sha256}... (from {source.describe()})")
    return digests


def record_first_digest(path: Path, sha256: str, url: str | None) -> None:
    """Keep the SHA-256 of the first copy of a file that has no published checksum; warn when a
    later copy differs (its publisher may have changed it)."""
    record = path.with_name(path.name + ".sha256")
    if record.is_file():
        first = record.read_text().split()[0]
        if first != sha256:
            log.warning(
                "%s: SHA-256 %s differs from the first download's %s (recorded in %s): the file at %s has changed "
                "since; results built from the two copies may differ",
                path, sha256, first, record, url,
            )  # fmt: skip
        return
    record.write_text(f"{sha256}  {path.name}\n")
    log.info("%s: no published checksum; recorded its SHA-256 %s in %s", path, sha256, record)


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise NotEnoughSpace unless the file system of ``folder`` has ``needed`` bytes free."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise NotEnoughSpace(
            f"{what} needs {human_bytes(needed)} free in {folder}, and only {human_bytes(free)} is free. "
            "Free some space, or point data_root (or sources.<dataset>.root) at a larger disk."
        )


class _FormFinder(HTMLParser):
    """The first form of a page with its hidden inputs (Google Drive's "download anyway" form)."""

    def __init__(self):
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.title = ""
        self._in_form = self._in_title = False
        self._done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title":
            self._in_title = True
        elif tag == "form" and not self._done:
            self.action = attrs.get("action") or ""
            self._in_form = True
        elif tag == "input" and self._in_form and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def confirmation_url(page: str, page_url: str, cookies) -> str | None:
    """The address a "download anyway" page leads to: the action of its form with a ``confirm``
    field, with its fields, or the page's address with the confirm token of a
    ``download_warning`` cookie (older Drive pages); None if neither."""
    form = _FormFinder()
    form.feed(page)
    if form.action is not None and "confirm" in form.fields:  # not just any form of a web page
        return urljoin(page_url, form.action) + "?" + urlencode(form.fields)
    for name, value in cookies.items():
        if name.startswith("download_warning"):
            return page_url + ("&" if "?" in page_url else "?") + urlencode({"confirm": value})
    return None


def _page_title(page: str) -> str:
    form = _FormFinder()
    form.feed(page)
    return " ".join(form.title.split()) or "untitled page"


def _looks_like_html(response: requests.Response, first: bytes) -> bool:
    return "html" in response.headers.get("Content-Type", "") and first.lstrip()[:1] == b"<"


def _total_from(response: requests.Response, offset: int) -> int | None:
    """The file's full size as the response states it (Content-Range or Content-Length), if it does."""
    if response.status_code == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if not match or int(match[1]) != offset:
            raise DownloadError(f"{response.url}: answered Range bytes={offset}- with Content-Range {match and match[0]!r}")
        return None if match[3] == "*" else int(match[3])
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _chunks(response: requests.Response):
    """The body as it arrives: each block is written before the next read, so a transfer cut
    mid-way keeps every byte received (``iter_content`` fills whole chunks and loses the last)."""
    read = getattr(response.raw, "read1", None) or response.raw.read
    while block := read(CHUNK_BYTES):
        yield block


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class _Fetcher:
    """The transfer loop of one ``fetch`` call."""

    def __init__(self, source: Source, part: Path, session, timeout, progress: bool, name: str):
        self.source, self.part, self.session, self.timeout = source, part, session, timeout
        self.url = source.url
        self.progress, self.name = progress, name
        self.followed_confirmation = self.redirected = False

    def attempt(self) -> bool:
        """One request, appending to the partial file. True when the file is complete."""
        offset = _size(self.part)
        size = self.source.size
        if size is not None and offset > size:
            log.warning("%s: partial file is larger than the expected %s bytes; starting over", self.part, f"{size:,}")
            self.part.unlink()
            offset = 0
        if size is not None and offset == size:
            return True
        headers = REQUEST_HEADERS | ({"Range": f"bytes={offset}-"} if offset else {})
        with self.session.get(self.url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416:
                if size is None:  # the partial file already holds everything the host has
                    return True
                log.warning("%s: host refused to resume at byte %s; starting over", self.url, f"{offset:,}")
                self.part.unlink()
                return False
            if response.status_code in TRANSIENT_STATUSES:
                raise requests.HTTPError(f"HTTP {response.status_code} {response.reason}", response=response)
            if response.status_code >= 400:
                raise DownloadError(
                    f"{self.url}: HTTP {response.status_code} {response.reason}. The address may have moved: "
                    "point its entry in the config's `sources` at a mirror"
                )
            if offset and response.status_code == 200:
                log.warning("%s: host ignored the Range request; downloading from the start", self.url)
                offset = 0
            total = _total_from(response, offset)
            chunks = _chunks(response)
            first = next(chunks, b"")
            if _looks_like_html(response, first):
                self._follow_confirmation(response, first + b"".join(chunks))
                return False
            if size is not None and total is not None and total != size:
                raise DownloadError(
                    f"{self.url}: the host serves {total:,} bytes, expected {size:,}: not the expected file. "
                    "Check the address in the config's `sources`"
                )
            expected = size or total
            received = 0
            bar = tqdm(
                total=expected, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=self.name,
                file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30, disable=not self.progress,
            )  # fmt: skip
            with self.part.open("ab" if offset else "wb") as stream, bar:
                for chunk in itertools.chain([first], chunks):
                    stream.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            offset += received
            if expected is None:
                return True
            return offset >= expected

    def _follow_confirmation(self, response: requests.Response, body: bytes) -> None:
        page = body.decode("utf-8", errors="replace")
        target = None if self.followed_confirmation else confirmation_url(page, response.url, self.session.cookies)
        if target is None:
            raise DownloadRefused(f"{self.source.url} answered with a web page ({_page_title(page)!r}) instead of the file")
        log.info("%s: following the host's download confirmation", self.source.url)
        self.url, self.followed_confirmation, self.redirected = target, True, True


def _retry(fetcher: _Fetcher, attempts: int, backoff: float, max_backoff: float) -> None:
    """Run ``fetcher``'s attempts until the file is complete: a failed attempt is retried after a
    pause that doubles (``backoff`` seconds, at most ``max_backoff``); ``attempts`` in a row without
    progress give up, keeping the partial file for the next run to resume."""
    failures = 0
    while True:
        before = _size(fetcher.part)
        try:
            if fetcher.attempt():
                return
            problem = "the transfer ended before the end of the file"
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            problem = str(error)
        if fetcher.redirected:
            fetcher.redirected = False
            continue
        after = _size(fetcher.part)
        failures = 1 if after > before else failures + 1
        if failures >= attempts:
            raise DownloadError(
                f"{fetcher.source.url}: {attempts} attempts in a row failed without progress ({problem}); "
                f"{human_bytes(after)} kept in {fetcher.part}, the next run resumes there"
            )
        pause = min(max_backoff, backoff * 2 ** (failures - 1))
        log.warning("%s: transfer failed at byte %s (%s); retrying in %.1f s", fetcher.source.url, f"{after:,}", problem, pause)
        time.sleep(pause)


def fetch(
    source: Source,
    target: str | Path,
    *,
    reserve: int = 0,
    attempts: int = 5,
    backoff: float = 2.0,
    max_backoff: float = 120.0,
    timeout: tuple[float, float] = (30.0, 120.0),
    session: requests.Session | None = None,
    progress: bool = True,
    record: bool = True,
) -> Path:
    """Download ``source`` to ``target`` (see the module docstring); returns ``target``.

    ``reserve``: bytes the file needs after the download (its extraction), checked with the
    download's own size against the free space before anything is fetched. ``attempts``:
    consecutive attempts without progress before giving up, ``backoff`` seconds after the first
    failure, doubling up to ``max_backoff``. A partial file is kept when giving up, so the next
    call resumes it. ``record``: record the SHA-256 of a file without a published checksum here;
    False leaves it to the caller, after its own checks (``record_first_digest``).
    """
    target = Path(target)
    if target.exists():
        digests = verify(target, source)
        if record and not source.has_checksum:
            record_first_digest(target, digests["sha256"], source.url)
        log.info("%s: already in place and verified; nothing downloaded", target)
        return target
    if not source.url:
        raise DownloadError(f"{target}: not in place and its source has no address; place the file there by hand")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    done = _size(part)
    remaining = max(0, source.size - done) if source.size is not None else 0
    check_free_space(target.parent, remaining + reserve, f"{target.name} ({human_bytes(remaining)} to download, "
                     f"{human_bytes(reserve)} to extract)")  # fmt: skip
    if done:
        log.info("%s: resuming at byte %s", source.url, f"{done:,}")
    own_session = session is None
    session = session or requests.Session()
    try:
        _retry(_Fetcher(source, part, session, timeout, progress, target.name), attempts, backoff, max_backoff)
    finally:
        if own_session:
            session.close()
    try:
        digests = verify(part, source, what=f"download of {source.url}")
    except ChecksumError as error:
        part.unlink()
        raise ChecksumError(target, error.item, f"{error.problem}; the download was deleted") from None
    if record and not source.has_checksum:
        record_first_digest(target, digests["sha256"], source.url)
    os.replace(part, target)
    log.info("%s: downloaded and verified (%s)", target, human_bytes(target.stat().st_size))
    return target
