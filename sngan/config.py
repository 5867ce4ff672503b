"""The configuration schema: one dataclass per section, loaded strictly from YAML.

`load_config(path, overrides)` reads a YAML file, applies `KEY=VALUE` overrides and returns a `Config`.
Every problem (unknown key, wrong type, value out of range, malformed YAML, missing file) raises `ConfigError`
with one line that names the file and the key; nothing is written anywhere while loading.

The schema machinery is the same for configs and study plans (`sngan.study.plan`): a section is a dataclass whose
fields are declared with `option` (help text, choices and bounds in the field's metadata), and `build_section` turns
a YAML mapping into one, refusing unknown keys (with a suggestion), wrong types and values out of bounds in one line
each. Fields may be lists, mappings, unions and nested sections. The file itself is read by `read_yaml`: YAML's safe
loader made strict (no duplicate keys, no aliases), size-bounded, one line per problem.

This module imports nothing from the package but `sngan.errors` and `sngan.datasets` (the sources `data.name` can
name), and not torch: `sngan train` reads a config and checks its keys and types before torch loads. The names a
torch-side registry holds (architectures, losses, spectral-norm starts, evaluation protocols) are read from that
registry when a value is checked against them (`Registered`), never typed here a second time.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sngan.datasets import DATASETS
from sngan.errors import ConfigError

# Upper bounds on every size a user can type, so an impossible value is refused before anything is allocated. Each is
# far above the paper's settings (widths <= 1024, z 128, 1000 classes, batch 64-128, 450K iterations) yet small
# enough that a mistyped extra digit or two is caught; the parameter count itself is bounded in sngan.models.
MAX_WIDTH = 4096  # z_dim, g_ch, d_ch
MAX_CLASSES = 100_000  # model.num_classes
MAX_BATCH = 65_536  # images per D or G step
MAX_ITERATIONS = 100_000_000  # G iterations and every schedule counted in them
MAX_GRID = 4096  # images in one sample grid
MAX_IMAGES = 1_000_000  # generated images for an evaluation or the EMA BatchNorm refresh
D_NORMS = ("spectral", "weight", "batch", "layer", "none")  # model.d_norm: sngan.models.layers builds each


@dataclass(frozen=True, repr=False)
class Registered:
    """The names a registry on the torch side holds (a dict in a module that imports torch), read from it when first
    needed: the schema offers and checks exactly what is implemented, with no second list typed here. Loading a
    config imports that module only when it checks such a value, after every key of every section was checked
    (`from_dict`), so a mistyped key or path still fails before torch loads."""

    module: str  # the module that holds the registry, imported when the names are first needed
    registry: str  # the dict's name in it

    def __iter__(self) -> typing.Iterator:  # `in` iterates too (Python's rule for a class without __contains__)
        return iter(getattr(importlib.import_module(self.module), self.registry))

    def __repr__(self) -> str:
        return f"the names of {self.module}.{self.registry}"


ARCHITECTURES = Registered("sngan.models", "GENERATORS")  # model.arch
SN_ALGORITHMS = Registered("sngan.models.spectral", "STEP_OF_ALGORITHM")  # model.sn_algorithm
LOSS_TYPES = Registered("sngan.train.losses", "LOSSES")  # loss.type
EVAL_PROTOCOLS = Registered("sngan.evaluation.protocols", "PROTOCOLS")  # train.eval_protocol


# The schema machinery: strict YAML, `option` fields, sections built and checked one line per problem

MAX_CONFIG_BYTES = 1_048_576  # a config file is a page of YAML, not a data set
MAX_DEPTH = 32  # nesting levels (a config needs 3); deeper documents would exhaust Python's recursion limit


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what a config never needs and a typo can cause: a key given twice in one mapping
    (PyYAML keeps the last silently) and aliases (`*name`, which also make 'billion laughs' documents possible)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in a config; write the "
                              f"value out")
        self.depth = getattr(self, "depth", 0) + 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep; a config is "
                                  f"sections of keys")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(f"key '{key}' is given twice (lines {seen[key]} and {line}); keep one")
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "config file",
              empty_hint: str = "start from a file in configs/ (an empty file would silently train the paper-size "
                                "defaults)") -> dict[str, Any]:
    """Read a non-empty YAML mapping from `path` (`StrictLoader`), turning every failure into a one-line ConfigError;
    `what` names the file in the 'not found' and 'empty' lines (a study plan is not a config file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path.stat().st_size} bytes is too large for a config file (at most "
                              f"{MAX_CONFIG_BYTES})")  # the file is named once, by the handler below
        raw = yaml.load(path.read_text(), Loader=StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if raw is None or raw == {}:
        raise ConfigError(f"{path}: the {what} is empty; {empty_hint}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def option(default: Any, help: str, *, choices: typing.Iterable | None = None, ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A schema field with its help text and validation bounds kept in the dataclass metadata (bounds and choices
    apply to each element of a list or each value of a mapping)."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def build_section(cls: type, raw: Any, prefix: str = "", check: bool = True) -> Any:
    """An instance of the dataclass `cls` from the mapping `raw`: unknown keys refused, each value coerced to its
    field's type and (unless `check` is False: `check_value` later) every value, nested sections' included, checked
    against its bounds; `prefix` names the section in messages ('train' -> 'train.lr')."""
    where = prefix or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{'key ' + repr(prefix) if prefix else where} must be a mapping of keys, got "
                          f"{type(raw).__name__} {shown(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown key '{dotted}'{suggest(str(key), fields)}")
        values[key] = coerce(value, hints[key], dotted)
    instance = cls(**values)
    if check:
        check_value(instance, {}, prefix)
    return instance


YAML_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
              tuple: "a list", dict: "a mapping", type(None): "null"}  # types as a YAML file spells them


def _type_name(typ: Any) -> str:
    """What a field takes, in YAML's words ('a list', not 'tuple')."""
    if dataclasses.is_dataclass(typ):
        return "a mapping"
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(typ) if a is not type(None))
    return YAML_NAMES.get(origin or typ, getattr(origin or typ, "__name__", str(typ)))


def _value_name(value: Any) -> str:
    """What a YAML value is, in YAML's words."""
    return YAML_NAMES.get(type(value), type(value).__name__)


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML value to a field's type (`typ`: a scalar, list, tuple, dict, union or nested section), or
    raise ConfigError naming the key."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(typ)):
            return None
        shaped = [a for a in args if isinstance(value, dict) and (dataclasses.is_dataclass(a) or typing.get_origin(a)
                                                                  is dict)
                  or isinstance(value, list) and typing.get_origin(a) in (list, tuple)]
        if shaped:  # a mapping or list meant for the member of that shape: its own message says what is wrong
            return coerce(value, shaped[0], key)
        for arg in args:
            try:
                return coerce(value, arg, key)
            except ConfigError:
                if len(args) == 1:
                    raise
        raise ConfigError(f"key '{key}' must be {_type_name(typ)}, got {_value_name(value)} {shown(value)}")
    if isinstance(typ, type) and dataclasses.is_dataclass(typ):
        return build_section(typ, value, key, check=False)  # checked with the section that holds it
    if origin in (list, tuple) and isinstance(value, list):
        item = typing.get_args(typ)[0]
        items = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict and isinstance(value, dict):
        item = typing.get_args(typ)[1]
        for name in value:
            if not isinstance(name, str):
                raise ConfigError(f"key '{key}': names must be strings, got {shown(name)}")
        return {name: coerce(v, item, f"{key}.{name}") for name, v in value.items()}
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "2e-4" as a string
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            if "\x00" in value:  # no path or name can hold one: the OS would refuse it later, mid-work
                raise ConfigError(f"key '{key}' must not contain a NUL byte, got {shown(value)}")
            return value
        if isinstance(value, bool):  # YAML 1.1 reads on/off as booleans
            return "on" if value else "off"
    raise ConfigError(f"key '{key}' must be {_type_name(typ)}, got {_value_name(value)} {shown(value)}")


def shown(value: Any, limit: int = 200) -> str:
    """repr(value) for an error message, capped at `limit` characters (a hostile value may be huge or nested deeper
    than repr can go)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def check_value(value: Any, meta: dict, key: str) -> None:
    """Refuse a value outside its field's bounds (`meta`: choices, gt, ge, le) or a non-finite float; a list's
    elements and a mapping's values are checked one by one, a section's fields each against its own bounds."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            check_value(getattr(value, f.name), dict(f.metadata), f"{key}.{f.name}" if key else f.name)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_value(item, meta, f"{key}[{i}]")
        return
    if isinstance(value, dict):
        for name, item in value.items():
            check_value(item, meta, f"{key}.{name}")
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"key '{key}' must be a finite number, got {shown(value)}")
    if value is None or isinstance(value, str) and not meta.get("choices"):
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        options = "|".join(str(c) for c in meta["choices"])
        raise ConfigError(f"key '{key}' must be one of {options}, got {shown(value)}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(f"key '{key}' must be > {meta['gt']}, got {shown(value)}")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ConfigError(f"key '{key}' must be >= {meta['ge']}, got {shown(value)}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ConfigError(f"key '{key}' must be <= {meta['le']}, got {shown(value)}")
    if meta.get("lt") is not None and not value < meta["lt"]:
        raise ConfigError(f"key '{key}' must be < {meta['lt']}, got {shown(value)}")


# The schema



@dataclass
class DataConfig:
    name: str = option("synthetic", "image source (sngan/datasets.py, one class each): synthetic (built in), "
                       "cifar10 and stl10 (their official files, downloaded when absent), folder (a class-folder tree "
                       "or a flat folder), imagenet (ILSVRC2012 train tree)", choices=DATASETS.keys())
    root: str = option("data", "dataset folder (downloads land here; a class-folder tree for folder/imagenet)")
    split: str = option("train", "dataset split used for training: " + "; ".join(
        f"{d.name} {d.split_help()}" for d in DATASETS.values()))
    download: bool = option(True, "let torchvision download cifar10/stl10 when absent (needs network)")
    num_images: int = option(10000, "synthetic only: number of procedurally drawn images", ge=1, le=10_000_000)
    dequantize: bool = option(True, "x/128 - 1 + U(0, 1/128) as the authors' code; false gives x/127.5 - 1")
    cache_dir: str = option("", "where packed uint8 arrays are kept; empty = <root>/sngan-cache for cifar10/stl10, "
                            "a sngan-cache folder next to <root> for folder/imagenet")
    device_budget_mb: float = option(2048.0, "largest packed array (MiB) kept resident on the training device; a "
                                     "larger one is memory-mapped and prefetched by a thread", ge=0, le=1_048_576)


@dataclass
class ModelConfig:
    arch: str = option("resnet", "network family: resnet (paper Tables 4-6) or cnn (standard CNN, Table 3)",
                       choices=ARCHITECTURES)
    resolution: int = option(32, "image side in pixels, one of those its arch builds (sngan.models.RESOLUTIONS; "
                             "another is refused with that list)")
    z_dim: int = option(128, "latent size; z ~ N(0, I)", ge=1, le=MAX_WIDTH)
    g_ch: int = option(256, "generator base width (per-resolution multipliers in sngan/models)", ge=1,
                       le=MAX_WIDTH)
    d_ch: int = option(128, "discriminator base width (per-resolution multipliers in sngan/models)", ge=1,
                       le=MAX_WIDTH)
    num_classes: int = option(0, "0 = unconditional; >0 = conditional BN in G and a class-conditional D", ge=0,
                              le=MAX_CLASSES)
    d_conditioning: str = option("projection", "how a conditional D uses the label: projection (<embed(y), h>, "
                                 "Miyato & Koyama 2018) or concat (a 128-d embedding concatenated after block 3, "
                                 "SN-GAN Table 6)", choices=("projection", "concat"))
    d_linear_bias: bool = option(False, "bias on the discriminator's final linear layer")
    sn_power_iterations: int = option(1, "power iterations per D forward for spectral norm (paper: 1)", ge=1,
                                     le=100)
    sn_algorithm: str = option("random", "spectral norm's power iteration, its start and its step: random (the "
                               "authors', Algorithm 1: u ~ N(0, I), no iteration; each forward v = W^T u, u = W v "
                               "normalised, sigma = u^T W v, u kept), svd (ours: u at the exact top singular vector, "
                               "sigma exact from step 1; then the authors' step) or torch (torch's spectral_norm: 15 "
                               "power iterations from random u, v; its step keeps v)", choices=SN_ALGORITHMS)
    d_norm: str = option("spectral", "discriminator normalisation (paper section 4.1 comparison): spectral (SN), "
                         "weight (WN, w/||w|| per output unit), batch (BN), layer (LN), none; WN/BN/LN without the "
                         "multiplier gamma, as the paper", choices=D_NORMS)
    d_norm_gamma: bool = option(False, "a learnt scalar gamma on every normalised D weight, W~ = gamma * W-bar (paper "
                                "App. E eq. 32, Tables 7-8: WGAN-GP with SN or WN; gamma starts at sigma(W)); needs "
                                "d_norm spectral or weight and loss.gp_weight > 0")


@dataclass
class LossConfig:
    type: str = option("hinge", "adversarial loss (wasserstein: D E[D(fake)] - E[D(real)], G -E[D(fake)], for WGAN)",
                       choices=LOSS_TYPES)
    gp_weight: float = option(0.0, "gradient penalty lambda on real/fake interpolates, (||grad D||_2 - 1)^2 "
                              "(WGAN-GP, GAN-GP; paper section 4.1: 10); 0 = off", ge=0)
    orthonormal_weight: float = option(0.0, "orthonormal regularisation gamma * sum ||W^T W - I||_F^2 over D's "
                                       "weights, D initialised orthonormal (paper eq. 14, Brock et al. 2016); 0 = off",
                                       ge=0)


@dataclass
class OptimConfig:
    lr: float = option(2e-4, "Adam learning rate alpha for G and D", gt=0)
    beta1: float = option(0.0, "Adam beta1 (torch.optim.Adam takes [0, 1))", ge=0, lt=1)
    beta2: float = option(0.9, "Adam beta2 (torch.optim.Adam takes [0, 1))", ge=0, lt=1)
    lr_decay: str = option("linear", "learning-rate schedule", choices=("none", "linear"))
    lr_decay_start: int = option(0, "G iteration where linear decay to 0 at train.iterations begins", ge=0,
                            le=MAX_ITERATIONS)
    d_weight_clip: float = option(0.0, "clip the weight of every D conv and dense layer to [-c, c] after each D "
                                  "update (weight clipping; paper section 4.1: c = 0.01); 0 = off", ge=0)


@dataclass
class TrainConfig:
    iterations: int = option(50000, "number of generator updates", ge=1, le=MAX_ITERATIONS)
    n_dis: int = option(5, "discriminator updates per generator update", ge=1, le=100)
    batch_size: int = option(64, "real (and fake) images per discriminator step", ge=1, le=MAX_BATCH)
    g_batch_size: int = option(128, "fake images per generator step", ge=1, le=MAX_BATCH)
    seed: int = option(0, "seed for weights, latents and data order", ge=0, le=2 ** 63 - 1)
    device: str = option("auto", "auto = cuda when available, else cpu", choices=("auto", "cpu", "cuda"))
    log_every: int = option(100, "G iterations between log lines", ge=1, le=MAX_ITERATIONS)
    sample_every: int = option(5000, "G iterations between sample grids (0 = only at the end)", ge=0,
                               le=MAX_ITERATIONS)
    ckpt_every: int = option(10000, "G iterations between checkpoints (0 = only at the end)", ge=0,
                             le=MAX_ITERATIONS)
    keep_checkpoints: int = option(3, "newest periodic checkpoints kept (best.pt is kept apart)", ge=1,
                                   le=10_000)
    num_samples: int = option(64, "images in each sample grid (fixed z)", ge=1, le=MAX_GRID)
    ema_decay: float = option(0.0, "generator EMA decay per G iteration (0 = no EMA generator)", ge=0, le=1)
    ema_start: int = option(0, "G iteration before which the EMA generator simply copies the generator", ge=0,
                           le=MAX_ITERATIONS)
    ema_bn_samples: int = option(2048, "latents used to recompute the EMA generator's BatchNorm statistics", ge=1,
                                le=MAX_IMAGES)
    inspect_every: int = option(1000, "G iterations between spectral-norm checks logged to metrics.jsonl: per-layer "
                                "sigma-hat / exact sigma (sn_ratio/*, min, max), the per-layer operator-norm "
                                "product operator_norm_product and the certified graph bound lipschitz_bound (0 = "
                                "never; `sngan inspect` explains them)", ge=0)
    eval_every: int = option(0, "G iterations between IS/FID evaluations logged to metrics.jsonl, keeping "
                             "checkpoints/best.pt by FID (0 = never; needs the Inception weights, docs/eval.md)",
                             ge=0, le=MAX_ITERATIONS)
    eval_protocol: str = option("paper", "IS/FID protocol during training, as `sngan eval --protocol` (docs/eval.md): "
                                "paper (App. B.1: IS 10 x 5000, FID 5000 vs 10000 real), standard (IS "
                                "50k, FID 50k vs the whole split) or quick (ours: 5000 generated, IS in 10 splits of "
                                "500, biased low)", choices=EVAL_PROTOCOLS)
    eval_num_samples: int = option(0, "generated images per evaluation during training; 0 = the protocol's count, "
                                   "else the protocol is recorded as modified", ge=0, le=MAX_IMAGES)
    eval_inception_weights: str = option("", "pt_inception-2015-12-05-6726825d.pth for evaluation during training; "
                                         "empty = torch hub cache, then download")
    wandb_project: str = option("", "Weights & Biases project to log the run's records and sample grids to as well "
                                "(pip install 'sngan[wandb]'); empty = off, TensorBoard only")
    wandb_entity: str = option("", "W&B entity (user or team); empty = your default")
    wandb_mode: str = option("online", "W&B mode: online, offline (a local run folder, `wandb sync` later) or "
                             "disabled", choices=("online", "offline", "disabled"))


@dataclass
class PerfConfig:
    precision: str = option("auto", "auto = bf16 autocast on CUDA and fp32 on CPU; SN, losses and weights stay fp32",
                            choices=("auto", "fp32", "tf32", "bf16"))
    channels_last: str = option("auto", "channels_last memory format; auto = on", choices=("auto", "on", "off"))
    compile: str = option("auto", "torch.compile mode for the generator and the discriminator; auto (ours) = CUDA "
                          "graphs (reduce-overhead) on CUDA for a run of 1,000+ iterations, eager otherwise or where "
                          "compiling fails; off = eager", choices=("auto", "off", "default", "reduce-overhead",
                                                                 "max-autotune"))
    d_single_pass: bool = option(False, "D step: one D forward on the concatenated real+fake batch instead of two; "
                                      "halves spectral norm's power iterations per D step (one instead of the "
                                      "authors' two), so off by default")
    fused_adam: str = option("auto", "fused Adam kernel; auto = on for CUDA", choices=("auto", "on", "off"))


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (YAML/JSON/checkpoint friendly)."""
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = typing.get_type_hints(Config)


def from_dict(raw: dict[str, Any]) -> Config:
    """Build a validated Config from a nested dict (missing keys take their defaults)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"top level must be a mapping of sections, got {type(raw).__name__}")
    sections = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown section '{name}'{suggest(str(name), SECTIONS)}")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"section '{name}' must be a mapping, got {type(value).__name__}")
        sections[name] = value
    cfg = Config(**{name: build_section(cls, sections.get(name, {}), name, check=False)
                    for name, cls in SECTIONS.items()})
    check_value(cfg, {}, "")  # after every key and type: a registry's choices may load torch
    if cfg.optim.lr_decay == "linear" and cfg.optim.lr_decay_start >= cfg.train.iterations:
        raise ConfigError(f"key 'optim.lr_decay_start' must be < train.iterations ({cfg.train.iterations}), "
                          f"got {cfg.optim.lr_decay_start}")
    if 0 < cfg.train.eval_num_samples < 10:
        raise ConfigError(f"key 'train.eval_num_samples' must be 0 (the protocol's count) or >= 10 (IS in 10 "
                          f"splits), got {cfg.train.eval_num_samples}")
    check_model(cfg.model)
    _check_methods(cfg)
    return cfg


def check_model(model_cfg: ModelConfig) -> None:
    """The model section's cross-key rules (the builders in `sngan.models` call it too); the sizes of the networks
    it describes: `sngan.models.check_model_size`."""
    if model_cfg.arch not in ARCHITECTURES:
        raise ConfigError(f"key 'model.arch' must be one of {'|'.join(ARCHITECTURES)}, got {model_cfg.arch!r}")
    if model_cfg.arch == "cnn" and model_cfg.num_classes:
        raise ConfigError("key 'model.num_classes' must be 0 for arch cnn (the paper's conditional models are "
                          "ResNets with a projection discriminator)")
    if model_cfg.d_conditioning == "concat" and not (model_cfg.arch == "resnet" and model_cfg.num_classes):
        raise ConfigError("key 'model.d_conditioning' concat needs arch resnet and model.num_classes > 0 (it "
                          "concatenates a class embedding)")
    sides = importlib.import_module("sngan.models").RESOLUTIONS.get(model_cfg.arch, ())  # arch -> the sides it builds
    if model_cfg.resolution not in sides:
        sizes = "|".join(map(str, sides))
        raise ConfigError(f"key 'model.resolution' must be one of {sizes} for arch {model_cfg.arch}, "
                          f"got {model_cfg.resolution}")


def _check_methods(cfg: Config) -> None:
    """Allow the discriminator methods only in the combinations the paper runs (section 4.1, Appendix E).

    Weight clipping and the orthonormal term act on a plain D (d_norm none), as in section 4.1: on a normalised
    weight they would act on a reparametrised tensor. The gradient penalty also runs with SN or WN, with or without
    the learnt gamma (App. E, Tables 7-8), but not with BN, which makes D(x) depend on the whole batch, so a
    per-sample input gradient is ill-defined. A learnt gamma undoes the normalisation's Lipschitz bound, so it
    needs the penalty ("we need to control the Lipschitz condition by other means", App. E). An unconstrained
    Wasserstein critic diverges.
    """
    norm, loss, o = cfg.model.d_norm, cfg.loss, cfg.optim
    for key, value in (("optim.d_weight_clip", o.d_weight_clip), ("loss.orthonormal_weight", loss.orthonormal_weight)):
        if value > 0 and norm != "none":
            raise ConfigError(f"key '{key}' ({value}) needs model.d_norm none (the paper applies it to a plain D), "
                              f"got d_norm {norm}")
    if loss.gp_weight > 0 and norm not in ("none", "spectral", "weight"):
        raise ConfigError(f"key 'loss.gp_weight' ({loss.gp_weight}) needs model.d_norm none, spectral or weight "
                          f"(paper section 4.1 and App. E), got d_norm {norm}")
    if cfg.model.d_norm_gamma and (norm not in ("spectral", "weight") or loss.gp_weight <= 0):
        raise ConfigError(f"key 'model.d_norm_gamma' needs model.d_norm spectral or weight and loss.gp_weight > 0 "
                          f"(paper App. E: WGAN-GP with a reparametrised SN or WN), got d_norm {norm} and "
                          f"gp_weight {loss.gp_weight}")
    if o.d_weight_clip > 0 and loss.gp_weight > 0:
        raise ConfigError("keys 'optim.d_weight_clip' and 'loss.gp_weight' are both set: choose one Lipschitz "
                          "constraint (WGAN clips, WGAN-GP penalises)")
    if loss.type == "wasserstein" and norm == "none" and not (o.d_weight_clip > 0 or loss.gp_weight > 0):
        raise ConfigError("key 'loss.type' wasserstein needs a Lipschitz constraint on D: set optim.d_weight_clip "
                          "(WGAN), loss.gp_weight (WGAN-GP) or model.d_norm spectral")


def apply_overrides(raw: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `section.key=value` applied (value parsed as YAML)."""
    out = {k: dict(v or {}) if isinstance(v, dict) or v is None else v for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:  # `--set k v` hands the value over as a separate argument: show the joined form
            raise ConfigError(f"override '{item}' must look like section.key=value (one argument, no spaces: "
                              f"--set {item.strip() if '.' in item else 'train.iterations'}=VALUE)")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"override key '{dotted}' must look like section.key (e.g. train.iterations)")
        section, key = parts
        if section not in SECTIONS:
            raise ConfigError(f"unknown section '{section}' in --set {item}{suggest(section, SECTIONS)}")
        try:
            value = yaml.load(text, Loader=StrictLoader) if text.strip() else ""
        except ConfigError as exc:
            raise ConfigError(f"override '{dotted}': {exc}") from None
        except yaml.YAMLError:
            value = text
        bucket = out.setdefault(section, {})
        if not isinstance(bucket, dict):
            raise ConfigError(f"section '{section}' must be a mapping")
        bucket[key] = value
    return out


def load_config(path: str | Path, overrides: typing.Iterable[str] = ()) -> Config:
    """Load, override and validate a YAML config.

    Args:
        path: YAML file with sections data/model/loss/optim/train/perf (each optional; missing keys take their
            defaults).
        overrides: strings like ``"train.iterations=10"``; values are parsed as YAML.

    Returns:
        The validated Config. Raises ConfigError (one line, naming the file) on any problem.
    """
    overrides = list(overrides)
    merged = apply_overrides(read_yaml(path), overrides)  # a malformed --set is named, not the file
    try:
        return from_dict(merged)
    except ConfigError as exc:  # blame the --set that set the key named in the message, else the file
        named = [o for o in overrides if f"'{o.split('=', 1)[0].strip()}'" in str(exc)]
        raise ConfigError(f"{f'--set {named[-1]}' if named else path}: {exc}") from None


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (sections in schema order)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def field_help() -> list[tuple[str, str, Any, str]]:
    """(dotted key, type name, default, help) for every field: the config reference."""
    rows = []
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            rows.append((f"{name}.{f.name}", getattr(hints[f.name], "__name__", str(hints[f.name])), default,
                         f.metadata["help"]))
    return rows
