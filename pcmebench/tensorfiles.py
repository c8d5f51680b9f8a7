"""The pipeline's tensor files: safetensors (weights, backbones, embeddings) and the trainer's checkpoint.

Writing is atomic and byte-stable: safetensors' writer orders the ``__metadata__``
keys differently from one process to the next, so the same weights would get
another file hash (and every job downstream of a backbone would rerun); here the
header is rewritten with sorted keys. Reading turns every failure (truncated,
not a safetensors file, a checkpoint that will not unpickle under
``weights_only``, missing metadata) into a ``corpora.DataError`` naming the file
and what to do about it.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from corpora.errors import DataError
from pcmebench.files import atomic_write

HEADER_ALIGNMENT = 8  # safetensors pads its JSON header with spaces to a multiple of 8 bytes


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors serialisation of ``tensors`` with a header in sorted key order: the same
    tensors and metadata give the same bytes in every process."""
    raw = save(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    canonical += b" " * (-len(canonical) % HEADER_ALIGNMENT)
    return struct.pack("<Q", len(canonical)) + canonical + raw[8 + length :]


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (CPU, contiguous) and string ``metadata`` to ``path``, atomically and byte-stably."""
    data = safetensors_bytes(tensors, metadata)
    atomic_write(Path(path), lambda temporary: temporary.write_bytes(data))


def read_safetensors(path, what: str, fix: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) of a safetensors file; ``what`` names the file's role in
    errors ("a run's weights") and ``fix`` says how to get a good one ("rerun the train rule")."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, what, f"file not found; {fix}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError) as error:
        raise DataError(path, what, f"not a readable safetensors file ({error}); {fix}") from None
    return tensors, metadata


def metadata_json(path, metadata: dict[str, str], key: str, fix: str):
    """The JSON value stored under ``key`` in a safetensors file's metadata."""
    if key not in metadata:
        raise DataError(path, "metadata", f"has no {key!r} (not written by this pipeline?); {fix}")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise DataError(path, f"metadata {key!r}", f"not valid JSON ({error}); {fix}") from None


def save_checkpoint(path, state: dict) -> None:
    """``torch.save`` the trainer's state atomically (a full disk raises WriteError naming ``path``)."""
    atomic_write(Path(path), lambda temporary: torch.save(state, temporary))


def load_checkpoint(path, device) -> dict:
    """The trainer's state from ``path``, unpickled with ``weights_only=True`` (tensors and plain
    containers only); a damaged or foreign file is a DataError that says to delete it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(path, "checkpoint", f"cannot be read ({reason}); delete it to start this run afresh") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "history"} <= set(state):
        raise DataError(path, "checkpoint", "is not a checkpoint of pcmebench.train; delete it to start this run afresh")
    return state
