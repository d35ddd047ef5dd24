"""The one ``device`` setting: where training and probes run, and the CUDA numerics they use.

:func:`resolve` turns a setting into a :class:`torch.device`. The setting is an argument (e.g.
``train_run(run, device="cuda")``), else the environment variable ``LANDSCAPE_DEVICE``, else
``"auto"``: CUDA when a CUDA device is available, the CPU otherwise. The device never enters a
cache key: a run trained on a GPU and one trained on the CPU are the same configuration, and
artefacts are saved on the CPU, so either loads on either.

Numerics on CUDA, where they could differ from the CPU by more than summation order:

* :func:`full_float32` turns TensorFloat-32 off for cuBLAS matmuls and cuDNN convolutions
  (PyTorch's default runs convolutions in TF32, a 10-bit mantissa), so float32 results differ
  from the CPU's only by the order of floating-point operations. ``train_run`` trains under it.
* :func:`deterministic` is for the probes: deterministic cuBLAS and cuDNN kernels, and a warning
  from any kernel that has no deterministic implementation.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["ENV", "DeviceError", "resolve", "full_float32", "deterministic", "CUBLAS_WORKSPACE"]

ENV = "LANDSCAPE_DEVICE"
# cuBLAS is deterministic with a fixed workspace per stream (NVIDIA's cuBLAS docs, "Results
# reproducibility"); PyTorch's reproducibility notes name these values. The variable is read when
# cuBLAS first runs in the process, so resolve() sets it as soon as it hands out a CUDA device.
CUBLAS_WORKSPACE = ":4096:8"


class DeviceError(ValueError):
    """A device setting that names no usable device (its message is one line)."""


def _setting(device) -> tuple[str, str]:
    """The setting and where it came from (for messages)."""
    if device is not None:
        return (str(device) if isinstance(device, torch.device) else device), "device"
    return os.environ.get(ENV, "").strip() or "auto", ENV


def resolve(device: str | torch.device | None = None) -> torch.device:
    """The :class:`torch.device` that ``device`` names.

    Args:
        device: ``None`` (use ``$LANDSCAPE_DEVICE``, else ``"auto"``), ``"auto"`` (CUDA when
            available, else the CPU), ``"cpu"``, ``"cuda"`` (the current CUDA device) or
            ``"cuda:N"``; a :class:`torch.device` is accepted too.

    Returns:
        ``cpu`` or ``cuda:N`` with an explicit index (so it compares equal to a tensor's device).

    Raises:
        DeviceError: a setting that is not a device, a device type other than CPU and CUDA, or
            a CUDA device that this machine does not have; the message is one line naming the
            setting and its source.

    Example:
        >>> resolve("cpu")
        device(type='cpu')
    """
    value, source = _setting(device)
    if not isinstance(value, str):
        raise DeviceError(f"{source} = {value!r} must be a string such as 'auto', 'cpu', 'cuda' "
                          "or 'cuda:1'")
    text = value.strip().lower()
    if text in ("", "auto"):
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(f"{source} = {value!r} is not a device: use 'auto', 'cpu', 'cuda' or "
                          "'cuda:N'") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise DeviceError(f"{source} = {value!r}: only 'auto', 'cpu', 'cuda' and 'cuda:N' are "
                          "supported")
    if not torch.cuda.is_available():
        raise DeviceError(f"{source} = {value!r}: no CUDA device is available on this machine "
                          "(torch.cuda.is_available() is False); use 'cpu' or 'auto'")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= count:
        raise DeviceError(f"{source} = {value!r}: this machine has {count} CUDA device"
                          f"{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    return torch.device("cuda", index)


@contextmanager
def full_float32() -> Iterator[None]:
    """Full float32 precision on CUDA: TensorFloat-32 off for cuBLAS matmuls and cuDNN
    convolutions for the duration, the previous settings restored on exit.

    Why: PyTorch runs cuDNN convolutions in TF32 by default (10 mantissa bits, relative error
    ~1e-3 per product), which would make a CNN trained or probed on a GPU differ from the same
    run on the CPU by more than summation order. TF32 is a speed option to be chosen by
    measurement on the GPU; if a study ever turns it on, it changes the numbers and must then
    enter the run's cache key. Nothing changes on the CPU.
    """
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels for the probes, as far as PyTorch has them; restored on exit.

    Sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (unless already set), calls
    ``torch.use_deterministic_algorithms(True, warn_only=True)``, turns cuDNN benchmarking off
    (it picks algorithms by timing) and TF32 off (:func:`full_float32`). With these, cuDNN
    convolutions (forward and backward) use deterministic algorithms and cuBLAS a fixed
    workspace, so a probe repeated on one GPU gives the same bits. Kernels without a
    deterministic implementation still run, and PyTorch warns once, naming each
    (``... does not have a deterministic implementation``): those warnings are the list for a
    given run. On the CPU the probes' kernels are deterministic already; the setting is harmless
    there.

    ``CUBLAS_WORKSPACE_CONFIG`` only takes effect if it is set before cuBLAS first runs in the
    process; :func:`resolve` sets it when it returns a CUDA device, so resolve the device
    before any CUDA work (or export the variable). It is left set on exit.

    Example:
        >>> with deterministic():
        ...     spec = hessian_eigenvalues(model, batches, k=1)  # doctest: +SKIP
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        with full_float32():
            yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]
