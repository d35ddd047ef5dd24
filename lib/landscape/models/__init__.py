"""Model families: ``mlp``, ``cnn`` and ``resnet``, built from a :class:`~landscape.config.ModelSpec`."""
from __future__ import annotations

import inspect

from torch import nn

from .cnn import CNN
from .mlp import MLP
from .resnet import ResNet

__all__ = ["MLP", "CNN", "ResNet", "FAMILIES", "build_model", "check_options", "count_params"]

FAMILIES: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "resnet": ResNet}


def _option_types(cls: type[nn.Module]) -> dict[str, object]:
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items()
            if k not in ("self", "in_shape", "num_classes")}


def check_options(name: str, options: dict, where: str = "") -> None:
    """Refuse unknown or ill-typed model options with a one-line message."""
    from ..config import ConfigError

    allowed = _option_types(FAMILIES[name])
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(f"{where}model.{key} is not an option of model {name!r} "
                              f"(allowed: {', '.join(sorted(allowed))})")
        default = allowed[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}model.{key} = {value!r} must be true or false")
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{where}model.{key} = {value!r} must be a positive integer")
        elif isinstance(default, (list, tuple)):
            if (not isinstance(value, (list, tuple)) or
                    not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
                raise ConfigError(f"{where}model.{key} = {value!r} must be a list of positive integers")


def build_model(name: str, options: dict, in_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Instantiate family ``name`` with ``options`` for inputs of ``in_shape``."""
    if name not in FAMILIES:
        raise ValueError(f"model = {name!r} is not one of: {', '.join(FAMILIES)}")
    opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}
    return FAMILIES[name](tuple(in_shape), num_classes, **opts)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
