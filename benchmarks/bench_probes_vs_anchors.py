"""Probes vs the anchors (loss-landscapes 3.0.6, hessian-eigenthings 1.0.0a5): error against the
exact answer, Hessian-vector products and time, on CPU.

    .venv/bin/python benchmarks/bench_probes_vs_anchors.py [--quick]

Problems: a 6-8-3 softplus MLP in float64 (200 samples; dense Hessian by autograd is the truth)
and a small ReLU convnet with BN in float32 (1,024 random 1x28x28 images in batches of 128;
the truth for its top eigenvalue is our Lanczos run to a 1e-9 residual, validated on the MLP).
Timings on this host vary up to 2x from run to run (DESIGN.md): read ratios, not seconds.
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import hessian_eigenthings as he
import loss_landscapes as ll
from loss_landscapes.metrics import Loss

from landscape.probes import (HessianOperator, hessian_eigenvalues, hessian_trace, loss_surface,
                              random_plane)
from landscape.probes._testing import classification_data, dense_hessian, tiny_mlp

ROWS: list[tuple[str, str, str, str, str]] = []


def row(problem: str, method: str, error: float | str, n_hvp: int | str, seconds: float) -> None:
    err = error if isinstance(error, str) else f"{error:.2e}"
    ROWS.append((problem, method, err, str(n_hvp), f"{seconds:.2f}"))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


class Counting:
    """Count products of a hessian-eigenthings operator."""

    def __init__(self, op):
        self.op, self.n = op, 0
        self.size, self.dtype, self.device = op.size, op.dtype, op.device

    def matvec(self, v):
        self.n += 1
        return self.op.matvec(v)

    __call__ = matvec


def convnet() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).eval()
    with torch.no_grad():  # as after training: BN shifts are not exactly zero (loss-landscapes'
        for m in net.modules():  # filter normalisation divides by zero on a zero bias vector)
            if isinstance(m, nn.BatchNorm2d):
                m.bias.normal_(0, 0.1)
    return net


def image_data(n: int = 1024, batch: int = 128):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def eigen_section(name, model, data, truth, loss=F.cross_entropy, self_ref=False):
    sup = he.supervised_loss(loss)
    op = Counting(he.HessianOperator(model, data, sup))
    r, s = timed(lambda: he.lanczos(op, k=1, which="LA", seed=0))
    row(name, f"eigenthings lanczos(k=1) defaults ({r.iterations} steps)",
        abs(r.eigenvalues[0].item() - truth) / abs(truth), op.n, s)
    for it in (5, 20):
        op = Counting(he.HessianOperator(model, data, sup))
        (lam, *_), s = timed(lambda: he.power_iteration_one(op, max_iter=it, seed=0))
        row(name, f"eigenthings power iteration, {it} steps", abs(lam - truth) / abs(truth), op.n, s)
    spec, s = timed(lambda: hessian_eigenvalues(model, data, k=1))
    row(name, f"ours: Lanczos, residual stop (converged={spec.converged})"
        + (" [vs ours at tol 1e-9]" if self_ref else ""),
        abs(spec.values[-1] - truth) / abs(truth), spec.n_hvp, s)


def main(quick: bool, threads: int) -> None:
    torch.set_num_threads(threads)
    # ---- MLP: exact answers from the dense Hessian
    mlp, data = tiny_mlp(0, nn.Softplus), classification_data(batch=100)
    H = dense_hessian(mlp, data)
    ev = np.linalg.eigvalsh(H)
    eigen_section("MLP 83 params, float64", mlp, data, ev[-1])
    mlp_t = tiny_mlp(0, nn.Tanh)
    eigen_section("MLP tanh (small gap)", mlp_t, data, np.linalg.eigvalsh(dense_hessian(mlp_t, data))[-1])

    # trace: same budget of 30 products, RMS error over 10 seeds
    true_tr = np.trace(H)
    sup = he.supervised_loss(F.cross_entropy)
    for method in ("hutchpp", "hutchinson"):
        errs, ses = [], []
        t0 = time.perf_counter()
        for seed in range(10):
            est = hessian_trace(mlp, data, n_probes=30, method=method, seed=seed)
            errs.append(est.value - true_tr)
            ses.append(est.stderr)
        row("MLP trace (30 HVPs, 10 seeds)", f"ours {method} (mean stderr {np.mean(ses):.3f})",
            float(np.sqrt(np.mean(np.square(errs))) / true_tr), 30, (time.perf_counter() - t0) / 10)
    early = [he.hutchinson(he.HessianOperator(mlp, data, sup), num_samples=5, seed=s).estimate
             for s in range(10)]
    row("MLP trace (5 HVPs, 10 seeds)", "eigenthings hutchinson, 5 probes",
        float(np.sqrt(np.mean((np.array(early) - true_tr) ** 2)) / true_tr), 5, 0.0)

    # HVP: batch weighting (80/80/40) and finite differences on ReLU in float32
    data_u = classification_data(batch=80)
    Hu = dense_hessian(mlp, data_u)
    v = torch.randn(Hu.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = Hu @ v.numpy()

    def rel(x):
        return float(np.linalg.norm(np.asarray(x) - ref) / np.linalg.norm(ref))

    row("HVP, batches 80/80/40", "eigenthings (equal batch weights)",
        rel(he.HessianOperator(mlp, data_u, sup).matvec(v).numpy()), 1, 0.0)
    row("HVP, batches 80/80/40", "ours (sample-weighted)",
        rel(HessianOperator(mlp, data_u).matvec(v).numpy()), 1, 0.0)
    relu = tiny_mlp(0, nn.ReLU, sizes=(6, 16, 3))
    Hr = dense_hessian(relu, data)
    relu32, data32 = copy.deepcopy(relu).float(), [(x.float(), y) for x, y in data]
    v32 = torch.randn(Hr.shape[0], generator=torch.Generator().manual_seed(0))
    ref = Hr @ v32.double().numpy()
    fd = he.HessianOperator(relu32, data32, sup, method="finite_difference").matvec(v32)
    row("HVP, ReLU MLP float32", "eigenthings finite difference (default step)",
        rel(fd.double().numpy()), 1, 0.0)
    row("HVP, ReLU MLP float32", "ours (double backward)",
        rel(HessianOperator(relu32, data32).matvec(v32.double()).numpy()), 1, 0.0)

    # ---- CNN with BN, float32
    cnn, imgs = convnet(), image_data(512 if quick else 1024)
    n_params = sum(p.numel() for p in cnn.parameters())
    truth = hessian_eigenvalues(cnn, imgs, k=1, tol=1e-9, max_iter=100).values[-1]
    eigen_section(f"CNN+BN {n_params} params, float32", cnn, imgs, truth, self_ref=True)

    # surfaces: 9x9 grid over the same images
    steps = 9
    xs = ys = np.linspace(-1, 1, steps)
    dx, dy = random_plane(cnn, seed=0)
    _, s_ours = timed(lambda: loss_surface(cnn, imgs, [dx, dy], (xs, ys)))
    x_all = torch.cat([x for x, _ in imgs])
    y_all = torch.cat([y for _, y in imgs])
    torch.manual_seed(0)
    _, s_ll = timed(lambda: ll.random_plane(copy.deepcopy(cnn), Loss(F.cross_entropy, x_all, y_all),
                                            distance=1, steps=steps))
    row(f"2D surface {steps}x{steps}, {len(x_all)} images", "loss-landscapes random_plane (one batch)",
        "grid misaligned", "-", s_ll)
    row(f"2D surface {steps}x{steps}, {len(x_all)} images", "ours loss_surface (batches of 128)",
        "exact", "-", s_ours)

    widths = [max(len(r[i]) for r in ROWS + [("problem", "method", "rel. error", "HVPs", "s")])
              for i in range(5)]
    header = ("problem", "method", "rel. error", "HVPs", "s")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in ROWS:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="512 images instead of 1,024")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core host 2 threads were up to "
                        "17x slower for these small models)")
    a = p.parse_args()
    main(a.quick, a.threads)
