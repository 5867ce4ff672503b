"""Fixtures shared by the tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import random_inception_state, write_config


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
