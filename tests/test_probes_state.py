"""Every probe leaves the model bit-identical and in the caller's train/eval mode, also on error;
data and gradient conventions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape.probes import (bezier_curve, conditioning, evaluate_loss, gradient_norms,
                              hessian_density, hessian_eigenvalues, hessian_trace, interpolate,
                              loss_surface, random_direction, random_plane, sharpness)
from landscape.probes._testing import classification_data, same_state, state_of, tiny_mlp


pytestmark = pytest.mark.usefixtures("one_thread")


PROBES = {
    "eigenvalues": lambda m, d: hessian_eigenvalues(m, d, k=2, max_iter=10),
    "conditioning": lambda m, d: conditioning(m, d, k=1, max_iter=10),
    "trace": lambda m, d: hessian_trace(m, d, n_probes=6),
    "density": lambda m, d: hessian_density(m, d, n_probes=1, n_iter=5),
    "surface_1d": lambda m, d: loss_surface(m, d, [random_direction(m, 0)], [-1.0, 0.0, 1.0]),
    "surface_2d": lambda m, d: loss_surface(m, d, random_plane(m, 0), ([0.0, 1.0], [0.0, 1.0])),
    "sam": lambda m, d: sharpness(m, d, kind="sam", steps=2),
    "adaptive": lambda m, d: sharpness(m, d, kind="adaptive", steps=2),
    "random": lambda m, d: sharpness(m, d, kind="random", n_draws=2),
    "keskar": lambda m, d: sharpness(m, d, kind="keskar", rho=1e-3, steps=2),
    "interpolate": lambda m, d: interpolate(m, tiny_mlp(5, batchnorm=has_bn(m)), d, [0.0, 0.5]),
    "interpolate_bn": lambda m, d: interpolate(m, tiny_mlp(5, batchnorm=has_bn(m)), d, [0.5],
                                               bn="interpolate"),
    "bezier": lambda m, d: bezier_curve(m, tiny_mlp(5, batchnorm=has_bn(m)), d, epochs=1)
    .evaluate(m, d, [0.5]),
    "gradient_norms": gradient_norms,
    "evaluate_loss": evaluate_loss,
}


def has_bn(m):
    return any(isinstance(x, torch.nn.BatchNorm1d) for x in m.modules())


def model_in(mode: str, bn: bool):
    m = tiny_mlp(0, batchnorm=bn)
    if bn:  # running statistics away from their defaults
        m.train()
        with torch.no_grad():
            m(3 + torch.randn(40, 6, dtype=torch.float64))
    if mode == "train":
        m.train()
    elif mode == "eval":
        m.eval()
    else:  # mixed: a parent in train mode with one child in eval mode
        m.train()
        m[-1].eval()
    return m


@pytest.mark.parametrize("bn", [False, True], ids=["mlp", "bn"])
@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("name", list(PROBES))
def test_probe_leaves_model_bit_identical_and_in_its_mode(name, mode, bn):
    model = model_in(mode, bn)
    before = state_of(model)
    PROBES[name](model, classification_data())
    assert same_state(model, before)


class Boom(RuntimeError):
    pass


def exploding_loss(after: int):
    calls = [0]

    def loss_fn(out, y):
        calls[0] += 1
        if calls[0] > after:
            raise Boom("loss_fn failed")
        return F.cross_entropy(out, y)
    return loss_fn


@pytest.mark.parametrize("call", [
    lambda m, d, f: loss_surface(m, d, [random_direction(m, 0)], [1.0, 2.0, 3.0], loss_fn=f),
    lambda m, d, f: sharpness(m, d, kind="sam", loss_fn=f),
    lambda m, d, f: interpolate(m, tiny_mlp(3, batchnorm=True), d, [0.3, 0.6], loss_fn=f),
    # graphs rebuilt per product, so the loss is called again after the first pass and fails then
    lambda m, d, f: hessian_eigenvalues(m, d, loss_fn=f, reuse_graph=False),
], ids=["surface", "sharpness", "interpolate", "eigenvalues"])
def test_model_is_restored_when_a_probe_fails_midway(call):
    model = model_in("train", bn=True)
    before = state_of(model)
    with pytest.raises(Boom):
        call(model, classification_data(), exploding_loss(after=4))  # after weights have moved
    assert same_state(model, before)


def test_gradient_norms_are_per_tensor_norms_of_the_full_data_gradient():
    model, data = tiny_mlp(0), classification_data(batch=70)  # 70, 70, 60
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    F.cross_entropy(model(x), y).backward()
    ref = {n: float(p.grad.norm()) for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    norms = gradient_norms(model, data)
    assert list(norms) == list(ref)
    np.testing.assert_allclose([norms[k] for k in ref], list(ref.values()), rtol=1e-12)
    assert all(p.grad is None for p in model.parameters())


def test_data_must_be_batches_and_may_be_a_one_shot_generator():
    model, data = tiny_mlp(0), classification_data()
    x, y = data[0]
    with pytest.raises(ValueError, match=r"wrap a single batch as \[\(inputs, targets\)\]"):
        evaluate_loss(model, (x, y))
    with pytest.raises(ValueError, match="no samples"):
        evaluate_loss(model, [])
    with pytest.raises(ValueError, match="iterable"):
        evaluate_loss(model, x)
    gen = (b for b in data)  # consumed many times by the Hessian: must be materialised once
    spec = hessian_eigenvalues(model, gen, k=1)
    assert spec.values[-1] == pytest.approx(hessian_eigenvalues(model, data, k=1).values[-1])


def test_probes_work_inside_the_callers_no_grad_block():
    model, data = tiny_mlp(0), classification_data()
    with torch.no_grad():
        assert hessian_trace(model, data, n_probes=6).value != 0
        assert sharpness(model, data, steps=2) > 0
        assert gradient_norms(model, data)["0.weight"] > 0
