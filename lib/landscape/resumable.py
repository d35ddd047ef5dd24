"""A loss surface that survives being killed: computed row by row, each row saved as it is done.

    z[i, j] = L(w + xs[i] d_x + ys[j] d_y)        (exactly :func:`landscape.loss_surface`)

A 2D surface over a few thousand images is the longest single probe of a run (minutes to hours on
a CPU). :func:`loss_surface_resumable` computes it one row ``xs[i]`` at a time with
:func:`landscape.probes.loss_surface` and, after every row, atomically rewrites a checksummed JSON
state file (:func:`landscape.store.write_json`) holding the finished rows and a hash of the inputs.
Rerun after a crash or a SIGKILL, it reloads the finished rows and computes only the missing ones.
Each grid point is evaluated by the same code with the same weights and data, so the result is
bit-for-bit that of one uninterrupted :func:`loss_surface` call (floats are stored as JSON numbers,
which round-trip float64 exactly).

The state is reused only when its hash matches: the hash covers the model's weights and buffers,
the directions, the coordinates, the data, the metrics, the loss function's name and the library
version. Any change, a truncated or edited state file (checksum), or a file from another grid
starts the surface over. A finished state file is a cache: calling again computes nothing.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__
from .probes._common import check_model, parse_metric, progress_callback
from .probes.surface import _coords, as_directions, loss_surface
from .store import CorruptArtefact, read_json, write_json


__all__ = ["loss_surface_resumable", "surface_key"]

_FORMAT = "landscape.loss_surface_resumable/1"


def _update_tensor(h: hashlib._Hash, t: Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _update_any(h: hashlib._Hash, obj: Any) -> None:
    if isinstance(obj, Tensor):
        _update_tensor(h, obj)
    elif isinstance(obj, np.ndarray):
        _update_tensor(h, torch.from_numpy(np.ascontiguousarray(obj)))
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for item in obj:
            _update_any(h, item)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def surface_key(model: nn.Module, data: Iterable, directions: list[list[Tensor]],
                axes: list[np.ndarray], metrics: tuple[str, ...], loss_fn: Any = None) -> str:
    """Hex SHA-256 of everything a surface depends on: weights and buffers (``state_dict``),
    directions, coordinates, data, metrics, loss function name and library version."""
    h = hashlib.sha256()
    h.update(f"{_FORMAT}|{__version__}|{metrics}|".encode())
    h.update(("cross_entropy" if loss_fn is None
              else getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__)).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _update_tensor(h, t)
    for d in directions:
        _update_any(h, d)
    for a in axes:
        _update_any(h, np.asarray(a, dtype=np.float64))
    for batch in data:
        _update_any(h, batch)
    return h.hexdigest()


def _load_rows(path: Path, key: str, n_rows: int) -> list:
    """Finished rows of a matching state file, else all ``None`` (with a warning when a file was
    there but could not be used)."""
    empty: list = [None] * n_rows
    if not path.exists():
        return empty
    try:
        state = read_json(path)
    except CorruptArtefact as err:
        warnings.warn(f"{err}; recomputing the surface from the first row", stacklevel=3)
        return empty
    if not isinstance(state, dict) or state.get("format") != _FORMAT or state.get("key") != key:
        warnings.warn(f"{path}: saved rows belong to other inputs (model, directions, coords or "
                      "data changed); recomputing the surface from the first row", stacklevel=3)
        return empty
    rows = state.get("rows")
    if not isinstance(rows, list) or len(rows) != n_rows:
        return empty
    return rows


def loss_surface_resumable(model: nn.Module, data: Iterable, directions: Any, coords: Any,
                           path: str | Path, *, loss_fn: Callable | None = None,
                           metric: str | tuple[str, ...] = "loss",
                           progress: bool | Callable[[int, int], None] = False) -> np.ndarray:
    """:func:`landscape.loss_surface`, computed row by row and resumable after being killed.

    Row ``i`` is the grid line at ``xs[i]`` (with one direction, the single point ``xs[i]``).
    After each row the finished rows are written atomically to ``path`` with the inputs' hash
    (:func:`surface_key`); a rerun with the same inputs computes only the rows still missing, and
    the result equals an uninterrupted ``loss_surface(model, data, directions, coords, loss_fn,
    metric)`` bit for bit. Model in eval mode for the duration, mode and weights restored.

    Args:
        model, data, directions, coords, loss_fn, metric: as for :func:`landscape.loss_surface`.
        path: the state file (JSON, checksummed); its folder is created.
        progress: True for a tqdm bar over rows, or a callable ``progress(i, n_rows)`` called
            after row ``i`` has been computed and saved (rows loaded from ``path`` are not
            reported).

    Returns:
        the array :func:`landscape.loss_surface` returns for the same arguments.

    Raises:
        ValueError: as :func:`landscape.loss_surface` (directions, coords, metric, data).

    Example:
        >>> dx, dy = ls.random_plane(model, seed=0)
        >>> xs = ys = np.linspace(-1, 1, 25)
        >>> z = ls.loss_surface_resumable(model, batches, [dx, dy], (xs, ys), out / "surface.json")
    """
    check_model(model)
    names, single = parse_metric(metric)
    dirs = as_directions(model, directions)
    axes = _coords(coords, len(dirs))
    if isinstance(data, Iterator):  # one-shot: keep the batches for every row
        data = list(data)
    path = Path(path)
    key = surface_key(model, data, dirs, axes, names, loss_fn)
    n_rows = len(axes[0])
    rows = _load_rows(path, key, n_rows)
    shape = tuple(len(a) for a in axes)
    todo = [i for i, r in enumerate(rows) if r is None]
    if callable(progress):
        step, close = (lambda i: progress(i, n_rows)), (lambda: None)
    else:
        step, close = progress_callback(progress, len(todo), "loss surface rows")
    try:
        for i in todo:
            row_coords = axes[0][i:i + 1] if len(axes) == 1 else (axes[0][i:i + 1], axes[1])
            z = loss_surface(model, data, dirs, row_coords, loss_fn=loss_fn, metric=names)
            rows[i] = z[:, 0].tolist()  # (metrics, ys) or (metrics,)
            write_json(path, {"format": _FORMAT, "key": key, "shape": list(shape),
                              "metrics": list(names), "rows": rows})
            step(i)
    finally:
        close()
    out = np.empty((len(names),) + shape)
    for i, r in enumerate(rows):
        out[:, i] = np.asarray(r, dtype=np.float64)
    return out[0] if single else out
