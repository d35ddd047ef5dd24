"""Probes of loss-landscape geometry, each checked against an exact answer in the tests.

Every probe takes a model and ``data`` (any iterable of ``(inputs, targets)`` batches), measures
the sample-weighted mean loss over all of ``data`` (cross-entropy, nats, when ``loss_fn`` is
None), acts on the trainable parameters (``requires_grad``), runs the model in eval mode and
restores the caller's train/eval mode, parameters and buffers exactly afterwards.

Modules, in reading order:
    directions    random_direction, random_plane, orthogonalize (Li et al. 2018)
    surface       loss_surface (1D/2D), evaluate_loss
    hvp           HessianOperator: exact Hessian-vector products over a dataset
    lanczos       hessian_eigenvalues, conditioning (Lanczos, full reorthogonalisation)
    hutchpp       hessian_trace (Hutch++, Meyer et al. 2021; XTrace, Hutchinson), Estimate
    xtrace        xtrace (Epperly, Tropp & Webber 2024), used by hessian_trace(method="xtrace")
    slq           hessian_density (stochastic Lanczos quadrature, Ubaru et al. 2017)
    sharpness     sharpness, sharpness_estimate: sam, adaptive, random, keskar
    connectivity  interpolate, barrier, bezier_curve (Garipov et al. 2018)
    trajectory    pca_directions (Li et al. 2018)
    gradients     gradient_norms
"""
from ._common import flatten_params
from .connectivity import BezierCurve, barrier, bezier_curve, interpolate
from .directions import normalize_direction, orthogonalize, random_direction, random_plane
from .gradients import gradient_norms
from .hutchpp import Estimate, hessian_trace
from .hvp import HessianOperator
from .lanczos import Spectrum, conditioning, hessian_eigenvalues
from .sharpness import sharpness, sharpness_estimate
from .slq import Density, hessian_density
from .surface import evaluate_loss, loss_surface
from .trajectory import PCADirections, pca_directions

__all__ = [
    "random_direction", "random_plane", "orthogonalize", "normalize_direction",
    "loss_surface", "evaluate_loss",
    "HessianOperator", "hessian_eigenvalues", "Spectrum", "conditioning",
    "hessian_trace", "Estimate", "hessian_density", "Density",
    "sharpness", "sharpness_estimate",
    "interpolate", "barrier", "bezier_curve", "BezierCurve",
    "pca_directions", "PCADirections",
    "gradient_norms", "flatten_params",
]
