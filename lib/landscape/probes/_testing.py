"""Small exact references for testing the probes (used by tests/test_probes_*.py).

Tiny float64 models, their dense Hessian from ``torch.autograd.functional.hessian``, and a
quadratic "model" whose loss ``c + 0.5 (w - w*)^T A (w - w*)`` has a known spectrum, so that
surfaces, sharpness and interpolation have closed forms.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call


def tiny_mlp(seed: int = 0, act: type[nn.Module] = nn.Tanh, sizes=(6, 8, 3),
             batchnorm: bool = False) -> nn.Module:
    """A float64 MLP, e.g. 6 -> 8 -> 3 with tanh (83 parameters), optionally with BN."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batchnorm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(act())
    return nn.Sequential(*layers).double()


def classification_data(n: int = 200, d: int = 6, classes: int = 3, batch: int = 80,
                        seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """``n`` Gaussian inputs with labels from a random linear teacher, in batches of ``batch``
    (the last one shorter, so sample weighting matters)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, classes, generator=g, dtype=torch.float64)
    y = (x @ w + 0.5 * torch.randn(n, classes, generator=g, dtype=torch.float64)).argmax(1)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def dense_hessian(model: nn.Module, data, loss_fn=F.cross_entropy) -> np.ndarray:
    """Dense Hessian of the sample-weighted mean loss w.r.t. the trainable parameters, by
    ``torch.autograd.functional.hessian`` on the flattened vector (eval mode, model unchanged)."""
    was = model.training
    model.eval()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    w0 = torch.cat([p.detach().reshape(-1) for p in params])
    xs = torch.cat([x for x, _ in data])
    ys = torch.cat([y for _, y in data])
    n = len(ys)

    def f(w: Tensor) -> Tensor:
        ps = {nm: c.view(s) for nm, c, s in zip(names, torch.split(w, sizes), shapes)}
        total = 0.0
        for x, y in data:  # per-batch mean, weighted by batch size
            total = total + loss_fn(functional_call(model, ps, (x,)), y) * len(y)
        return total / n

    del xs, ys
    h = torch.autograd.functional.hessian(f, w0)
    model.train(was)
    return h.detach().numpy()


class Quadratic(nn.Module):
    """A "model" whose output is its own weights: with :func:`quadratic_loss` the loss is
    ``c + 0.5 (w - w*)^T A (w - w*)`` whatever the data. ``w`` has shape ``shape`` (flattened
    row-major into the quadratic form)."""

    def __init__(self, A: np.ndarray, w_star: np.ndarray, c: float = 0.0, shape=None,
                 w0: np.ndarray | None = None) -> None:
        super().__init__()
        n = A.shape[0]
        shape = (n,) if shape is None else tuple(shape)
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float64))
        self.register_buffer("w_star", torch.as_tensor(w_star, dtype=torch.float64))
        self.c = float(c)
        init = w_star if w0 is None else w0
        w = torch.as_tensor(np.asarray(init).reshape(shape), dtype=torch.float64)
        self.w = nn.Parameter(w.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.w.reshape(1, -1).expand(x.shape[0], -1)

    def value(self, w: np.ndarray) -> float:
        d = np.asarray(w).reshape(-1) - self.w_star.numpy()
        return self.c + 0.5 * d @ self.A.numpy() @ d


def quadratic_loss(model: Quadratic):
    """``loss_fn(outputs, targets)`` for :class:`Quadratic` (targets ignored)."""
    def loss_fn(out: Tensor, y) -> Tensor:
        d = out - model.w_star
        return model.c + 0.5 * ((d @ model.A) * d).sum(1).mean()
    return loss_fn


def spd_matrix(eigenvalues, seed: int = 0) -> np.ndarray:
    """``Q diag(eigenvalues) Q^T`` with a random orthogonal Q."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * np.asarray(eigenvalues, dtype=float)) @ q.T


def state_of(model: nn.Module) -> dict:
    """Everything a probe must leave untouched: parameters, buffers, per-module modes,
    requires_grad flags (cloned)."""
    return {
        "params": [(n, p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()],
        "buffers": [(n, b.detach().clone()) for n, b in model.named_buffers()],
        "modes": [m.training for m in model.modules()],
    }


def same_state(model: nn.Module, state: dict) -> bool:
    """True when ``model`` is bit-identical to ``state`` (see :func:`state_of`)."""
    now = state_of(model)
    if now["modes"] != state["modes"]:
        return False
    for (n1, a, r1), (n2, b, r2) in zip(now["params"], state["params"]):
        if n1 != n2 or r1 != r2 or not torch.equal(a, b):
            return False
    for (n1, a), (n2, b) in zip(now["buffers"], state["buffers"]):
        if n1 != n2 or not torch.equal(a, b):
            return False
    return True
