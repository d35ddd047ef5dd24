"""Function-preserving reparametrisations that expose which measures are not invariant.

For a ReLU network, multiplying the weights and bias of one layer by α > 0 and the next layer's
weights by 1/α leaves the function unchanged (ReLU is positively homogeneous), yet scales the
Hessian blocks of those layers by 1/α² and α² (Dinh et al. 2017, "Sharp Minima Can Generalize").
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["rescale_layers"]


def rescale_layers(model: nn.Module, alpha: float, first: int = 0) -> nn.Module:
    """A copy of ``model`` with linear/conv layer ``first`` scaled by ``alpha`` (weight and bias)
    and the next linear/conv layer's weight by ``1/alpha``. Only valid when a positively
    homogeneous activation (ReLU, max-pool) and no BN lie between the two layers.

    Raises:
        ValueError: for ``alpha <= 0``, too few layers, or a BN layer between them.
    """
    if not alpha > 0:
        raise ValueError(f"alpha = {alpha!r} must be positive")
    m = copy.deepcopy(model)
    mods = [x for x in m.modules() if isinstance(x, (nn.Linear, nn.Conv2d, nn.modules.batchnorm._BatchNorm))]
    layers = [i for i, x in enumerate(mods) if not isinstance(x, nn.modules.batchnorm._BatchNorm)]
    if first + 1 >= len(layers):
        raise ValueError(f"first = {first} needs a following layer; the model has {len(layers)}")
    a, b = layers[first], layers[first + 1]
    if any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in mods[a:b]):
        raise ValueError("a BN layer lies between the two layers: rescaling would not preserve the function")
    with torch.no_grad():
        mods[a].weight.mul_(alpha)
        if mods[a].bias is not None:
            mods[a].bias.mul_(alpha)
        mods[b].weight.div_(alpha)
    return m
