"""CIFAR-style residual networks (He et al. 2016, section 4.2) with skip and BN switches.

``ResNet(depth=20)`` with ``skip`` and ``batch_norm`` on is ResNet-20 with projection shortcuts
(1×1 conv + BN) where the shape changes and no conv biases: 272,474 parameters on CIFAR-10, the
count published in the ``resnet20-skip-bn-ablation`` write-up; switching BN off gives 270,906, skips
off 269,722, both off 268,346 — the write-up's four counts (checked in the tests).
"""
from __future__ import annotations

from torch import nn


def _norm(c: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """conv3x3-(BN)-ReLU-conv3x3-(BN) (+ shortcut) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, skip: bool, batch_norm: bool,
                 zero_init_residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(c_out, batch_norm)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = _norm(c_out, batch_norm)
        self.relu = nn.ReLU()
        self.skip = skip
        self.shortcut: nn.Module = nn.Identity()
        if skip and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          _norm(c_out, batch_norm))
        if zero_init_residual:
            # Residual branch starts as zero (Goyal et al. 2017): with BN zero its last scale,
            # without BN zero the last conv, so each block is the identity at initialisation.
            last = self.bn2 if batch_norm else self.conv2
            nn.init.zeros_(last.weight)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            out = out + self.shortcut(x)
        return self.relu(out)


class ResNet(nn.Module):
    """Stem conv, three stages of ``(depth-2)/6`` basic blocks, global average pool, linear.

    Args:
        in_shape: input shape (C, H, W).
        depth: 6n+2 (20, 32, 44, 56, 110).
        widths: channels of the three stages (16, 32, 64 for ResNet-20).
        skip: use identity/projection shortcuts; off gives the plain network of equal depth.
        batch_norm: BN after every convolution; off replaces each BN by the identity.
        zero_init_residual: start every residual branch at zero (a stabiliser for no-BN runs).
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 10, depth: int = 20,
                 widths: list[int] = (16, 32, 64), skip: bool = True, batch_norm: bool = True,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth = {depth!r} must be 6n+2 with n >= 1 (e.g. 20, 32, 56)")
        n = (depth - 2) // 6
        c = widths[0]
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], c, 3, padding=1, bias=False),
                                  _norm(c, batch_norm), nn.ReLU())
        blocks = []
        for i, width in enumerate(widths):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c, width, stride, skip, batch_norm, zero_init_residual))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for b in self.blocks:
                last = b.bn2 if batch_norm else b.conv2
                nn.init.zeros_(last.weight)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))
