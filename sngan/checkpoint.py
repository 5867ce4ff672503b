"""Checkpoints: plain dicts of tensors and Python scalars, saved atomically, loaded with `weights_only=True`.

`open_checkpoint` is the one opener every command uses (resume, sample, eval, inspect): layout, config, model size,
then the networks asked for, each checked key by key, shape by shape and for finite values before it is loaded.
`generator_weights` alone decides between the EMA and the raw generator; `generator_label` spells the choice.

A checkpoint never contains pickled objects, so loading one cannot run code. Layout (format_version 1):

    format_version  int
    config          the resolved config as a plain nested dict (everything needed to rebuild the models)
    step            completed generator iterations
    generator, discriminator, generator_ema (optional)   state dicts
    opt_g, opt_d    optimizer state dicts
    rng             {"python", "numpy", "torch", "cuda", "data"} generator states of rank 0
    rng_ranks       under torchrun, the list of every rank's `rng` (None for one process)
    best            {"metric", "value", "step"} or None
    run_id          the id in the run folder's marker (`sngan.train.rundir`); absent in older checkpoints
    class_names     the dataset's class names in label order (a list of str, one per model class; [] for an
                    unconditional model); absent in older checkpoints, whose classes are then named '0', '1', ...
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sngan.config import MAX_ITERATIONS
from sngan.datasets import class_name_problem
from sngan.errors import CheckpointError
from sngan.io import atomic_write, open_input

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "config", "step", "generator", "discriminator")
TRAINING_KEYS = ("opt_g", "opt_d", "rng")  # what resuming needs beyond REQUIRED_KEYS
RNG_KEYS = ("python", "numpy", "torch", "data")
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_FORBIDDEN = re.compile(r"GLOBAL|[Uu]nsupported (global|operand|class)|allowed global|blocked")  # weights_only refusals



def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` (plain dict: tensors, numbers, strings, lists, dicts) to `path` through `sngan.io.atomic_write`.

    A crash at any moment leaves either the old file or the new one, never a torn file.
    """
    def write(fh: Any) -> None:
        try:
            torch.save(state, fh)
        except RuntimeError as exc:  # torch's zip writer reports a refused write as "unexpected pos", chained
            if isinstance(exc.__context__, OSError):  # to the file system's own error: that one is the cause
                raise exc.__context__ from None
            raise

    return atomic_write(path, write)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", data: bytes | None = None
                    ) -> dict[str, Any]:
    """Load a checkpoint as data only (`torch.load(weights_only=True)`), checking its layout.

    Args:
        path: checkpoint file.
        map_location: where tensors land.
        data: the file's bytes, received from rank 0 under torchrun (`path` then only names it in messages).

    Returns:
        The checkpoint dict. Raises CheckpointError with one line for a missing, truncated, foreign or
        object-carrying file.
    """
    path = Path(path)
    if data is None and path.exists() and not path.is_file():  # /dev/zero would be read until memory runs out
        raise CheckpointError(f"{path}: not a regular file, so not a checkpoint")
    if data is None and not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch's note that it validates sparse tensors: refused below anyway
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            with open_input(path) if data is None else io.BytesIO(data) as fh:
                state = torch.load(fh, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for bad files; all mean "unusable"
        why = _why_unloadable(path, str(exc)) if data is None else " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: cannot load checkpoint: {why}") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not an sngan checkpoint (expected keys {', '.join(REQUIRED_KEYS)})")
    version, config, step = state["format_version"], state["config"], state["step"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: format_version must be an integer, got {type(version).__name__}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this sngan "
                              f"understands ({FORMAT_VERSION}); upgrade sngan")
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise CheckpointError(f"{path}: its 'config' must be a mapping of config sections, got "
                              f"{type(config).__name__}")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_ITERATIONS:
        raise CheckpointError(f"{path}: its 'step' must be an integer in [0, {MAX_ITERATIONS}], got "
                              f"{str(step)[:40]}")
    return state


def check_state_dict(module: nn.Module, weights: Any, what: str) -> None:
    """Raise CheckpointError naming the first key or shape where `weights` does not fit `module`."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"'{what}' must be a state dict, got {type(weights).__name__}")
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in weights:
            raise CheckpointError(f"'{what}' lacks '{key}' (the checkpoint does not match its model config)")
        saved = weights[key]
        if not isinstance(saved, torch.Tensor):
            raise CheckpointError(f"'{what}.{key}' must be a tensor, got {type(saved).__name__}")
        check_dense(saved, f"{what}.{key}")
        if saved.shape != tensor.shape:
            raise CheckpointError(f"'{what}.{key}' has shape {tuple(saved.shape)}, its model config needs "
                                  f"{tuple(tensor.shape)}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise CheckpointError(f"'{what}' has '{extra[0]}', which its model config does not (a foreign checkpoint)")


def check_dense(tensor: torch.Tensor, name: str) -> None:
    """Refuse a sparse or data-less (meta) tensor where weights belong: no layer computes with one."""
    if tensor.layout != torch.strided or tensor.is_meta:
        raise CheckpointError(f"'{name}' is a {'meta' if tensor.is_meta else str(tensor.layout)} tensor; a "
                              f"checkpoint holds dense weights")


def check_finite(weights: dict[str, Any], what: str) -> None:
    """Raise CheckpointError naming the first tensor of a state dict that holds NaN or inf: a generator with such
    weights draws black or garbage images, and spectra of such a discriminator mean nothing."""
    for key, tensor in weights.items():
        if isinstance(tensor, torch.Tensor):
            check_dense(tensor, f"{what}.{key}")
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"'{what}.{key}' holds NaN or infinite values: the weights are unusable (a "
                                  f"diverged run?); use an earlier checkpoint")


def check_optimizer_state(optimizer: torch.optim.Optimizer, saved: Any, what: str) -> None:
    """Raise CheckpointError naming the first group, parameter or moment where `saved` does not fit `optimizer`."""
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or \
            not isinstance(saved.get("param_groups"), list):
        raise CheckpointError(f"'{what}' must be an optimizer state dict (with 'state' and 'param_groups')")
    groups = optimizer.param_groups
    if len(saved["param_groups"]) != len(groups):
        raise CheckpointError(f"'{what}' has {len(saved['param_groups'])} parameter groups, the optimizer "
                              f"{len(groups)}")
    params = [p for group in groups for p in group["params"]]
    ids = []
    for k, group in enumerate(saved["param_groups"]):
        if not isinstance(group, dict) or len(group.get("params", ())) != len(groups[k]["params"]):
            raise CheckpointError(f"'{what}' parameter group {k} does not match the model's parameters")
        ids += list(group["params"])
    shapes = dict(zip(ids, (p.shape for p in params), strict=True))
    for index, moments in saved["state"].items():
        if index not in shapes or not isinstance(moments, dict):
            raise CheckpointError(f"'{what}' holds state for an unknown parameter {index!r}")
        for name, value in moments.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shapes[index]:
                raise CheckpointError(f"'{what}' state {index}.{name} has shape {tuple(value.shape)}, the "
                                      f"parameter {tuple(shapes[index])}")


def check_sections(state: dict[str, Any], names: tuple[str, ...]) -> None:
    """Raise CheckpointError naming the first of `names` missing from `state` (None counts as missing)."""
    for name in names:
        if state.get(name) is None:
            raise CheckpointError(f"the checkpoint has no '{name}' section (it cannot be resumed; sample from it "
                                  f"with sngan sample)")
    rng = state.get("rng")
    if "rng" in names:
        missing = [k for k in RNG_KEYS if not isinstance(rng, dict) or k not in rng]
        if missing:
            raise CheckpointError(f"the checkpoint's 'rng' section lacks '{missing[0]}'")


def _why_unloadable(path: Path, message: str) -> str:
    """Explain a torch.load failure from the file's first bytes and the error text."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head not in (b"PK", b"\x80\x02") and not head.startswith(b"\x80"):
        return "it is not a PyTorch checkpoint"
    if _FORBIDDEN.search(message):
        return "it contains pickled Python objects, which sngan never loads (a checkpoint is data, not code)"
    return "the file is truncated or corrupt"


def checkpoint_path(ckpt_dir: str | Path, step: int) -> Path:
    return Path(ckpt_dir) / f"ckpt-{step:07d}.pt"


def checkpoint_step(path: str | Path) -> int:
    """The step in a periodic checkpoint's file name (`ckpt-0001000.pt` -> 1000)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path}: not a periodic checkpoint name (ckpt-NNNNNNN.pt)")
    return int(match.group(1))


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Periodic checkpoints in `ckpt_dir`, oldest step first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def prune_checkpoints(ckpt_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` periodic checkpoints (best.pt is never touched)."""
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)


def class_names(state: dict[str, Any], num_classes: int) -> list[str]:
    """The names of a checkpoint's `num_classes` classes in label order: its stored `class_names`, or '0', '1', ...
    for a checkpoint written before they were stored. A stored list that is not one str per class is refused."""
    names = state.get("class_names")
    if names is None or num_classes == 0:
        return [str(k) for k in range(num_classes)]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"its 'class_names' must be a list of strings, got {type(names).__name__}")
    if len(names) != num_classes:
        raise CheckpointError(f"its 'class_names' holds {len(names)} names, its model {num_classes} classes")
    why = class_name_problem(names)
    if why:
        raise CheckpointError(f"its 'class_names': {why}")
    return list(names)


def generator_weights(state: dict[str, Any], ema: bool | None) -> tuple[dict[str, Any], bool]:
    """The generator state dict to sample from, and whether it is the EMA one: the only place this is decided.

    Args:
        state: a loaded checkpoint.
        ema: True = the EMA generator (error if absent), False = the raw one, None = EMA when present.
    """
    use_ema = uses_ema(state.get("generator_ema") is not None, ema)
    return (state["generator_ema"] if use_ema else state["generator"]), use_ema


def uses_ema(has_ema: bool, ema: bool | None = None) -> bool:
    """Whether to sample the EMA generator: True/False as asked (True without one is an error), None = when there
    is one. Checkpoints (`generator_weights`) and the training run (`TrainState.sampler`) both ask here."""
    if ema and not has_ema:
        raise CheckpointError("the checkpoint has no EMA generator (trained with train.ema_decay 0); use --no-ema")
    return has_ema and ema is not False


def generator_label(use_ema: bool) -> str:
    """How every record names the generator it scored or sampled: 'ema' or 'raw' (one spelling)."""
    return "ema" if use_ema else "raw"


@dataclass
class Opened:
    """A checkpoint opened by `open_checkpoint`: the dict, its validated config, and the networks asked for."""

    path: Path
    state: dict[str, Any]
    config: Any  # sngan.config.Config
    generator: nn.Module | None = None  # eval mode, on the device
    discriminator: nn.Module | None = None
    used_ema: bool | None = None  # which generator weights `generator` holds (None: no generator asked for)
    class_names: list[str] | None = None  # one per model class, in label order (`class_names`)

    @property
    def generator_name(self) -> str:
        return generator_label(bool(self.used_ema))


def open_checkpoint(path: str | Path, *, generator: bool = False, discriminator: bool = False,
                    ema: bool | None = None, device: str | torch.device = "cpu", data: bytes | None = None
                    ) -> Opened:
    """Load a checkpoint and rebuild the networks asked for; every problem is one CheckpointError line.

    Args:
        path: checkpoint written by `sngan train`.
        generator: rebuild the generator (the EMA or raw weights, as `generator_weights(state, ema)` decides).
        discriminator: rebuild the discriminator (with its stored power-iteration vectors).
        ema: True = the EMA generator (error if absent), False = the raw one, None = EMA when present.
        device: where the networks go (eval mode).
        data: the file's bytes, when they came from rank 0 rather than this node's disk.
    """
    from sngan.config import from_dict
    from sngan.errors import ConfigError
    from sngan.models import build_discriminator, build_generator, check_model_size

    path = Path(path)
    state = load_checkpoint(path, data=data)
    if not isinstance(state["config"].get("model"), dict):  # the defaults are not this checkpoint's networks
        raise CheckpointError(f"{path}: its config has no 'model' section, so its networks cannot be rebuilt")
    try:
        cfg = from_dict(state["config"])
    except (ConfigError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{path}: its config is invalid: {exc}") from None
    opened = Opened(path, state, cfg)
    try:
        opened.class_names = class_names(state, cfg.model.num_classes)
        if generator:
            weights, opened.used_ema = generator_weights(state, ema)
        if generator or discriminator:
            check_model_size(cfg.model)  # before any network is allocated
        if generator:
            what = "generator_ema" if opened.used_ema else "generator"
            opened.generator = _loaded(build_generator(cfg.model), weights, what, device)
        if discriminator:
            opened.discriminator = _loaded(build_discriminator(cfg.model), state["discriminator"], "discriminator",
                                           device)
    except (CheckpointError, ConfigError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return opened


def _loaded(module: nn.Module, weights: Any, what: str, device: str | torch.device) -> nn.Module:
    check_state_dict(module, weights, what)
    check_finite(weights, what)  # else black images (G) or meaningless spectra (D), exit 0
    try:
        module.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f"'{what}' weights do not match its model config") from None
    return module.to(device).eval()


def read_step(path: str | Path) -> int:
    """A checkpoint's step without reading its tensors (memory-mapped load: only the small fields are read)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # any unreadable file: the full opener explains why
        return load_checkpoint(path)["step"]
    step = saved.get("step") if isinstance(saved, dict) else None
    if not isinstance(step, int) or isinstance(step, bool):
        return load_checkpoint(path)["step"]
    return step
