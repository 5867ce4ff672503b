"""One rule decides, for every command, whether a progress bar is drawn: `sngan.progress.on_terminal` (stderr is a
terminal). Off a terminal, no command writes a bar's carriage-return redraws (the issue: a first-use pack drew 88
of them into a log file); on one, each draws its bar. Checked for train with a first-use pack, prepare, stats, eval
and sample."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import sngan.progress
from sngan.cli import app
from tests.helpers import write_config

BAR = "\r"  # tqdm redraws a bar in place with carriage returns


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A config on a 6-image class-folder tree (packed on first use), its trained checkpoint and FID statistics."""
    root = tmp_path_factory.mktemp("progress")
    rng = np.random.default_rng(0)
    for i in range(6):
        folder = root / "tree" / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    config = write_config(root / "folder.yaml", {"data": {"name": "folder", "root": str(root / "tree")},
                                                 "train": {"iterations": 1}})
    return root, config


def commands(root, config, weights, tag):
    """(name, argv) of each command, writing under `root` with `tag` so each mode starts afresh."""
    ckpt = root / f"run-{tag}" / "checkpoints" / "ckpt-0000001.pt"
    cache = f"data.cache_dir={root / f'cache-{tag}'}"
    return [
        ("train with a first-use pack", ["train", "--config", str(config), "--out", str(root / f"run-{tag}"),
                                         "--set", cache]),
        ("prepare", ["prepare", "--config", str(config), "--set", f"data.cache_dir={root / f'prep-{tag}'}"]),
        ("stats", ["stats", "--config", str(config), "--out", str(root / f"s-{tag}.npz"), "--set", cache,
                   "--inception-weights", str(weights), "--device", "cpu"]),
        ("eval", ["eval", "--ckpt", str(ckpt), "--stats", str(root / f"s-{tag}.npz"), "--num-samples", "4",
                  "--splits", "2", "--inception-weights", str(weights), "--device", "cpu"]),
        ("sample", ["sample", "--ckpt", str(ckpt), "--out", str(root / f"x-{tag}.npz"), "--num", "4"]),
    ]


@pytest.mark.parametrize("terminal", [False, True], ids=["off a terminal", "on a terminal"])
def test_every_command_draws_a_bar_exactly_when_the_one_rule_says_so(folder_run, terminal, stand_in_inception,
                                                                    monkeypatch):
    monkeypatch.setattr(sngan.progress, "on_terminal", lambda stream=None: terminal)
    root, config = folder_run
    weights, _ = stand_in_inception
    for name, argv in commands(root, config, weights, "tty" if terminal else "plain"):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, (name, result.output)
        assert (BAR in result.output) == terminal, (name, result.output[-500:])
