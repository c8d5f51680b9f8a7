"""Safe extraction of the downloaded archives (zip, tar, tar.gz) into a dataset's layout.

``extract(archive, root, members)`` takes the members under each key of ``members`` (an archive
path; a trailing ``/`` takes a whole folder) to the mapped path under ``root``, e.g.
``{"CUB_200_2011/images/": "images/"}``. Every member of the archive, extracted or not, is checked
first: an absolute path, a ``..`` component, a link that points outside the archive's folder, or a
device file rejects the whole archive (``UnsafeArchiveError``). Tar members then pass through
``tarfile``'s ``data`` filter, which resolves every path on disk, links included, before writing.
A zip may hold no link at all (the datasets' zips hold none): its links are checked as text, and a
chain of them can lead out where each looks inside. Every archive is read to its end and its
integrity checked (each zip member's CRC, the compressed stream's CRC and length, nothing but
padding after what ``tarfile`` takes for the end: a damaged header looks like one) before anything
moves: a damaged archive is refused whole (``DamagedArchiveError``). Everything is extracted into a
temporary folder next to the targets and moved into place only when complete, so a failed or
interrupted extraction leaves no half-filled folder that looks like data.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from corpora.download import check_free_space
from corpora.errors import DataError

log = logging.getLogger("pcmebench.extract")
REFUSED = "the archive is refused whole, nothing extracted"


class UnsafeArchiveError(DataError):
    """An archive member that would land outside the extraction folder, or is not a plain file."""


class DamagedArchiveError(DataError):
    """An archive that cannot be read to its end intact: cut short, or with damaged bytes."""


class IncompleteArchiveError(DataError):
    """An intact archive that lacks files its dataset's own index names."""


def _unsafe_path(name: str) -> str | None:
    """Why an archive member's path is unsafe, or None."""
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path with a '..' component"
    return None


def _link_escapes(name: str, link: str) -> bool:
    """Whether a symbolic link at member ``name`` pointing to ``link`` leaves the archive's folder."""
    if link.startswith("/") or (len(link) > 1 and link[1] == ":"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
    return resolved == ".." or resolved.startswith("../")


class _Members:
    """The ``members`` mapping: which archive paths go where under the target root."""

    def __init__(self, members: dict[str, str]):
        self.members = members
        self.found = dict.fromkeys(members, False)

    def destination(self, name: str) -> str | None:
        name = name.rstrip("/")
        for source, target in self.members.items():
            if source.endswith("/"):
                if name == source.rstrip("/"):
                    self.found[source] = True
                    return target.rstrip("/")
                if name.startswith(source):
                    self.found[source] = True
                    return target + name[len(source) :]
            elif name == source:
                self.found[source] = True
                return target
        return None

    def targets(self) -> list[str]:
        return [target.rstrip("/") for target in self.members.values()]


def extract(
    archive: str | Path, root: str | Path, members: dict[str, str], progress: bool = True, check: Callable | None = None
) -> list[Path]:
    """Extract the ``members`` of ``archive`` under ``root`` (see the module docstring).

    Returns the paths put in place. A target that already exists is an error: nothing is
    overwritten. A key of ``members`` the archive lacks is a DataError (not the expected archive).
    ``check(staging)``: run on the extracted targets (laid out under the temporary folder as they
    will be under ``root``) before they move; an IncompleteArchiveError it raises refuses the archive.
    """
    archive, root = Path(archive), Path(root)
    mapping = _Members(members)
    for target in mapping.targets():
        if (root / target).exists():
            raise FileExistsError(f"{root / target} exists; move it away to extract {archive.name} there")
    staging = root / f".{archive.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging, mapping, progress)
        else:
            _extract_tar(archive, staging, mapping, progress)
        for source, found in mapping.found.items():
            if not found:
                raise DataError(archive, f"member {source}", "not in the archive; is it the expected file?")
        if check is not None:
            try:
                check(staging)
            except IncompleteArchiveError as error:
                raise IncompleteArchiveError(archive, error.item, f"{error.problem} ({error.path}); {REFUSED}") from None
        placed = []
        for target in mapping.targets():
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            (staging / target).rename(root / target)
            placed.append(root / target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: extracted %s", archive, ", ".join(str(p) for p in placed))
    return placed


def check_integrity(archive: str | Path) -> None:
    """Read a zip or tar archive to its end without extracting it; DamagedArchiveError when it is not intact."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    if not info.is_dir():
                        _read_member(archive, bundle, info, None)
        except zipfile.BadZipFile as error:
            raise DamagedArchiveError(archive, "file", f"not a readable zip archive ({error}); {REFUSED}") from None
        return
    try:
        with tarfile.open(archive, "r:*") as bundle:
            for _member in bundle:
                pass
            _read_to_the_end(archive, bundle)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DamagedArchiveError(archive, "file", f"cannot be read to the end as a tar archive ({error}); {REFUSED}") from None


def move_aside(archive: Path) -> Path:
    """Move a refused archive out of the way (``<name>.rejected``, replacing an older one), so a rerun
    downloads it again instead of meeting it; returns where it went."""
    aside = archive.with_name(archive.name + ".rejected")
    os.replace(archive, aside)
    return aside


def _bar(total, name: str, progress: bool):
    return tqdm(total=total, unit=" files", desc=name, file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30,
                disable=not progress)  # fmt: skip


def _extract_zip(archive: Path, staging: Path, mapping: _Members, progress: bool) -> None:
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as error:
        raise DataError(archive, "file", f"not a readable zip archive ({error})") from None
    with bundle:
        infos = bundle.infolist()
        chosen = []
        for info in infos:
            why = _unsafe_path(info.filename)
            if why is None and stat.S_ISLNK(info.external_attr >> 16):
                why = "symbolic link (the datasets' zip archives hold none)"
            if why:
                raise UnsafeArchiveError(
                    archive, f"member {info.filename!r}", f"{why}; the archive is rejected, nothing extracted"
                )
            destination = mapping.destination(info.filename)
            if destination is not None:
                chosen.append((info, destination))
        check_free_space(staging, sum(info.file_size for info, _ in chosen), f"extracting {archive.name}")
        extracted = {info.filename for info, _ in chosen}
        with _bar(len(infos), archive.name, progress) as bar:
            for info, destination in chosen:
                path = staging / destination
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _read_member(archive, bundle, info, path)
                bar.update()
            for info in infos:  # the members left out are read too: a damaged archive is refused whole
                if info.filename not in extracted:
                    if not info.is_dir():
                        _read_member(archive, bundle, info, None)
                    bar.update()


def _read_member(archive: Path, bundle: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path | None) -> None:
    """Read one zip member to its end (its CRC is checked there), into ``path`` unless None."""
    try:
        with bundle.open(info) as source:
            if path is None:
                while source.read(1 << 20):
                    pass
            else:
                with path.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:  # CRC mismatch, truncated or damaged data
        raise DamagedArchiveError(archive, f"member {info.filename!r}", f"damaged ({error}); {REFUSED}") from None


def _extract_tar(archive: Path, staging: Path, mapping: _Members, progress: bool) -> None:
    # Without a member list up front (a .tar.gz is read in one pass), the archive's own size
    # stands for what it unpacks to: its images are already compressed.
    check_free_space(staging, archive.stat().st_size, f"extracting {archive.name}")
    try:
        with tarfile.open(archive, "r:*") as bundle, _bar(None, archive.name, progress) as bar:
            for member in bundle:
                _check_tar_member(archive, member, staging)
                destination = mapping.destination(member.name)
                if destination is None:
                    continue
                renamed = {"name": destination}
                if member.islnk():
                    link_target = mapping.destination(member.linkname)
                    if link_target is None:
                        raise UnsafeArchiveError(
                            archive, f"member {member.name!r}", "hard link to a member that is not extracted"
                        )
                    renamed["linkname"] = link_target
                bundle.extract(member.replace(**renamed, deep=False), staging, filter="data")
                bar.update()
            _read_to_the_end(archive, bundle)
    except tarfile.FilterError as error:  # the data filter's own checks, on the renamed member
        raise UnsafeArchiveError(archive, "member", f"{error}; the archive is rejected, nothing extracted") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:  # not a tar archive, cut short, damaged
        raise DamagedArchiveError(archive, "file", f"cannot be read to the end as a tar archive ({error}); {REFUSED}") from None


def _read_to_the_end(archive: Path, bundle: tarfile.TarFile) -> None:
    """After the last member: the rest of the stream must be the end-of-archive padding, and the
    compressed stream must end intact (gzip's CRC and length are checked when its end is read).

    ``tarfile`` ends its iteration at the first header it cannot parse, so a damaged header in the
    middle reads as the end of a shorter archive; what follows it is not padding. Read on from
    where ``tarfile`` stopped, never back: a gzip stream would be decompressed again from its start."""
    stream = bundle.fileobj
    position = stream.tell()
    while block := stream.read(1 << 20):
        if block.count(0) != len(block):
            at = position + next(i for i, byte in enumerate(block) if byte)
            raise DamagedArchiveError(
                archive, "file", f"data after what reads as its end (uncompressed byte {at:,}): a damaged header; {REFUSED}"
            )
        position += len(block)


def _check_tar_member(archive: Path, member: tarfile.TarInfo, staging: Path) -> None:
    """Raise UnsafeArchiveError for a member that is not safe to extract (see the module docstring)."""
    why = _unsafe_path(member.name)
    if why is None and member.issym() and _link_escapes(member.name, member.linkname):
        why = "symbolic link pointing outside the archive's folder"
    if why is None and member.islnk() and _unsafe_path(member.linkname):
        why = "hard link to a path outside the archive's folder"
    if why is None:
        try:
            tarfile.data_filter(member, str(staging))
        except tarfile.FilterError as error:
            why = str(error)
    if why:
        raise UnsafeArchiveError(archive, f"member {member.name!r}", f"{why}; the archive is rejected, nothing extracted")
