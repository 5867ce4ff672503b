"""Exact resume, graceful signals, crash-safe saves, the NaN guard and EMA (issue: runs that survive)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sngan.checkpoint import list_checkpoints, load_checkpoint
from sngan.config import load_config
from sngan.errors import SnganError, TrainingDiverged
from sngan.records import read_records
from sngan.train import losses
from sngan.train.loop import train
from tests.helpers import REPO, sngan_cmd, train_until, write_config

QUIET = {"progress": False, "log": lambda s: None}


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("extra", [["train.ema_decay=0.9", "train.ema_start=1"], ["model.num_classes=3"]],
                         ids=["ema", "conditional"])
def test_n_plus_resume_plus_n_is_bitwise_equal_to_2n(tiny_config, tmp_path, extra):
    cfg = load_config(tiny_config, ["train.iterations=4", "train.ckpt_every=0", "train.sample_every=0", *extra])
    straight = load_checkpoint(train(cfg, tmp_path / "straight", **QUIET))
    half = train_until(cfg, tmp_path / "split", 2, **QUIET)
    assert load_checkpoint(half)["step"] == 2
    resumed = load_checkpoint(train(cfg, tmp_path / "split", resume=half, **QUIET))
    assert resumed["step"] == straight["step"] == 4
    for key in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d"):
        assert_same_tensors(straight[key], resumed[key], key)
    assert_same_tensors(straight["rng"]["torch"], resumed["rng"]["torch"], "rng")
    assert [r["step"] for r in read_records(tmp_path / "split")] == [1, 2, 3, 4]


def test_resume_allows_more_iterations_than_the_checkpoint_was_trained_for(tiny_config, tmp_path):
    # a resume that changes the model is refused: test_bad_inputs.py's "other model" row
    last = train(load_config(tiny_config), tmp_path / "run", **QUIET)
    longer = train(load_config(tiny_config, ["train.iterations=5"]), tmp_path / "run", resume=last, **QUIET)
    assert load_checkpoint(longer)["step"] == 5


def test_resume_drops_log_records_written_after_the_checkpoint(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["train.iterations=4", "train.ckpt_every=2"])
    train(cfg, tmp_path / "run", **QUIET)
    ckpt2 = tmp_path / "run" / "checkpoints" / "ckpt-0000002.pt"
    train(cfg, tmp_path / "run", resume=ckpt2, **QUIET)
    assert [r["step"] for r in read_records(tmp_path / "run")] == [1, 2, 3, 4]


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    calls = {"n": 0}

    def poisoned_g(fake_logits):
        calls["n"] += 1
        loss = losses.hinge_g(fake_logits)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setitem(losses.LOSSES, "hinge", (losses.hinge_d, poisoned_g))
    cfg = load_config(tiny_config, ["train.iterations=6", "train.ckpt_every=2"])
    with pytest.raises(TrainingDiverged, match="non-finite loss between steps 3 and 3"):
        train(cfg, tmp_path / "run", **QUIET)
    kept = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in kept] == ["ckpt-0000002.pt"]
    assert load_checkpoint(kept[0])["step"] == 2


def test_ema_generator_is_saved_and_its_batchnorm_is_recalibrated(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["train.ema_decay=0.5"])
    state = load_checkpoint(train(cfg, tmp_path / "run", **QUIET))
    ema, live = state["generator_ema"], state["generator"]
    assert not torch.equal(ema["l1.weight"], live["l1.weight"])
    assert not torch.equal(ema["bn.running_mean"], live["bn.running_mean"])  # own statistics, not copied
    from sngan.sample.generate import load_generator
    from sngan.train.ema import recalibrate_batchnorm

    net, _ = load_generator(tmp_path / "run" / "checkpoints" / "ckpt-0000003.pt")
    before = net.bn.running_mean.clone()
    recalibrate_batchnorm(net, cfg.model.z_dim, 0, cfg.train.g_batch_size, cfg.train.ema_bn_samples)
    assert torch.allclose(before, net.bn.running_mean, atol=1e-6)  # deterministic: same latents, same stats


def test_sigterm_checkpoints_and_resume_auto_continues(tmp_path):
    config = write_config(tmp_path / "long.yaml", {"train": {"iterations": 100000, "log_every": 1,
                                                             "ckpt_every": 0, "sample_every": 0}})
    run = tmp_path / "run"
    proc = subprocess.Popen(sngan_cmd("train", "--config", str(config), "--out", str(run), "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() or len(read_records(run)) < 2:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)  # a stop within the step, long before 100000 iterations end
    assert proc.returncode == 143, err
    assert "--resume auto" in err
    (stopped,) = list_checkpoints(run / "checkpoints")
    step = load_checkpoint(stopped)["step"]
    resumed = subprocess.run(sngan_cmd("train", "--config", str(config), "--out", str(run), "--resume", "auto",
                                       "--no-progress", "--set", f"train.iterations={step + 2}"),
                             capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {step}" in resumed.stdout + resumed.stderr
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["step"] == step + 2


WRITER = """
import sys, torch
from sngan.checkpoint import save_checkpoint
path = sys.argv[1]
state = {"format_version": 1, "config": {}, "step": 2, "generator": {"w": torch.randn(40_000_000)},
         "discriminator": {}}
print("writing", flush=True)
while True:
    save_checkpoint(state, path)
"""


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    from sngan.checkpoint import save_checkpoint

    path = tmp_path / "ckpt-0000001.pt"
    good = {"format_version": 1, "config": {}, "step": 1, "generator": {"w": torch.ones(3)}, "discriminator": {}}
    save_checkpoint(good, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 60
    while not list(tmp_path.glob(".ckpt-0000001.pt.*.tmp")):  # a save is under way
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    state = load_checkpoint(path)
    assert state["step"] in (1, 2)  # the old file, or a complete new one: never a torn file
    if state["step"] == 1:
        assert torch.equal(state["generator"]["w"], torch.ones(3))
    assert list_checkpoints(tmp_path) == [path]


def test_resuming_an_older_checkpoint_sets_the_later_ones_aside(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["train.iterations=5", "train.ckpt_every=1", "train.keep_checkpoints=5"])
    train(cfg, tmp_path / "run", **QUIET)
    ckpts = tmp_path / "run" / "checkpoints"
    again = load_config(tiny_config, ["train.iterations=3", "train.ckpt_every=1", "train.keep_checkpoints=2"])
    last = train(again, tmp_path / "run", resume=ckpts / "ckpt-0000001.pt", **QUIET)
    assert last == ckpts / "ckpt-0000003.pt" and last.exists()
    assert [p.name for p in list_checkpoints(ckpts)] == ["ckpt-0000002.pt", "ckpt-0000003.pt"]
    (aside,) = [p for p in ckpts.iterdir() if p.is_dir()]
    assert aside.name.startswith("superseded-")
    assert sorted(p.name for p in aside.iterdir()) == [f"ckpt-000000{i}.pt" for i in (2, 3, 4, 5)]


def test_a_new_run_refuses_an_unmarked_folder_with_a_log(tiny_config, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 50}\n')
    with pytest.raises(SnganError, match="not a run folder sngan made"):
        train(load_config(tiny_config), tmp_path / "run", **QUIET)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"step": 50}\n'


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_the_same_command(tiny_config, tmp_path,
                                                                                        monkeypatch):
    """A second Ctrl-C before the first save leaves a marked folder without a checkpoint: the same command starts
    the run there again (`--resume auto` says so), instead of refusing the folder."""
    from typer.testing import CliRunner

    import sngan.train.loop as loop
    from sngan.cli import app

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("second signal SIGINT: stopping without a checkpoint")

    run = tmp_path / "run"
    command = ["train", "--config", str(tiny_config), "--out", str(run), "--no-progress", "--set",
               "train.iterations=2"]
    with monkeypatch.context() as patch:
        patch.setattr(loop, "iteration", interrupted)
        first = CliRunner().invoke(app, command)
    assert first.exit_code == 130 and (run / ".sngan-run").is_file() and not list_checkpoints(run / "checkpoints")
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt-0000002.pt"]
    (run / "checkpoints" / "ckpt-0000002.pt").unlink()
    auto = CliRunner().invoke(app, [*command, "--resume", "auto"])
    assert auto.exit_code == 0 and f"--resume auto: no checkpoint in {run}, starting a new run there" in auto.output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGUSR2])  # USR2: what submitit sends (issue 36)
def test_a_stop_signal_outside_training_is_one_line_and_exit_143(tiny_runs, tmp_path, stop):
    ckpt = str(sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1])
    out = tmp_path / "export"
    proc = subprocess.Popen([sys.executable, "-m", "sngan", "sample", "--ckpt", ckpt, "--out", str(out), "--num",
                             "50000", "--no-progress"], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # only a hung start waits this long; a loaded machine takes seconds
    while not any(p.name.startswith(".export.") for p in tmp_path.iterdir()):  # the export has begun
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [f"stopped by {stop.name}: what this command had not finished was not written"]
    assert sorted(tmp_path.iterdir()) == []  # no half export, no staging folder
