"""`sngan train` from the command line: --dry-run writes nothing, a wrong path or key fails before torch loads, train
then sample."""

import subprocess
import sys

from PIL import Image
from typer.testing import CliRunner

from sngan.cli import app
from tests.helpers import CONFIGS

runner = CliRunner()


def test_dry_run_prints_config_and_counts_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--config", str(CONFIGS / "cifar10_resnet.yaml"), "--dry-run",
                                 "--set", "train.iterations=10"])
    assert result.exit_code == 0, result.output
    assert "generator parameters: 4276739" in result.output
    assert "discriminator parameters: 1053824" in result.output
    assert "iterations: 10" in result.output
    assert list(tmp_path.iterdir()) == []


# `python -m sngan ARGS`, then whether torch was imported on the way out (the error rows themselves are
# tests/test_bad_inputs.py's, run in-process)
TORCH_PROBE = """import runpy, sys
sys.argv = ["sngan", *sys.argv[1:]]
try:
    runpy.run_module("sngan", run_name="__main__")
finally:
    print("torch imported:", "torch" in sys.modules)
"""


def test_a_wrong_config_path_or_key_fails_in_one_line_before_torch_loads(tmp_path, tiny_config):
    for args in (["train", "--config", str(tmp_path / "demo.yml")],
                 ["train", "--config", str(tiny_config), "--set", "train.iteration=50"]):
        proc = subprocess.run([sys.executable, "-c", TORCH_PROBE, *args], capture_output=True, text=True,
                              cwd=tmp_path)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert proc.stdout.strip() == "torch imported: False", (args, proc.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_train_then_sample_grid(tmp_path, tiny_config):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(tiny_config), "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    ckpt = run / "checkpoints" / "ckpt-0000003.pt"
    assert ckpt.exists()
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["sample", "--ckpt", str(ckpt), "--out", str(out), "--num", "6", "--nrow", "3"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (3 * 34 + 2, 2 * 34 + 2)
