"""Fixtures shared by the tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sngan.metrics.random_inception import random_inception_state
from tests.helpers import write_config


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "tiny.yaml")


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> tuple[Path, dict]:
    """(path, state dict) of a random FID-Inception weights file (~96 MB), written once per test session."""
    import torch

    state = random_inception_state()
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub directory and no downloads: the state of an offline machine without the weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("SNGAN_OFFLINE", "1")
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished tiny runs, trained once per session: 'uncond' (3 iterations) and 'cond' (3 classes, EMA).

    Returns run directories under keys 'uncond' and 'cond' and their last checkpoints under
    'uncond_ckpt' and 'cond_ckpt'.
    """
    from sngan.config import load_config
    from sngan.train.loop import train

    base = tmp_path_factory.mktemp("tiny_runs")
    out: dict[str, Path] = {}
    overrides = {"uncond": {}, "cond": {"model": {"num_classes": 3}, "train": {"ema_decay": 0.9}}}
    for name, extra in overrides.items():
        cfg = load_config(write_config(base / f"{name}.yaml", extra))
        out[f"{name}_ckpt"] = train(cfg, base / name, progress=False, log=lambda _: None)
        out[name] = base / name
    return out
