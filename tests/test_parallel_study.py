"""`sngan study --jobs 2` on the CPU: two runs in two child processes, the same results as one after another, and a
killed parent takes its children down, each with a checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sngan.checkpoint import load_checkpoint
from sngan.cli import app
from tests.helpers import REPO
from tests.test_study import tiny_plan


@pytest.mark.slow  # a study --jobs process tree: in CI's slow step
def test_jobs_2_finishes_both_runs_lists_both_and_writes_the_checkpoints_jobs_1_writes(tmp_path, monkeypatch):
    plan = tiny_plan(tmp_path)
    studies = {}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the parent's devices: the children get 3 and 5
    for jobs in (1, 2):
        studies[jobs] = tmp_path / f"jobs{jobs}"
        args = ["study", "--plan", str(plan), "--out", str(studies[jobs]), "--jobs", str(jobs), "--no-progress"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "run 1/2: SN-fast-s0 started in slot 0 (CUDA_VISIBLE_DEVICES=3)" in lines
    assert "run 2/2: WGAN-GP-fast-s0 started in slot 1 (CUDA_VISIBLE_DEVICES=5)" in lines
    # every line a child printed carries its run's name, its done line included
    assert any(line.startswith("[SN-fast-s0] done: step 2") for line in lines)
    assert any(line.startswith("[WGAN-GP-fast-s0] done: step 2") for line in lines)
    assert "SN-fast-s0: finished" in lines and "WGAN-GP-fast-s0: finished" in lines  # not "skipped"
    # what each child process itself saw
    assert "[SN-fast-s0] SN-fast-s0: CUDA_VISIBLE_DEVICES=3" in lines
    assert "[WGAN-GP-fast-s0] WGAN-GP-fast-s0: CUDA_VISIBLE_DEVICES=5" in lines
    records = [json.loads(line) for line in (studies[2] / "study.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["status"], r["step"]) for r in records] == [("SN-fast", "finished", 2),
                                                                          ("WGAN-GP-fast", "finished", 2)]
    table = (studies[2] / "study.md").read_text()
    assert "| SN-fast | 0 | finished | 2 |" in table and "| WGAN-GP-fast | 0 | finished | 2 |" in table
    for run in ("SN-fast-s0", "WGAN-GP-fast-s0"):
        one = load_checkpoint(studies[1] / run / "checkpoints" / "ckpt-0000002.pt")
        two = load_checkpoint(studies[2] / run / "checkpoints" / "ckpt-0000002.pt")
        for key in ("generator", "discriminator"):
            for name, tensor in one[key].items():
                assert torch.equal(tensor, two[key][name]), (run, key, name)


@pytest.mark.slow  # a study --jobs process tree: in CI's slow step
def test_jobs_2_names_a_child_that_failed_without_a_result(tmp_path):
    plan = tiny_plan(tmp_path)
    run = tmp_path / "study" / "SN-fast-s0"
    (run / "checkpoints").mkdir(parents=True)  # not a run folder sngan made: its child refuses it, no result.json
    (run / "checkpoints" / "ckpt-0000001.pt").write_text("not a checkpoint\n")
    (run / "mine.txt").write_text("someone's file\n")
    result = CliRunner().invoke(app, ["study", "--plan", str(plan), "--jobs", "2", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "SN-fast-s0: failed: exit 1 (its message is above)" in result.output
    records = {r["variant"]: r["status"] for r in map(json.loads, (tmp_path / "study" / "study.jsonl").read_text()
                                                      .splitlines())}
    assert records == {"SN-fast": "failed", "WGAN-GP-fast": "finished"}
    assert (run / "mine.txt").read_text() == "someone's file\n"


@pytest.mark.slow  # a study --jobs process tree: in CI's slow step
def test_a_killed_study_jobs_parent_takes_its_children_down_with_a_checkpoint(tmp_path):
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
