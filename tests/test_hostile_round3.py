"""Issue 31's cases (and variants): only regular files in folders sngan owns, no hang on any file, one line for
every fault, no silent wrong result, nothing left behind."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sngan.checkpoint import load_checkpoint, save_checkpoint
from sngan.cli import app
from sngan.errors import ConfigError, MetricError, SamplingError, SnganError
from tests.helpers import REPO, write_config

runner = CliRunner()


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# 1. Outputs: only regular files

@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev"])
@pytest.mark.parametrize("command", ["inspect --json", "report --out", "sample --out", "stats --out"])
def test_force_never_replaces_a_fifo_or_socket(tiny_runs, tmp_path, kind, command):
    target = tmp_path / ("target.png" if command != "inspect --json" else "target.json")
    if command == "stats --out":
        target = tmp_path / "target.npz"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "chardev":  # the issue's `mknod F c 1 7` (/dev/full's numbers)
        try:
            os.mknod(target, 0o600 | os.path.stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            pytest.skip("making a device node needs root")
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    run = tiny_runs["uncond"]
    ckpt = str(sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1])
    args = {"inspect --json": ["inspect", "--ckpt", ckpt, "--json", str(target), "--force"],
            "report --out": ["report", str(run), "--out", str(target), "--force"],
            "sample --out": ["sample", "--ckpt", ckpt, "--out", str(target), "--force", "--no-progress"],
            "stats --out": ["stats", "--config", str(write_config(tmp_path / "c.yaml")), "--out", str(target),
                            "--force"]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    name = {"fifo": "FIFO", "socket": "socket", "chardev": "character device"}[kind]
    assert f"is a {name}, not a regular file" in one_line(result)
    mode = os.lstat(target).st_mode
    is_kind = {"fifo": os.path.stat.S_ISFIFO, "socket": os.path.stat.S_ISSOCK, "chardev": os.path.stat.S_ISCHR}
    assert is_kind[kind](mode)  # untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_force_keeps_an_export_a_user_added_to_or_edited_while_it_ran(tiny_runs, tmp_path):
    from sngan import io as sio

    run = tiny_runs["uncond"]
    ckpt = str(sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1])
    out = tmp_path / "export"
    assert runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(out), "--num", "4", "--no-progress"]
                         ).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_finish = sio.finish_export

    def finish_then_user_adds(folder, files):  # the new export is complete; meanwhile the user adds a file
        (out / "mine.txt").write_text("the user's file\n")
        return real_finish(folder, files)

    import sngan.sample.writers as writers

    writers.finish_export = finish_then_user_adds
    try:
        result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(out), "--num", "4", "--force",
                                     "--seed", "3", "--no-progress"])
    finally:
        writers.finish_export = real_finish
    assert result.exit_code == 1 and "changed while this export ran: it holds 'mine.txt'" in one_line(result)
    assert (out / "mine.txt").read_text() == "the user's file\n"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "mine.txt"} == before
    (out / "mine.txt").unlink()
    first = sorted(p for p in out.iterdir() if p.suffix == ".png")[0]
    first.write_bytes(first.read_bytes() + b"edited")  # an exported file the user changed is the user's
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(out), "--num", "4", "--force",
                                 "--no-progress"])
    assert result.exit_code == 1 and f"holds '{first.name}'" in one_line(result)
    assert first.read_bytes().endswith(b"edited")


def test_report_writes_its_default_file_only_into_a_run_folder(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "d_loss": 1.0, "g_loss": 1.0, "lr": 1e-4}\n')
    (tmp_path / "report.png").write_bytes(b"mine")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "not a run folder sngan made" in one_line(result)
    assert (tmp_path / "report.png").read_bytes() == b"mine"


# 3. No hang

def test_a_fifo_as_metrics_or_grid_or_json_output_never_blocks(tiny_runs, tmp_path):
    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    start = time.monotonic()
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 1 and "metrics.jsonl: is a FIFO, not a regular file" in one_line(result)
    run2 = shutil.copytree(tiny_runs["uncond"], tmp_path / "run2")
    grid = sorted((run2 / "samples").glob("step-*.png"))[-1]
    grid.unlink()
    os.mkfifo(grid)
    result = runner.invoke(app, ["report", str(run2)])
    assert result.exit_code == 1 and "is a FIFO, not a regular file" in one_line(result)
    os.mkfifo(tmp_path / "out.json")
    ckpt = str(sorted((run2 / "checkpoints").glob("ckpt-*.pt"))[-1])
    result = runner.invoke(app, ["eval", "--ckpt", ckpt, "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 1 and "is a FIFO, not a regular file" in one_line(result)
    assert time.monotonic() - start < 300  # checked before any work: an open() that waited for a writer never ends


def test_a_fifo_as_log_txt_stops_resume_with_one_line(tiny_runs, tmp_path):
    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    (run / "log.txt").unlink(missing_ok=True)
    os.mkfifo(run / "log.txt")
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "auto", "--no-progress", "--set",
                                 "train.iterations=5"])
    assert result.exit_code == 1 and "log.txt' is a FIFO, not a regular file" in one_line(result)
    assert (run / ".lock").read_bytes() == b""  # the lock was released


@pytest.mark.parametrize("value", ["1e-6", "1e-7", "0", "-1", "nan"])
def test_truncation_too_small_is_refused_before_work(tiny_runs, tmp_path, value):
    ckpt = str(sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1])
    for args in (["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x.png")], ["eval", "--ckpt", ckpt]):
        result = runner.invoke(app, [*args, f"--truncation={value}"])
        assert result.exit_code == 1 and "--truncation must be >= 0.05" in one_line(result)
    assert not (tmp_path / "x.png").exists()


def test_the_smallest_truncation_allowed_finishes_and_bounds_every_entry():
    from sngan.sample.generate import MIN_TRUNCATION, latents

    z, _ = latents(64, 128, 0, seed=1, truncation=MIN_TRUNCATION)
    assert z.abs().max() <= MIN_TRUNCATION and z.abs().max() > 0.9 * MIN_TRUNCATION  # redrawn, not clamped


@pytest.mark.parametrize("seeds", ["18446744073709551616", "0-99999999999", "5-18446744073709551616"])
def test_huge_seeds_are_one_line(tiny_runs, tmp_path, seeds):
    ckpt = str(sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1])
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x"), "--seeds", seeds])
    assert result.exit_code == 1 and "--seeds" in one_line(result)
    result = runner.invoke(app, ["eval", "--ckpt", ckpt, "--seed", "18446744073709551616"])
    assert result.exit_code == 2 and "--seed" in one_line(result)


# 4. One line for every fault

def test_disk_full_during_a_checkpoint_save_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"the previous checkpoint")
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):  # the temporary's writes find the disk full
        fh = real_fdopen(fd, mode, *args, **kwargs)
        if "w" in mode:
            def refuse(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            fh.write = refuse
        return fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(SnganError) as caught:
        save_checkpoint({"w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {path}: no space left on device"
    assert path.read_bytes() == b"the previous checkpoint" and sorted(tmp_path.iterdir()) == [path]


def test_the_run_folder_deleted_mid_run_stops_at_the_next_save(tmp_path):
    import sngan.train.loop as loop
    import sngan.train.steps as steps
    from sngan.config import load_config

    cfg = load_config(write_config(tmp_path / "c.yaml", {"train": {"iterations": 12, "ckpt_every": 4,
                                                                   "sample_every": 0, "log_every": 100}}))
    run = tmp_path / "run"
    real_update = steps.update_ema

    def update_then_delete(state):
        real_update(state)
        if state.step == 5:
            shutil.rmtree(run)  # rm -rf RUN while training

    steps.update_ema = update_then_delete
    try:
        for log_every in (100, 1):  # noticed at the next save, or at the next log record, whichever comes first
            cfg.train.log_every = log_every
            with pytest.raises(SnganError, match="is gone or no longer this run's"):
                loop.train(cfg, run, progress=False, log=lambda _: None)
            assert not (run / "checkpoints").exists()  # not re-created in a folder that is no longer the run's
    finally:
        steps.update_ema = real_update


@pytest.mark.parametrize("key", ["data.root", "data.cache_dir"])
def test_a_nul_byte_in_a_path_is_one_config_error(tmp_path, key):
    from sngan.config import load_config

    with pytest.raises(ConfigError, match=f"key '{key}' must not contain a NUL byte"):
        load_config(write_config(tmp_path / "c.yaml"), [f"{key}=a\x00b"])


def test_a_nul_byte_in_a_plan_out_is_one_line(tmp_path):
    from tests.test_study import tiny_plan

    plan = tiny_plan(tmp_path, out="st\x00udy")
    result = runner.invoke(app, ["study", "--plan", str(plan), "--list"])
    assert result.exit_code == 1 and "key 'out' must not contain a NUL byte" in one_line(result)


def test_hostile_checkpoint_values_are_one_line(tiny_runs, tmp_path):
    src = sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(src, weights_only=True)
    cases = {"step": ({**state, "step": 2 ** 63 - 1}, "its 'step' must be an integer in [0, 100000000]"),
             "sparse": ({**state, "generator": {**state["generator"], next(iter(state["generator"])):
                                                state["generator"][next(iter(state["generator"]))].to_sparse()}},
                        "is a torch.sparse_coo tensor; a checkpoint holds dense weights"),
             "meta": ({**state, "discriminator": {**state["discriminator"], next(iter(state["discriminator"])):
                                                  torch.empty(3, device="meta")}},
                      "is a meta tensor; a checkpoint holds dense weights"),
             "rng": ({**state, "rng": {**state["rng"], "numpy": "garbage"}}, "cannot be restored")}
    for name, (bad, expected) in cases.items():
        run = shutil.copytree(tiny_runs["uncond"], tmp_path / name)
        path = run / "checkpoints" / src.name
        torch.save(bad, path)
        result = runner.invoke(app, ["train", "--out", str(run), "--resume", str(path), "--no-progress",
                                     "--set", "train.iterations=9"])
        assert result.exit_code == 1 and expected in one_line(result), (name, result.output[-500:])


def test_a_deeply_nested_config_value_is_a_short_error():
    from sngan.config import from_dict

    deep: list = []
    for _ in range(20_000):
        deep = [deep]
    with pytest.raises(ConfigError) as caught:
        from_dict({"train": {"iterations": deep}})
    assert len(str(caught.value)) < 300 and "nested too deeply to show" in str(caught.value)


def test_a_metrics_line_nested_past_the_recursion_limit_is_a_corrupt_line(tmp_path):
    from sngan.io import read_jsonl

    (tmp_path / "m.jsonl").write_text("[" * 100_000 + "\n" + '{"step": 1}\n')
    with pytest.raises(SnganError, match="line 1 is not a JSON object"):
        read_jsonl(tmp_path / "m.jsonl")


def test_a_thin_sample_grid_is_refused_before_resizing(tiny_runs, tmp_path):
    from PIL import Image

    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    grid = sorted((run / "samples").glob("step-*.png"))[-1]
    Image.new("RGB", (1, 60_000), "white").save(grid)  # few pixels, one absurd side
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 1 and "too large for a sample grid" in one_line(result)


# 5. Silent wrong results

@pytest.mark.parametrize("bad", ["negative", "asymmetric", "nan"])
def test_statistics_that_no_features_can_have_are_refused(tmp_path, bad):
    from sngan.metrics.stats import load_stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    sigma = np.cov(x, rowvar=False)
    sigma = {"negative": -np.eye(8), "asymmetric": np.tril(sigma),
             "nan": np.where(np.eye(8) > 0, np.nan, sigma)}[bad]
    np.savez(tmp_path / "ref.npz", mu=x.mean(0), sigma=sigma)
    expected = {"negative": "not positive semi-definite", "asymmetric": "not symmetric", "nan": "NaN or inf"}[bad]
    with pytest.raises(MetricError, match=expected):
        load_stats(tmp_path / "ref.npz")


def test_a_rank_deficient_covariance_is_still_accepted(tmp_path):
    from sngan.metrics.stats import load_stats

    x = np.random.default_rng(1).normal(size=(5, 16))  # 5 samples in 16 dimensions: rank 4
    np.savez(tmp_path / "ref.npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False))
    assert load_stats(tmp_path / "ref.npz").sigma.shape == (16, 16)


def test_nan_generated_features_give_no_kid():
    from sngan.metrics.extra import extra_scores
    from sngan.metrics.stats import ReferenceStats

    ref = ReferenceStats(np.zeros(4), np.eye(4), None, features=np.ones((10, 4)))
    with pytest.raises(MetricError, match="hold NaN or inf"):
        extra_scores(("kid",), "fid10_train10", [torch.full((10, 4), float("nan"))], None, ref, 0)


# 6. Leftovers and signals

def test_a_staging_folder_of_a_dead_process_is_removed_by_the_next_writer(tmp_path):
    from sngan.io import publishing, stage_name

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / stage_name("out.png").replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    left.mkdir()
    (left / "out.png").write_bytes(b"half")
    other_host = tmp_path / f".out.png.elsewhere-{dead.pid}-0123abcd.stage"
    other_host.mkdir()
    alive = tmp_path / stage_name("out.png").replace(f"-{os.getpid()}-", f"-{os.getppid()}-")
    alive.mkdir()
    with publishing(tmp_path / "out.png", replace=False) as stage:
        stage.write_bytes(b"png")
    assert not left.exists() and other_host.exists() and alive.exists()
    assert (tmp_path / "out.png").read_bytes() == b"png"


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


@pytest.mark.slow  # a study --jobs process tree: in CI's slow step
def test_a_killed_study_jobs_parent_takes_its_children_down_with_a_checkpoint(tmp_path):
    from tests.test_study import tiny_plan

    plan = tiny_plan(tmp_path, overrides=["train.iterations=100000", "train.ckpt_every=0", "train.log_every=1"])
    study = tmp_path / "study"
    parent = subprocess.Popen([sys.executable, "-m", "sngan", "study", "--plan", str(plan), "--jobs", "2",
                               "--no-progress"], env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = [study / "SN-fast-s0", study / "WGAN-GP-fast-s0"]
    deadline = time.monotonic() + 120
    while not all((r / "metrics.jsonl").exists() and (r / "metrics.jsonl").stat().st_size for r in runs):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.2)
    children = [int((r / ".lock").read_text().strip().rpartition(":")[2]) for r in runs]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
              for pid in children):
        assert time.monotonic() < deadline, "a child kept training after its parent died"
        time.sleep(0.2)
    for run in runs:  # each stopped through the signal path: a checkpoint at its stop step
        (ckpt,) = sorted((run / "checkpoints").glob("ckpt-*.pt"))
        assert load_checkpoint(ckpt)["step"] > 0
        assert "stopped by a signal" in (run / "log.txt").read_text()


# 2. Links inside the path

def test_a_link_inside_the_cache_folder_is_refused_before_any_work(tmp_path):
    from types import SimpleNamespace

    from sngan.config import load_config
    from sngan.evaluation.reference import reference_stats

    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    cache.mkdir()
    elsewhere.mkdir()
    (cache / "fid-stats").symlink_to(elsewhere)
    cfg = load_config(write_config(tmp_path / "c.yaml"), [f"data.cache_dir={cache}"])
    net = SimpleNamespace(network="stand-in", features_key="stand-in-tf1")  # never used: the refusal comes first
    with pytest.raises(SnganError, match="fid-stats' is a symbolic link: sngan never writes through links"):
        reference_stats(cfg.data, 32, 0, "train", None, net, 10, lambda _: None)
    assert list(elsewhere.iterdir()) == []
    (cache / "fid-stats").unlink()
    (cache / "fid-stats").write_text("a file")
    with pytest.raises(SnganError, match="is not a folder"):
        reference_stats(cfg.data, 32, 0, "train", None, net, 10, lambda _: None)


def test_non_utf8_names_in_a_data_tree_hash_and_a_non_utf8_out_is_refused(tmp_path):
    from PIL import Image

    from sngan.data.files import list_class_tree as list_images

    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), "red").save(root / cls / "x.png")
    plain = list_images(root)
    bad = os.fsdecode(b"caf\xe9.png")
    Image.new("RGB", (8, 8), "blue").save(os.path.join(root / "a", bad))
    classes, files, digest = list_images(root)
    assert classes == ("a", "b") and len(files) == 3 and digest != plain[2]
    out = os.fsdecode(b"run-\xff")
    result = runner.invoke(app, ["train", "--config", str(write_config(tmp_path / "c.yaml")), "--out",
                                 str(tmp_path / out), "--no-progress"])
    assert result.exit_code == 1 and "is not valid UTF-8" in one_line(result)
    assert not (tmp_path / out).exists()


def test_a_study_with_evaluation_and_no_inception_weights_stops_before_its_first_run(tmp_path, monkeypatch):
    from tests.test_study import tiny_plan

    monkeypatch.setenv("SNGAN_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    plan = tiny_plan(tmp_path, evaluation={"every": 1, "protocol": "quick"})
    result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
    line = one_line(result)
    assert result.exit_code == 1 and "Inception weights" in line and "runs failed" not in line  # said once, first
    assert not [p for p in (tmp_path / "study").iterdir() if p.is_dir()]  # no run was started


def test_wandb_online_without_a_login_is_refused_before_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    config = write_config(tmp_path / "c.yaml", {"train": {"wandb_project": "p", "wandb_mode": "online"}})
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1 and "W&B is not logged in" in one_line(result)
    assert not (tmp_path / "run").exists()


def test_gif_writer_out_of_memory_says_what_to_lower(tmp_path, monkeypatch):
    from PIL import Image

    from sngan.sample.writers import save_gif

    def fail(self, *args, **kwargs):
        raise ValueError("quantization error")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(MemoryError, match="lower --num, --interpolate or --scale"):
        save_gif(torch.rand(4, 3, 8, 8), 2, tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


def test_a_hostile_cache_manifest_is_one_line(tmp_path):
    from sngan.data.cache import open_packed
    from sngan.errors import DataError

    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "images.npy", np.zeros((2, 4, 4, 3), np.uint8))
    np.save(folder / "labels.npy", np.zeros(2, np.int64))
    for text in ("{}", '{"count": "2"}', "[" * 100_000):
        (folder / "manifest.json").write_text(text)
        with pytest.raises(DataError, match="delete that folder to pack again"):
            open_packed(folder)


def test_disk_full_while_packing_is_one_line_and_leaves_no_staging(tmp_path, monkeypatch):
    from sngan.config import load_config
    from sngan.data import load_images
    from sngan.errors import DataError

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), (i * 40, 0, 0)).save(tmp_path / "data" / cls / f"{i}.png")
    monkeypatch.setattr(os, "posix_fallocate", full)
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["data.name=folder", f"data.root={tmp_path / 'data'}",
                                                          f"data.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(DataError, match="cannot reserve .* bytes for images.npy: no space left on device"):
        load_images(cfg.data, 32, seed=0, log=lambda _: None)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_a_device_as_checkpoint_is_refused_without_reading_it():
    result = runner.invoke(app, ["sample", "--ckpt", "/dev/zero", "--out", "never.png"])
    assert result.exit_code == 1 and "/dev/zero: not a regular file, so not a checkpoint" in one_line(result)


def test_empty_class_folders_are_named_in_the_dataset_line(tmp_path):
    from PIL import Image

    from sngan.config import load_config
    from sngan.data import load_images

    for cls in ("ant", "bee", "cat"):
        (tmp_path / "data" / cls).mkdir(parents=True)
    for cls in ("ant", "cat"):
        Image.new("RGB", (40, 40), "red").save(tmp_path / "data" / cls / "0.png")
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["data.name=folder", f"data.root={tmp_path / 'data'}",
                                                          f"data.cache_dir={tmp_path / 'cache'}"])
    image_set = load_images(cfg.data, 32, seed=0, log=lambda _: None)
    assert image_set.classes == ("ant", "cat")
    assert "1 empty class folder left out (bee): the 2 classes are numbered without it" in image_set.summary()


def test_a_warning_is_one_line_after_a_success_and_kept_before_the_error_line_after_a_failure(tiny_runs, tmp_path,
                                                                                             monkeypatch):
    import warnings

    import sngan.sample.command as sample_command

    real_export = sample_command.export

    def warn_then(fail):
        def export(*args, **kwargs):
            warnings.warn("a library's note\nspread over two lines", UserWarning, stacklevel=1)
            if fail:
                raise SamplingError("the real cause")
            return real_export(*args, **kwargs)
        return export

    ckpt = str(sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1])
    monkeypatch.setattr(sample_command, "export", warn_then(True))
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x.png"), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["warning: UserWarning: a library's note spread over two lines",
                                                  "error: the real cause"]  # the warning kept, the error line last
    monkeypatch.setattr(sample_command, "export", warn_then(False))
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x.png"), "--no-progress"])
    assert result.exit_code == 0
    assert result.stderr.strip().splitlines() == ["warning: UserWarning: a library's note spread over two lines"]


def test_an_export_manifest_naming_files_outside_its_folder_is_not_followed(tmp_path):
    from PIL import Image

    from sngan.evaluation.images import _listed_files

    folder = tmp_path / "export"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "00000.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    for files in ([{"file": "../outside.png"}], [{"file": str(tmp_path / "outside.png")}], {}, "[" * 100_000):
        text = files if isinstance(files, str) else json.dumps({"files": files} if isinstance(files, list) else files)
        (folder / "manifest.json").write_text(text)
        assert _listed_files(folder, (".png",)) == [folder / "00000.png"]
