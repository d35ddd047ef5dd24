"""Plain convolutional networks (no skip connections).

The default, ``channels=[32, 64], fc=[128]`` on 28×28 inputs, is the Fashion-MNIST CNN of the
``fmnist-batchnorm`` study: 421,642 parameters without BN (the write-up does not give its layers;
this is the common two-block design of that size).
"""
from __future__ import annotations

from torch import nn


class CNN(nn.Module):
    """``[conv3x3 -> (BN) -> ReLU -> maxpool2] x len(channels) -> [linear -> ReLU] x len(fc) -> linear``.

    Args:
        in_shape: input shape (C, H, W).
        channels: output channels of each conv block (each halves the spatial size).
        fc: hidden widths of the fully connected head.
        batch_norm: BN after every convolution (conv biases are then dropped).
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 10, channels: list[int] = (32, 64),
                 fc: list[int] = (128,), batch_norm: bool = False) -> None:
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers.append(nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        layers.append(nn.Flatten())
        n_in = c * h * w
        for width in fc:
            layers += [nn.Linear(n_in, width), nn.ReLU()]
            n_in = width
        layers.append(nn.Linear(n_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
