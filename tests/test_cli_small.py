"""Small CLI points: --version, help without torch and without cut option names, one device default, the blame
for a bad --set, a missing --stats file reported first."""

import subprocess
import sys

import typer.main
from typer.testing import CliRunner

from sngan import __version__
from sngan.cli import app
from tests.helpers import REPO, write_config
from tests.test_evaluation import tiny_run  # noqa: F401 (the fixture)

runner = CliRunner()


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sngan {__version__}"


def test_help_imports_no_torch_and_keeps_option_names_whole_at_80_columns():
    probe = "import sys, sngan.cli; print(sorted({'torch', 'torchvision', 'numpy'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                          check=True).stdout.strip() == "[]"
    result = runner.invoke(app, ["eval", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert "--inception-weights" in result.output and "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_every_device_option_defaults_to_auto():
    group = typer.main.get_command(app)
    defaults = {name: p.default for name, cmd in group.commands.items() for p in cmd.params if p.name == "device"}
    assert defaults and set(defaults.values()) == {"auto"}, defaults


def test_a_bad_set_is_blamed_on_the_set_not_on_the_file(tmp_path):
    config = write_config(tmp_path / "c.yaml")
    for override, expected in (("train.bogus=1", "error: --set train.bogus=1: unknown key 'train.bogus'"),
                               ("train.iterations=-5", "error: --set train.iterations=-5: key 'train.iterations'")):
        result = runner.invoke(app, ["train", "--config", str(config), "--set", override, "--dry-run"])
        assert result.exit_code == 1 and result.output.startswith(expected), result.output
    (tmp_path / "bad.yaml").write_text("train:\n  bogus: 1\n")
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "bad.yaml"), "--dry-run"])
    assert f"{tmp_path / 'bad.yaml'}: unknown key 'train.bogus'" in result.output


def test_a_missing_stats_file_is_reported_before_the_inception_weights(tiny_run, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("SNGAN_OFFLINE", "1")
    result = runner.invoke(app, ["eval", "--ckpt", str(tiny_run[1]), "--stats", str(tmp_path / "none.npz")])
    assert result.exit_code == 1 and "none.npz: statistics file not found" in result.output, result.output
