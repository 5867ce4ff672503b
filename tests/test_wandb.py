"""The optional W&B logging, offline: a local run folder named by the sngan run id, holding the records' grouped
tags and the sample grids; a missing package or login is one line before anything is written."""

import pytest
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import load_config
from sngan.errors import SnganError
from sngan.train.loop import train
from tests.helpers import one_line, write_config

runner = CliRunner()


def test_offline_wandb_run_lives_in_the_run_folder_and_holds_the_tensorboard_tags(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(write_config(tmp_path / "c.yaml", {"train": {
        "wandb_project": "sngan-test", "wandb_mode": "offline", "log_every": 1, "sample_every": 3}}))
    run = tmp_path / "run"
    train(cfg, run, progress=False, log=lambda s: None)
    run_id = (run / ".sngan-run").read_text().strip()
    logs = list((run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(logs) == 1  # the W&B run is the sngan run
    data = logs[0].read_bytes()
    for tag in (b"loss/d_loss", b"loss/g_loss", b"train/lr"):
        assert tag in data, tag
    assert list(logs[0].parent.glob("files/media/images/samples_*.png"))  # the grids, as W&B images


def test_wandb_project_without_the_package_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    cfg = load_config(write_config(tmp_path / "c.yaml", {"train": {"wandb_project": "x"}}))
    with pytest.raises(SnganError, match="pip install 'sngan\\[wandb\\]'") as info:
        train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()


def test_wandb_online_without_a_login_is_refused_before_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    config = write_config(tmp_path / "c.yaml", {"train": {"wandb_project": "p", "wandb_mode": "online"}})
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1 and "W&B is not logged in" in one_line(result)
    assert not (tmp_path / "run").exists()
