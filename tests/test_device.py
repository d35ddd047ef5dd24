"""Device handling on the CPU: the one ``device`` setting, and no probe creating a tensor on a
device other than its model's.

A probe run on a CUDA model must keep its tensors on the model's device. On a CPU-only machine
every tensor is on the CPU, so the device cannot be read off the tensors; :class:`DeviceChecker`
follows where each tensor *would* be instead. It is a ``TorchFunctionMode`` active while the
probe runs, which sees every torch call the probe (or a library it calls) makes and colours
each resulting tensor:

* **model device**: the model's parameters and buffers and the data (registered on entry), the
  result of ``.to(<torch.device>)`` / ``.cuda()``, of a factory given ``device=<torch.device>``,
  and of any operation with a model-device input (``*_like``, ``new_*`` and views included);
* **host**: the result of ``.cpu()`` / ``.to("cpu")`` (the string spells an intent to leave the
  device), and of operations on host tensors only;
* **stray**: the result of a factory (``torch.zeros/ones/empty/full/randn/rand/randint/randperm/
  arange/tensor/as_tensor/eye/linspace/...``, ``torch.from_numpy``) called without ``device=``:
  on a CUDA model it would silently land on the CPU. Strays are host tensors that remember the
  call site of the factory they come from (through every operation computed from them).

A stray is legitimate when it, or a tensor computed from it, is moved to the model's device
(``.to(device)``, or copied into a model-device tensor with ``copy_``/``t[i] = ...``), read back
on the host (``float``/``int``/``bool``/``.item()``/``.tolist()``/``.numpy()``: a host
accumulator or a CPU generator draw consumed by scipy), or used as an index (CPU indices are
valid for CUDA tensors). The checker reports

* **unplaced**: a stray that is none of these when the probe returns (e.g. ``torch.zeros(3)``
  left on the CPU, or returned to the caller there);
* **mixed**: an operation combining a model-device tensor with a host tensor of one or more
  dimensions (0-dimensional CPU tensors are valid operands of CUDA kernels), other than the
  moves and copies above — on CUDA, a device-mismatch error.

Each report names the ``file:line (function)`` of the call. Documented exceptions go in
``ALLOWED`` (by file and function, with the reason); none is needed today. Limits: a
``torch.device`` object is taken to name the model's device (library code gets devices from
the model), so ``.to(torch.device("cpu"))`` written as an object would count as a move; copies
into a tensor of unknown colour are not followed. The checker is validated below by probes
patched to misplace a tensor on purpose.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

import landscape.probes as P
from landscape.device import ENV, DeviceError, deterministic, full_float32, resolve
from landscape.probes._testing import classification_data, tiny_mlp

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
TORCH_DIR = str(Path(torch.__file__).resolve().parent)

# Factories that place their result where ``device=`` says, the CPU when it is missing.
FACTORIES = {getattr(torch, n) for n in (
    "zeros", "ones", "empty", "full", "randn", "rand", "randint", "randperm", "arange", "tensor",
    "as_tensor", "eye", "linspace", "logspace", "empty_strided", "normal", "scalar_tensor",
    "tril_indices", "triu_indices")}
# Factories that follow their input tensor unless ``device=`` is given.
LIKE = {getattr(torch, f"{n}_like") for n in ("zeros", "ones", "empty", "full", "randn", "rand",
                                               "randint")} | {
    getattr(Tensor, f"new_{n}") for n in ("zeros", "ones", "empty", "full", "tensor")}
SINKS = {"item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__", "__array__",
         "__format__"}
_OWN = {"__torch_function__", "_observe", "_site", "_stray", "from_numpy"}  # checker frames

# (path relative to the repository, function) -> why a stray created there may stay on the CPU.
ALLOWED: dict[tuple[str, str], str] = {}

_DEVICE, _HOST = "device", "host"


@dataclass(eq=False)
class Origin:
    """Where a stray tensor was made, and whether it was placed or consumed since."""

    factory: str
    site: str
    shape: tuple
    allowed: str | None = None
    placed: bool = False


@dataclass
class Problem:
    kind: str  # "unplaced" or "mixed"
    message: str
    sites: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def _leaves(obj):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _leaves(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _leaves(o)


def _name(func) -> str:
    owner = getattr(func, "__objclass__", None)
    name = getattr(func, "__name__", repr(func))
    if owner is not None:
        return f"Tensor.{name}"
    mod = getattr(func, "__module__", "") or ""
    return f"{'torch' if mod.startswith('torch') else mod}.{name}".lstrip(".")


def _target(value) -> str | None:
    """The colour a device argument sends a tensor to (None: no device given)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _HOST if value.split(":")[0] == "cpu" else _DEVICE
    if isinstance(value, (torch.device, int)):
        return _DEVICE
    return None


class DeviceChecker(TorchFunctionMode):
    """Record, while active, the tensors that would not be on the model's device (module
    docstring). Register the model(s) and data first; read :meth:`problems` after exit."""

    def __init__(self) -> None:
        super().__init__()
        self.colour = WeakIdKeyDictionary()  # tensor -> _DEVICE | _HOST | frozenset[Origin]
        self.origins: list[Origin] = []
        self.mixed: list[Problem] = []

    # ---------------------------------------------------------------- registration
    def on_device(self, *objs) -> "DeviceChecker":
        """Declare modules (parameters, buffers) and tensors/batches as on the model's device."""
        for obj in objs:
            if isinstance(obj, nn.Module):
                for t in [*obj.parameters(), *obj.buffers()]:
                    self.colour[t] = _DEVICE
            else:
                for t in _leaves(obj):
                    self.colour[t] = _DEVICE
        return self

    # ---------------------------------------------------------------- the report
    def problems(self) -> list[Problem]:
        out = [p for p in self.mixed]
        for o in self.origins:
            if not o.placed and o.allowed is None:
                out.append(Problem("unplaced", f"unplaced: {o.factory}{list(o.shape)} at {o.site} "
                                   "was created without device= and neither moved to the "
                                   "model's device nor read back on the host", [o.site]))
        return out

    # ---------------------------------------------------------------- bookkeeping
    def _site(self) -> tuple[str, str, str]:
        """``file:line (function)`` of the call being observed: the first frame outside torch
        and outside the checker."""
        f = sys._getframe(1)
        while f is not None:
            path = f.f_code.co_filename
            if not (path.startswith(TORCH_DIR) or (path == __file__ and f.f_code.co_name in _OWN)):
                break
            f = f.f_back
        if f is None:
            return "?", "?", "?"
        p = Path(f.f_code.co_filename)
        rel = str(p.relative_to(REPO)) if p.is_relative_to(REPO) else p.name
        return f"{rel}:{f.f_lineno} ({f.f_code.co_name})", rel, f.f_code.co_name

    def _stray(self, factory: str, out) -> frozenset:
        site, rel, fn = self._site()
        shape = tuple(out.shape) if isinstance(out, Tensor) else ()
        o = Origin(factory, site, shape, allowed=ALLOWED.get((rel, fn)))
        self.origins.append(o)
        return frozenset([o])

    def _get(self, t):
        return self.colour.get(t) if isinstance(t, Tensor) else None

    @staticmethod
    def _place(c) -> None:
        if isinstance(c, frozenset):
            for o in c:
                o.placed = True

    def _set(self, out, c) -> None:
        if c is None:
            return
        for t in _leaves(out):
            self.colour[t] = c

    def _join(self, cs):
        """Colour of an operation's result from its inputs' colours."""
        if _DEVICE in cs:
            return _DEVICE
        strays = [c for c in cs if isinstance(c, frozenset)]
        if strays:
            return frozenset().union(*strays)
        return _HOST if _HOST in cs else None

    # ---------------------------------------------------------------- the mode
    def __enter__(self):
        # torch.from_numpy takes no tensor and is not seen by the mode: wrap it while active
        self._from_numpy = torch.from_numpy

        def from_numpy(a):
            out = self._from_numpy(a)
            self._set(out, self._stray("torch.from_numpy", out))
            return out

        torch.from_numpy = from_numpy
        return super().__enter__()

    def __exit__(self, *exc):
        torch.from_numpy = self._from_numpy
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            self._observe(func, args, kwargs, out)
        except Exception as err:  # the checker must never change what the probe computes
            self.mixed.append(Problem("mixed", f"checker error on {_name(func)}: {err!r}"))
        return out

    def _observe(self, func, args, kwargs, out) -> None:
        name = _name(func)
        if func in FACTORIES:
            target = _target(kwargs.get("device"))
            if target is not None:
                self._set(out, target)
            elif func in (torch.tensor, torch.as_tensor) and any(True for _ in _leaves(args[:1])):
                self._set(out, self._join([self._get(t) for t in _leaves(args[:1])]))
            else:
                self._set(out, self._stray(name, out))
            return
        if func in LIKE:
            target = _target(kwargs.get("device"))
            self._set(out, target if target is not None else self._get(args[0]))
            return
        if getattr(func, "__name__", "") in SINKS and args and isinstance(args[0], Tensor):
            self._place(self._get(args[0]))
            return
        if name in ("Tensor.to", "Tensor.cuda", "Tensor.cpu"):
            src = self._get(args[0])
            if name == "Tensor.cuda":
                target = _DEVICE
            elif name == "Tensor.cpu":
                target = _HOST
            else:
                rest = list(args[1:])
                if rest and isinstance(rest[0], Tensor):  # .to(other): other's device
                    target = self._get(rest[0]) if self._get(rest[0]) == _DEVICE else _HOST
                else:
                    dev = kwargs.get("device", rest[0] if rest and not isinstance(rest[0], torch.dtype)
                                     else None)
                    target = _target(dev)
            if target == _DEVICE:
                self._place(src)
                self._set(out, _DEVICE)
            elif target == _HOST:
                self._set(out, src if isinstance(src, frozenset) else _HOST)
            else:
                self._set(out, src)
            return
        if name in ("Tensor.copy_", "Tensor.__setitem__"):
            dst = args[0]
            src = args[1] if name == "Tensor.copy_" else (args[2] if len(args) > 2 else None)
            if name == "Tensor.__setitem__":
                for t in _leaves(args[1]):  # indices: valid on the CPU for a CUDA tensor
                    self._place(self._get(t))
            sc = self._get(src) if isinstance(src, Tensor) else None
            dc = self._get(dst)
            if dc == _DEVICE:
                self._place(sc)
            elif isinstance(dc, frozenset) and isinstance(sc, frozenset):
                self.colour[dst] = dc | sc
            return
        if name == "Tensor.__getitem__":
            for t in _leaves(args[1:]):
                self._place(self._get(t))
            self._set(out, self._get(args[0]))
            return
        if name == "Tensor.__set__":  # t.data = value (also t.grad = ..., t.requires_grad = ...)
            if len(args) == 2 and isinstance(args[1], Tensor):
                self._set(args[0], self._get(args[1]))
            return
        tensors = list(_leaves((args, kwargs)))
        cs = [self._get(t) for t in tensors]
        if _DEVICE in cs:
            inplace = name.startswith("Tensor.") and name.endswith("_") and not name.endswith("__")
            bad = [(t, c) for i, (t, c) in enumerate(zip(tensors, cs))
                   if c is not None and c != _DEVICE and (t.dim() > 0 or (inplace and t is args[0]))]
            if bad:
                site, _, _ = self._site()
                made = sorted({o.site for _, c in bad if isinstance(c, frozenset) for o in c})
                shapes = ", ".join(str(list(t.shape)) for t, _ in bad)
                self.mixed.append(Problem(
                    "mixed", f"mixed: {name} at {site} combines a model-device tensor with a host "
                    f"tensor of shape {shapes}" + (f" (made at {', '.join(made)})" if made else ""),
                    [site, *made]))
                for _, c in bad:
                    self._place(c)  # reported once, as mixed
        self._set(out, self._join(cs))


def check(fn, *on_device) -> list[Problem]:
    """Run ``fn()`` under a :class:`DeviceChecker` with ``on_device`` registered."""
    checker = DeviceChecker().on_device(*on_device)
    with checker:
        fn()
    return checker.problems()


# ------------------------------------------------------------------------------------------
# every public probe under the checker
# ------------------------------------------------------------------------------------------
def tiny_cnn(seed: int = 0) -> nn.Module:
    """Conv -> BN -> ReLU -> linear in float64 (exercises channels-last and BN recomputation)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3)).double()


def image_data(n: int = 40, batch: int = 16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


@dataclass
class Env:
    """Everything a case needs, built outside the checker and registered as on the device."""

    model: nn.Module
    other: nn.Module
    data: list
    trajectory: Tensor
    vector: Tensor


def make_env(kind: str) -> Env:
    if kind == "cnn":
        model, other, data = tiny_cnn(0), tiny_cnn(1), image_data()
    else:
        model, other, data = tiny_mlp(0, batchnorm=kind == "bn"), tiny_mlp(5, batchnorm=kind == "bn"), \
            classification_data()
    for m in (model, other):  # BN statistics away from their defaults
        m.train()
        with torch.no_grad():
            for x, _ in data:
                m(x)
        m.eval()
    w = P.flatten_params(model)
    g = torch.Generator().manual_seed(2)
    traj = torch.stack([w + 0.1 * k * torch.randn(w.shape, generator=g, dtype=w.dtype)
                        for k in range(4, -1, -1)])
    return Env(model, other, data, traj, torch.randn(w.numel(), generator=g, dtype=torch.float64))


def _pca_project(e: Env):
    pca = P.pca_directions(e.trajectory, k=2)
    return pca.project(P.flatten_params(e.model))


CASES = {
    "hessian_eigenvalues": lambda e: P.hessian_eigenvalues(e.model, e.data, k=2, max_iter=8,
                                                           return_vectors=True),
    "hessian_eigenvalues_smallest": lambda e: P.hessian_eigenvalues(e.model, e.data, k=1,
                                                                    which="smallest", max_iter=8),
    "conditioning": lambda e: P.conditioning(e.model, e.data, k=1, max_iter=8),
    "hessian_trace_hutchpp": lambda e: P.hessian_trace(e.model, e.data, n_probes=6),
    "hessian_trace_xtrace": lambda e: P.hessian_trace(e.model, e.data, n_probes=6, method="xtrace"),
    "hessian_trace_hutchinson": lambda e: P.hessian_trace(e.model, e.data, n_probes=3,
                                                          method="hutchinson"),
    "hessian_density": lambda e: P.hessian_density(e.model, e.data, n_probes=2, n_iter=4),
    "random_direction": lambda e: P.random_direction(e.model, seed=0),
    "random_direction_layer": lambda e: P.random_direction(e.model, seed=0, norm="layer", ignore=None),
    "random_plane": lambda e: P.random_plane(e.model, seed=0),
    "random_plane_none": lambda e: P.random_plane(e.model, seed=0, norm="none"),
    "loss_surface_1d": lambda e: P.loss_surface(e.model, e.data, [P.random_direction(e.model, 0)],
                                                [-1.0, 0.0, 1.0]),
    "loss_surface_2d": lambda e: P.loss_surface(e.model, e.data, P.random_plane(e.model, 0),
                                                ([0.0, 0.5], [0.0, 0.5]), metric="both"),
    "loss_surface_flat_numpy": lambda e: P.loss_surface(e.model, e.data,
                                                        [e.vector.numpy()], [0.0, 0.1]),
    "evaluate_loss": lambda e: P.evaluate_loss(e.model, e.data, metric=("loss", "error")),
    "sharpness_sam": lambda e: P.sharpness(e.model, e.data, kind="sam", steps=2),
    "sharpness_adaptive": lambda e: P.sharpness(e.model, e.data, kind="adaptive", steps=2),
    "sharpness_random": lambda e: P.sharpness(e.model, e.data, kind="random", n_draws=2),
    "sharpness_keskar": lambda e: P.sharpness(e.model, e.data, kind="keskar", rho=1e-3, steps=2),
    "sharpness_estimate": lambda e: P.sharpness_estimate(e.model, e.data, kind="sam", steps=2),
    "interpolate": lambda e: P.interpolate(e.model, e.other, e.data, [0.0, 0.5, 1.0],
                                           metric=("loss", "error")),
    "interpolate_bn_interpolated": lambda e: P.interpolate(e.model, e.other, e.data, [0.5],
                                                           bn="interpolate"),
    "bezier_curve": lambda e: P.bezier_curve(e.model, e.other, e.data, epochs=1)
    .evaluate(e.model, e.data, [0.25, 0.75]),
    "gradient_norms": lambda e: P.gradient_norms(e.model, e.data),
    "pca_directions": lambda e: P.pca_directions(e.trajectory, k=2),
    "pca_directions_project": _pca_project,
    "hessian_operator_matvec": lambda e: P.HessianOperator(e.model, e.data).matvec(e.vector),
}

# Cases the checker flags today: case -> the offending line (fix the probe, then drop the entry;
# strict xfail makes a fixed probe fail here until it is dropped).
KNOWN: dict[str, str] = {}


def _params():
    out = []
    for kind in ("mlp", "bn", "cnn"):
        for name in CASES:
            marks = ([pytest.mark.xfail(strict=True, reason=KNOWN[name])] if name in KNOWN else [])
            out.append(pytest.param(kind, name, marks=marks, id=f"{kind}-{name}"))
    return out


def test_the_cases_cover_every_public_probe():
    functions = {n for n in P.__all__ if n[0].islower()}
    helpers = {"orthogonalize", "normalize_direction", "barrier", "flatten_params"}  # called by
    # the probes above (or pure arithmetic on returned numbers), not probes of a model
    for name in sorted(functions - helpers):
        assert any(c == name or c.startswith(name + "_") for c in CASES), name
    assert "hessian_operator_matvec" in CASES


@pytest.mark.parametrize("kind, name", _params())
def test_probe_creates_no_tensor_off_the_model_device(kind, name):
    e = make_env(kind)
    problems = check(lambda: CASES[name](e), e.model, e.other, e.data, e.trajectory, e.vector)
    assert not problems, "\n".join(map(str, problems))


# ------------------------------------------------------------------------------------------
# the checker catches misplaced tensors (validation of the test itself)
# ------------------------------------------------------------------------------------------
def test_checker_flags_a_factory_call_without_device(monkeypatch):
    import landscape.probes.surface as surface

    original = surface.evaluate_metrics

    def misplaced(*args, **kwargs):
        torch.zeros(3)  # no device=: on a CUDA model this lands on the CPU
        return original(*args, **kwargs)

    monkeypatch.setattr(surface, "evaluate_metrics", misplaced)
    e = make_env("mlp")
    problems = check(lambda: P.evaluate_loss(e.model, e.data), e.model, e.data)
    assert [p.kind for p in problems] == ["unplaced"]
    assert "torch.zeros[3]" in str(problems[0]) and "tests/test_device.py" in problems[0].sites[0]


def test_checker_flags_a_host_tensor_mixed_with_the_model(monkeypatch):
    import landscape.probes.surface as surface

    original = surface.as_directions

    def misplaced(model, directions):
        dirs = original(model, directions)
        dirs[0][0] = torch.zeros(dirs[0][0].shape, dtype=dirs[0][0].dtype)  # no device=
        return dirs

    monkeypatch.setattr(surface, "as_directions", misplaced)
    e = make_env("mlp")
    d = [t.clone() for t in e.model.parameters()]
    problems = check(lambda: P.loss_surface(e.model, e.data, [d], [0.0, 1.0]), e.model, e.data, d)
    mixed = [p for p in problems if p.kind == "mixed"]
    assert mixed and all("lib/landscape/probes/surface.py" in p.sites[0] for p in mixed)
    assert "Tensor.add_" in str(mixed[0]) and "tests/test_device.py" in str(mixed[0])


def test_checker_accepts_a_cpu_generator_draw_moved_to_the_device_and_host_accumulators():
    e = make_env("mlp")
    p0 = next(e.model.parameters())

    def fine():
        g = torch.Generator().manual_seed(0)
        moved = torch.randn(p0.shape, generator=g, dtype=p0.dtype).to(p0.device)
        p0.detach() + moved
        total = torch.zeros((), dtype=torch.float64)  # host accumulator, read back as a float
        float(total + (p0.detach() * 2).sum().cpu())
        torch.zeros(p0.shape[1:], dtype=p0.dtype, device=p0.device) + p0.detach()[0]

    assert check(fine, e.model) == []


# ------------------------------------------------------------------------------------------
# the device setting
# ------------------------------------------------------------------------------------------
def test_resolve_accepts_the_documented_settings(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    auto = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
        else torch.device("cpu")
    assert resolve(None) == resolve("auto") == resolve(" AUTO ") == auto
    assert resolve("cpu") == resolve(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv(ENV, "cpu")
    assert resolve(None) == torch.device("cpu")
    assert resolve("auto") == auto  # an argument wins over the environment


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("setting", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_an_unavailable_cuda_device_is_refused_in_one_line(setting, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(DeviceError, match="no CUDA device is available") as err:
        resolve(setting)
    assert "\n" not in str(err.value) and str(setting) in str(err.value)
    monkeypatch.setenv(ENV, "cuda")
    with pytest.raises(DeviceError, match=f"^{ENV} = 'cuda': no CUDA device"):
        resolve(None)


@pytest.mark.parametrize("setting", ["gpu", "cuda:x", "meta", 3])
def test_a_setting_that_is_no_supported_device_is_refused_in_one_line(setting):
    with pytest.raises(DeviceError) as err:
        resolve(setting)
    assert "\n" not in str(err.value) and repr(setting) in str(err.value)


def test_deterministic_and_full_float32_restore_the_previous_settings():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with deterministic():
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
    with full_float32():
        assert not torch.backends.cudnn.allow_tf32
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_the_device_is_not_part_of_the_cache_key_and_artefacts_are_on_the_cpu(
        tmp_path, monkeypatch, artefacts, data_root):
    from landscape.config import load_study
    from landscape.train import load_trained, train_run

    root = tmp_path / "configs"
    (root / "studies").mkdir(parents=True)
    (root / "profiles").mkdir()
    (root / "profiles" / "t.yaml").write_text("seeds: 1\n")
    (root / "studies" / "toy.yaml").write_text(
        "name: toy\ndefaults:\n  dataset: mnist\n  model: {name: mlp}\n  batch_size: 128\n"
        "  epochs: 1\n  train_subset: 256\n  test_subset: 128\nconfigs:\n  - name: a\nseeds: 0\n")
    monkeypatch.setenv("LANDSCAPE_CONFIGS", str(root))
    run = load_study("toy", "t").runs[0]
    key = run.key
    t = train_run(run, data_root=data_root, progress=False, device="cpu")
    assert run.key == key == t.metrics["key"] and t.metrics["device"] == "cpu"
    for name in ("model.pt", "init.pt"):
        state = torch.load(run.dir / name, weights_only=True)  # no map_location: as saved
        assert all(v.device.type == "cpu" for v in state.values())
    again = load_trained(run, device="cpu")
    for a, b in zip(again.model.state_dict().values(), t.model.state_dict().values()):
        assert torch.equal(a, b)
    assert next(t.init_model().parameters()).device == torch.device("cpu")
