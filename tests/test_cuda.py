"""On a CUDA device the probes and training give the CPU's numbers (every test here skips with
"no CUDA device" without one).

Each estimator runs on a model and on its copy on the GPU, under
:func:`landscape.device.deterministic` on both, with the same seeds; the random draws are made on
a CPU generator, so the two runs differ only in floating-point order. Tolerances:

* float64 tiny MLP: equal to ``rtol = 1e-10`` (``atol = 1e-12`` for values near 0);
* float32 CNN with BN (probes in eval mode): per estimator, ``TOL_CNN`` below: ``rtol 1e-5`` for
  losses, ``1e-4`` for the top eigenvalue and gradient norms, ``1e-3`` for the trace (a sum of
  terms of both signs) and SAM sharpness (a difference of two losses, ``atol 1e-5`` nats).

``train_run`` for one epoch of a tiny MLP on CUDA and on the CPU: per-epoch losses within 1e-4,
one cache key, artefacts saved on the CPU.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import landscape.probes as P
from landscape.device import deterministic, resolve
from landscape.probes._testing import classification_data, tiny_mlp

MARKER = "cuda: needs a CUDA device; skipped with the reason 'no CUDA device' without one"
# Registered from here (pytest's mark generator holds the config); a `markers` line in
# pyproject.toml with the same text makes this a no-op.
_config = getattr(pytest.mark, "_config", None)
if _config is not None and not any(m.split(":")[0].strip() == "cuda" for m in _config.getini("markers")):
    _config.addinivalue_line("markers", MARKER)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
              pytest.mark.usefixtures("one_thread")]


def _run(fn, model, data):
    with deterministic():
        return np.atleast_1d(np.asarray(fn(model, data), dtype=float))


ESTIMATORS = {
    "hessian_eigenvalues": lambda m, d: P.hessian_eigenvalues(m, d, k=2, max_iter=60, tol=1e-9).values,
    "lambda_max": lambda m, d: P.hessian_eigenvalues(m, d, k=1, max_iter=40).values[-1],
    "conditioning": lambda m, d: [P.conditioning(m, d, k=1, max_iter=60, tol=1e-9)[k]
                                  for k in ("lambda_max", "lambda_min")],
    "trace_hutchpp": lambda m, d: P.hessian_trace(m, d, n_probes=12).value,
    "trace_xtrace": lambda m, d: P.hessian_trace(m, d, n_probes=12, method="xtrace").value,
    "trace_hutchinson": lambda m, d: P.hessian_trace(m, d, n_probes=12, method="hutchinson").value,
    "density": lambda m, d: [P.hessian_density(m, d, n_probes=2, n_iter=10).moment(p) for p in (1, 2)],
    "random_direction": lambda m, d: torch.cat([t.reshape(-1) for t in P.random_direction(m, seed=3)])
    .cpu().numpy(),
    "loss_surface": lambda m, d: P.loss_surface(m, d, P.random_plane(m, seed=1),
                                                ([-0.5, 0.0, 0.5], [-0.5, 0.5])).ravel(),
    "evaluate_loss": lambda m, d: P.evaluate_loss(m, d, metric=("loss", "accuracy")),
    "sharpness_sam": lambda m, d: P.sharpness(m, d, kind="sam", steps=3),
    "sharpness_adaptive": lambda m, d: P.sharpness(m, d, kind="adaptive", steps=3),
    "sharpness_random": lambda m, d: P.sharpness(m, d, kind="random", n_draws=4),
    "sharpness_keskar": lambda m, d: P.sharpness(m, d, kind="keskar", rho=1e-3, steps=3),
    "interpolate": lambda m, d: P.interpolate(m, _shifted(m), d, [0.0, 0.5, 1.0]),
    "bezier_curve": lambda m, d: P.bezier_curve(m, _shifted(m), d, epochs=2).evaluate(m, d, [0.5]),
    "gradient_norms": lambda m, d: list(P.gradient_norms(m, d).values()),
    "hessian_matvec": lambda m, d: P.HessianOperator(m, d).matvec(
        torch.linspace(-1, 1, P.flatten_params(m).numel(), dtype=torch.float64)).cpu().numpy(),
}
# float32 CNN: (rtol, atol) of the estimators compared there
TOL_CNN = {
    "lambda_max": (1e-4, 0.0), "trace_hutchpp": (1e-3, 0.0), "loss_surface": (1e-5, 0.0),
    "evaluate_loss": (1e-5, 0.0), "sharpness_sam": (1e-3, 1e-5), "interpolate": (1e-5, 0.0),
    "gradient_norms": (1e-4, 1e-7),
}


def _shifted(model):
    """A second end point: the model's weights moved by a fixed amount, on the same device."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in enumerate(other.parameters()):
            p.add_(0.05 * torch.cos(torch.arange(p.numel(), dtype=p.dtype, device=p.device) + k)
                   .reshape(p.shape))
    return other


def _cnn():
    from landscape.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn", {"channels": [4, 8], "fc": [16], "batch_norm": True}, (1, 28, 28), 10)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g))
            for _ in range(3)]
    model.train()
    with torch.no_grad():
        for x, _ in data:  # BN statistics of its own, then eval mode for every probe
            model(x)
    return model.eval(), data


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimator_on_cuda_equals_the_cpu_float64_mlp(name):
    model, data = tiny_mlp(0, batchnorm=True), classification_data()
    model.train()
    with torch.no_grad():
        model(torch.cat([x for x, _ in data]))
    model.eval()
    cpu = _run(ESTIMATORS[name], model, data)
    gpu = _run(ESTIMATORS[name], copy.deepcopy(model).to(resolve("cuda")), data)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(TOL_CNN))
def test_estimator_on_cuda_matches_the_cpu_float32_cnn_with_bn(name):
    model, data = _cnn()
    rtol, atol = TOL_CNN[name]
    cpu = _run(ESTIMATORS[name], model, data)
    gpu = _run(ESTIMATORS[name], copy.deepcopy(model).to(resolve("cuda")), data)
    np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=atol)


def test_train_run_on_cuda_matches_the_cpu_one_epoch(tmp_path, monkeypatch, data_root):
    from landscape.config import load_study
    from landscape.train import load_trained, train_run

    root = tmp_path / "configs"
    (root / "studies").mkdir(parents=True)
    (root / "profiles").mkdir()
    (root / "profiles" / "t.yaml").write_text("seeds: 1\n")
    (root / "studies" / "toy.yaml").write_text(
        "name: toy\ndefaults:\n  dataset: mnist\n  model: {name: mlp}\n"
        "  optimizer: {name: momentum, lr: 0.05}\n  batch_size: 64\n  epochs: 1\n"
        "  train_subset: 512\n  test_subset: 256\nconfigs:\n  - name: a\nseeds: 0\n")
    monkeypatch.setenv("LANDSCAPE_CONFIGS", str(root))
    run = load_study("toy", "t").runs[0]
    runs = {}
    for dev in ("cpu", "cuda"):
        monkeypatch.setenv("LANDSCAPE_ARTEFACTS", str(tmp_path / dev))
        runs[dev] = train_run(run, data_root=data_root, progress=False, device=dev)
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert cpu.metrics["key"] == gpu.metrics["key"] == run.key  # the device is not in the key
    assert next(gpu.model.parameters()).is_cuda
    for a, b in zip(cpu.metrics["history"], gpu.metrics["history"]):
        for k in ("train_loss", "test_loss"):
            if a[k] is not None:
                assert abs(a[k] - b[k]) <= 1e-4, (k, a[k], b[k])
    state = torch.load(run.dir / "model.pt", weights_only=True)  # the CUDA run's, as saved
    assert all(v.device.type == "cpu" for v in state.values())  # artefacts are device-independent
    back = load_trained(run, device="cpu")  # the CUDA-trained run, loaded on the CPU
    for p, q in zip(back.model.parameters(), cpu.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
