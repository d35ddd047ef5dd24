"""Optimisation dynamics: full-batch gradient descent at the edge of stability, and models at
intermediate points of a saved trajectory.

Gradient descent on a quadratic with step size η is stable only while every Hessian eigenvalue is
below 2/η (see the theory chapter on stability). Cohen et al. (2021, "Gradient Descent on Neural
Networks Typically Occurs at the Edge of Stability") observed that on neural networks full-batch
GD raises λ_max until it reaches about 2/η and then hovers there while the loss keeps falling,
non-monotonically. :func:`full_batch_gd` reproduces that measurement.
"""
from __future__ import annotations

import copy
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .probes import hessian_eigenvalues
from .probes._common import DataPasses, model_device, recompute_bn

__all__ = ["full_batch_gd", "model_at"]


def _full_loss_and_grad(model: nn.Module, batches: list) -> float:
    n = sum(len(y) for _, y in batches)
    model.zero_grad(set_to_none=True)
    total = 0.0
    for x, y in batches:
        loss = F.cross_entropy(model(x), y) * (len(y) / n)
        loss.backward()
        total += loss.item()
    return total


def full_batch_gd(model: nn.Module, data: Iterable, lr: float, steps: int, eig_every: int = 20,
                  lanczos_iters: int = 20, progress: bool | None = None) -> dict:
    """Full-batch gradient descent on ``data`` with step ``lr``, tracking λ_max.

    Each step uses the exact gradient of the sample-weighted mean cross-entropy over all of
    ``data`` (nats). Every ``eig_every`` steps the top Hessian eigenvalue over the same data is
    computed by Lanczos (``lanczos_iters`` Hessian-vector products at most; its ``converged``
    flag is kept). The model is trained in place, in eval mode (no BN batch statistics, no
    dropout: use a network without BN so that the loss is a fixed function of the weights).

    Returns:
        dict with ``step`` and ``loss`` (every step), ``eig_step``, ``lambda_max`` and
        ``converged`` (every ``eig_every`` steps), ``threshold`` = 2/lr, ``diverged`` (bool).

    Raises:
        ValueError: for a non-positive ``lr`` or ``steps``.
    """
    if not lr > 0:
        raise ValueError(f"lr = {lr!r} must be positive")
    if steps < 1 or eig_every < 1:
        raise ValueError(f"steps = {steps!r} and eig_every = {eig_every!r} must be positive")
    batches = list(data)
    model.eval()
    out = {"step": [], "loss": [], "eig_step": [], "lambda_max": [], "converged": [],
           "threshold": 2.0 / lr, "lr": lr, "diverged": False}
    for step in tqdm(range(steps + 1), disable=(None if progress is None else not progress), leave=False,
                     desc=f"GD lr={lr}"):
        if step % eig_every == 0 or step == steps:
            spec = hessian_eigenvalues(model, batches, k=1, max_iter=lanczos_iters, tol=1e-4)
            out["eig_step"].append(step)
            out["lambda_max"].append(float(spec.values[-1]))
            out["converged"].append(bool(spec.converged))
        loss = _full_loss_and_grad(model, batches)
        out["step"].append(step)
        out["loss"].append(loss)
        if not np.isfinite(loss):
            out["diverged"] = True
            break
        if step == steps:
            break
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(lr * p.grad)
    model.zero_grad(set_to_none=True)
    return out


def model_at(model: nn.Module, flat_weights: torch.Tensor, bn_data: Iterable | None = None) -> nn.Module:
    """A copy of ``model`` with all parameters set from ``flat_weights`` (``parameters()`` order, as
    saved in a training trajectory). Trajectories hold no BN running statistics, so for a model
    with BN they are recomputed on ``bn_data`` (cumulative average over its batches, eval mode
    afterwards); pass the evaluation subset."""
    m = copy.deepcopy(model)
    flat = torch.as_tensor(flat_weights)
    offset = 0
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
    if offset != flat.numel():
        raise ValueError(f"flat_weights has {flat.numel()} entries, the model {offset}")
    if bn_data is not None and any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules()):
        recompute_bn(m, DataPasses(bn_data, model_device(m)))
    return m.eval()
