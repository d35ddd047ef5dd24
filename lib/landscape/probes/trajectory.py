"""Principal directions of an optimisation trajectory (Li et al. 2018, section 7).

Given flattened weights ``w_0, ..., w_T`` saved during training, form the differences to the
final point ``M = [w_t - w_T]``, centre them (Li et al. use scikit-learn's PCA, which centres)
and take the top right singular vectors ``u_1, u_2`` of the centred matrix. The loss surface in
the plane ``w_T + a u_1 + b u_2`` (:func:`loss_surface`) shows the region the optimiser
actually crossed; the path itself is drawn at
``coords[t] = ((w_t - w_T) . u_1, (w_t - w_T) . u_2)``.
The explained-variance ratios say how much of the trajectory's spread the plane captures.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._common import check_int

__all__ = ["PCADirections", "pca_directions"]


@dataclass(frozen=True)
class PCADirections:
    """Principal directions of a trajectory.

    Attributes:
        directions: ``k`` orthonormal flat directions (float64 tensors, the trajectory's
            coordinate order; pass them to :func:`loss_surface` with the final model as centre).
        explained_variance_ratio: fraction of the centred trajectory's variance along each.
        coords: ``(T, k)`` coordinates of every trajectory point relative to the final point
            (the final point is at the origin).
        origin: the final point ``w_T`` (flat, float64).
    """

    directions: list[Tensor]
    explained_variance_ratio: np.ndarray
    coords: np.ndarray
    origin: Tensor

    def project(self, points: Tensor | np.ndarray) -> np.ndarray:
        """Coordinates of flat weight vectors (rows) in this plane, relative to ``origin``."""
        p = torch.as_tensor(np.asarray(points) if not isinstance(points, Tensor) else points,
                            dtype=torch.float64, device="cpu")  # the plane lives on the CPU
        p = p.reshape(-1, self.origin.numel()) - self.origin
        return (p @ torch.stack(self.directions).T).numpy()


def _as_matrix(trajectory) -> Tensor:
    if isinstance(trajectory, np.ndarray):
        trajectory = torch.from_numpy(trajectory)
    if isinstance(trajectory, Tensor):
        m = trajectory.detach()
    elif isinstance(trajectory, Sequence) and len(trajectory) > 0:
        rows = [(r if isinstance(r, Tensor) else torch.as_tensor(np.asarray(r))).detach().reshape(-1)
                for r in trajectory]
        if len({r.numel() for r in rows}) != 1:
            raise ValueError("all trajectory points must have the same number of weights")
        m = torch.stack([r.to(torch.float64) for r in rows])
    else:
        raise ValueError(f"trajectory must be a (T, n) tensor/array or a sequence of flat weight "
                         f"vectors, got {type(trajectory).__name__}")
    if m.dim() != 2:
        raise ValueError(f"trajectory must be 2-D (T, n), got shape {tuple(m.shape)}")
    return m.to(device="cpu", dtype=torch.float64)


def pca_directions(trajectory: Tensor | np.ndarray | Sequence, k: int = 2) -> PCADirections:
    """PCA directions of a training trajectory, with explained variance (Li et al. 2018).

    Measures the ``k`` orthonormal directions along which the saved weights varied most, and
    the fraction of variance each explains. The weights should be the trainable parameters,
    flattened in ``named_parameters`` order (:func:`flatten_params`), so the directions can be
    used in :func:`loss_surface` around the final model. Pure linear algebra: no model, no BN.

    Args:
        trajectory: ``(T, n)`` tensor/array or sequence of ``T`` flat weight vectors, the last
            being the final weights.
        k: number of directions (at most ``T - 1``).

    Returns:
        :class:`PCADirections` (directions, explained_variance_ratio, coords, origin).

    Raises:
        ValueError: for fewer than ``k + 1`` points, ``k < 1``, ragged points, or a trajectory
            that does not move.

    Example:
        >>> steps, W = trained.trajectory()
        >>> pca = pca_directions(W, k=2)
        >>> z = loss_surface(model, batches, pca.directions, (xs, ys))
        >>> plt.plot(*pca.coords.T)
    """
    k = check_int("k", k, 1)
    m = _as_matrix(trajectory)
    T = m.shape[0]
    if T < k + 1:
        raise ValueError(f"k={k} directions need at least {k + 1} trajectory points, got {T}")
    origin = m[-1].clone()
    diffs = m - origin
    centred = diffs - diffs.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    var = s ** 2
    if float(var.sum()) == 0.0:
        raise ValueError("the trajectory does not move: all points are equal")
    dirs = vh[:k]
    # fix the sign so the path runs towards +u (deterministic output)
    signs = torch.sign(diffs[0] @ dirs.T)
    signs[signs == 0] = 1.0
    dirs = dirs * signs[:, None]
    coords = (diffs @ dirs.T).numpy()
    return PCADirections(directions=[d.clone() for d in dirs],
                         explained_variance_ratio=(var[:k] / var.sum()).numpy(),
                         coords=coords, origin=origin)
