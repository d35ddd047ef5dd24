"""Artefact storage: content hashes, atomic writes and checked reads.

Every heavy step writes its result under a path keyed by a hash of its inputs (the resolved
configuration and the library version). Writes go to a temporary file in the same folder and are
renamed into place, so an interrupted run never leaves a half-written artefact behind; JSON
artefacts carry their own checksum so a truncated or edited file is detected and recomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "config_hash",
    "atomic_write_bytes",
    "write_json",
    "read_json",
    "save_torch",
    "load_torch",
    "CorruptArtefact",
]


class CorruptArtefact(RuntimeError):
    """An artefact exists but cannot be trusted (truncated, edited or unreadable)."""


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any, length: int = 12) -> str:
    """Hex SHA-256 of the canonical JSON of ``obj``, cut to ``length`` characters."""
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()[:length]


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as JSON with an embedded checksum of its content."""
    body = _canonical(data)
    wrapped = {"sha256": hashlib.sha256(body.encode()).hexdigest(), "data": data}
    return atomic_write_bytes(path, json.dumps(wrapped, indent=1, default=str).encode())


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON artefact written by :func:`write_json`.

    Raises:
        FileNotFoundError: the artefact does not exist.
        CorruptArtefact: it exists but is unreadable, truncated or edited.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise CorruptArtefact(f"{path}: unreadable artefact ({err})") from err
    try:
        wrapped = json.loads(text)
        data = wrapped["data"]
        ok = hashlib.sha256(_canonical(data).encode()).hexdigest() == wrapped["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptArtefact(f"{path}: unreadable artefact ({err})") from err
    if not ok:
        raise CorruptArtefact(f"{path}: checksum mismatch")
    return data


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically ``torch.save`` ``obj`` (tensors, dicts, lists, numbers) to ``path``."""
    import torch  # here, not at the top: JSON artefacts (and the CLI's stamp) need no torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; raise :class:`CorruptArtefact` if unreadable.

    ``map_location`` is where the tensors land (default the CPU, where they were saved; e.g.
    ``torch.device("cuda:0")`` to load a state dict straight onto a GPU).
    """
    try:
        import torch

        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for truncated zip files
        raise CorruptArtefact(f"{path}: unreadable checkpoint ({err})") from err
