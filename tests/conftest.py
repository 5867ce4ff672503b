"""Fixtures shared by the tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_config


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished tiny runs, trained once per session: 'uncond' (3 iterations) and 'cond' (3 classes, EMA).

    Returns run directories under keys 'uncond' and 'cond' and their last checkpoints under
    'uncond_ckpt' and 'cond_ckpt'.
    """
    from sngan.config import load_config
    from sngan.training import train

    base = tmp_path_factory.mktemp("tiny_runs")
    out: dict[str, Path] = {}
    overrides = {"uncond": {}, "cond": {"model": {"num_classes": 3}, "train": {"ema_decay": 0.9}}}
    for name, extra in overrides.items():
        cfg = load_config(write_config(base / f"{name}.yaml", extra))
        out[f"{name}_ckpt"] = train(cfg, base / name, progress=False, log=lambda _: None)
        out[name] = base / name
    return out
