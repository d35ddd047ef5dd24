"""The residual reported beside every eigenvalue bounds its distance to the exact spectrum."""
import numpy as np
import pytest
import torch

from landscape.probes import conditioning
from landscape.probes._testing import classification_data, dense_hessian, tiny_mlp

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("max_iter", [6, 40])
def test_conditioning_residual_bounds_the_error_of_its_extremes(max_iter):
    """A short Lanczos run does not converge; its ``residual_max`` still bounds how far each
    reported extreme is from an exact eigenvalue (Ritz pairs of a symmetric matrix: some exact
    eigenvalue lies within the residual), so the page can show how much a value can be trusted."""
    model = tiny_mlp(0, torch.nn.Softplus)
    data = classification_data()
    ev = np.linalg.eigvalsh(dense_hessian(model, data))
    c = conditioning(model, data, k=2, max_iter=max_iter)
    for value in (c["lambda_max"], c["lambda_min"]):
        assert np.min(np.abs(ev - value)) <= c["residual_max"] + 1e-10
    if max_iter == 40:
        assert c["converged"] and c["residual_max"] < 1e-4 * abs(c["lambda_max"])
    else:
        assert not c["converged"] and c["residual_max"] > 1e-4 * abs(c["lambda_max"])
