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


def pytorch_fid_reference_net(state: dict):
    """pytorch-fid's own InceptionV3 (pool3 block) with `state` as its weights, in eval mode, built offline."""
    from unittest import mock

    from pytorch_fid import inception

    with mock.patch.object(inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        return inception.InceptionV3([3]).eval()


def train_until(cfg, run_dir: Path, step: int, **kwargs) -> Path:
    """Train until `step` G iterations are done, then stop through the real signal path (SIGTERM to this process,
    received by the loop's SignalGuard), and return the checkpoint written at that step."""
    import os
    import signal
    from unittest import mock

    import pytest

    import sngan.train.loop as loop
    import sngan.train.steps as steps
    from sngan.checkpoint import checkpoint_path
    from sngan.errors import TrainingStopped

    real_update = steps.update_ema  # what steps.iteration, the loop's body, calls

    def update_then_signal(state) -> None:
        real_update(state)
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    with mock.patch.object(steps, "update_ema", update_then_signal), pytest.raises(TrainingStopped):
        loop.train(cfg, run_dir, **kwargs)
    return checkpoint_path(Path(run_dir) / "checkpoints", step)


def assert_drawn_png(path: Path, min_colours: int = 16) -> None:
    """`path` decodes as a PNG of a drawn figure: a sensible size and many colours (not a blank or empty canvas)."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        assert min(image.size) >= 100, (path, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) >= min_colours, (path, len(colours))


def one_line(result) -> str:
    """The one line a command wrote on stderr (a Typer CliRunner result); fails the test if it wrote more or none."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
