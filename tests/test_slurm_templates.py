"""The sbatch templates of docs/cluster.md, run as Slurm would run them: `srun` starts the command once per node
(here: twice on this machine), `scontrol` answers the head node and records requeues."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster_fakes import FAKE_SCONTROL, FAKE_SRUN
from tests.helpers import REPO, write_config
from tests.test_cluster import free_port
from tests.test_study import tiny_plan


def slurm_env(tmp_path: Path, **extra: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
            "SCONTROL_LOG": str(tmp_path / "scontrol.log"), "SLURM_JOB_NODELIST": "node[1-2]", **extra}


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_the_multinode_template_trains_one_run_on_two_nodes_and_does_not_requeue_a_finished_run(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 4, "sample_every": 0}})
    run = tmp_path / "run"
    proc = subprocess.run(["bash", str(REPO / "scripts/slurm/train_multinode.sbatch")], cwd=tmp_path,
                          env=slurm_env(tmp_path, CONFIG=str(config), OUT=str(run), SLURM_GPUS_ON_NODE="1",
                                        RDZV_PORT=str(free_port()), SLURM_NNODES="2", SLURM_JOB_ID="4242"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "run directory: " in proc.stdout and "device cpu x 2" in proc.stdout  # two nodes, one process each
    assert (run / "log.txt").read_text().splitlines()[-1].split(" ", 1)[1].startswith("done: step 4")
    assert not (tmp_path / "scontrol.log").exists()  # done: not queued again


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_the_multinode_template_never_requeues_a_run_that_fails(tmp_path):
    """A run that fails for good (here: its data root is missing) is not queued again: requeued, it would fail the
    same way, for ever."""
    config = write_config(tmp_path / "c.yaml", {"data": {"name": "folder", "root": str(tmp_path / "missing")}})
    proc = subprocess.run(["bash", str(REPO / "scripts/slurm/train_multinode.sbatch")], cwd=tmp_path,
                          env=slurm_env(tmp_path, CONFIG=str(config), OUT=str(tmp_path / "run"),
                                        SLURM_GPUS_ON_NODE="1", RDZV_PORT=str(free_port()), SLURM_NNODES="2",
                                        SLURM_JOB_ID="4243", MAX_RESTARTS="1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode not in (0, 143), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "is not a folder" in proc.stdout + proc.stderr  # the run's own line
    assert not (tmp_path / "scontrol.log").exists()  # never requeued


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_the_multinode_template_requeues_a_run_stopped_by_a_signal_once_and_exits_143(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 5000, "ckpt_every": 1, "sample_every": 0,
                                                          "log_every": 1}})
    run, pids = tmp_path / "run", tmp_path / "srun.pids"
    proc = subprocess.Popen(["bash", str(REPO / "scripts/slurm/train_multinode.sbatch")], cwd=tmp_path,
                            env=slurm_env(tmp_path, CONFIG=str(config), OUT=str(run), SLURM_GPUS_ON_NODE="1",
                                          RDZV_PORT=str(free_port()), SLURM_NNODES="2", SLURM_JOB_ID="4244",
                                          SRUN_PIDS=str(pids)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not list((run / "checkpoints").glob("ckpt-*.pt")):  # the run is training: now the time limit comes
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-2000:]
        time.sleep(0.5)
    for pid in map(int, pids.read_text().split()):  # Slurm's --signal=TERM: to each node's task, the agent
        os.kill(pid, signal.SIGTERM)
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 143, out[-3000:]
    assert " stopped by a signal at step " in (run / "log.txt").read_text().splitlines()[-1]
    assert (tmp_path / "scontrol.log").read_text().splitlines() == ["requeue 4244"]  # once


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_the_array_template_runs_the_task_s_run_of_the_plan(tmp_path):
    plan = tiny_plan(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "scripts/slurm/study_array.sbatch")], cwd=tmp_path,
                          env=slurm_env(tmp_path, PLAN=str(plan), SLURM_NNODES="1", SLURM_ARRAY_JOB_ID="77",
                                        SLURM_ARRAY_TASK_ID="1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    study = tmp_path / "study"
    assert (study / "WGAN-GP-fast-s0" / "result.json").exists() and not (study / "SN-fast-s0").exists()
    assert not (tmp_path / "scontrol.log").exists()


def test_the_cluster_page_shows_the_templates_the_tests_run():
    page = (REPO / "docs" / "cluster.md").read_text()
    for name in ("train_multinode.sbatch", "study_array.sbatch"):
        assert (REPO / "scripts" / "slurm" / name).read_text() in page, name
