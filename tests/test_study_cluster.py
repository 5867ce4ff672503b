"""A study sent to a cluster (issue 27): several processes on one study folder, submitit's local executor with a
task preempted and requeued, a plain job array through --list / --only-index, and --status."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sngan.cli import app
from tests.helpers import REPO
from tests.test_study import tiny_plan

runner = CliRunner()


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def records(study: Path) -> dict[str, dict]:
    return {r["variant"]: r for r in map(json.loads, (study / "study.jsonl").read_text().splitlines())}


def test_list_only_index_and_status_drive_a_plain_job_array(tmp_path):
    plan = tiny_plan(tmp_path)
    listed = runner.invoke(app, ["study", "--plan", str(plan), "--list"])
    assert listed.exit_code == 0 and listed.output.splitlines() == ["SN-fast-s0", "WGAN-GP-fast-s0"]
    assert "--only" in runner.invoke(app, ["study", "--help"]).output  # shown, not hidden
    task = runner.invoke(app, ["study", "--plan", str(plan), "--only-index", "1", "--no-progress"])  # array task 1
    assert task.exit_code == 0, task.output
    study = tmp_path / "study"
    assert (study / "WGAN-GP-fast-s0" / "result.json").exists() and not (study / "SN-fast-s0").exists()
    assert {k: r["status"] for k, r in records(study).items()} == {"SN-fast": "pending", "WGAN-GP-fast": "finished"}
    status = runner.invoke(app, ["study", "--plan", str(plan), "--status"])
    assert status.output.splitlines() == ["SN-fast-s0  pending  step 0", "WGAN-GP-fast-s0  finished  step 2",
                                          "1 pending, 1 finished"]
    beyond = runner.invoke(app, ["study", "--plan", str(plan), "--only-index", "2"])
    assert beyond.exit_code == 1 and "the plan has 2 runs (0-1)" in beyond.output


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_two_only_processes_on_one_study_folder_both_finish_and_the_table_lists_both(tmp_path):
    plan = tiny_plan(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "sngan", "study", "--plan", str(plan), "--only", name,
                               "--no-progress"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("SN-fast-s0", "WGAN-GP-fast-s0")]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    study = tmp_path / "study"
    assert {k: r["status"] for k, r in records(study).items()} == {"SN-fast": "finished", "WGAN-GP-fast": "finished"}
    table = (study / "study.md").read_text()
    assert "| SN-fast | 0 | finished | 2 |" in table and "| WGAN-GP-fast | 0 | finished | 2 |" in table


def test_jobs_children_get_the_parents_visible_devices_in_turn(tmp_path, monkeypatch):
    from sngan.study.run import child_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert child_devices(4) == ["4", "5", "6", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert child_devices(3) == ["3", "5", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible: children get none
    assert child_devices(2) == [None, None]


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_executor_local_runs_both_and_a_preempted_task_is_requeued_and_finishes(tmp_path):
    plan = tiny_plan(tmp_path)
    raw = yaml.safe_load(plan.read_text())
    raw["overrides"] = ["train.iterations=120", "train.log_every=1", "train.ckpt_every=0"]
    raw["slurm"] = {"gpus_per_run": 0, "cpus_per_run": 1, "time_min": 30}
    plan.write_text(yaml.safe_dump(raw))
    study = tmp_path / "study"
    parent = subprocess.Popen([sys.executable, "-m", "sngan", "study", "--plan", str(plan), "--executor", "local",
                               "--wait"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = study / "SN-fast-s0"
    deadline = time.monotonic() + 180
    while not ((run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and parent.poll() is None, parent.communicate()
        time.sleep(0.1)
    holder = (run / ".lock").read_text().strip()  # host:pid of the task training this run
    os.kill(int(holder.rpartition(":")[2]), signal.SIGUSR2)  # what Slurm sends before a time limit or preemption
    out = parent.communicate(timeout=300)[0]
    assert parent.returncode == 0, out
    assert {k: r["status"] for k, r in records(study).items()} == {"SN-fast": "finished", "WGAN-GP-fast": "finished"}
    assert {k: r["step"] for k, r in records(study).items()} == {"SN-fast": 120, "WGAN-GP-fast": 120}
    log = (run / "log.txt").read_text()
    assert "SIGUSR2 received" in log and "stopped by a signal at step" in log  # a checkpoint at that step first
    assert "resumed from" in log and "done: step 120" in log  # then the requeued task continued it
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 121))  # nothing lost, nothing repeated
