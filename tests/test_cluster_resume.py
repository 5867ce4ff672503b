"""Under torchrun the ranks agree on what they resume from and on what they read (issue 37 §1): rank 0's checkpoint
is sent to the others, so a node needs no copy of the run folder; a stale or foreign copy, and data that differ
between nodes, stop every rank with one line before the first step. Two nodes are two working folders on one
machine: each rank runs in its own folder, so `--out run` and `data.root` name each node's own copy."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sngan.checkpoint import list_checkpoints, load_checkpoint
from tests.helpers import REPO, sngan_cmd, write_config

PER_RANK_FOLDER = """
import os, sys
from sngan.cli import main
folders = sys.argv.pop(1).split(",")
os.chdir(folders[int(os.environ["RANK"])])  # rank r runs in the r-th node's folder
sys.argv = ["sngan", *sys.argv[1:]]
main()
"""

pytestmark = pytest.mark.slow  # torchrun jobs: CI's slow step


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def two_nodes(tmp_path, args):
    """A 2-process torchrun job, rank 0 in tmp_path/a and rank 1 in tmp_path/b; (exit code, output)."""
    harness = tmp_path / "per_rank.py"
    harness.write_text(PER_RANK_FOLDER)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(harness), f"{tmp_path / 'a'},{tmp_path / 'b'}", *args, "--no-progress"],
                          env=env(), capture_output=True, text=True, timeout=400)
    return proc.returncode, proc.stdout + proc.stderr


def train_alone(folder, config, *extra):
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(sngan_cmd("train", "--config", str(config), "--out", "run", "--resume", "auto",
                                    "--no-progress", *extra), cwd=folder, env=env(), capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path / "c.yaml", {"train": {"iterations": 2, "ckpt_every": 1, "sample_every": 0}})


def test_a_node_without_the_run_folder_resumes_from_rank_0s_checkpoint_sent_over_the_group(tmp_path, config):
    train_alone(tmp_path / "a", config)
    (tmp_path / "b").mkdir()
    code, out = two_nodes(tmp_path, ["train", "--config", str(config), "--out", "run", "--resume", "auto",
                                     "--set", "train.iterations=4"])
    assert code == 0, out[-3000:]
    assert "every rank resumes from rank 0's step 2, sent over the process group (rank 1 on " in out
    assert "holds no checkpoint of the run)" in out
    assert [p.name for p in list_checkpoints(tmp_path / "a" / "run" / "checkpoints")][-1] == "ckpt-0000004.pt"
    assert load_checkpoint(tmp_path / "a" / "run" / "checkpoints" / "ckpt-0000004.pt")["step"] == 4
    assert not (tmp_path / "b" / "run").exists()  # only rank 0 writes


def test_a_stale_copy_on_rank_0s_node_stops_every_rank_naming_both_steps(tmp_path, config):
    train_alone(tmp_path / "a", config)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    train_alone(tmp_path / "b", config, "--set", "train.iterations=4")  # the other node went on to step 4
    before = sorted(p.name for p in (tmp_path / "a" / "run" / "checkpoints").iterdir())
    code, out = two_nodes(tmp_path, ["train", "--config", str(config), "--out", "run", "--resume", "auto",
                                     "--set", "train.iterations=6"])
    assert code != 0
    errors = [line for line in out.splitlines() if line.startswith("error")]
    assert len(errors) == 2, out[-3000:]  # one line on each rank, the same words
    for line in errors:
        assert "rank 1 (" in line and "holds step 4 of the run but rank 0 (" in line
        assert "continues from step 2: rank 0's copy of" in line and "is stale" in line
    assert sorted(p.name for p in (tmp_path / "a" / "run" / "checkpoints").iterdir()) == before  # nothing lost


def test_the_same_step_with_other_contents_on_another_node_stops_every_rank(tmp_path, config):
    train_alone(tmp_path / "a", config)
    train_alone(tmp_path / "b", config, "--set", "optim.lr=1e-3")  # another run's step 2, same file name
    code, out = two_nodes(tmp_path, ["train", "--config", str(config), "--out", "run", "--resume", "auto",
                                     "--set", "train.iterations=4"])
    assert code != 0
    errors = [line for line in out.splitlines() if line.startswith("error")]
    assert len(errors) == 2, out[-3000:]
    assert all("holds another file of step 2 than rank 0" in line for line in errors)
    assert not (tmp_path / "a" / "run" / "checkpoints" / "ckpt-0000003.pt").exists()


def _class_tree(root, classes):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((32, 32, 3), 40 * k + i, np.uint8)).save(root / name / f"{i}.png")


def two_agents_in_folders(tmp_path, args):
    """Two torchrun agents joined through c10d (two nodes, one process each), node n running in the n-th folder
    (a, b); [(exit code, output)] per agent."""
    from tests.test_cluster import free_port, run_agents

    harness = tmp_path / "per_node.py"
    harness.write_text(PER_RANK_FOLDER.replace('os.environ["RANK"]', 'os.environ["GROUP_RANK"]'))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id",
           f"j{os.getpid()}{tmp_path.name}", str(harness), f"{tmp_path / 'a'},{tmp_path / 'b'}", *args,
           "--no-progress"]
    return run_agents(cmd, [None, None], 300)


def test_nodes_that_read_different_data_stop_before_the_first_step_naming_what_differs(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"data": {"name": "folder", "root": "data"},
                                                "train": {"iterations": 2, "sample_every": 0}})
    _class_tree(tmp_path / "a" / "data", ["cat", "dog", "fox"])
    _class_tree(tmp_path / "b" / "data", ["cat", "dog"])  # this node's copy lacks a class
    results = two_agents_in_folders(tmp_path, ["train", "--config", str(config), "--out", "run"])
    assert all(code != 0 for code, _ in results)
    errors = [line for _, out in results for line in out.splitlines() if line.startswith("error")]
    assert len(errors) == 2, results
    for line in errors:
        assert "the processes read different data: rank 1 (" in line
        assert "12 images against 18; lacks class(es) 'fox'" in line
    assert not list_checkpoints(tmp_path / "a" / "run" / "checkpoints")


ONE_LOOK_PER_NODE = """
import os, sys, time
import sngan.data.files as files
import sngan.distributed as distributed
from sngan.cli import main
distributed.WAIT_REPORT_S = 1.0  # the waiting line every second instead of every minute
real_listing = files.list_class_tree

def listing(root):
    with open(os.environ["LISTED"], "a") as f:
        f.write(os.environ["RANK"] + "\\n")
    time.sleep(4)  # a slow look at the files (a large tree): the node's other process waits, and says so
    return real_listing(root)

files.list_class_tree = listing
sys.argv = ["sngan", *sys.argv[1:]]
main()
"""


def test_one_process_per_node_reads_and_packs_the_data_while_the_others_wait_saying_so(tmp_path):
    """Two processes on one node: only the first lists the image tree (stat of every file) and packs it; the other
    opens the packed folder it posts, waiting through the store with a line, not in a collective."""
    _class_tree(tmp_path / "data", ["cat", "dog"])
    config = write_config(tmp_path / "c.yaml", {"data": {"name": "folder", "root": str(tmp_path / "data")},
                                                "train": {"iterations": 2, "sample_every": 0}})
    harness = tmp_path / "one_look.py"
    harness.write_text(ONE_LOOK_PER_NODE)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(harness), "train", "--config", str(config), "--out", str(tmp_path / "run"),
                           "--no-progress"], env={**env(), "LISTED": str(tmp_path / "listed")},
                          capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert (tmp_path / "listed").read_text().split() == ["0"]  # the tree was looked at once, by rank 0
    assert "rank 1: waiting for the first process of each node to read or pack the dataset" in out
    assert len(list((tmp_path / "sngan-cache").iterdir())) == 1  # one pack (next to the data root)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt-0000002.pt")["step"] == 2


def test_a_node_whose_data_fails_ends_every_wait_at_once_with_its_reason(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"data": {"name": "folder", "root": "data"},
                                                "train": {"iterations": 2, "sample_every": 0}})
    (tmp_path / "b").mkdir()
    _class_tree(tmp_path / "a" / "data", ["cat", "dog"])  # node b has no data at all
    results = two_agents_in_folders(tmp_path, ["train", "--config", str(config), "--out", "run"])
    assert all(code != 0 for code, _ in results)
    errors = [line for _, out in results for line in out.splitlines() if line.startswith("error")]
    assert len(errors) == 2, results
    assert any("data.root 'data' is not a folder" in line for line in errors)
    assert any("stopping: the first process of each node to read or pack the dataset failed (node 1: data.root "
               "'data' is not a folder" in line for line in errors), errors
