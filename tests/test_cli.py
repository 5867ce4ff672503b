import subprocess

from PIL import Image
from typer.testing import CliRunner

from sngan.cli import app
from tests.helpers import CONFIGS, sngan_cmd

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


def test_bad_inputs_give_one_line_and_exit_1_without_traceback(tmp_path, tiny_config):
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("model: {arch: resnet\n")
    cases = [
        ["train", "--config", str(tiny_config), "--set", "train.iteratons=3"],
        ["train", "--config", str(tiny_config), "--set", "train.iterations=many"],
        ["train", "--config", str(malformed)],
        ["train", "--config", str(tmp_path / "missing.yaml")],
        ["sample", "--ckpt", str(tiny_config), "--out", str(tmp_path / "x.png")],
    ]
    for args in cases:
        proc = subprocess.run(sngan_cmd(*args), capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["malformed.yaml", "tiny.yaml"]


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
