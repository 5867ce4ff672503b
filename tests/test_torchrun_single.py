"""A 1-process torchrun job runs the distributed code path (process group, DDP, collectives), not the plain one."""

import os
import subprocess
import sys

import pytest

from sngan.checkpoint import load_checkpoint
from sngan.distributed import DistInfo, from_env
from tests.helpers import REPO, write_config


def test_from_env_marks_a_torchrun_job_of_one_process_as_distributed(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert from_env().enabled
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert not from_env().enabled
    assert DistInfo(world_size=2).enabled


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_one_process_torchrun_trains_through_ddp_and_records_its_rank(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", {"train": {"ckpt_every": 0, "sample_every": 0}})
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           "-m", "sngan", "train", "--config", str(config), "--out", str(run), "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(run / "checkpoints" / "ckpt-0000003.pt")
    assert state["rng_ranks"] is not None and len(state["rng_ranks"]) == 1  # written by the distributed path
