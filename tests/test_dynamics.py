"""Full-batch gradient descent with λ_max tracking, and models rebuilt from a trajectory."""
from __future__ import annotations

import torch
from torch import nn

import landscape as ls
from landscape.dynamics import full_batch_gd, model_at


def _toy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(120, 5)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return model, [(x[:60], y[:60]), (x[60:], y[60:])]


def test_small_step_gd_decreases_the_loss_and_tracks_lambda_max():
    model, data = _toy()
    lam0 = ls.hessian_eigenvalues(model, data, k=1).values[-1]
    out = full_batch_gd(model, data, lr=0.05, steps=40, eig_every=10, lanczos_iters=30, progress=False)
    assert len(out["step"]) == 41 and out["eig_step"] == [0, 10, 20, 30, 40]
    assert out["loss"][-1] < out["loss"][0]
    assert abs(out["lambda_max"][0] - lam0) < 1e-3 * abs(lam0)
    assert out["threshold"] == 40.0 and not out["diverged"]


def test_gd_step_equals_manual_full_batch_update():
    model, data = _toy()
    ref = [p.detach().clone() for p in model.parameters()]
    loss = sum(nn.functional.cross_entropy(model(x), y) * len(y) / 120 for x, y in data)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    full_batch_gd(model, data, lr=0.1, steps=1, eig_every=5, progress=False)
    for p, r, g in zip(model.parameters(), ref, grads):
        assert torch.allclose(p, r - 0.1 * g, atol=1e-6)


def test_model_at_loads_flat_weights_and_recomputes_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) * 2
    x = torch.randn(50, 5) * 3 + 1
    m = model_at(model, flat, bn_data=[(x, torch.zeros(50, dtype=torch.long))])
    assert torch.equal(torch.cat([p.reshape(-1) for p in m.parameters()]), flat)
    h = m[0](x)
    assert torch.allclose(m[1].running_mean, h.mean(0), atol=1e-5)
    assert not m.training and torch.equal(model[1].running_mean, torch.zeros(8))
