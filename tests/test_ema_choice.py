"""Which generator a command uses: `--ema` / `--no-ema` / the default (EMA when present), decided in one place
(`sngan.checkpoint.generator_weights`) and spelled one way ('ema' / 'raw')."""

from pathlib import Path

import pytest
import torch

from sngan.checkpoint import generator_label, generator_weights, open_checkpoint
from sngan.errors import CheckpointError


@pytest.mark.parametrize("ema, expected", [(None, "generator_ema"), (True, "generator_ema"), (False, "generator")])
def test_the_opened_generator_holds_the_weights_the_choice_names(tiny_runs, ema, expected):
    path = tiny_runs["cond_ckpt"]
    opened = open_checkpoint(path, generator=True, ema=ema)
    saved = torch.load(path, weights_only=True)[expected]
    assert opened.generator_name == ("ema" if expected == "generator_ema" else "raw")
    loaded = opened.generator.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    other = "generator" if expected == "generator_ema" else "generator_ema"
    differs = [k for k in saved if not torch.equal(saved[k], torch.load(path, weights_only=True)[other][k])]
    assert differs  # the two generators differ, so the check above could fail


def test_asking_for_ema_without_one_is_a_one_line_error_and_no_ema_falls_back_to_raw(tiny_runs):
    path = tiny_runs["uncond_ckpt"]  # trained with train.ema_decay 0
    with pytest.raises(CheckpointError, match="has no EMA generator") as info:
        open_checkpoint(path, generator=True, ema=True)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert open_checkpoint(path, generator=True).generator_name == "raw"
    state = torch.load(path, weights_only=True)
    weights, used = generator_weights(state, None)
    assert used is False and weights is state["generator"] and generator_label(used) == "raw"


def test_sample_with_ema_and_without_draws_from_different_generators(tiny_runs, tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from sngan.cli import app

    out = {}
    for flag in ("--ema", "--no-ema"):
        target = tmp_path / f"{flag.strip('-')}.npz"
        result = CliRunner().invoke(app, ["sample", "--ckpt", str(tiny_runs["cond_ckpt"]), flag, "--num", "4",
                                          "--out", str(target), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        out[flag] = np.load(target)["arr_0"]
    assert out["--ema"].shape == out["--no-ema"].shape == (4, 32, 32, 3)
    assert not np.array_equal(out["--ema"], out["--no-ema"])


def test_resuming_without_config_reads_the_checkpoint_once(tiny_runs, tmp_path, monkeypatch):
    import shutil

    import sngan.checkpoint as checkpoint
    from sngan.train.launch import launch

    run = Path(shutil.copytree(tiny_runs["uncond"], tmp_path / "run"))
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    reads, real = [], checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path, *a, **k: reads.append(Path(path)) or real(
        path, *a, **k))
    launch(None, ["train.iterations=4"], None, str(ckpt), progress=False)
    assert reads == [ckpt]  # resolve_run opens it; train reuses what it opened
    assert checkpoint.read_step(run / "checkpoints" / "ckpt-0000004.pt") == 4
