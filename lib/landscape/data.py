"""Datasets as in-memory tensors: MNIST, Fashion-MNIST and CIFAR-10 through torchvision.

The raw files are read once with torchvision, normalised per channel and kept as one float tensor;
batches are slices of it (no per-sample PIL transforms in the hot loop; augmentation, where asked,
is done on whole batches). The data root is, in order: the ``root`` argument, the environment
variable ``LANDSCAPE_DATA``, ``./data``. Missing files are downloaded when a network exists (set
``LANDSCAPE_OFFLINE=1`` to never try); otherwise :class:`DataNotFound` says which dataset, which
folder was searched and how to fix it. A data root that is not a readable folder, or dataset files
that are there but cannot be parsed (truncated, corrupt), raise :class:`DataUnreadable` (a kind of
:class:`DataNotFound`) — one line, never a traceback, and nothing is downloaded over them.
"""
from __future__ import annotations

import functools
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

__all__ = ["DataNotFound", "DataUnreadable", "Data", "Batches", "load", "subset", "data_root", "DATASET_INFO"]

# name -> (torchvision class, folder torchvision uses, per-channel mean, std, display name)
DATASET_INFO = {
    "mnist": ("MNIST", "MNIST", (0.1307,), (0.3081,), "MNIST"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST", (0.2860,), (0.3530,), "Fashion-MNIST"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                "CIFAR-10"),
}


class DataNotFound(FileNotFoundError):
    """The dataset's files are not under the data root and could not be downloaded."""


class DataUnreadable(DataNotFound):
    """The data root is not a readable folder, or the dataset's files there cannot be parsed."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_root(root: Path, display: str) -> None:
    if root.exists() and not root.is_dir():
        raise DataUnreadable(f"{display}: data root {root} is not a folder: point LANDSCAPE_DATA / "
                             "--data-root at the folder that holds the datasets")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise DataUnreadable(f"{display}: data root {root} cannot be read (permission denied): "
                             "fix its permissions or point LANDSCAPE_DATA / --data-root elsewhere")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: argument, else ``$LANDSCAPE_DATA``, else ``./data``."""
    return Path(root or os.environ.get("LANDSCAPE_DATA") or "data").expanduser().resolve()


@dataclass(frozen=True)
class Data:
    """A labelled image set held in memory: ``x`` (N, C, H, W) float32 normalised, ``y`` (N,) int64."""

    name: str
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return 10


def _torchvision_set(name: str, root: Path, train: bool):
    from torchvision import datasets

    cls_name, folder, *_ = DATASET_INFO[name]
    cls = getattr(datasets, cls_name)
    display = DATASET_INFO[name][4]
    _check_root(root, display)
    try:
        return cls(root=str(root), train=train, download=False)
    except Exception as err:  # noqa: BLE001 - torchvision raises several types on bad files
        if not (isinstance(err, RuntimeError) and "download=True" in str(err)):  # present but bad
            raise DataUnreadable(
                f"{display} files under {root / folder} cannot be read ({_first_line(err)}): delete "
                "them to download again, or point LANDSCAPE_DATA / --data-root at a good copy") from None
    hint = (f"put the torchvision files under {root / folder} (or point LANDSCAPE_DATA / --data-root "
            "at a folder that has them), or run once with a network to download them")
    if os.environ.get("LANDSCAPE_OFFLINE"):
        raise DataNotFound(f"{display} not found under {root} (LANDSCAPE_OFFLINE is set): {hint}")
    existed = (root / folder).exists()
    root_existed = root.exists()
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        return cls(root=str(root), train=train, download=True)
    except Exception as err:  # URLError, timeouts, checksum failures...
        if not root_existed:  # leave no partial download behind
            shutil.rmtree(root, ignore_errors=True)
        elif not existed:
            shutil.rmtree(root / folder, ignore_errors=True)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataNotFound(f"{display} not found under {root} and download failed ({reason}): {hint}") from None
    finally:
        socket.setdefaulttimeout(old_timeout)


# the raw files torchvision reads for each dataset (under <root>/<folder>/raw, or <root>/<folder>)
RAW_FILES = {
    "mnist": ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    "cifar10": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"],
}
RAW_FILES["fashion_mnist"] = RAW_FILES["mnist"]


def raw_paths(name: str, root: Path) -> list[Path]:
    """The raw files of ``name`` under ``root`` (whether or not they exist)."""
    folder = Path(root) / DATASET_INFO[name][1]
    sub = folder / "raw" if name != "cifar10" else folder
    return [sub / f for f in RAW_FILES[name]]


def _cache_file(name: str, root: Path, train: bool) -> Path | None:
    """Where the decoded tensors of one split are cached: under the artefacts folder, named by a
    fingerprint (name, size, mtime) of the raw files, so replaced files are decoded again. None
    when the raw files are not all there (torchvision then reports or downloads them)."""
    from .config import artefacts_root
    from .store import config_hash

    try:
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in raw_paths(name, root)]
    except OSError:
        return None
    key = config_hash({"dataset": name, "train": train, "raw": stats, "format": 1})
    return artefacts_root() / "cache" / "data" / f"{name}-{'train' if train else 'test'}-{key}.pt"


def _digest(raw: Tensor, y: Tensor) -> str:
    import hashlib

    h = hashlib.sha256(raw.contiguous().numpy().tobytes())
    h.update(y.numpy().tobytes())
    return h.hexdigest()


def _raw_split(name: str, root: Path, train: bool) -> tuple[Tensor, Tensor]:
    """The split's images (uint8, as stored) and labels: from the tensor cache when it is there
    and its checksum holds (no torchvision import: about half a job's start-up on 2 cores), else
    decoded by torchvision and cached (best effort: a read-only artefacts folder just skips it)."""
    from .store import CorruptArtefact, load_torch, save_torch

    cache = _cache_file(name, root, train)
    if cache is not None:
        try:
            c = load_torch(cache)
            if _digest(c["x"], c["y"]) == c["sha256"]:
                return c["x"], c["y"]
        except (FileNotFoundError, CorruptArtefact, KeyError, TypeError):
            pass
    ds = _torchvision_set(name, root, train)
    raw, y = torch.as_tensor(ds.data), torch.as_tensor(ds.targets, dtype=torch.long)
    if cache is not None:
        try:
            save_torch(cache, {"x": raw, "y": y, "sha256": _digest(raw, y)})
        except OSError:
            pass
    return raw, y


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str, train: bool) -> Data:
    _check_root(Path(root), DATASET_INFO[name][4])
    raw, y = _raw_split(name, Path(root), train)
    x = raw.float().div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
    _, _, mean, std, _ = DATASET_INFO[name]
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return Data(name=name, x=x.contiguous(), y=y)


def load(name: str, train: bool = True, root: str | os.PathLike | None = None) -> Data:
    """Load ``name`` (``mnist``, ``fashion_mnist``, ``cifar10``) as normalised in-memory tensors.

    Raises:
        ValueError: unknown dataset name.
        DataNotFound: files missing under the data root and no download possible.
    """
    if name not in DATASET_INFO:
        raise ValueError(f"dataset = {name!r} is not one of: {', '.join(DATASET_INFO)}")
    return _load_cached(name, str(data_root(root)), bool(train))


def subset(data: Data, n: int | None, seed: int = 0) -> Data:
    """A fixed, seeded random subset of ``n`` examples (all of ``data`` when ``n`` is None or ≥ N)."""
    if n is None or n >= len(data):
        return data
    from .subsets import subset_indices  # the one definition of which examples a subset holds

    idx = subset_indices(len(data), n, seed)
    return Data(name=data.name, x=data.x[idx].contiguous(), y=data.y[idx].contiguous())


def _augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Batched random crop (pad 4) and horizontal flip, as in the CIFAR ResNet papers."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=g)
    dy = torch.randint(0, 9, (n,), generator=g)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
    out = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1),
                 rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


class Batches:
    """Iterable of ``(inputs, targets)`` mini-batches sliced from an in-memory :class:`Data`.

    With ``shuffle`` the order of epoch ``e`` is drawn from a generator seeded with
    ``(seed, e)``, so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, data: Data, batch_size: int, shuffle: bool = False, seed: int = 0,
                 augment: bool = False, drop_last: bool = False) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size = {batch_size!r} must be positive")
        self.data, self.batch_size, self.shuffle = data, int(batch_size), shuffle
        self.seed, self.augment, self.drop_last = int(seed), augment, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.data)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            if order is None:
                x, y = self.data.x[lo:hi], self.data.y[lo:hi]
            else:
                idx = order[lo:hi]
                x, y = self.data.x[idx], self.data.y[idx]
            if self.augment:
                x = _augment(x, g)
            yield x, y
