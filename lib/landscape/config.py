"""Configuration as data: study YAML files and profiles, validated into dataclasses.

A *study* (``configs/studies/<name>.yaml``) names a dataset, default training settings, a list of
configurations that override them, the seeds, the probe settings and the write-up's published
numbers. A *profile* (``configs/profiles/<name>.yaml``: ``smoke``, ``quick``, ``paper``) only sets
budgets — epochs, subset sizes, grid sizes, iteration counts — never code paths; a study may refine
a profile's budgets under ``budgets: {<profile>: {...}}``.

Every validation failure raises :class:`ConfigError` with one line naming the file, the offending
key, the bad value and what is allowed.
"""
from __future__ import annotations

import copy
import dataclasses
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
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        what = "a positive integer" if kind is int else "a positive number"
        raise ConfigError(f"{where}{key} = {value!r} must be {what}")


def _check_nonneg(where: str, key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}{key} = {value!r} must be a number >= 0")


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
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = 2000
    augment: bool = False
    trajectory_every: int = 0  # steps between saved weight snapshots (0: once per epoch)

    def validate(self, where: str) -> None:
        _check_choice(where, "dataset", self.dataset, DATASETS)
        self.model.validate(where)
        self.optimizer.validate(where)
        self.schedule.validate(where)
        _check_positive(where, "batch_size", self.batch_size, int)
        _check_positive(where, "epochs", self.epochs, int)
        _check_positive(where, "train_subset", self.train_subset, int, allow_none=True)
        _check_positive(where, "test_subset", self.test_subset, int, allow_none=True)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"{where}seed = {self.seed!r} must be an integer")
        if not isinstance(self.augment, bool):
            raise ConfigError(f"{where}augment = {self.augment!r} must be true or false")

    def key(self) -> str:
        """Cache key: hash of this spec and the library version."""
        return config_hash({"spec": dataclasses.asdict(self), "version": __version__})


@dataclass(frozen=True)
class Budget:
    """Compute budgets set by a profile; they never change which code runs."""

    epochs: int | None = None          # None: the study's own number of epochs
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

    def validate(self, where: str) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            allow_none = f.name in ("epochs", "train_subset", "test_subset", "hessian_subset")
            _check_positive(where, f"budget.{f.name}", value, int, allow_none=allow_none)


MEASURES = ("curves", "slice", "surface", "hessian", "hessian_bottom", "trace", "density",
            "sharpness", "interpolation", "gradients", "pca")
SHARPNESS_KINDS = ("sam", "adaptive", "random", "keskar")


@dataclass(frozen=True)
class ProbeSpec:
    """Probe settings that belong to the study (not to the budget)."""

    measures: tuple = ("curves", "slice", "hessian", "sharpness", "interpolation")
    slice_range: float = 1.0     # 1D slice over alpha in [-r, r] (filter-normalised units)
    surface_range: float = 1.0
    sharpness_rho: float = 0.05
    sharpness_kinds: tuple = ("sam",)
    bn_mode: str = "eval"        # BN mode for surfaces and Hessians

    def validate(self, where: str) -> None:
        for m in self.measures:
            _check_choice(where, "probes.measures[]", m, MEASURES)
        for k in self.sharpness_kinds:
            _check_choice(where, "probes.sharpness_kinds[]", k, SHARPNESS_KINDS)
        _check_positive(where, "probes.slice_range", self.slice_range)
        _check_positive(where, "probes.surface_range", self.surface_range)
        _check_positive(where, "probes.sharpness_rho", self.sharpness_rho)
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
    configs: dict[str, dict]      # config name -> {"label": ..., "description": ...}
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


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} is not valid YAML ({getattr(err, 'problem', err)})")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def list_studies(root: Path | None = None) -> list[str]:
    """Names of the studies under ``configs/studies``."""
    root = Path(root or configs_root())
    return sorted(p.stem for p in (root / "studies").glob("*.yaml"))


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


STUDY_KEYS = ("name", "title", "source", "description", "defaults", "configs", "seeds", "probes",
              "published", "budgets", "notes")


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

    budget_raw = _deep_merge(load_profile(profile, root), (raw.get("budgets") or {}).get(profile, {}))
    budget_where = f"{where}budgets.{profile} (with profiles/{profile}.yaml): "
    train_over = budget_raw.pop("train", {})  # data-only overrides, e.g. dataset substitution
    budget = _build(Budget, budget_raw, budget_where, "budget")
    budget.validate(budget_where)
    probes_raw = dict(raw.get("probes") or {})
    for key in ("measures", "sharpness_kinds"):
        if key in probes_raw:
            if not isinstance(probes_raw[key], list):
                raise ConfigError(f"{where}probes.{key} = {probes_raw[key]!r} must be a list")
            probes_raw[key] = tuple(probes_raw[key])
    probes = _build(ProbeSpec, probes_raw, where, "probes")
    probes.validate(where)

    configs = raw.get("configs")
    if not isinstance(configs, list) or not configs:
        raise ConfigError(f"{where}configs must be a non-empty list of {{name: ..., ...}} mappings")
    seeds = raw.get("seeds", 0)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 0:
        raise ConfigError(f"{where}seeds = {seeds!r} must be the first seed (an integer >= 0)")

    runs: list[RunSpec] = []
    meta: dict[str, dict] = {}
    for i, entry in enumerate(configs):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where}configs[{i}] must be a mapping with a 'name'")
        entry = dict(entry)
        cname = check_name(entry.pop("name"), f"configs[{i}].name", where)
        if cname in meta:
            raise ConfigError(f"{where}configs[{i}].name = {cname!r} is used twice")
        meta[cname] = {"label": entry.pop("label", cname), "description": entry.pop("description", "")}
        defaults = dict(raw.get("defaults") or {})
        if (isinstance(entry.get("model"), dict) and isinstance(defaults.get("model"), dict)
                and entry["model"].get("name", defaults["model"].get("name")) != defaults["model"].get("name")):
            defaults.pop("model")  # another family: its options do not carry over
        merged = _deep_merge(defaults, entry)
        _train_spec({**merged, "seed": seeds}, f"{where}configs[{cname}]: ")  # as written, before budgets
        merged = _deep_merge(merged, train_over)
        for key, value in (("epochs", budget.epochs), ("train_subset", budget.train_subset),
                           ("test_subset", budget.test_subset)):
            if value is not None:
                merged[key] = value
        for s in range(seeds, seeds + budget.seeds):
            spec = _train_spec({**merged, "seed": s}, f"{where}configs[{cname}]: ")
            runs.append(RunSpec(study=name, config=cname, seed=s, train=spec))

    return Study(
        name=name,
        title=str(raw.get("title", name)),
        profile=profile,
        source=str(raw.get("source", "")),
        dataset=runs[0].train.dataset,
        configs=meta,
        runs=tuple(runs),
        budget=budget,
        probes=probes,
        published=raw.get("published") or {},
        notes=str(raw.get("notes", "")),
    )
