"""Fixtures shared by the tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sngan.metrics.random_inception import random_inception_state
from tests.helpers import write_config


def pytest_configure(config) -> None:  # noqa: ANN001 - pytest's hook
    """Under pytest-xdist each worker takes its share of the cores for torch's threads, and so do the processes it
    starts (OMP_NUM_THREADS, unless already set, as CI's two runs do): n workers x all cores would oversubscribe
    the machine, and a child with another thread count sums in another order than the test comparing with it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // workers))
        torch.set_num_threads(max(1, cores // workers))


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


def stand_in_pool3(state: dict) -> torch.nn.Module:
    """A small fixed network in the FID Inception's place: (B, 3, 299, 299) -> (B, 2048, 1, 1), the same for every
    call (seed 0). Its features depend on the pixels (pooled colours and edges), so scores move when images do."""
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.AdaptiveAvgPool2d(32), nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.Tanh(),
                            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 2048), nn.Unflatten(1, (2048, 1, 1)))
    return net.eval()


@pytest.fixture(scope="session")
def stand_in_weights_file(tmp_path_factory) -> tuple[Path, dict]:
    """(path, state) of a weights file holding only what the stand-in uses: the 1008-way logits layer."""
    generator = torch.Generator().manual_seed(1)
    state = {"fc.weight": torch.randn(1008, 2048, generator=generator) * 20 * 2048 ** -0.5}  # logits of std ~5
    path = tmp_path_factory.mktemp("stand-in") / "stand-in-inception.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def stand_in_inception(stand_in_weights_file, monkeypatch) -> tuple[Path, dict]:
    """For the plumbing tests (commands, exports, progress, records): the Inception's place taken by
    `stand_in_pool3`, everything around it (weights file, input path, logits, protocol stamps) the product's own.
    The real architecture runs in tests/test_inception*.py and the end-to-end pytorch-fid comparison."""
    from sngan.metrics import inception

    monkeypatch.setattr(inception, "fid_inception_pool3", stand_in_pool3)
    return stand_in_weights_file


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
