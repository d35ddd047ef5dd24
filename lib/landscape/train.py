"""Training: optimizers, schedules, checkpoints, trajectories and divergence, cached by config hash.

:func:`train_run` trains one :class:`~landscape.config.RunSpec` into ``run.dir`` (a folder named
by the hash of the training spec and the library version). A finished run is never redone; an
interrupted one resumes from its last end-of-epoch checkpoint and ends with exactly the weights and
metrics of an uninterrupted run (the batch order of epoch *e* depends only on the seed and *e*).
A NaN or Inf loss stops the run and records it as diverged (epoch, step, last finite loss).

Files in ``run.dir``: ``init.pt`` and ``model.pt`` (state dicts at initialisation and at the end),
``trajectory.pt`` (flattened weights every ``trajectory_every`` steps, float32), ``metrics.json``
(per-epoch curves and the outcome; written last, its presence marks the run as done) and, while
running, ``checkpoint.pt``.

Device (:mod:`landscape.device`): ``train_run(run, device=...)`` trains on the CPU or a CUDA
device (default ``$LANDSCAPE_DEVICE``, else CUDA when available). Every file is written with its
tensors on the CPU, so artefacts do not depend on the device, and the device is not part of the
cache key: a run trained on a GPU and on the CPU are the same configuration, whose numbers agree
up to the order of floating-point operations (TF32 is off, :func:`landscape.device.full_float32`).
Training on CUDA runs PyTorch's default kernels, and these stay non-deterministic there (a
rerun on the same GPU can differ in the last bits; the CPU is the bit-reproducible reference):

* cuDNN's convolution backward (weight and input gradients of the CNN and the ResNet) may pick
  algorithms that accumulate with atomics, unless deterministic algorithms are forced
  (``torch.use_deterministic_algorithms(True)``, as :func:`landscape.device.deterministic` does
  for the probes, at a cost in speed);
* PyTorch's list of non-deterministic CUDA operations also names ``NLLLoss``, the last step of
  the cross-entropy; ``index_add_``/``scatter_add_``, the backward of indexing, are on it too but
  are not used here: batches and augmentations are indexed without gradients.

cuBLAS matmuls are deterministic with the fixed workspace :func:`landscape.device.resolve` sets,
and the batch order and augmentation are drawn on a CPU generator on either device.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .config import RunSpec, TrainSpec
from .data import Batches, Data, load, subset
from .device import full_float32
from .device import resolve as resolve_device
from .models import build_model, count_params
from .store import CorruptArtefact, load_torch, read_json, save_torch, write_json

__all__ = ["train_run", "load_trained", "Trained", "make_model", "evaluate", "make_optimizer",
           "lr_factor", "criterion_note"]


def num_threads() -> int:
    """Threads for torch: ``$OMP_NUM_THREADS`` when set (the workflow sets it per job, so parallel
    jobs do not oversubscribe the cores — 2 jobs × 2 threads on 2 cores ran HVPs up to 17×
    slower here), else the number of cores."""
    return max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))


def make_model(spec: TrainSpec, in_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Build the spec's model with the seed's initialisation."""
    torch.manual_seed(spec.seed)
    return build_model(spec.model.name, spec.model.options, in_shape, num_classes)


def make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    """The base optimizer (SAM wraps heavy-ball SGD; its ascent step lives in the training loop)."""
    o = spec.optimizer
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    momentum = 0.0 if o.name == "sgd" else o.momentum
    return torch.optim.SGD(params, lr=o.lr, momentum=momentum, weight_decay=o.weight_decay)


def lr_factor(spec: TrainSpec, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    s = spec.schedule
    total = spec.epochs * steps_per_epoch
    warm = int(round(s.warmup_epochs * steps_per_epoch))
    if warm and step < warm:
        return (step + 1) / warm
    if s.name == "constant":
        return 1.0
    if s.name == "step":
        return s.gamma ** (step // (s.step_epochs * steps_per_epoch))
    progress = (step - warm) / max(1, total - warm)  # cosine
    return s.final_lr_frac + (1 - s.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _flat(model: nn.Module) -> torch.Tensor:
    """Flattened float32 weights, on the CPU (the trajectory is kept and saved there)."""
    return torch.cat([p.detach().reshape(-1).float() for p in model.parameters()]).cpu()


def _cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (dicts, lists, tuples) on the CPU: what is saved."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def _on(data: Data, device: torch.device) -> Data:
    """The whole data set moved to ``device`` once (batches are then sliced there)."""
    if data.x.device == device and data.y.device == device:
        return data
    return Data(name=data.name, x=data.x.to(device), y=data.y.to(device))


@torch.no_grad()
def evaluate(model: nn.Module, data, channels_last: bool = False) -> tuple[float, float]:
    """Sample-weighted mean cross-entropy (nats) and accuracy over ``data`` in eval mode."""
    was_training = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    try:
        for x, y in data:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x)
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            total += len(y)
    finally:
        model.train(was_training)
    return loss_sum / total, correct / total


def _sam_step(model: nn.Module, loss_fn, x, y, rho: float) -> None:
    """SAM's ascent (Foret et al. 2021): gradient at w + rho·g/||g|| replaces the gradient at w.

    The second forward pass runs in train mode (BN normalises with the batch's statistics, as at
    w) but leaves the BN running statistics as the first pass at w left them: they describe the
    weights the model keeps, not the ascent point (as the SAM reference implementations do).
    """
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params)) + 1e-12
    eps = [rho * p.grad / norm for p in params]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in bns]
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.add_(e)
    model.zero_grad(set_to_none=True)
    try:
        for m in bns:
            m.momentum = 0.0  # running = (1 - 0)·running + 0·batch: unchanged
        loss_fn(model(x), y).backward()
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.sub_(e)


def _criterion(spec: TrainSpec, history: list, model: nn.Module, train_eval, diverged: bool,
               stopped: bool) -> dict:
    """The training state the end point is in: the criterion, whether it was reached, at which
    epoch, and the end point's eval-mode cross-entropy and accuracy over the training subset."""
    last = history[-1]
    if "train_loss_eval" in last:
        loss, acc = last["train_loss_eval"], last["train_acc_eval"]
    elif diverged:
        loss, acc = float("nan"), float("nan")
    else:
        loss, acc = evaluate(model, train_eval)
    return {"stop_loss": spec.stop_loss, "reached": bool(stopped), "epochs": last["epoch"],
            "max_epochs": spec.epochs, "train_loss": loss, "train_acc": acc}


def criterion_note(c: dict) -> str:
    """One clause on a run's training state, e.g. "reached training loss ≤ 0.01 at epoch 12"."""
    loss = f"training loss {c['train_loss']:.3g}"
    if c.get("stop_loss") is None:
        return f"trained a fixed {c['epochs']} epochs (no stopping criterion; {loss})"
    if c["reached"]:
        return f"reached training loss ≤ {c['stop_loss']:g} at epoch {c['epochs']} ({loss})"
    return f"did NOT reach training loss ≤ {c['stop_loss']:g} within {c['max_epochs']} epochs ({loss})"


@dataclass
class Trained:
    """A finished run: the trained model (eval mode) and its metrics."""

    run: RunSpec
    model: nn.Module
    metrics: dict

    @property
    def diverged(self) -> bool:
        return bool(self.metrics["outcome"]["diverged"])

    @property
    def criterion(self) -> dict:
        """The stopping criterion, whether it was reached, and the end point's training loss."""
        return self.metrics["criterion"]

    def init_model(self, bn_data=None, device: str | torch.device | None = None) -> nn.Module:
        """The same architecture with this run's initial weights, in eval mode.

        The model is on ``device`` (default: the device of :attr:`model`, so the two can be
        compared or interpolated directly).

        ``init.pt`` is written before any train-mode pass, so its BN running statistics are the
        defaults (mean 0, variance 1): they do not belong to the weights, and in eval mode BN would
        act as the identity. For a model with BN, ``bn_data`` (the probe subset) is therefore
        required: the statistics are recomputed on it (cumulative average over its batches) — the
        report's policy for every point whose statistics are not its own.

        Raises:
            ValueError: the model has BN and ``bn_data`` is None.
        """
        from .probes._common import DataPasses, has_batchnorm, model_device, recompute_bn

        dev = model_device(self.model) if device is None else resolve_device(device)
        model = make_model(self.run.train, tuple(self.metrics["in_shape"])).to(dev)
        model.load_state_dict(load_torch(self.run.dir / "init.pt", map_location=dev))
        if has_batchnorm(model):
            if bn_data is None:
                raise ValueError(f"{self.run.config}/seed{self.run.seed} has batch norm: pass bn_data (the "
                                 "probe subset) to recompute its running statistics at initialisation")
            recompute_bn(model, DataPasses(bn_data, model_device(model)))
        return model.eval()

    def trajectory(self) -> tuple[list[int], torch.Tensor]:
        """Steps and flattened weights (T, P) saved during training (float32, on the CPU)."""
        traj = load_torch(self.run.dir / "trajectory.pt")
        return traj["steps"], traj["weights"]


def load_trained(run: RunSpec, device: str | torch.device | None = None) -> Trained:
    """Load a finished run onto ``device`` (see :func:`landscape.device.resolve`; default
    ``$LANDSCAPE_DEVICE``, else CUDA when available); raise FileNotFoundError if it has not been
    trained. Whichever device it was trained on does not matter."""
    dev = resolve_device(device)
    metrics = read_json(run.dir / "metrics.json")
    model = make_model(run.train, tuple(metrics["in_shape"])).to(dev)
    model.load_state_dict(load_torch(run.dir / "model.pt", map_location=dev))
    return Trained(run=run, model=model.eval(), metrics=metrics)


def _is_done(run: RunSpec) -> bool:
    """A run is done when all its files read back intact; a truncated one is trained again."""
    try:
        read_json(run.dir / "metrics.json")
        for name in ("model.pt", "init.pt", "trajectory.pt"):
            load_torch(run.dir / name)
        return True
    except (FileNotFoundError, CorruptArtefact):
        return False


def train_run(run: RunSpec, data_root: str | os.PathLike | None = None, progress: bool | None = None,
              stop_after_epoch: int | None = None, device: str | torch.device | None = None) -> Trained:
    """Train ``run`` (or load it when already done) and return the result, its model on ``device``.

    The device does not enter the cache key (``run.key``): a run trained on CUDA and one trained
    on the CPU are the same configuration, their numbers agree up to floating-point order (see
    the module docstring for the kernels that stay non-deterministic on CUDA), and a finished
    run is loaded, not retrained, whichever device asks. An interrupted run may resume on
    another device: checkpoints, like every artefact, hold CPU tensors.

    Args:
        run: the resolved run (study, configuration, seed, training spec).
        data_root: dataset folder (default ``$LANDSCAPE_DATA`` or ``./data``).
        progress: show a tqdm bar (None: only on a terminal).
        stop_after_epoch: stop after this epoch, leaving a checkpoint (for tests of resumption).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (``$LANDSCAPE_DEVICE``,
            else auto: CUDA when available); the model and the whole training and test subsets
            are moved there once, before the first batch.

    Raises:
        landscape.device.DeviceError: ``device`` names no usable device (one line).
    """
    dev = resolve_device(device)
    if _is_done(run):
        return load_trained(run, dev)
    with full_float32():
        return _train(run, data_root, progress, stop_after_epoch, dev)


def _train(run: RunSpec, data_root, progress, stop_after_epoch, dev: torch.device) -> Trained:
    spec = run.train
    torch.set_num_threads(num_threads())
    train_all = load(spec.dataset, train=True, root=data_root)
    test_all = load(spec.dataset, train=False, root=data_root)
    # the whole subsets live on the device: batches are sliced there, never copied per batch
    train_set: Data = _on(subset(train_all, spec.train_subset, seed=spec.data_seed), dev)  # see subsets.py
    test_set: Data = _on(subset(test_all, spec.test_subset, seed=0), dev)
    in_shape = train_set.shape
    model = make_model(spec, in_shape).to(dev)  # initialised on the CPU: the same on any device
    # Channels-last: measured faster for convnets on this CPU (oneDNN, DESIGN.md). On CUDA it is
    # not assumed: whether cuDNN's NHWC kernels pay off (in float32, without TF32) is to be
    # chosen by measurement on the GPU; until then it is off there. Memory format never changes
    # a value, only speed, so either choice trains the same configuration.
    channels_last = dev.type == "cpu" and spec.model.name in ("cnn", "resnet")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(spec, model.parameters())
    batches = Batches(train_set, spec.batch_size, shuffle=True, seed=spec.seed, augment=spec.augment,
                      drop_last=len(train_set) > spec.batch_size)
    test_batches = Batches(test_set, 256)
    train_eval = Batches(train_set, 256)  # the criterion's full pass over the training subset
    steps_per_epoch = len(batches)
    run.dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run.dir / "checkpoint.pt"

    history: list[dict[str, Any]] = []
    traj_steps: list[int] = []
    traj: list[torch.Tensor] = []
    start_epoch, step, last_finite = 1, 0, float("nan")
    outcome = {"diverged": False, "epoch": None, "step": None, "last_finite_loss": None}
    stopped = False  # the stopping criterion was met at the end of an epoch
    resumed = False
    try:
        ckpt = load_torch(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, traj_steps, traj = ckpt["history"], ckpt["traj_steps"], list(ckpt["traj"])
        start_epoch, step, last_finite = ckpt["epoch"] + 1, ckpt["step"], ckpt["last_finite"]
        resumed = True
    except (FileNotFoundError, CorruptArtefact):
        save_torch(run.dir / "init.pt", _cpu(model.state_dict()))
        test_loss, test_acc = evaluate(model, test_batches, channels_last)
        history.append({"epoch": 0, "step": 0, "lr": spec.optimizer.lr * lr_factor(spec, 0, steps_per_epoch),
                        "train_loss": None, "train_acc": None, "test_loss": test_loss,
                        "test_acc": test_acc, "seconds": 0.0})
        traj_steps, traj = [0], [_flat(model)]

    every = spec.trajectory_every or steps_per_epoch
    base_lr = spec.optimizer.lr
    bar = tqdm(total=spec.epochs, initial=start_epoch - 1, disable=(None if progress is None else not progress),
               desc=f"{run.study}/{run.config}/seed{run.seed}", unit="epoch", leave=False)
    for epoch in range(start_epoch, spec.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        batches.set_epoch(epoch)
        n_seen, loss_sum, correct = 0, 0.0, 0
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = base_lr * lr_factor(spec, step, steps_per_epoch)
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = F.cross_entropy(out, y)
            if not torch.isfinite(loss):
                outcome = {"diverged": True, "epoch": epoch, "step": step, "last_finite_loss": last_finite}
                break
            loss.backward()
            if spec.optimizer.name == "sam":
                _sam_step(model, F.cross_entropy, x, y, spec.optimizer.rho)
            if spec.optimizer.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.grad_clip)
            optimizer.step()
            step += 1
            last_finite = loss.item()
            n_seen += len(y)
            loss_sum += last_finite * len(y)
            correct += (out.argmax(1) == y).sum().item()
            if step % every == 0:
                traj_steps.append(step)
                traj.append(_flat(model))
        if outcome["diverged"]:
            break
        if traj_steps[-1] != step:  # every epoch's end is on the trajectory too
            traj_steps.append(step)
            traj.append(_flat(model))
        test_loss, test_acc = evaluate(model, test_batches, channels_last)
        history.append({"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                        "train_loss": loss_sum / n_seen, "train_acc": correct / n_seen,
                        "test_loss": test_loss, "test_acc": test_acc,
                        "seconds": time.perf_counter() - t0})
        if not math.isfinite(test_loss):
            outcome = {"diverged": True, "epoch": epoch, "step": step, "last_finite_loss": last_finite}
            break
        # The criterion is the eval-mode loss over the whole training subset; the running mean of
        # the epoch's mini-batch losses (free) decides whether that extra pass is worth making:
        # it lags behind a falling loss, so within 4x of the target the full pass is taken.
        if spec.stop_loss is not None and history[-1]["train_loss"] <= 4 * spec.stop_loss:
            full_loss, full_acc = evaluate(model, train_eval, channels_last)
            history[-1] |= {"train_loss_eval": full_loss, "train_acc_eval": full_acc}
            stopped = full_loss <= spec.stop_loss
        save_torch(ckpt_path, {"model": _cpu(model.state_dict()),
                               "optimizer": _cpu(optimizer.state_dict()), "history": history,
                               "traj_steps": traj_steps, "traj": traj, "epoch": epoch,
                               "step": step, "last_finite": last_finite})
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", test_acc=f"{test_acc:.3f}")
        if stopped:
            break
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < spec.epochs:
            bar.close()
            raise KeyboardInterrupt(f"stopped after epoch {epoch} as asked")
    bar.close()

    model = model.to(memory_format=torch.contiguous_format)
    criterion = _criterion(spec, history, model, train_eval, outcome["diverged"], stopped)
    save_torch(run.dir / "model.pt", _cpu(model.state_dict()))
    save_torch(run.dir / "trajectory.pt", {"steps": traj_steps, "weights": torch.stack(traj)})
    metrics = {
        "study": run.study, "config": run.config, "seed": run.seed, "key": run.key,
        "spec": asdict(spec), "version": __version__, "in_shape": list(in_shape),
        "n_params": count_params(model), "n_train": len(train_set), "n_test": len(test_set),
        "steps_per_epoch": steps_per_epoch, "history": history, "outcome": outcome,
        "resumed": resumed, "train_seconds": sum(h["seconds"] for h in history),
        "device": str(dev),  # provenance only: not in the cache key
        "criterion": criterion,
    }
    write_json(run.dir / "metrics.json", metrics)
    ckpt_path.unlink(missing_ok=True)
    return Trained(run=run, model=model.eval(), metrics=metrics)
