"""The run folder's life (`sngan.train.rundir.RunFolder`): every check before the first write, every write and delete
through a handle on the folder the run made, a part swapped mid-run refused with one line and a checkpoint, the whole
folder deleted mid-run noticed at the next save, a user's `.lock` never truncated, one answer to "does this folder
hold checkpoints", and exit codes that say whether the stop checkpoint was written."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sngan.train.loop as loop
import sngan.train.steps as steps
from sngan.checkpoint import load_checkpoint
from sngan.cli import app
from sngan.config import load_config
from sngan.errors import FolderChanged, SnganError
from sngan.train.rundir import FolderLock, RunFolder
from tests.helpers import REPO, one_line, write_config

runner = CliRunner()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) and its bytes: a change anywhere shows."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def train_with(monkeypatch, cfg, run: Path, at_step: int, action) -> None:
    """Train `cfg` into `run`, calling `action()` once G iteration `at_step` is done (inside the loop's body)."""
    real_update = steps.update_ema

    def update_then_act(state) -> None:
        real_update(state)
        if state.step == at_step:
            action()

    monkeypatch.setattr(steps, "update_ema", update_then_act)
    loop.train(cfg, run, progress=False, log=lambda _: None)


def user_folder(path: Path) -> Path:
    """A user's folder that a link will point at: files named as sngan names its own."""
    path.mkdir()
    (path / "ckpt-0000001.pt").write_bytes(b"the user's file, not a checkpoint")
    (path / "step-0000002.png").write_bytes(b"the user's picture")
    (path / "notes.txt").write_text("keep me")
    return path


# 1. A part swapped for a link mid-run: refused, one line, a checkpoint in the run's own folder

def test_checkpoints_swapped_for_a_link_mid_run_is_refused_with_a_checkpoint_in_the_run_folder(tmp_path,
                                                                                                monkeypatch):
    cfg = load_config(write_config(tmp_path / "c.yaml", {"train": {"iterations": 12, "ckpt_every": 2,
                                                                   "keep_checkpoints": 1, "sample_every": 0,
                                                                   "log_every": 100}}))
    run, elsewhere = tmp_path / "run", user_folder(tmp_path / "elsewhere")
    target_before = snapshot(elsewhere)

    def swap() -> None:
        assert (run / "checkpoints" / "ckpt-0000002.pt").is_file()  # the first checkpoint is there
        (run / "checkpoints").rename(tmp_path / "moved-away")
        (run / "checkpoints").symlink_to(elsewhere)

    with pytest.raises(FolderChanged) as caught:
        train_with(monkeypatch, cfg, run, 3, swap)
    message = str(caught.value)
    assert "\n" not in message and f"'{run / 'checkpoints'}' changed while sngan was writing in it (it is now a " \
                                   f"symbolic link)" in message
    assert snapshot(elsewhere) == target_before  # nothing written to, nothing pruned from the link's target
    (rescued,) = run.glob("checkpoints.rescued-*/ckpt-0000004.pt")  # the step it stopped at, in the run's folder
    assert f"stopped at step 4 with checkpoint {rescued}" in message and f"--resume {rescued}" in message
    state = load_checkpoint(rescued)
    assert state["step"] == 4 and state["run_id"] == (run / ".sngan-run").read_text().strip()
    assert sorted(p.name for p in (tmp_path / "moved-away").iterdir()) == ["ckpt-0000002.pt"]  # never written after

    (run / "checkpoints").unlink()  # the user restores the folder and continues as the line says
    (tmp_path / "moved-away").rename(run / "checkpoints")
    cfg.train.iterations = 6
    monkeypatch.undo()  # the loop's body as it is
    last = loop.train(cfg, run, resume=rescued, progress=False, log=lambda _: None)
    assert load_checkpoint(last)["step"] == 6 and last.parent == run / "checkpoints"


@pytest.mark.parametrize("part", ["samples", "tensorboard"])
def test_samples_or_tensorboard_swapped_mid_run_stop_with_a_checkpoint_in_checkpoints(tmp_path, monkeypatch, capfd,
                                                                                      part):
    if part == "tensorboard":
        pytest.importorskip("torch.utils.tensorboard")
    cfg = load_config(write_config(tmp_path / "c.yaml", {"train": {"iterations": 12, "ckpt_every": 100,
                                                                   "sample_every": 2, "log_every": 1}}))
    run, elsewhere = tmp_path / "run", user_folder(tmp_path / "elsewhere")
    target_before = snapshot(elsewhere)

    def swap() -> None:
        if part == "samples":
            assert (run / "samples" / "step-0000002.png").is_file()  # the first grid is there
            shutil.rmtree(run / "samples")
            (run / "samples").symlink_to(elsewhere)
        else:  # TensorBoard's folder deleted and replaced by a file
            assert any((run / "tensorboard").iterdir())
            shutil.rmtree(run / "tensorboard")
            (run / "tensorboard").write_text("a file now")

    with pytest.raises(FolderChanged) as caught:
        train_with(monkeypatch, cfg, run, 3, swap)
    step = 4 if part == "samples" else 3  # the next grid, or the next record
    what = "a symbolic link" if part == "samples" else "a file"
    assert str(caught.value) == (
        f"'{run / part}' changed while sngan was writing in it (it is now {what}); sngan never writes through a link "
        f"or into a folder it did not open: stopped at step {step} with checkpoint "
        f"{run / 'checkpoints' / f'ckpt-{step:07d}.pt'} (restore the folder, then continue with: sngan train --out "
        f"{run} --resume auto)")
    assert load_checkpoint(run / "checkpoints" / f"ckpt-{step:07d}.pt")["step"] == step
    assert snapshot(elsewhere) == target_before
    assert "Traceback" not in capfd.readouterr().err  # no writer-thread traceback


def test_prune_deletes_only_in_the_checkpoints_folder_the_run_made(tmp_path):
    folder = RunFolder.open(tmp_path / "run", "x: 1\n")
    try:
        for step in (1, 2, 3):
            folder.save(f"ckpt-{step:07d}.pt", lambda fh: fh.write(b"ours"))
        elsewhere = user_folder(tmp_path / "elsewhere")
        before = snapshot(elsewhere)
        (tmp_path / "run" / "checkpoints").rename(tmp_path / "moved")
        (tmp_path / "run" / "checkpoints").symlink_to(elsewhere)
        with pytest.raises(FolderChanged, match="it is now a symbolic link"):
            folder.prune(1)
        assert snapshot(elsewhere) == before
        (tmp_path / "run" / "checkpoints").unlink()
        (tmp_path / "moved").rename(tmp_path / "run" / "checkpoints")
        folder.prune(1)  # restored: the folder the run made, pruned there
        assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["ckpt-0000003.pt"]
    finally:
        folder.close()


# 2. Every check before the first write

@pytest.mark.parametrize("hostile", ["samples-file", "tensorboard-fifo", "tensorboard-file", "checkpoints-link"])
def test_a_refused_resume_changes_nothing_in_the_folder_config_yaml_included(tiny_runs, tmp_path, hostile):
    run = Path(shutil.copytree(tiny_runs["uncond"], tmp_path / "run"))
    part = run / hostile.split("-")[0]
    if part.exists():
        shutil.rmtree(part) if hostile != "checkpoints-link" else part.rename(tmp_path / "real-checkpoints")
    if hostile.endswith("fifo"):
        os.mkfifo(part)
    elif hostile.endswith("file"):
        part.write_text("not a folder")
    else:
        part.symlink_to(tmp_path / "real-checkpoints")
    before = snapshot(run)
    ckpt = (tmp_path / "real-checkpoints" / "ckpt-0000003.pt") if hostile == "checkpoints-link" else \
        run / "checkpoints" / "ckpt-0000003.pt"
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", str(ckpt), "--no-progress", "--set",
                                 "train.iterations=5"])  # a changed config: a rewritten config.yaml would show
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    kind = {"samples-file": "is a regular file, not a folder", "tensorboard-fifo": "is a FIFO, not a folder",
            "tensorboard-file": "is a regular file, not a folder", "checkpoints-link": "is a symbolic link"}[hostile]
    assert line.startswith(f"error: '{part}' {kind}")
    assert snapshot(run) == before  # config.yaml, metrics.jsonl, log.txt, the lock: byte-identical


# 3. A user's .lock: refused, never truncated, the folder never moved

def test_a_users_lock_file_is_refused_and_left_byte_identical(tmp_path):
    (tmp_path / ".lock").write_text("my notes about locks\n")
    with pytest.raises(SnganError, match=r"'.*\.lock' is not a lock file sngan made \(it holds other data\)"):
        FolderLock(tmp_path)
    assert (tmp_path / ".lock").read_text() == "my notes about locks\n"


def test_study_only_refuses_a_run_folder_with_a_users_lock_without_moving_or_truncating(tmp_path):
    from tests.test_study import tiny_plan

    plan = tiny_plan(tmp_path)
    study = tmp_path / "study"
    run = study / "SN-fast-s0"
    run.mkdir(parents=True)
    (study / ".sngan-study").write_text("")
    for content in ("my own lock notes\n", ""):  # with and without a run marker: neither is moved
        (run / ".lock").write_text("my own lock notes\n")
        if not content:
            (run / ".sngan-run").write_text("0" * 32 + "\n")
        before = snapshot(study)
        result = runner.invoke(app, ["study", "--plan", str(plan), "--only", "SN-fast-s0", "--no-progress"])
        assert result.exit_code == 1
        assert (run / ".lock").read_text() == "my own lock notes\n"  # not truncated
        assert not list(study.glob(".SN-fast-s0.unfinished-*"))  # not moved aside
        assert "is not a lock file sngan made" in result.output or "not a run folder sngan made" in result.output
        shared = ("study.", ".lock", "SN-fast-s0/result")  # the study's table, its lock, the run's failed result
        assert {k: v for k, v in snapshot(study).items() if not k.startswith(shared)} == \
            {k: v for k, v in before.items() if not k.startswith(shared)}


# 4. One decision: a folder whose checkpoints/ holds only best.pt

def test_resume_auto_continues_best_pt_when_it_is_the_only_checkpoint(tiny_runs, tmp_path):
    run = Path(shutil.copytree(tiny_runs["uncond"], tmp_path / "run"))
    periodic = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    periodic[-1].rename(run / "checkpoints" / "best.pt")
    for path in periodic[:-1]:
        path.unlink()
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "auto", "--no-progress", "--set",
                                 "train.iterations=4"])
    assert result.exit_code == 0, result.output
    assert f"--resume auto: continuing {run / 'checkpoints' / 'best.pt'}" in result.output
    assert "starting a new run" not in result.output and "already holds checkpoints" not in result.output
    assert load_checkpoint(run / "checkpoints" / "ckpt-0000004.pt")["step"] == 4


# 5. Exit codes: 143 whenever the stop checkpoint was written

SLOW_TEARDOWN = """
import pathlib, sys, time
import sngan.train.runlog as runlog

flags = pathlib.Path(sys.argv[1])
real_close = runlog.RunLog.close

def close_when_told(self):  # teardown, after the stop checkpoint: waits for the test's second signal
    (flags / "closing").write_text("")
    while not (flags / "go").exists():
        time.sleep(0.01)
    real_close(self)

runlog.RunLog.close = close_when_told
from sngan.cli import main
sys.argv = ["sngan", *sys.argv[2:]]
main()
"""


def wait_for(condition, proc, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("first, later", [(signal.SIGINT, [signal.SIGINT]),
                                          (signal.SIGUSR2, [signal.SIGUSR2, signal.SIGINT])])
def test_signals_after_the_stop_checkpoint_still_exit_143(tmp_path, first, later):
    config = write_config(tmp_path / "long.yaml", {"train": {"iterations": 100000, "log_every": 1, "ckpt_every": 0,
                                                             "sample_every": 0}})
    run, flags = tmp_path / "run", tmp_path / "flags"
    flags.mkdir()
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_TEARDOWN, str(flags), "train", "--config", str(config),
                                 "--out", str(run), "--no-progress"], stdout=out, stderr=err, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        try:
            wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size, proc,
                     "first record")
            proc.send_signal(first)
            wait_for(lambda: (flags / "closing").exists(), proc, "teardown")  # the stop checkpoint is written
            (ckpt,) = (run / "checkpoints").glob("ckpt-*.pt")
            for sig in later:  # during the teardown
                proc.send_signal(sig)
            (flags / "go").write_text("")
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "err").read_text()
    assert proc.returncode == 143, text
    assert "stopped by a signal at step" in text and "interrupted" not in text
    said = (tmp_path / "out").read_text()  # the run's lines: one for each signal after the checkpoint
    assert said.count("received: the stop checkpoint is already written; stopping") == len(later), said
    assert load_checkpoint(ckpt)["step"] > 0


def test_a_second_signal_before_the_stop_checkpoint_stops_at_once_and_after_it_changes_nothing(monkeypatch):
    monkeypatch.setattr(loop, "SAME_REQUEST_S", 0.0)  # every later SIGINT is a second Ctrl-C, not a repeat
    said = []
    with pytest.raises(KeyboardInterrupt, match="second signal SIGINT: stopping without a checkpoint"), \
            loop.SignalGuard(said.append) as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.received == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)  # nothing saved yet: stops at once (exit 130)
    with loop.SignalGuard(said.append) as guard:
        os.kill(os.getpid(), signal.SIGINT)
        guard.saved = True  # what the loop sets once the stop checkpoint is written
        os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)  # after the guard too
    assert said[-2:] == ["SIGINT received: the stop checkpoint is already written; stopping"] * 2
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_writes_through_a_folder_handle_land_in_the_folder_that_was_opened(tmp_path):
    from sngan.io import Folder

    folder = Folder.open(tmp_path / "out", create=True)
    try:
        (tmp_path / "out").rename(tmp_path / "moved")
        (tmp_path / "out").symlink_to(user_folder(tmp_path / "elsewhere"))
        folder.write("a.txt", b"through the handle")
        assert (tmp_path / "moved" / "a.txt").read_text() == "through the handle"
        assert not (tmp_path / "elsewhere" / "a.txt").exists()
        with pytest.raises(FolderChanged, match="it is now a symbolic link"):
            folder.check()
    finally:
        folder.close()
    with pytest.raises(SnganError, match="is a symbolic link, not a folder"):
        Folder.open(tmp_path / "out")


def test_an_export_lands_in_the_folder_it_was_asked_for_even_if_that_is_swapped_for_a_link(tmp_path):
    from sngan.io import publishing

    (tmp_path / "out").mkdir()
    elsewhere = user_folder(tmp_path / "elsewhere")
    before = snapshot(elsewhere)
    with publishing(tmp_path / "out" / "grid.png", replace=False) as stage:
        stage.write_bytes(b"the export")
        (tmp_path / "out").rename(tmp_path / "moved")  # mid-export: the folder moved and a link put in its place
        (tmp_path / "out").symlink_to(elsewhere)
    assert (tmp_path / "moved" / "grid.png").read_bytes() == b"the export"
    assert snapshot(elsewhere) == before and [p.name for p in (tmp_path / "moved").iterdir()] == ["grid.png"]


def test_a_fifo_as_log_txt_stops_resume_with_one_line(tiny_runs, tmp_path):
    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    (run / "log.txt").unlink(missing_ok=True)
    os.mkfifo(run / "log.txt")
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "auto", "--no-progress", "--set",
                                 "train.iterations=5"])
    assert result.exit_code == 1 and "log.txt' is a FIFO, not a regular file" in one_line(result)
    assert (run / ".lock").read_bytes() == b""  # the lock was released


def test_the_run_folder_deleted_mid_run_stops_at_the_next_save(tmp_path):
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
