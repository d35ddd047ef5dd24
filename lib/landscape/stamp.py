"""Provenance stamps: an artefact's provenance record written into an executed notebook's metadata.

Kept free of torch so that the workflow's ``python -m landscape stamp`` step, run after every
executed notebook, starts in a fraction of a second.
"""
from __future__ import annotations

from pathlib import Path

from .store import atomic_write_bytes, read_json

__all__ = ["stamp_notebook", "stamp_from_artefact"]


def stamp_notebook(path: str | Path, prov: dict) -> None:
    """Write ``prov`` into the notebook's ``metadata.landscape.provenance``, atomically."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata.setdefault("landscape", {})["provenance"] = prov
    atomic_write_bytes(path, nbformat.writes(nb).encode())


def stamp_from_artefact(notebook: str | Path, artefact: str | Path) -> dict:
    """Copy the ``provenance`` record of a JSON artefact (checksum verified) into ``notebook``.

    Raises:
        FileNotFoundError: the artefact is missing.
        CorruptArtefact: it is truncated or edited.
        ValueError: it holds no provenance record.
    """
    payload = read_json(artefact)
    prov = payload.get("provenance") if isinstance(payload, dict) else None
    if not isinstance(prov, dict) or not prov:
        raise ValueError(f"{artefact} holds no provenance record")
    stamp_notebook(notebook, prov)
    return prov
