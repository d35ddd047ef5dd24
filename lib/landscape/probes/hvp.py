"""The Hessian of a dataset loss as a linear operator: exact Hessian-vector products.

Every curvature probe (Lanczos eigenvalues, Hutch++ trace, SLQ density) multiplies by this
operator and never builds the matrix, so each of them can be checked against a dense Hessian on
a tiny model.

    H v = sum_b (n_b / n) * d/dw [ grad_w L_b(w) . v ]          (double backward, Pearlmutter 1994)

where ``L_b`` is the mean loss of batch ``b`` (``n_b`` samples, ``n`` in all). The product is
exact to rounding: no finite differences (hessian-eigenthings' finite-difference HVP is wrong on
ReLU networks at its default step, DESIGN.md) and batches are weighted by their size
(hessian-eigenthings averages batches with equal weights, which is a different matrix when the
last batch is short).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ._common import (DataPasses, LossFn, check_model, flat, last_batch, model_device,
                      nonfinite_message, resolve_loss_fn, second_derivative_error, trainable)

__all__ = ["HessianOperator", "REUSE_GRAPH_MAX_SAMPLES"]

# Automatic graph reuse holds every batch's first-order graph; up to this many samples (about
# 3.5 GB for ResNet-20 on 28x28 images at 0.9 GB per 256) it stays well inside a 24 GB machine
# running two jobs.
REUSE_GRAPH_MAX_SAMPLES = 1024


class HessianOperator:
    """``v -> H v`` for the sample-weighted loss of ``model`` over ``data``.

    H is the Hessian w.r.t. the trainable parameters (those with ``requires_grad``, in
    ``named_parameters`` order) of the mean loss over all of ``data``; units: loss units per
    parameter-unit squared (nats for cross-entropy).

    The operator evaluates the model *as it is*: the public probes wrap it in eval mode (BN uses
    its running statistics, dropout off). Used directly, put the model in eval mode yourself.

    Vectors are float64 1-D tensors on the model's device (``dtype``/``size``/``device`` follow
    hessian-eigenthings' ``CurvatureOperator`` protocol, so its algorithms accept this operator);
    products are computed in the model's own dtype and accumulated in float64.

    Args:
        model: the network.
        data: iterable of ``(inputs, targets)`` batches.
        loss_fn: ``loss_fn(outputs, targets)`` -> mean loss of the batch; None = cross-entropy.
        reuse_graph: keep each batch's first-order gradient graph between products instead of
            rebuilding it for every product: 1.4-1.9x fewer seconds per product (``python -m
            benchmarks --only hvp``), the same products, at the cost of holding those graphs in
            memory (0.25-0.9 GB per 256 images for the benchmark's CNN and ResNet-20). None
            (default) = automatic: reuse while the data hold at most ``REUSE_GRAPH_MAX_SAMPLES``
            samples, recompute for larger data.

    Raises:
        ValueError: if ``model`` is not a Module, has no trainable parameter, ``data`` is not
            an iterable of ``(inputs, targets)`` pairs (or a DataLoader that holds different
            examples on each pass), or a batch's loss is not a finite scalar (the line names
            the batch and whether its inputs, the model's outputs or ``loss_fn`` are at fault).
        TypeError: if the model returns a dict or tuple and ``loss_fn`` is None (the line gives
            the ``loss_fn`` to pass).
        NotImplementedError: if the model uses an operation PyTorch cannot differentiate twice
            (e.g. ``nn.Hardsigmoid``), at the first product.

    Example:
        >>> op = HessianOperator(model, [(x, y)])
        >>> hv = op.matvec(torch.randn(op.size, dtype=torch.float64))
    """

    def __init__(self, model: nn.Module, data: Iterable, loss_fn: LossFn | None = None, *,
                 reuse_graph: bool | None = None) -> None:
        self.model = check_model(model)
        self.names, self.params = trainable(model)
        self.loss_fn = resolve_loss_fn(loss_fn)
        self._device = model_device(model)
        self.data = DataPasses(data, self._device)
        self.size = sum(p.numel() for p in self.params)
        self.reuse_graph = True if reuse_graph is None else bool(reuse_graph)
        self._auto = reuse_graph is None
        self.n_hvp = 0
        self._graphs: list[tuple[list[Tensor], list[int], int, tuple]] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64

    @property
    def device(self) -> torch.device:
        return self._device

    def _gradients(self):
        """Yield (gradient tensors with graph, the params they depend on, batch size, and the
        batch as ``(name, index, size, inputs)`` for the message on a non-finite product)."""
        if self._graphs is not None:
            yield from self._graphs
            return
        keep = [] if self.reuse_graph else None
        kept = 0  # samples whose graphs are held
        with torch.enable_grad():
            for x, y, b in self.data:
                loss = self.loss_fn(self.model(x), y)
                gs = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                # gradients that do not depend on the weights contribute a zero Hessian block
                item = ([g for g in gs if g is not None and g.requires_grad],
                        [i for i, g in enumerate(gs) if g is not None and g.requires_grad], b,
                        last_batch())
                if keep is not None:
                    keep.append(item)
                    kept += b
                    if self._auto and kept > REUSE_GRAPH_MAX_SAMPLES:
                        keep = None  # too much data to hold every graph: rebuild them each time
                        self.reuse_graph = False
                yield item
        if keep is not None:
            self._graphs = keep

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``H v`` (float64, same device) for a 1-D ``v`` of length ``size``."""
        if not isinstance(v, Tensor) or v.shape != (self.size,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"expected a 1-D tensor of {self.size} elements, got {shape}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError("HessianOperator.matvec: the vector has NaN or Inf entries; pass a "
                             "finite vector")
        chunks = torch.split(v.to(self._device), [p.numel() for p in self.params])
        vs = [c.view_as(p).to(p.dtype) for c, p in zip(chunks, self.params)]
        out = torch.zeros(self.size, dtype=torch.float64, device=self._device)
        n = 0
        with torch.enable_grad():
            for gs, idx, b, batch in self._gradients():
                n += b
                if not gs:
                    continue
                try:
                    hv = torch.autograd.grad(gs, self.params, grad_outputs=[vs[i] for i in idx],
                                             retain_graph=self.reuse_graph, allow_unused=True)
                except RuntimeError as err:  # an op without a second derivative: say so
                    refusal = second_derivative_error(err)
                    if refusal is None:
                        raise
                    raise refusal from None
                hv = [torch.zeros_like(p) if h is None else h for h, p in zip(hv, self.params)]
                hv = flat(hv, torch.float64)
                if not bool(torch.isfinite(hv).all()):
                    raise ValueError(nonfinite_message("the Hessian-vector product is not finite",
                                                       batch=batch))
                out.add_(hv, alpha=b)
        self.n_hvp += 1
        return out.div_(n).to(v.dtype)

    __call__ = matvec

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def rmatvec(self, v: Tensor) -> Tensor:
        return self.matvec(v)
