"""Writing files atomically with the user's umask, and the code's version and digest (torch-free)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from safetensors import SafetensorError, safe_open


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files get the mode the user's umask gives any new file (0644 under the usual 022), so a lab's
# shared results folder is readable by colleagues; some writers (safetensors) create 0600 files.
FILE_MODE = 0o666 & ~_umask()


class WriteError(OSError):
    """A file could not be written (a full disk, a quota, a file-size limit); the message names the
    file and the free space where it goes."""


def free_space(path: Path) -> str:
    """The free space of the file system that holds ``path``, in words."""
    try:
        usage = shutil.disk_usage(path if path.is_dir() else path.parent)
    except OSError:
        return "free space unknown"
    return f"{usage.free / 2**20:,.1f} MiB free of {usage.total / 2**30:,.1f} GiB"


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary path)``, then move the result over ``path`` in one step.

    The file gets the user's umask; a failed write (torch's and safetensors' writers raise
    RuntimeError on a full disk) leaves nothing behind and raises WriteError naming ``path``
    and the free space there.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        try:
            write(temporary)
            os.chmod(temporary, FILE_MODE)
            os.replace(temporary, path)
        except (OSError, RuntimeError) as error:
            if isinstance(error, OSError) and error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, None):
                raise
            raise WriteError(f"could not write {path}: {error} ({free_space(path)})") from error
    finally:
        temporary.unlink(missing_ok=True)


# The packages whose code a training run executes (data reading, models, the trainer).
CODE_PACKAGES = ("corpora", "models", "pcmebench")


def code_digest() -> str:
    """SHA-256 (16 hex digits) of every ``.py`` file of CODE_PACKAGES, by path and content.

    Part of a run's identity: a checkpoint written by other code is not resumed. Unlike
    ``code_version`` it changes with every edit, committed or not, and needs no git.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_version() -> str:
    """The git commit of this checkout (with -dirty), or the installed package version."""
    here = Path(__file__).resolve().parent
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"pcme-bench {version('pcme-bench')}"


def array_names(path: Path) -> list[str]:
    """The names of the arrays of a ``.safetensors`` or ``.npz`` file, read from its header or zip
    directory alone (no array is loaded, no torch); ValueError for a file that is neither."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                return [name.removesuffix(".npy") for name in archive.namelist()]
        if path.suffix == ".safetensors":
            with safe_open(path, framework="numpy") as file:  # reads the header alone
                return list(file.keys())
    except (OSError, ValueError, zipfile.BadZipFile, SafetensorError) as error:
        raise ValueError(f"{path}: not a readable {path.suffix} file ({error})") from None
    raise ValueError(f"{path}: neither .safetensors nor .npz")
