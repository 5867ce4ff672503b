"""Checkpoints: plain dicts of tensors and Python scalars, saved atomically, loaded with `weights_only=True`.

A checkpoint never contains pickled objects, so loading one cannot run code. Layout (format_version 1):

    format_version  int
    config          the resolved config as a plain nested dict (everything needed to rebuild the models)
    step            completed generator iterations
    generator, discriminator, generator_ema (optional)   state dicts
    opt_g, opt_d    optimizer state dicts
    rng             {"python", "numpy", "torch", "cuda", "data"} generator states of rank 0
    rng_ranks       under torchrun, the list of every rank's `rng` (None for one process)
    best            {"metric", "value", "step"} or None
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from sngan.errors import CheckpointError
from sngan.io import atomic_write

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "config", "step", "generator", "discriminator")
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_FORBIDDEN = re.compile(r"GLOBAL|[Uu]nsupported (global|operand|class)|allowed global|blocked")  # weights_only refusals



def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` (plain dict: tensors, numbers, strings, lists, dicts) to `path` through `sngan.io.atomic_write`.

    A crash at any moment leaves either the old file or the new one, never a torn file.
    """
    return atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint as data only (`torch.load(weights_only=True)`), checking its layout.

    Args:
        path: checkpoint file.
        map_location: where tensors land.

    Returns:
        The checkpoint dict. Raises CheckpointError with one line for a missing, truncated, foreign or
        object-carrying file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for bad files; all mean "unusable"
        raise CheckpointError(f"{path}: cannot load checkpoint: {_why_unloadable(path, str(exc))}") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not an sngan checkpoint (expected keys {', '.join(REQUIRED_KEYS)})")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state['format_version']} is newer than this sngan "
                              f"understands ({FORMAT_VERSION}); upgrade sngan")
    return state


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


def generator_weights(state: dict[str, Any], ema: bool | None) -> tuple[dict[str, Any], bool]:
    """The generator state dict to sample from, and whether it is the EMA one: the only place this is decided.

    Args:
        state: a loaded checkpoint.
        ema: True = the EMA generator (error if absent), False = the raw one, None = EMA when present.
    """
    has_ema = state.get("generator_ema") is not None
    if ema and not has_ema:
        raise CheckpointError("the checkpoint has no EMA generator (trained with train.ema_decay 0); use --no-ema")
    use_ema = has_ema and ema is not False
    return (state["generator_ema"] if use_ema else state["generator"]), use_ema
