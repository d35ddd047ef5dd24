"""landscape: loss-landscape geometry and optimization dynamics of neural networks.

The public API (see ``DESIGN.md``): probes such as :func:`hessian_eigenvalues`,
:func:`loss_surface`, :func:`sharpness` and :func:`interpolate` take a model and ``data`` (any
iterable of ``(inputs, targets)`` batches), evaluate in eval mode, and restore the caller's mode
and weights afterwards. Studies are configured in YAML (:func:`load_study`) and trained with
:func:`train_run` (cached by a hash of the configuration).
"""
__version__ = "0.3.0"

import importlib
import importlib.util

# Names are imported on first use (PEP 562), so that ``python -m landscape list|check|stamp`` and
# the workflow's bookkeeping start without importing torch (seconds per process on 2 cores).
_LAZY = {
    "ConfigError": ("config", "ConfigError"), "Study": ("config", "Study"),
    "RunSpec": ("config", "RunSpec"), "load_study": ("config", "load_study"),
    "list_studies": ("config", "list_studies"),
    "DataNotFound": ("data", "DataNotFound"), "Batches": ("data", "Batches"),
    "load_data": ("data", "load"), "subset": ("data", "subset"),
    "build_model": ("models", "build_model"), "count_params": ("models", "count_params"),
    "train_run": ("train", "train_run"), "load_trained": ("train", "load_trained"),
    "Trained": ("train", "Trained"), "loss_surface_resumable": ("resumable", "loss_surface_resumable"),
}


def _probe_names() -> list[str]:
    return list(importlib.import_module(".probes", __name__).__all__)


def __getattr__(name: str):
    if name == "__all__":
        value = [*_LAZY, *_probe_names()]
    elif name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
    elif not name.startswith("_") and name in _probe_names():
        value = getattr(importlib.import_module(".probes", __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # a submodule: ls.probes, ls.stats
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_probe_names()})
