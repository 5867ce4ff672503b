"""A study plan: which runs make up a comparison, read strictly from YAML.

```yaml
base: ../cifar10_cnn.yaml          # the config every run starts from (relative to the plan file, as are settings)
out: runs/study-figure1            # study folder, relative to the working directory (default runs/study-<plan
                                   # name>; `--out` overrides)
precision: fp32                    # perf.precision of every run (default fp32: the paper's comparison is fp32)
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
naming the plan and key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sngan.config import Config, load_config, read_yaml
from sngan.errors import ConfigError, StudyError
from sngan.study.slurm import SlurmOptions, slurm_options
from sngan.yamlfile import shown

KEYS = ("base", "out", "precision", "overrides", "methods", "settings", "variants", "seeds", "evaluation", "slurm")
EVAL_KEYS = {"every": "train.eval_every", "protocol": "train.eval_protocol", "num_samples": "train.eval_num_samples",
             "inception_weights": "train.eval_inception_weights"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # folder-safe


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


def _overrides(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
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


def _named(value: Any, where: str, folder: Path, files: bool) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise StudyError(f"{where} must be a mapping of name -> overrides")
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise StudyError(f"{where}: name {shown(name)} must be letters, digits, '_', '.', '+' or '-' (no spaces)")
        if files and isinstance(item, str):
            out[name] = _file_overrides(folder / item, f"{where}.{name}")
        else:
            out[name] = _overrides(item, f"{where}.{name}")
    return out


def _variants(raw: dict[str, Any], where: str, folder: Path) -> list[Variant]:
    precision = raw.get("precision", "fp32")
    if not isinstance(precision, str):
        raise StudyError(f"{where}: key 'precision' must be a perf.precision name (fp32, tf32, bf16, auto), got "
                         f"{shown(precision)}")
    common = (f"perf.precision={precision}",) + _overrides(raw.get("overrides", []), f"{where}: key 'overrides'")
    methods = _named(raw.get("methods"), f"{where}: key 'methods'", folder, files=False)
    settings = _named(raw.get("settings"), f"{where}: key 'settings'", folder, files=True)
    variants = [Variant(f"{m}-{s}" if m and s else m or s, m, s, common + methods.get(m, ()) + settings.get(s, ()))
                for m in (methods or {"": ()}) for s in (settings or {"": ()}) if m or s]
    explicit = raw.get("variants", [])
    if not isinstance(explicit, list):
        raise StudyError(f"{where}: key 'variants' must be a list of {{name, overrides}}")
    for i, item in enumerate(explicit):
        if not isinstance(item, dict) or set(item) != {"name", "overrides"}:
            raise StudyError(f"{where}: variants[{i}] must have exactly the keys name and overrides")
        name = item["name"]
        if not isinstance(name, str) or not NAME.match(name):
            raise StudyError(f"{where}: variants[{i}].name {shown(name)} must be a folder-safe name")
        variants.append(Variant(name, name, "", common + _overrides(item["overrides"], f"{where}: variants[{i}]")))
    names = [v.name for v in variants]
    if not variants:
        raise StudyError(f"{where}: no runs: give methods, settings or variants")
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise StudyError(f"{where}: variant name '{duplicate}' appears twice")
    return variants


def _evaluation(value: Any, where: str) -> tuple[bool, tuple[str, ...]]:
    if value in (None, "none", False):
        return False, ("train.eval_every=0",)
    if not isinstance(value, dict) or not value or set(value) - set(EVAL_KEYS) or "every" not in value:
        raise StudyError(f"{where}: key 'evaluation' must be none or a mapping with 'every' (and optionally "
                         f"protocol, num_samples, inception_weights), got {shown(value)}")
    return True, tuple(f"{EVAL_KEYS[k]}={json.dumps(v)}" for k, v in value.items())


def load_plan(path: str | Path) -> Plan:
    """Read, check and expand a plan; every run's config is validated here."""
    path = Path(path)
    try:
        raw = read_yaml(path)
    except ConfigError as exc:
        raise StudyError(str(exc)) from None
    where = str(path)
    if not isinstance(raw, dict):
        raise StudyError(f"{where}: a plan must be a mapping with base, methods/settings/variants, seeds")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise StudyError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(KEYS)})")
    if not isinstance(raw.get("base"), str):
        raise StudyError(f"{where}: key 'base' (the config file every run starts from) is required")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise StudyError(f"{where}: key 'seeds' must be a list of distinct integers >= 0, got {shown(seeds)}")
    evaluation, eval_overrides = _evaluation(raw.get("evaluation", "none"), where)
    out = raw.get("out", f"runs/study-{path.stem}")
    if not isinstance(out, str) or not out or "\x00" in out:
        raise StudyError(f"{where}: key 'out' must be a folder path (no NUL byte)")
    if not isinstance(raw["base"], str) or "\x00" in raw["base"]:
        raise StudyError(f"{where}: key 'base' must be a file path (no NUL byte)")
    plan = Plan(path=path, base=path.parent / raw["base"], out=Path(out),
                variants=tuple(_variants(raw, where, path.parent)), seeds=tuple(seeds), evaluation=evaluation,
                eval_overrides=eval_overrides, slurm=slurm_options(raw.get("slurm"), where))
    for variant in plan.variants:
        plan.config(variant, plan.seeds[0])
    return plan
