"""Figures with one look across the book: labelled axes with units, seed bands, fixed colours."""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["color_for", "band", "bands", "PALETTE"]

# Okabe–Ito colour-blind-safe palette; a configuration name always maps to the same colour.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
_FIXED = {"bn": 0, "nobn": 1}


def color_for(name: str) -> str:
    """The colour of configuration ``name`` everywhere in the book."""
    if name in _FIXED:
        return PALETTE[_FIXED[name]]
    return PALETTE[int(hashlib.md5(name.encode()).hexdigest(), 16) % len(PALETTE)]


def _finish(fig, ax, title: str = ""):
    """The common last touches: title, light grid, small legend, tight layout."""
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def band(ax, x: Sequence[float], ys: np.ndarray, name: str, label: str | None = None, marker=None) -> None:
    """Mean over seeds (rows of ``ys``) with a min–max band; one thin line per seed."""
    ys = np.atleast_2d(np.asarray(ys, dtype=float))
    c = color_for(name)
    for row in ys:
        ax.plot(x, row, color=c, alpha=0.35, lw=0.8)
    mean = np.nanmean(ys, axis=0)
    ax.plot(x, mean, color=c, lw=2, marker=marker, label=f"{label or name} (n={len(ys)})")
    if len(ys) > 1:
        ax.fill_between(x, np.nanmin(ys, 0), np.nanmax(ys, 0), color=c, alpha=0.15, lw=0)


def bands(series: Mapping[str, tuple[Sequence[float], np.ndarray, str]], xlabel: str, ylabel: str,
          title: str = "", logy: bool = False, figsize=(5.0, 3.4), marker=None):
    """One axes with :func:`band` per entry ``name -> (x, ys, label)``; returns the figure."""
    fig, ax = plt.subplots(figsize=figsize)
    for name, (x, ys, label) in series.items():
        band(ax, x, ys, name, label, marker=marker)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, title)


def surface(xs, ys, z, title: str = "", zlabel: str = "training loss (nats)", path=None):
    """Contour (left) and 3D surface (right) of ``z[i, j]`` at ``(xs[i], ys[j])``; ``path`` is an
    optional (T, 2) array of coordinates drawn on the contour (e.g. a PCA-projected trajectory)."""
    xs, ys, z = np.asarray(xs), np.asarray(ys), np.asarray(z, dtype=float)
    fig = plt.figure(figsize=(9.0, 3.8))
    ax = fig.add_subplot(1, 2, 1)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    levels = np.linspace(np.nanmin(z), np.nanmin(z) + min(np.nanmax(z) - np.nanmin(z), 5.0) + 1e-12, 15)
    cs = ax.contourf(X, Y, z, levels=levels, cmap="viridis", extend="max")
    fig.colorbar(cs, ax=ax, label=zlabel)
    ax.plot([0], [0], "w*", ms=10, label="trained weights")
    if path is not None:
        path = np.asarray(path)
        ax.plot(path[:, 0], path[:, 1], "o-", color="#D55E00", ms=3, lw=1.2, label="training path")
    ax.set_xlabel("direction 1 (filter-normalised units)")
    ax.set_ylabel("direction 2 (filter-normalised units)")
    ax.legend(fontsize=7, loc="upper right")
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    ax3.plot_surface(X, Y, np.minimum(z, levels[-1]), cmap="viridis", linewidth=0, antialiased=True)
    ax3.set_xlabel("dir. 1")
    ax3.set_ylabel("dir. 2")
    ax3.set_zlabel(zlabel, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def density(series: Mapping[str, tuple[np.ndarray, np.ndarray, str]], title: str = ""):
    """Hessian eigenvalue densities on a log scale, one line per entry ``name -> (grid, dens, label)``."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, (grid, dens, label) in series.items():
        ax.semilogy(grid, np.maximum(dens, 1e-12), color=color_for(name), lw=1.4, label=label)
    ax.set_xlabel("Hessian eigenvalue (nats per squared parameter unit)")
    ax.set_ylabel("density (log scale)")
    ax.set_ylim(bottom=1e-8)
    return _finish(fig, ax, title)
