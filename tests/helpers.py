"""Shared helpers: tiny configs that train in well under a second per iteration on CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

TINY = {
    "data": {"name": "synthetic", "num_images": 128},
    "model": {"arch": "resnet", "resolution": 32, "z_dim": 16, "g_ch": 8, "d_ch": 8},
    "optim": {"lr": 2e-4, "beta1": 0, "beta2": 0.9, "lr_decay": "linear"},
    "train": {"iterations": 3, "n_dis": 2, "batch_size": 8, "g_batch_size": 8, "device": "cpu", "log_every": 1,
              "sample_every": 2, "ckpt_every": 2, "num_samples": 4, "seed": 0, "ema_bn_samples": 32},
}


def write_config(path: Path, overrides: dict | None = None) -> Path:
    """A tiny YAML config at `path`, with nested `overrides` merged in."""
    raw = {section: dict(values) for section, values in TINY.items()}
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw))
    return path


def sngan_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess command (the real entry point, no Typer test runner)."""
    return [sys.executable, "-m", "sngan", *args]
