"""landscape: loss-landscape geometry and optimization dynamics of neural networks.

The public API (see ``DESIGN.md``): probes such as :func:`hessian_eigenvalues`,
:func:`loss_surface`, :func:`sharpness` and :func:`interpolate` take a model and ``data`` (any
iterable of ``(inputs, targets)`` batches), evaluate in eval mode, and restore the caller's mode
and weights afterwards. Studies are configured in YAML (:func:`load_study`) and trained with
:func:`train_run` (cached by a hash of the configuration).
"""
__version__ = "0.2.0"

from .config import ConfigError, Study, RunSpec, load_study, list_studies  # noqa: E402
from .data import DataNotFound, Batches, load as load_data, subset  # noqa: E402
from .models import build_model, count_params  # noqa: E402
from .train import train_run, load_trained, Trained  # noqa: E402
from .resumable import loss_surface_resumable  # noqa: E402

from .probes import *  # noqa: E402,F401,F403
from .probes import __all__ as _probe_names  # noqa: E402

__all__ = ["ConfigError", "Study", "RunSpec", "load_study", "list_studies", "DataNotFound",
           "Batches", "load_data", "subset", "build_model", "count_params", "train_run",
           "load_trained", "Trained", "loss_surface_resumable", *_probe_names]
