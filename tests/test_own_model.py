"""The library on a researcher's own model: what such users pass is accepted, or refused in one
line that says what to do.

* a model whose forward returns a dict or a tuple, with and without a ``loss_fn`` that picks the
  logits;
* a ``torch.utils.data.DataLoader`` as ``data``;
* frozen parameters (``requires_grad=False``), which never enter the Hessian or a perturbation;
* non-finite inputs, coordinates and directions, and models PyTorch cannot differentiate twice;
* the notebook ``notebooks/own_model.ipynb`` run end to end with papermill (slow, ~40 s).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape.probes import (HessianOperator, conditioning, evaluate_loss, gradient_norms,
                              hessian_density, hessian_eigenvalues, hessian_trace, interpolate,
                              loss_surface, random_direction, random_plane, sharpness,
                              sharpness_estimate)
from landscape.probes._testing import (classification_data, dense_hessian, same_state, state_of,
                                       tiny_mlp)

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def _other(m: nn.Module) -> nn.Module:
    """A second end point for ``interpolate``: a copy with its trainable weights moved."""
    b = copy.deepcopy(m)
    with torch.no_grad():
        for p in b.parameters():
            if p.requires_grad:
                p.add_(0.1)
    return b


# name of the public function (it starts the refusal line) and a call returning numbers
PROBES = {
    "eigenvalues": ("hessian_eigenvalues",
                    lambda m, d, **kw: hessian_eigenvalues(m, d, k=2, max_iter=30, **kw).values),
    "conditioning": ("conditioning",
                     lambda m, d, **kw: conditioning(m, d, k=1, max_iter=30, **kw)["lambda_max"]),
    "trace_hutchpp": ("hessian_trace",
                      lambda m, d, **kw: hessian_trace(m, d, n_probes=9, **kw).value),
    "trace_xtrace": ("hessian_trace",
                     lambda m, d, **kw: hessian_trace(m, d, n_probes=8, method="xtrace",
                                                      **kw).value),
    "density": ("hessian_density",
                lambda m, d, **kw: hessian_density(m, d, n_probes=1, n_iter=6, grid=20,
                                                   **kw).density),
    "surface_1d": ("loss_surface", lambda m, d, **kw: loss_surface(
        m, d, [random_direction(m, 0)], [-0.5, 0.0, 0.5], **kw)),
    "surface_2d": ("loss_surface", lambda m, d, **kw: loss_surface(
        m, d, random_plane(m, 0), ([0.0, 0.5], [-0.5, 0.5]), **kw)),
    "evaluate_loss": ("evaluate_loss", lambda m, d, **kw: evaluate_loss(m, d, **kw)),
    "sharpness_sam": ("sharpness", lambda m, d, **kw: sharpness(m, d, kind="sam", steps=2, **kw)),
    "sharpness_adaptive": ("sharpness",
                           lambda m, d, **kw: sharpness(m, d, kind="adaptive", steps=2, **kw)),
    "sharpness_keskar": ("sharpness", lambda m, d, **kw: sharpness(m, d, rho=1e-3, kind="keskar",
                                                                   steps=2, **kw)),
    "sharpness_estimate_random": ("sharpness_estimate", lambda m, d, **kw: sharpness_estimate(
        m, d, kind="random", n_draws=3, **kw).value),
    "interpolate": ("interpolate",
                    lambda m, d, **kw: interpolate(m, _other(m), d, [0.0, 0.5, 1.0], **kw)),
    "gradient_norms": ("gradient_norms",
                       lambda m, d, **kw: np.array(list(gradient_norms(m, d, **kw).values()))),
}


class DictOut(nn.Module):
    """A model whose forward returns a dict, as many research code bases do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"features": x, "logits": self.net(x)}


class TupleOut(DictOut):
    def forward(self, x):
        return self.net(x), x


def one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg and "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------------------------
# models returning a dict or a tuple
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PROBES))
def test_dict_output_without_loss_fn_is_refused_with_the_loss_fn_to_pass(name):
    fname, call = PROBES[name]
    model = DictOut(tiny_mlp(0))
    before = state_of(model)
    with pytest.raises(TypeError) as err:
        call(model, classification_data())
    msg = one_line(err.value)
    assert msg.startswith(f"{fname}: the model returned a dict (keys 'features', 'logits')"), msg
    assert "pass loss_fn=lambda out, y: F.cross_entropy(out['logits'], y)" in msg
    assert same_state(model, before)


@pytest.mark.parametrize("name", list(PROBES))
def test_tuple_output_without_loss_fn_is_refused_with_the_loss_fn_to_pass(name):
    fname, call = PROBES[name]
    with pytest.raises(TypeError) as err:
        call(TupleOut(tiny_mlp(0)), classification_data())
    msg = one_line(err.value)
    assert msg.startswith(f"{fname}: the model returned a tuple of 2"), msg
    assert "pass loss_fn=lambda out, y: F.cross_entropy(out[0], y)" in msg


@pytest.mark.parametrize("name", list(PROBES))
def test_dict_and_tuple_outputs_with_a_loss_fn_give_the_plain_models_results(name):
    _, call = PROBES[name]
    data = classification_data()
    plain = call(tiny_mlp(0), data)
    as_dict = call(DictOut(tiny_mlp(0)), data,
                   loss_fn=lambda out, y: F.cross_entropy(out["logits"], y))
    as_tuple = call(TupleOut(tiny_mlp(0)), data, loss_fn=lambda out, y: F.cross_entropy(out[0], y))
    np.testing.assert_allclose(as_dict, plain, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(as_tuple, plain, rtol=1e-10, atol=1e-14)


def test_accuracy_of_a_dict_model_is_refused_with_what_to_do():
    with pytest.raises(ValueError) as err:
        evaluate_loss(DictOut(tiny_mlp(0)), classification_data(), metric="accuracy",
                      loss_fn=lambda out, y: F.cross_entropy(out["logits"], y))
    msg = one_line(err.value)
    assert "the model returned a dict" in msg and "metric='loss'" in msg


def test_a_loss_fn_that_does_not_reduce_is_refused():
    with pytest.raises(ValueError) as err:
        evaluate_loss(tiny_mlp(0), classification_data(),
                      loss_fn=lambda out, y: F.cross_entropy(out, y, reduction="none"))
    msg = one_line(err.value)
    assert msg.startswith("evaluate_loss: loss_fn returned a tensor of shape (80,)"), msg
    assert "reduction='mean'" in msg


# --------------------------------------------------------------------------------------------
# non-finite inputs, weights, coordinates, directions
# --------------------------------------------------------------------------------------------
def nan_data(value=float("nan")):
    data = [(x.clone(), y) for x, y in classification_data()]  # batches of 80, 80, 40
    data[1][0][3, 2] = value
    return data


@pytest.mark.parametrize("name", list(PROBES))
def test_nan_inputs_are_refused_naming_the_probe_and_the_batch(name):
    fname, call = PROBES[name]
    model = tiny_mlp(0)
    before = state_of(model)
    with pytest.raises(ValueError) as err:
        call(model, nan_data())
    msg = one_line(err.value)
    assert msg.startswith(f"{fname}: the loss is nan on batch 1 of data (0-based, 80 samples)"), msg
    assert "its inputs contain NaN or Inf" in msg and "check the data" in msg
    assert same_state(model, before)


@pytest.mark.parametrize("call, start", [
    (lambda m, d: hessian_eigenvalues(m, d, k=1),
     "hessian_eigenvalues: the Hessian-vector product is not finite on batch 1 of data"),
    (lambda m, d: hessian_eigenvalues(m, d, k=1, reuse_graph=False),
     "hessian_eigenvalues: the Hessian-vector product is not finite on batch 1 of data"),
    (gradient_norms, "gradient_norms: the gradient is not finite on batch 1 of data"),
    (lambda m, d: sharpness(m, d, steps=2), "sharpness: the gradient is not finite on batch 1"),
], ids=["eigenvalues", "eigenvalues_no_reuse", "gradient_norms", "sharpness"])
def test_inf_inputs_are_refused_where_the_loss_stays_finite(call, start):
    """A tanh network saturates on an infinite input (finite loss) but its derivatives do not."""
    with pytest.raises(ValueError) as err:
        call(tiny_mlp(0), nan_data(float("inf")))
    msg = one_line(err.value)
    assert msg.startswith(start) and "its inputs contain NaN or Inf" in msg, msg


def test_nan_weights_are_refused_pointing_at_the_weights():
    model = tiny_mlp(0)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError) as err:
        hessian_trace(model, classification_data(), n_probes=6)
    msg = one_line(err.value)
    assert msg.startswith("hessian_trace: the loss is nan on batch 0 of data"), msg
    assert "inputs are finite" in msg and "weights" in msg


@pytest.mark.parametrize("coords, expected", [
    ([0.0, float("nan"), 1.0], "coords[1] = nan"),
    (([0.0, 1.0], [0.0, float("inf")]), "ys[1] = inf"),
    (([float("-inf"), 1.0], [0.0, 1.0]), "xs[0] = -inf"),
])
def test_non_finite_coordinates_are_refused(coords, expected):
    model, data = tiny_mlp(0), classification_data()
    dirs = [random_direction(model, 0)] if isinstance(coords, list) else random_plane(model, 0)
    with pytest.raises(ValueError) as err:
        loss_surface(model, data, dirs, coords)
    msg = one_line(err.value)
    assert msg.startswith("loss_surface: ") and expected in msg and "finite" in msg, msg


def test_non_finite_directions_are_refused():
    model, data = tiny_mlp(0), classification_data()
    d = random_direction(model, 0)
    d[2][1, 1] = float("nan")
    with pytest.raises(ValueError) as err:
        loss_surface(model, data, [d], [0.0, 1.0])
    msg = one_line(err.value)
    assert msg.startswith("loss_surface: directions[0] has NaN or Inf entries in '2.weight'"), msg


def test_an_operation_without_a_second_derivative_is_refused_in_one_line():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Hardsigmoid(), nn.Linear(8, 3)).double()
    with pytest.raises(NotImplementedError) as err:
        hessian_eigenvalues(model, classification_data(), k=1)
    msg = one_line(err.value)
    assert msg.startswith("hessian_eigenvalues: the model uses an operation PyTorch cannot "
                          "differentiate twice (derivative for aten::hardsigmoid_backward"), msg
    assert "loss_surface, sharpness, interpolate, gradient_norms" in msg


# --------------------------------------------------------------------------------------------
# a DataLoader as data
# --------------------------------------------------------------------------------------------
def _tensors():
    data = classification_data()
    return torch.cat([x for x, _ in data]), torch.cat([y for _, y in data])


@pytest.mark.parametrize("name", list(PROBES))
def test_a_dataloader_of_a_tensordataset_gives_the_results_of_the_same_batches(name):
    _, call = PROBES[name]
    x, y = _tensors()
    loader = DataLoader(TensorDataset(x, y), batch_size=80)  # the batches of classification_data
    np.testing.assert_allclose(call(tiny_mlp(0), loader), call(tiny_mlp(0), classification_data()),
                               rtol=1e-12, atol=1e-15)


def test_a_shuffled_dataloader_gives_the_same_dataset_loss_and_hessian():
    x, y = _tensors()
    model = tiny_mlp(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    data = classification_data()
    assert evaluate_loss(model, loader) == pytest.approx(evaluate_loss(model, data), rel=1e-12)
    np.testing.assert_allclose(hessian_eigenvalues(model, loader, k=2, max_iter=40).values,
                               hessian_eigenvalues(model, data, k=2, max_iter=40).values, rtol=1e-8)


def test_a_shuffled_dataloader_that_drops_the_last_batch_is_refused():
    x, y = _tensors()
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, drop_last=True)
    with pytest.raises(ValueError) as err:
        hessian_eigenvalues(tiny_mlp(0), loader, k=1)
    msg = one_line(err.value)
    assert "different examples on each pass" in msg and "drop_last=False" in msg


def test_dict_batches_are_refused_with_how_to_make_pairs():
    x, y = _tensors()
    with pytest.raises(ValueError) as err:
        evaluate_loss(tiny_mlp(0), [{"image": x, "label": y}])
    msg = one_line(err.value)
    assert "got a dict with keys 'image', 'label'" in msg and "(inputs, targets)" in msg, msg


# --------------------------------------------------------------------------------------------
# frozen parameters
# --------------------------------------------------------------------------------------------
def frozen_mlp() -> nn.Module:
    """tiny_mlp(0) with its first layer frozen: 27 of 83 entries trainable (8x3 + 3)."""
    m = tiny_mlp(0)
    m[0].requires_grad_(False)
    return m


class FixedLinear(nn.Module):
    """A linear layer whose weights are buffers: not parameters at all."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", layer.weight.detach().clone())
        self.register_buffer("bias", layer.bias.detach().clone())

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def without_frozen_part() -> nn.Module:
    """The same function as frozen_mlp(), with the frozen layer not a parameter: same names
    ('2.weight', '2.bias') for the trainable ones."""
    m = tiny_mlp(0)
    return nn.Sequential(FixedLinear(m[0]), m[1], m[2])


def test_frozen_parameters_are_left_out_of_the_hessian():
    model, data = frozen_mlp(), classification_data()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_trainable == 27 and sum(p.numel() for p in model.parameters()) == 83
    assert HessianOperator(model, data).size == n_trainable
    # the trainable block of the full model's dense Hessian (names order: 0.*, then 2.*)
    H = dense_hessian(tiny_mlp(0), data)[56:, 56:]
    exact = np.linalg.eigvalsh(H)
    spec = hessian_eigenvalues(model, data, k=3, max_iter=27)
    np.testing.assert_allclose(spec.values, exact[-3:], rtol=1e-8)
    assert hessian_trace(model, data, n_probes=81).value == pytest.approx(np.trace(H), rel=1e-8)


@pytest.mark.parametrize("name", list(PROBES))
def test_a_frozen_layer_gives_the_results_of_the_model_without_it_as_parameters(name):
    _, call = PROBES[name]
    data = classification_data()
    model = frozen_mlp()
    before = state_of(model)
    np.testing.assert_allclose(call(model, data), call(without_frozen_part(), data),
                               rtol=1e-10, atol=1e-14)
    assert same_state(model, before)  # frozen weights untouched, requires_grad flags kept


def test_directions_and_gradients_cover_only_the_trainable_parameters():
    model = frozen_mlp()
    assert [tuple(t.shape) for t in random_direction(model, 0)] == [(3, 8), (3,)]
    assert list(gradient_norms(model, classification_data())) == ["2.weight", "2.bias"]


# --------------------------------------------------------------------------------------------
# the notebook, end to end
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_own_model_notebook_runs_with_papermill_and_reports_every_probe(tmp_path, data_root):
    out = tmp_path / "out"
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    cmd = [sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(tmp_path),
           str(REPO / "notebooks" / "own_model.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "n_examples", "64", "-p", "train_steps", "4", "-p", "surface_points", "5",
           "-p", "data_root", str(data_root), "-p", "out_dir", str(out)]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = json.loads((out / "own_model.json").read_text())
    # only the requires_grad parameters enter: the operator's dimension is their count
    assert res["n_trainable"] == res["hessian_dimension"] < res["n_params"]
    assert res["frozen_unchanged"] is True
    assert res["n_examples"] == 64
    probes = {row["probe"]: row for row in res["costs"]}
    assert set(probes) >= {"hessian_eigenvalues", "hessian_trace", "hessian_density",
                           "loss_surface", "sharpness_estimate", "interpolate", "gradient_norms"}
    for row in probes.values():
        assert row["seconds"] > 0 and row["passes"] >= 0 and row["n_hvp"] >= 0
    assert probes["hessian_eigenvalues"]["n_hvp"] > 0 and probes["loss_surface"]["n_hvp"] == 0
    assert probes["loss_surface"]["passes"] == pytest.approx(5)           # one per point
    assert probes["interpolate"]["passes"] == pytest.approx(10)           # BN pass + loss pass
    for name in ("hessian_eigenvalues", "hessian_trace", "hessian_density"):
        assert probes[name]["passes"] == pytest.approx(1)                 # graphs kept: 1 pass
    assert np.isfinite(res["lambda_max"]) and np.isfinite(res["trace"])
    assert np.all(np.isfinite(res["surface"])) and len(res["surface"]) == 5
    for fig in ("spectrum", "surface", "path"):
        assert (out / f"{fig}.png").stat().st_size > 5_000
    nb = json.loads((tmp_path / "executed.ipynb").read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert ("TypeError: evaluate_loss: the model returned a dict (keys 'features', 'logits')"
            in text)  # the refusal the notebook shows, in one line
    assert f"Hessian dimension {res['hessian_dimension']:,} = trainable entries" in text


def test_own_model_notebook_is_committed_without_outputs_and_has_parameters():
    nb = json.loads((REPO / "notebooks" / "own_model.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    src = "".join(params[0]["source"])
    for name in ("n_examples", "data_root", "out_dir"):
        assert f"{name} =" in src
