"""A study plan: which runs make up a comparison, read strictly from YAML.

```yaml
base: ../cifar10_cnn.yaml          # the config every run starts from (relative to the plan file, as are settings)
out: runs/study-figure1            # study folder, relative to the working directory (default runs/study-<plan
                                   # name>; `--out` overrides)
precision: fp32                    # perf.precision of every run (default fp32, as the authors' code trains)
overrides: [data.root=data/cifar10]  # applied to every run first
methods:                           # name -> overrides
  SN: [model.d_norm=spectral]
  WGAN-GP: [model.d_norm=none, loss.type=wasserstein, loss.gp_weight=10]
settings:                          # name -> a partial config file, or overrides
  A: ../paper/settings/A.yaml
  fast: [optim.lr=1e-3]
variants:                          # explicit runs besides the cross product (name + overrides)
  - {name: SN-long, overrides: [train.iterations=200000]}
seeds: [0, 1]
evaluation: none                   # or {every: 10000, protocol: paper, num_samples: 0, inception_weights: ""}
slurm: {partition: gpu, time_min: 1440, gpus_per_run: 1}  # --executor slurm's defaults (sngan.study.slurm)
```
The cross product methods x settings gives variants `<method>-<setting>` (methods alone, or settings alone, give one
variant each). `evaluation.protocol` names an IS/FID protocol of `sngan eval --protocol` (paper, standard, quick),
and the metric names record it. Later overrides win: precision, plan overrides, then method, then setting (a
setting's optimiser values beat a method's), then the variant's seed and evaluation. Every run's config is built and
validated when the plan is loaded, so a typo fails before any training; every problem is one `StudyError` line
naming the plan and key. The keys are a schema (`PlanFile`) read by the same machinery as configs
(`sngan.config.build_section`: unknown keys with a suggestion, types, bounds and choices, one line each); what a
schema cannot say (distinct seeds, folder-safe and unique names, 'section.key=value' strings) is checked after it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sngan.config import (
    Config,
    PerfConfig,
    TrainConfig,
    build_section,
    check_value,
    load_config,
    option,
    read_yaml,
    shown,
)
from sngan.errors import ConfigError, StudyError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # folder-safe
EVAL_KEYS = {"every": "eval_every", "protocol": "eval_protocol", "num_samples": "eval_num_samples",
             "inception_weights": "eval_inception_weights"}  # the plan's evaluation keys -> their train.* fields


def _train_option(name: str, default: Any) -> Any:
    """A plan field with the bounds and choices of the train.* field it sets (one definition of each)."""
    meta = TrainConfig.__dataclass_fields__[name].metadata
    return option(default, meta["help"], **{k: meta[k] for k in ("choices", "ge", "gt", "le", "lt")})


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks the scheduler for (the plan's `slurm:` section, read with the config's schema
    machinery, `sngan.config.build_section`)."""

    partition: str | None = option(None, "Slurm partition (none: the cluster's default)")
    time_min: int = option(24 * 60, "minutes per task; a run longer than this continues in its requeued task", ge=1,
                           le=60 * 24 * 365)
    gpus_per_run: int = option(1, "GPUs per task", ge=0, le=64)
    cpus_per_run: int = option(8, "CPUs per task", ge=1, le=1024)
    mem_gb: float | None = option(None, "memory per task in GB (none: the cluster's default)", gt=0, le=1e5)
    array_parallelism: int = option(64, "tasks running at once", ge=1, le=100_000)
    sbatch: tuple[str, ...] = option((), "extra sbatch options, '--key=value' or '--flag'")
    setup: tuple[str, ...] = option((), "shell lines before the task starts")


def checked_slurm_options(options: SlurmOptions, where: str) -> SlurmOptions:
    """Every option's bounds (its field's, as the plan's section is checked) and what a bound cannot say, before
    anything is submitted; the command line's values come through here too."""
    for f in fields(SlurmOptions):
        try:
            check_value(getattr(options, f.name), dict(f.metadata), f"slurm.{f.name}")
        except ConfigError as exc:
            raise StudyError(f"{where}: {exc}") from None
    if options.partition is not None and not options.partition:
        raise StudyError(f"{where}: slurm.partition must be a partition name")
    for name in ("sbatch", "setup"):
        if not all(isinstance(line, str) and "\n" not in line for line in getattr(options, name)):
            raise StudyError(f"{where}: slurm.{name} must be a list of one-line strings")
    for line in options.sbatch:
        if not line.startswith("--") or len(line) < 3:
            raise StudyError(f"{where}: slurm.sbatch lines are sbatch options like '--account=abc', got {line[:60]!r}")
    return options


@dataclass
class EvaluationPlan:
    """`evaluation:` as a mapping: IS/FID during every run."""

    every: int = _train_option("eval_every", 0)
    protocol: str = _train_option("eval_protocol", "paper")
    num_samples: int = _train_option("eval_num_samples", 0)
    inception_weights: str = _train_option("eval_inception_weights", "")


@dataclass
class VariantPlan:
    """One explicit run besides the cross product."""

    name: str = option("", "the run's name (folder-safe)")
    overrides: list[str] = option([], "'section.key=value' overrides")


@dataclass
class PlanFile:
    """A plan file's keys, read with the config's schema machinery (`sngan.config.build_section`)."""

    base: str = option("", "the config file every run starts from, relative to the plan (required)")
    out: str | None = option(None, "study folder, relative to the working directory (default runs/study-<plan>)")
    precision: str = option("fp32", "perf.precision of every run",
                            choices=PerfConfig.__dataclass_fields__["precision"].metadata["choices"])
    overrides: list[str] = option([], "'section.key=value' overrides applied to every run first")
    methods: dict[str, list[str]] = option({}, "method name -> overrides")
    settings: dict[str, str | list[str]] = option({}, "setting name -> a partial config file, or overrides")
    variants: list[VariantPlan] = option([], "explicit runs besides the cross product")
    seeds: list[int] = option([0], "seeds, each run once per seed", ge=0)
    evaluation: str | EvaluationPlan | None = option("none", "none, or IS/FID during training")
    slurm: SlurmOptions = option(SlurmOptions(), "--executor slurm's defaults (sngan.study.slurm)")


@dataclass(frozen=True)
class Variant:
    name: str
    method: str
    setting: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    path: Path
    base: Path
    out: Path
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    evaluation: bool
    eval_overrides: tuple[str, ...]
    slurm: SlurmOptions = SlurmOptions()

    def runs(self) -> list[tuple[Variant, int]]:
        """Every (variant, seed), variants outermost."""
        return [(v, s) for v in self.variants for s in self.seeds]

    def config(self, variant: Variant, seed: int) -> Config:
        """The validated config of one run."""
        try:
            return load_config(self.base, [*variant.overrides, *self.eval_overrides, f"train.seed={seed}"])
        except ConfigError as exc:
            raise StudyError(f"{self.path}: variant '{variant.name}': {exc}") from None


def run_name(variant: Variant, seed: int) -> str:
    return f"{variant.name}-s{seed}"


def _overrides(value: list[str], where: str) -> tuple[str, ...]:
    if not all("=" in v for v in value):
        raise StudyError(f"{where} must be a list of 'section.key=value' strings, got {shown(value)}")
    return tuple(value)


def _file_overrides(path: Path, where: str) -> tuple[str, ...]:
    """A partial config file as overrides (values written as JSON, which YAML reads back unchanged)."""
    try:
        raw = read_yaml(path)
    except ConfigError as exc:
        raise StudyError(f"{where}: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise StudyError(f"{where}: {path} must map sections to keys, like a config file")
    return tuple(f"{section}.{key}={json.dumps(value)}" for section, values in raw.items()
                 for key, value in values.items())


def _named(value: dict[str, Any], where: str, key: str, folder: Path) -> dict[str, tuple[str, ...]]:
    out = {}
    for name, item in value.items():
        if not NAME.match(name):
            raise StudyError(f"{where}: key '{key}': name {shown(name)} must be letters, digits, '_', '.', '+' or '-' "
                             f"(no spaces)")
        if isinstance(item, str):
            out[name] = _file_overrides(folder / item, f"{where}: key '{key}.{name}'")
        else:
            out[name] = _overrides(item, f"{where}: key '{key}.{name}'")
    return out


def _variants(raw: PlanFile, where: str, folder: Path) -> list[Variant]:
    common = (f"perf.precision={raw.precision}",) + _overrides(raw.overrides, f"{where}: key 'overrides'")
    methods = _named(raw.methods, where, "methods", folder)
    settings = _named(raw.settings, where, "settings", folder)
    variants = [Variant(f"{m}-{s}" if m and s else m or s, m, s, common + methods.get(m, ()) + settings.get(s, ()))
                for m in (methods or {"": ()}) for s in (settings or {"": ()}) if m or s]
    for i, item in enumerate(raw.variants):
        if not NAME.match(item.name):
            raise StudyError(f"{where}: variants[{i}].name {shown(item.name)} must be a folder-safe name")
        variants.append(Variant(item.name, item.name, "", common + _overrides(item.overrides,
                                                                               f"{where}: variants[{i}]")))
    names = [v.name for v in variants]
    if not variants:
        raise StudyError(f"{where}: no runs: give methods, settings or variants")
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise StudyError(f"{where}: variant name '{duplicate}' appears twice")
    return variants


def _evaluation_overrides(value: str | EvaluationPlan | None, raw: Any, where: str) -> tuple[bool, tuple[str, ...]]:
    if value in (None, "none", "off"):  # YAML 1.1 reads off as false, which the schema reads as "off"
        return False, ("train.eval_every=0",)
    if not isinstance(value, EvaluationPlan) or "every" not in raw or not value.every:
        raise StudyError(f"{where}: key 'evaluation' must be none or a mapping with 'every' > 0 (and optionally "
                         f"protocol, num_samples, inception_weights), got {shown(raw)}")
    return True, tuple(f"train.{EVAL_KEYS[k]}={json.dumps(v)}" for k, v in raw.items())


def load_plan(path: str | Path) -> Plan:
    """Read, check and expand a plan; every run's config is validated here."""
    path = Path(path)
    try:
        raw = read_yaml(path, "study plan", "start from a plan in configs/study/")
    except ConfigError as exc:
        raise StudyError(str(exc)) from None
    where = str(path)
    try:
        plan_file = build_section(PlanFile, raw)
    except ConfigError as exc:
        raise StudyError(f"{where}: {exc}") from None
    checked_slurm_options(plan_file.slurm, where)  # what the slurm section's bounds cannot say
    if not plan_file.base:
        raise StudyError(f"{where}: key 'base' (the config file every run starts from) is required")
    seeds = plan_file.seeds
    if not seeds or len(set(seeds)) != len(seeds):
        raise StudyError(f"{where}: key 'seeds' must be a list of distinct integers >= 0, got {shown(seeds)}")
    if plan_file.out == "":
        raise StudyError(f"{where}: key 'out' must be a folder path")
    evaluation, eval_overrides = _evaluation_overrides(plan_file.evaluation, raw.get("evaluation"), where)
    plan = Plan(path=path, base=path.parent / plan_file.base, out=Path(plan_file.out or f"runs/study-{path.stem}"),
                variants=tuple(_variants(plan_file, where, path.parent)), seeds=tuple(seeds), evaluation=evaluation,
                eval_overrides=eval_overrides, slurm=plan_file.slurm)
    for variant in plan.variants:
        plan.config(variant, plan.seeds[0])
    return plan
