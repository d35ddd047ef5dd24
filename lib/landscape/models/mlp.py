"""Fully connected networks (the MNIST width sweep's MLPs)."""
from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    """``in -> widths[0] -> ... -> widths[-1] -> classes`` with ReLU (optional BN after each linear).

    Args:
        in_shape: input shape (C, H, W); inputs are flattened.
        widths: hidden layer widths, e.g. ``[128]`` or ``[512, 512]``.
        batch_norm: insert ``BatchNorm1d`` after each hidden linear layer.
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 10, widths: list[int] = (128,),
                 batch_norm: bool = False) -> None:
        super().__init__()
        n_in = 1
        for d in in_shape:
            n_in *= d
        layers: list[nn.Module] = [nn.Flatten()]
        for w in widths:
            layers.append(nn.Linear(n_in, w, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(w))
            layers.append(nn.ReLU())
            n_in = w
        layers.append(nn.Linear(n_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
