"""Configuration as data: study YAML files and profiles, validated into dataclasses.

A *study* (``configs/studies/<name>.yaml``) names a dataset, default training settings, a list of
configurations that override them, the seeds, the probe settings and the write-up's published
numbers. A *profile* (``configs/profiles/<name>.yaml``: ``smoke``, ``quick``, ``paper``) only sets
budgets — epochs, subset sizes, grid sizes, iteration counts — never code paths; a study may refine
a profile's budgets under ``budgets: {<profile>: {...}}``.

A study may also (or instead) give a ``sweep:`` — a grid of dotted-key overrides on top of
``defaults`` whose cartesian product becomes configurations with generated, path-safe names::

    sweep:
      name: "mlp-w{model.widths[0]}-lr{optimizer.lr}-b{batch_size}"   # optional template
      label: "MLP-{model.widths[0]}, lr {optimizer.lr}, batch {batch_size}"   # optional
      grid:
        model.widths: [[32], [128], [512]]
        optimizer.lr: [0.01, 0.05, 0.1]
        batch_size: [32, 128]

(``sweep:`` may also be a list of such blocks.) Each expanded configuration is validated like a
written one, and ``Study.configs[name]["values"]`` records its own settings as dotted keys, so
notebooks can group runs by hyper-parameter.

Every validation failure raises :class:`ConfigError` with one line naming the file, the offending
key, the bad value and what is allowed.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .store import config_hash

__all__ = [
    "ConfigError",
    "ModelSpec",
    "OptimizerSpec",
    "ScheduleSpec",
    "TrainSpec",
    "Budget",
    "ProbeSpec",
    "RunSpec",
    "Study",
    "load_study",
    "expand_sweep",
    "load_profile",
    "list_studies",
    "configs_root",
    "artefacts_root",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
MODELS = ("mlp", "cnn", "resnet")
OPTIMIZERS = ("sgd", "momentum", "adam", "sam")
SCHEDULES = ("constant", "step", "cosine")


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message is one line."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def configs_root() -> Path:
    """Folder holding ``studies/`` and ``profiles/`` (env ``LANDSCAPE_CONFIGS`` overrides)."""
    return Path(os.environ.get("LANDSCAPE_CONFIGS", _repo_root() / "configs"))


def artefacts_root() -> Path:
    """Folder for trained models and probe artefacts (env ``LANDSCAPE_ARTEFACTS`` overrides)."""
    return Path(os.environ.get("LANDSCAPE_ARTEFACTS", _repo_root() / "artefacts"))


def check_name(value: Any, what: str, where: str = "") -> str:
    """Refuse names that are not safe as one path component (``../x``, ``a/b``, spaces…)."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ConfigError(
            f"{where}{what} = {value!r} is not a valid name "
            "(lower-case letters, digits, '-' and '_', starting with a letter or digit)"
        )
    return value


# --------------------------------------------------------------------------- dataclasses
def _check_choice(where: str, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}{key} = {value!r} is not one of: {', '.join(allowed)}")


def _check_positive(where: str, key: str, value: Any, kind: type = float, allow_none=False) -> None:
    if value is None and allow_none:
        return
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and value > 0)
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        what = "a positive integer" if kind is int else "a positive number"
        raise ConfigError(f"{where}{key} = {value!r} must be {what}")


def _check_nonneg(where: str, key: str, value: Any) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or value < 0):
        raise ConfigError(f"{where}{key} = {value!r} must be a finite number >= 0")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture: ``name`` picks the family; ``options`` are its keyword arguments."""

    name: str
    options: dict = field(default_factory=dict)

    def validate(self, where: str) -> None:
        _check_choice(where, "model.name", self.name, MODELS)
        from .models import check_options

        check_options(self.name, self.options, where)


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimizer: ``sgd`` (no momentum), ``momentum`` (heavy ball), ``adam``, ``sam`` (Foret et
    al. 2021, on top of heavy-ball SGD with ``momentum``; ``rho`` is the L2 ball radius)."""

    name: str = "momentum"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    rho: float = 0.05
    grad_clip: float | None = None

    def validate(self, where: str) -> None:
        _check_choice(where, "optimizer.name", self.name, OPTIMIZERS)
        _check_positive(where, "optimizer.lr", self.lr)
        _check_nonneg(where, "optimizer.momentum", self.momentum)
        _check_nonneg(where, "optimizer.weight_decay", self.weight_decay)
        _check_positive(where, "optimizer.rho", self.rho)
        _check_positive(where, "optimizer.grad_clip", self.grad_clip, allow_none=True)


@dataclass(frozen=True)
class ScheduleSpec:
    """Learning-rate schedule per step: ``constant``, ``step`` (×``gamma`` every ``step_epochs``),
    ``cosine`` (to ``final_lr_frac``·lr); optional linear warm-up over ``warmup_epochs``."""

    name: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    gamma: float = 0.1
    final_lr_frac: float = 0.0

    def validate(self, where: str) -> None:
        _check_choice(where, "schedule.name", self.name, SCHEDULES)
        _check_nonneg(where, "schedule.warmup_epochs", self.warmup_epochs)
        _check_positive(where, "schedule.step_epochs", self.step_epochs, int)
        _check_positive(where, "schedule.gamma", self.gamma)
        _check_nonneg(where, "schedule.final_lr_frac", self.final_lr_frac)


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a trained model (its hash is the cache key)."""

    dataset: str
    model: ModelSpec
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    batch_size: int = 128
    epochs: int = 1
    seed: int = 0                      # initialisation and batch order
    data_seed: int = 0                 # which train_subset examples (shared by every seed; see subsets.py)
    train_subset: int | None = None
    test_subset: int | None = 2000
    augment: bool = False
    trajectory_every: int = 0  # steps between saved weight snapshots (0: once per epoch)
    # Stopping criterion: stop after the first epoch at whose end the cross-entropy over the
    # run's whole training subset (eval mode) is <= stop_loss; ``epochs`` is then the cap.
    # None: train for exactly ``epochs``. Whether it was reached is recorded in the metrics.
    stop_loss: float | None = None

    def validate(self, where: str) -> None:
        _check_choice(where, "dataset", self.dataset, DATASETS)
        self.model.validate(where)
        self.optimizer.validate(where)
        self.schedule.validate(where)
        _check_positive(where, "batch_size", self.batch_size, int)
        _check_positive(where, "epochs", self.epochs, int)
        _check_positive(where, "train_subset", self.train_subset, int, allow_none=True)
        _check_positive(where, "test_subset", self.test_subset, int, allow_none=True)
        for key in ("seed", "data_seed"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{where}{key} = {value!r} must be an integer")
        _check_positive(where, "stop_loss", self.stop_loss, allow_none=True)
        if not isinstance(self.augment, bool):
            raise ConfigError(f"{where}augment = {self.augment!r} must be true or false")

    def key(self) -> str:
        """Cache key: hash of this spec and the library version."""
        return config_hash({"spec": dataclasses.asdict(self), "version": __version__})


@dataclass(frozen=True)
class Budget:
    """Compute budgets set by a profile; they never change which code runs."""

    epochs: int | None = None          # None: the study's own number of epochs (the cap with stop_loss)
    stop_loss: float | None = None     # None: the study's own stopping criterion (if any)
    train_subset: int | None = None    # None: the whole training split
    test_subset: int | None = 2000     # test examples for the per-epoch curves
    seeds: int = 2                     # seeds per configuration
    eval_subset: int = 1000            # fixed, seeded training subset for probes
    hessian_subset: int | None = None  # Hessian probes on this prefix of it (None: all of it)
    eval_batch: int = 128              # evaluation batch (64–128 is fastest on CPU)
    slice_points: int = 21             # 1D slice grid
    surface_points: int = 11           # 2D surface grid per axis
    interp_points: int = 11            # points on the interpolation path
    lanczos_iters: int = 30            # Lanczos iteration budget
    top_k: int = 1                     # top eigenvalues reported
    sharpness_steps: int = 5           # projected-gradient-ascent steps for SAM sharpness
    trace_probes: int = 30             # Hutch++ Hessian-vector products for the trace
    density_probes: int = 5            # spectral density: SLQ probe vectors (below 5 x 80: no figure)
    density_iters: int = 80            # ... Lanczos steps per probe
    eos_subset: int = 2000             # edge of stability: full-batch GD on this many examples
    eos_steps: int = 600               # ... for this many steps
    eos_every: int = 20                # ... with lambda_max every this many steps

    def validate(self, where: str) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            allow_none = f.name in ("epochs", "stop_loss", "train_subset", "test_subset", "hessian_subset")
            _check_positive(where, f"budget.{f.name}", value, float if f.name == "stop_loss" else int,
                            allow_none=allow_none)


MEASURES = ("curves", "slice", "surface", "hessian", "hessian_bottom", "trace", "density",
            "sharpness", "interpolation", "gradients", "pca", "early", "subset_curve")
SHARPNESS_KINDS = ("sam", "adaptive", "random", "keskar")


@dataclass(frozen=True)
class ProbeSpec:
    """Probe settings that belong to the study (not to the budget)."""

    measures: tuple = ("curves", "slice", "hessian", "sharpness", "interpolation")
    slice_range: float = 1.0     # 1D slice over alpha in [-r, r] (filter-normalised units)
    surface_range: float = 1.0
    sharpness_rho: float = 0.05
    sharpness_kinds: tuple = ("sam",)
    keskar_eps: float = 1e-3     # Keskar et al. (2017)'s box size for kind "keskar" (not sharpness_rho)
    subset_sizes: tuple = (32, 64, 128, 256, 512)  # lambda_max against Hessian subset size ("subset_curve")
    bn_mode: str = "eval"        # BN mode for surfaces and Hessians

    def validate(self, where: str) -> None:
        for m in self.measures:
            _check_choice(where, "probes.measures[]", m, MEASURES)
        for k in self.sharpness_kinds:
            _check_choice(where, "probes.sharpness_kinds[]", k, SHARPNESS_KINDS)
        _check_positive(where, "probes.slice_range", self.slice_range)
        _check_positive(where, "probes.surface_range", self.surface_range)
        _check_positive(where, "probes.sharpness_rho", self.sharpness_rho)
        _check_positive(where, "probes.keskar_eps", self.keskar_eps)
        for n in self.subset_sizes:
            _check_positive(where, "probes.subset_sizes[]", n, int)
        _check_choice(where, "probes.bn_mode", self.bn_mode, ("eval",))


@dataclass(frozen=True)
class RunSpec:
    """One training run: a study's configuration at one seed, resolved for one profile."""

    study: str
    config: str
    seed: int
    train: TrainSpec

    @property
    def key(self) -> str:
        return self.train.key()

    @property
    def dir(self) -> Path:
        return artefacts_root() / "runs" / self.study / self.config / f"seed{self.seed}-{self.key}"


@dataclass(frozen=True)
class Study:
    """A study resolved for one profile: its runs, probe settings, budget and published numbers."""

    name: str
    title: str
    profile: str
    source: str
    dataset: str
    configs: dict[str, dict]      # name -> {"label", "description", "values": {dotted key: value}}
    runs: tuple[RunSpec, ...]
    budget: Budget
    probes: ProbeSpec
    published: dict
    notes: str = ""

    def runs_of(self, config: str) -> list[RunSpec]:
        if config not in self.configs:
            raise ConfigError(
                f"study {self.name}: config = {config!r} is not one of: {', '.join(self.configs)}"
            )
        return [r for r in self.runs if r.config == config]


# --------------------------------------------------------------------------- loading
def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _build(cls, data: Any, where: str, prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}{prefix} = {data!r} must be a mapping")
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{where}{prefix}.{key} is not a known key (allowed: {', '.join(sorted(names))})"
                if prefix
                else f"{where}{key} is not a known key (allowed: {', '.join(sorted(names))})"
            )
    return cls(**data)


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last silently)
    and reads ``1e-3`` as a number (YAML 1.1 wants ``1.0e-3``; a learning rate written the usual
    way would otherwise arrive as the string '1e-3')."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
            except TypeError:  # an unhashable key: let PyYAML report it
                dup = False
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            if not isinstance(key, (list, dict)):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise ConfigError(f"{path}: cannot be read ({reason})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} is not valid YAML ({getattr(err, 'problem', err)})")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def list_studies(root: Path | None = None, profile: str | None = None) -> list[str]:
    """Names of the studies under ``configs/studies``; with ``profile``, those that run under it.

    A study runs under every profile unless it lists some under ``profiles:`` (e.g. a large
    population only in ``paper``). A file that cannot be read is listed, so that loading it
    reports what is wrong.
    """
    root = Path(root or configs_root())
    names = sorted(p.stem for p in (root / "studies").glob("*.yaml"))
    if profile is None:
        return names
    out = []
    for name in names:
        try:
            raw = _read_yaml(root / "studies" / f"{name}.yaml")
            only = raw.get("profiles") if isinstance(raw, dict) else None
        except ConfigError:
            only = None
        if not isinstance(only, list) or profile in only:
            out.append(name)
    return out


def list_profiles(root: Path | None = None) -> list[str]:
    root = Path(root or configs_root())
    return sorted(p.stem for p in (root / "profiles").glob("*.yaml"))


def load_profile(name: str, root: Path | None = None) -> dict:
    """Raw budget mapping of profile ``name``."""
    root = Path(root or configs_root())
    check_name(name, "profile")
    path = root / "profiles" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"profile = {name!r} is not one of: {', '.join(list_profiles(root))}")
    return _read_yaml(path)


def _train_spec(raw: dict, where: str) -> TrainSpec:
    raw = dict(raw)
    model = raw.pop("model", None)
    if not isinstance(model, dict) or "name" not in model:
        raise ConfigError(f"{where}model must be a mapping with a 'name' (one of {', '.join(MODELS)})")
    model = dict(model)
    spec_model = ModelSpec(name=model.pop("name"), options=model)
    opt = _build(OptimizerSpec, raw.pop("optimizer", {}), where, "optimizer")
    sched = _build(ScheduleSpec, raw.pop("schedule", {}), where, "schedule")
    if "dataset" not in raw:
        raise ConfigError(f"{where}dataset is missing (one of {', '.join(DATASETS)})")
    spec = _build(TrainSpec, {**raw, "model": spec_model, "optimizer": opt, "schedule": sched}, where, "")
    spec.validate(where)
    return spec


# --------------------------------------------------------------------------- sweeps
SWEEP_KEYS = ("name", "label", "description", "grid")
_SCALAR_TRAIN_KEYS = ("dataset", "batch_size", "epochs", "stop_loss", "data_seed", "train_subset", "test_subset", "augment",
                      "trajectory_every")


def _grid_keys() -> list[str]:
    """Every dotted key a sweep grid may set (``seed`` is not one: seeds come from the study)."""
    from .models import FAMILIES, _option_types

    model_opts = sorted({"name"} | {k for cls in FAMILIES.values() for k in _option_types(cls)})
    return (list(_SCALAR_TRAIN_KEYS) + ["model"] + [f"model.{k}" for k in model_opts]
            + ["optimizer"] + [f"optimizer.{f.name}" for f in fields(OptimizerSpec)]
            + ["schedule"] + [f"schedule.{f.name}" for f in fields(ScheduleSpec)])


def _set_dotted(target: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    if isinstance(value, dict) and isinstance(target.get(leaf), dict):
        target[leaf] = _deep_merge(target[leaf], value)
    else:
        target[leaf] = copy.deepcopy(value)


def _flatten(overrides: dict) -> dict:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}`` (one level: the spec's depth)."""
    out: dict = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = copy.deepcopy(v)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _with_defaults(defaults: dict, entry: dict) -> dict:
    """``entry`` on top of ``defaults``; a different model family drops the default's options."""
    defaults = dict(defaults)
    if (isinstance(entry.get("model"), dict) and isinstance(defaults.get("model"), dict)
            and entry["model"].get("name", defaults["model"].get("name")) != defaults["model"].get("name")):
        defaults.pop("model")  # another family: its options do not carry over
    return _deep_merge(defaults, entry)


def _text(value: Any) -> str:
    """Compact text of a swept value: 0.01, 32, [32, 64] -> 32x64, {name: sgd, lr: 0.1} -> sgd-0.1."""
    if isinstance(value, (list, tuple)):
        return "x".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "-".join(_text(v) for v in value.values())
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class _Field:
    """A configuration value as seen by a ``str.format`` template: ``{optimizer.lr}``,
    ``{model.widths[0]}``, ``{optimizer.lr:g}``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __getattr__(self, key: str) -> _Field:
        if isinstance(self.value, dict) and key in self.value:
            return _Field(self.value[key])
        raise AttributeError(key)

    def __getitem__(self, key: Any) -> _Field:
        return _Field(self.value[key])

    def __format__(self, spec: str) -> str:
        if spec and not isinstance(self.value, (list, tuple, dict)):
            return format(self.value, spec)
        return _text(self.value)


def _fill(template: Any, merged: dict, at: str, what: str) -> str:
    if not isinstance(template, str):
        raise ConfigError(f"{at}.{what} = {template!r} must be a string template such as "
                          "'mlp-w{model.widths[0]}-lr{optimizer.lr}'")
    try:
        return template.format_map({k: _Field(v) for k, v in merged.items()})
    except (KeyError, AttributeError) as err:
        raise ConfigError(f"{at}.{what} = {template!r} refers to {err.args[0]!r} which this "
                          "configuration does not set (use keys of defaults or the grid, e.g. "
                          "{optimizer.lr})") from None
    except (IndexError, TypeError, ValueError) as err:
        raise ConfigError(f"{at}.{what} = {template!r} cannot be filled in ({err})") from None


def _safe_name(text: str) -> str:
    """Lower-case, '.' -> 'p' (0.01 -> 0p01), anything else outside [a-z0-9_-] -> '-'."""
    text = text.lower().replace(".", "p")
    text = re.sub(r"[^a-z0-9_-]+", "-", text)
    return re.sub(r"-{2,}", "-", text).strip("-_")


def expand_sweep(sweep: Any, defaults: dict, where: str = "") -> list[tuple[str, dict, dict]]:
    """Expand a ``sweep:`` block (or a list of them) into ``(name, overrides, meta)`` triples.

    Each block's ``grid`` maps dotted keys (``optimizer.lr``, ``model.widths``, ``batch_size``;
    ``model``/``optimizer``/``schedule`` take whole mappings) to lists of values; their cartesian
    product, in the grid's order with the last key varying fastest, gives one configuration per
    combination. ``name`` and ``label`` are ``str.format`` templates over the merged configuration
    (defaults plus the combination); names are made path-safe (``0.01`` -> ``0p01``). Without a
    ``name`` template the name is ``<key><value>`` joined by ``-`` (``widths32-lr0p01``).

    Raises:
        ConfigError: a malformed block, an unknown grid key (named), an empty value list, a name
            template that refers to an unset key or gives one name twice.
    """
    blocks = sweep if isinstance(sweep, list) else [sweep]
    if not blocks:
        raise ConfigError(f"{where}sweep must be a mapping {{grid: ..., name: ...}} or a non-empty list of them")
    allowed = _grid_keys()
    out: list[tuple[str, dict, dict]] = []
    for b, block in enumerate(blocks):
        at = f"{where}sweep" + (f"[{b}]" if isinstance(sweep, list) else "")
        if not isinstance(block, dict):
            raise ConfigError(f"{at} = {block!r} must be a mapping with a 'grid' "
                              f"(allowed keys: {', '.join(SWEEP_KEYS)})")
        for key in block:
            if key not in SWEEP_KEYS:
                raise ConfigError(f"{at}.{key} is not a known key (allowed: {', '.join(SWEEP_KEYS)})")
        grid = block.get("grid")
        if not isinstance(grid, dict) or not grid:
            raise ConfigError(f"{at}.grid = {grid!r} must be a non-empty mapping of dotted keys "
                              "to lists of values (e.g. optimizer.lr: [0.01, 0.1])")
        for key, values in grid.items():
            if key not in allowed:
                raise ConfigError(f"{at}.grid.{key} is not a known key (allowed: {', '.join(allowed)})")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{at}.grid.{key} = {values!r} must be a non-empty list of values")
        keys = list(grid)
        seen: dict[str, dict] = {}
        for combo in itertools.product(*(grid[k] for k in keys)):
            overrides: dict = {}
            for key, value in zip(keys, combo):
                _set_dotted(overrides, key, value)
            merged = _with_defaults(defaults, overrides)
            picked = dict(zip(keys, combo))
            if "name" in block:
                text = _fill(block["name"], merged, at, "name")
            else:
                text = "-".join(f"{k.split('.')[-1]}{_text(v)}" for k, v in picked.items())
            cname = _safe_name(text)
            if not NAME_RE.match(cname):
                raise ConfigError(f"{at}.name gives {cname!r} for {picked}, which is not a valid name "
                                  "(1-64 of a-z, 0-9, '-', '_'); use a shorter template")
            if cname in seen:
                raise ConfigError(f"{at}.name gives {cname!r} for both {seen[cname]} and {picked}; "
                                  "put every grid key in the name template")
            seen[cname] = picked
            label = (_fill(block["label"], merged, at, "label") if "label" in block
                     else ", ".join(f"{k.split('.')[-1]}={_text(v)}" for k, v in picked.items()))
            meta = {"label": label, "description": str(block.get("description", "")),
                    "values": _flatten(overrides)}
            out.append((cname, overrides, meta))
    return out


STUDY_KEYS = ("name", "title", "source", "description", "defaults", "configs", "sweep", "seeds",
              "probes", "published", "budgets", "notes", "profiles")


def load_study(name: str, profile: str = "quick", root: Path | None = None) -> Study:
    """Read, validate and resolve study ``name`` under ``profile``.

    Raises:
        ConfigError: unknown study or profile, malformed YAML, unknown keys, bad values.
    """
    root = Path(root or configs_root())
    check_name(name, "study")
    path = root / "studies" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"study = {name!r} is not one of: {', '.join(list_studies(root))}")
    raw = _read_yaml(path)
    where = f"{path.name}: "
    for key in raw:
        if key not in STUDY_KEYS:
            raise ConfigError(f"{where}{key} is not a known key (allowed: {', '.join(STUDY_KEYS)})")
    if raw.get("name", name) != name:
        raise ConfigError(f"{where}name = {raw.get('name')!r} must equal the file name {name!r}")
    only = raw.get("profiles")
    if only is not None:
        known = list_profiles(root)
        if not isinstance(only, list) or not only or any(p not in known for p in only):
            raise ConfigError(f"{where}profiles = {only!r} must be a non-empty list of profiles "
                              f"(allowed: {', '.join(known)})")
        if profile not in only:
            raise ConfigError(f"{where}this study runs only under the profile(s) {', '.join(only)}, "
                              f"not {profile!r}")

    for key in ("defaults", "budgets", "probes", "published"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise ConfigError(f"{where}{key} = {raw[key]!r} must be a mapping")
    own_budget = (raw.get("budgets") or {}).get(profile) or {}
    if not isinstance(own_budget, dict):
        raise ConfigError(f"{where}budgets.{profile} = {own_budget!r} must be a mapping")
    budget_raw = _deep_merge(load_profile(profile, root), own_budget)
    budget_where = f"{where}budgets.{profile} (with profiles/{profile}.yaml): "
    train_over = budget_raw.pop("train", None) or {}  # data-only overrides, e.g. dataset substitution
    if not isinstance(train_over, dict):
        raise ConfigError(f"{budget_where}train = {train_over!r} must be a mapping")
    budget = _build(Budget, budget_raw, budget_where, "budget")
    budget.validate(budget_where)
    probes_raw = dict(raw.get("probes") or {})
    for key in ("measures", "sharpness_kinds", "subset_sizes"):
        if key in probes_raw:
            if not isinstance(probes_raw[key], list):
                raise ConfigError(f"{where}probes.{key} = {probes_raw[key]!r} must be a list")
            probes_raw[key] = tuple(probes_raw[key])
    probes = _build(ProbeSpec, probes_raw, where, "probes")
    probes.validate(where)

    configs, sweep = raw.get("configs"), raw.get("sweep")
    if sweep is None and (not isinstance(configs, list) or not configs):
        raise ConfigError(f"{where}configs must be a non-empty list of {{name: ..., ...}} mappings "
                          "(or give a sweep: block)")
    if configs is not None and not isinstance(configs, list):
        raise ConfigError(f"{where}configs must be a list of {{name: ..., ...}} mappings")
    seeds = raw.get("seeds", 0)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 0:
        raise ConfigError(f"{where}seeds = {seeds!r} must be the first seed (an integer >= 0)")
    defaults = dict(raw.get("defaults") or {})

    entries: list[tuple[str, dict, dict, str, str]] = []  # name, overrides, meta, origin, kind
    for i, entry in enumerate(configs or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where}configs[{i}] must be a mapping with a 'name'")
        entry = dict(entry)
        cname = check_name(entry.pop("name"), f"configs[{i}].name", where)
        meta = {"label": entry.pop("label", cname), "description": entry.pop("description", "")}
        entries.append((cname, entry, {**meta, "values": _flatten(entry)}, f"configs[{i}]", "configs"))
    if sweep is not None:
        for cname, overrides, meta in expand_sweep(sweep, defaults, where):
            entries.append((cname, overrides, meta, "sweep", "sweep"))

    runs: list[RunSpec] = []
    meta_of: dict[str, dict] = {}
    for cname, entry, meta, origin, kind in entries:
        if cname in meta_of:
            raise ConfigError(f"{where}{origin}.name = {cname!r} is used twice")
        meta_of[cname] = meta
        merged = _with_defaults(defaults, entry)
        at = f"{where}{kind}[{cname}]: "
        _train_spec({**merged, "seed": seeds}, at)  # as written, before budgets
        merged = _deep_merge(merged, train_over)
        for key, value in (("epochs", budget.epochs), ("stop_loss", budget.stop_loss),
                           ("train_subset", budget.train_subset),
                           ("test_subset", budget.test_subset)):
            if value is not None:
                merged[key] = value
        for s in range(seeds, seeds + budget.seeds):
            spec = _train_spec({**merged, "seed": s}, at)
            runs.append(RunSpec(study=name, config=cname, seed=s, train=spec))

    return Study(
        name=name,
        title=str(raw.get("title", name)),
        profile=profile,
        source=str(raw.get("source", "")),
        dataset=runs[0].train.dataset,
        configs=meta_of,
        runs=tuple(runs),
        budget=budget,
        probes=probes,
        published=raw.get("published") or {},
        notes=str(raw.get("notes", "")),
    )
