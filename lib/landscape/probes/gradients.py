"""Per-layer gradient norms of the dataset loss (vanishing/exploding-gradient evidence)."""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ._common import (DataPasses, LossFn, check_model, loss_and_grad, model_device, probe_state,
                      resolve_loss_fn, trainable)

__all__ = ["gradient_norms"]


def gradient_norms(model: nn.Module, data: Iterable,
                   loss_fn: LossFn | None = None) -> dict[str, float]:
    """L2 norm of the loss gradient for each trainable parameter tensor.

    Measures ``||dL/dW_l||_2`` for every parameter with ``requires_grad`` (keys are
    ``named_parameters`` names, in that order), where ``L`` is the sample-weighted mean loss over
    all of ``data`` (the full-data gradient, not a mean of per-batch norms); units: loss units
    per parameter unit (nats for cross-entropy). Model in eval mode (BN running statistics);
    mode and weights restored, ``.grad`` fields untouched. Used for the vanishing-gradient
    comparison of networks with and without skip connections (He et al. 2016).

    Raises:
        ValueError: if the model has no trainable parameter or ``data`` is malformed.

    Example:
        >>> norms = gradient_norms(model, batches)
        >>> norms["layer1.0.conv1.weight"]
    """
    check_model(model)
    loss_fn = resolve_loss_fn(loss_fn)
    with probe_state(model):
        names, params = trainable(model)
        _, grads = loss_and_grad(model, params, DataPasses(data, model_device(model)), loss_fn)
        return {n: float(g.double().norm()) for n, g in zip(names, grads)}
