"""What a cluster does to a run, on one CPU machine with gloo (issue 27): elastic restarts of two c10d agents, one
command that starts and continues, SIGTERM to workers and agent, nodes without a shared folder, ranks started with
different configs."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from sngan.checkpoint import list_checkpoints, load_checkpoint
from tests.helpers import REPO, write_config

KILL_HARNESS = """
import os, signal, sys
import sngan.train.steps as steps
from sngan.cli import main

kill_at = int(sys.argv.pop(1))
real_update = steps.update_ema  # the last call of one G iteration

def update_then_die(state):
    real_update(state)
    if state.step == kill_at and os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # what an OOM killer or a lost node does: no handler runs

steps.update_ema = update_then_die
sys.argv = ["sngan", *sys.argv[1:]]
main()
"""
PER_RANK_SET = """
import os, sys
from sngan.cli import main
sys.argv = ["sngan", *sys.argv[1:], "--set", f"optim.lr={2e-4 if os.environ['RANK'] == '0' else 1e-4}"]
main()
"""


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_agents(cmd: list[str], cwds: list[Path | None], timeout: int) -> list[tuple[int, str]]:
    """One agent per entry of `cwds` (None: this process's folder); each one's (exit code, output).

    The outputs go to files, not pipes: a pipe nobody reads while the test waits fills at 64 KiB and blocks its
    writer, and two agents that wait on each other would then hang the test. On timeout every agent's process
    group is killed and the failure shows the end of what each printed."""
    with tempfile.TemporaryDirectory() as logs:
        files = [open(Path(logs) / f"agent{i}.out", "w+") for i in range(len(cwds))]  # noqa: SIM115 (closed below)
        procs = [subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=fh, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True) for cwd, fh in zip(cwds, files, strict=True)]
        deadline = time.monotonic() + timeout
        try:
            codes: list[int] | None = [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in procs]
        except subprocess.TimeoutExpired:
            codes = None
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        outputs = []
        for fh in files:
            fh.seek(0)
            outputs.append(fh.read())
            fh.close()
    if codes is None:
        pytest.fail(f"the agents were still running after {timeout} s; the end of each one's output:\n"
                    + "\n----\n".join(out[-4000:] for out in outputs))
    return list(zip(codes, outputs, strict=True))


def two_agents(args: list[str], cwds: list[Path], restarts: int = 0, timeout: int = 240) -> list[tuple[int, str]]:
    """Two torchrun agents on localhost joined through c10d (`--nnodes 2`, one worker each), as on two nodes;
    returns each agent's (exit code, output)."""
    port, job = free_port(), f"job{os.getpid()}{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", job,
           "--max-restarts", str(restarts), *args]
    return run_agents(cmd, list(cwds), timeout)


def weights(path: Path) -> dict:
    state = load_checkpoint(path)
    nets = [net for net in ("generator", "discriminator", "generator_ema") if state.get(net) is not None]
    return {f"{net}.{k}": v for net in nets for k, v in state[net].items()} | {
        f"{opt}.state": state[opt]["state"] for opt in ("opt_g", "opt_d")}


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_a_worker_killed_under_max_restarts_is_continued_by_the_restarted_workers_to_the_same_weights(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 8, "ckpt_every": 4, "sample_every": 0}})
    harness = tmp_path / "harness.py"
    harness.write_text(KILL_HARNESS)
    results = two_agents([str(harness), "6", "train", "--config", str(config), "--out", "run", "--no-progress"],
                         [tmp_path, tmp_path], restarts=1)
    assert [code for code, _ in results] == [0, 0], results
    text = "".join(out for _, out in results)
    assert f"continuing {Path('run/checkpoints/ckpt-0000004.pt')}" in text and "resumed from" in text
    assert "done: step 8" in text
    reference = tmp_path / "reference"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "sngan", "train", "--config", str(config), "--out", str(reference), "--no-progress"],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    restarted, straight = weights(tmp_path / "run/checkpoints/ckpt-0000008.pt"), weights(
        reference / "checkpoints/ckpt-0000008.pt")
    assert restarted.keys() == straight.keys()
    for key in straight:  # bitwise: the restart lost nothing and repeated nothing
        if key.endswith(".state"):  # Adam's moments and step counts, per parameter
            for index, moments in straight[key].items():
                for name, value in moments.items():
                    assert torch.equal(restarted[key][index][name], value), (key, index, name)
        else:
            assert torch.equal(restarted[key], straight[key]), key


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_the_same_command_starts_a_run_then_continues_it(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 400, "ckpt_every": 0, "sample_every": 0,
                                                          "log_every": 1}})
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "sngan", "train", "--config", str(config), "--out", str(run), "--resume", "auto",
           "--no-progress"]
    first = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 0):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 143, err
    assert f"--resume auto: no checkpoint in {run}, starting a new run there" in out
    (stopped,) = list_checkpoints(run / "checkpoints")
    second = subprocess.run([*cmd, "--set", "train.iterations=" + str(int(stopped.stem[5:]) + 2)], env=env(),
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert f"--resume auto: continuing {stopped}, the newest checkpoint of {run}" in second.stdout
    assert f"resumed from {stopped}" in second.stdout


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_sigterm_to_the_workers_then_the_agent_is_one_stop_with_a_checkpoint_at_that_step(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 100_000, "ckpt_every": 0, "sample_every": 0,
                                                          "log_every": 1}})
    run = tmp_path / "run"
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "sngan", "train", "--config", str(config), "--out", str(run), "--no-progress"],
                             env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 0):
        assert time.monotonic() < deadline and agent.poll() is None, agent.communicate()
        time.sleep(0.1)
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True,
                                                  text=True).stdout.split()]
    assert len(workers) == 2
    for pid in workers:  # Slurm signals every process of the step; torchrun's agent then forwards its own
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    agent.send_signal(signal.SIGTERM)
    out, err = agent.communicate(timeout=120)
    stops = [line for line in (out + err).splitlines() if line.startswith("stopped by a signal")]
    assert len(stops) == 1, out + err  # rank 0 alone says it, once
    assert sum(line.startswith("SIGTERM received") for line in out.splitlines()) == 1
    step = int(stops[0].split("at step ")[1].split(";")[0])
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [f"ckpt-{step:07d}.pt"]
    assert load_checkpoint(run / "checkpoints" / f"ckpt-{step:07d}.pt")["step"] == step
    assert "second signal" not in out + err and "without a checkpoint" not in out + err
    assert (run / "log.txt").read_text().splitlines()[-1].endswith(stops[0])


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_nodes_without_a_shared_folder_continue_from_rank_0s_copy_or_stop_in_seconds_with_one_line_each(tmp_path):
    """Two c10d agents, one node holding the run: rank 0 lands on either. On the node with the run, its checkpoint
    is sent to the other node and both continue; on the empty node, a fresh start would begin a second run beside
    the one the other node holds, so both stop with one line each (tests/test_cluster_resume.py pins each case)."""
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 2, "ckpt_every": 0, "sample_every": 0}})
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    node_a.mkdir()
    node_b.mkdir()
    made = subprocess.run([sys.executable, "-m", "sngan", "train", "--config", str(config), "--out", "run",
                           "--no-progress"], cwd=node_a, env=env(), capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    start = time.monotonic()
    results = two_agents(["-m", "sngan", "train", "--config", str(config), "--out", "run", "--resume", "auto",
                          "--set", "train.iterations=4", "--no-progress"], [node_a, node_b])
    assert time.monotonic() - start < 120
    if all(code == 0 for code, _ in results):  # rank 0 on the node with the run
        assert load_checkpoint(node_a / "run" / "checkpoints" / "ckpt-0000004.pt")["step"] == 4
        assert not (node_b / "run").exists()
        return
    assert all(code != 0 for code, _ in results)
    lines = [line for _, out in results for line in out.splitlines() if line.startswith("error")]
    assert len(lines) == 2, lines  # one each
    assert all("holds checkpoints of the run in" in line and "starts afresh there" in line for line in lines)
    assert not (node_b / "run" / "metrics.jsonl").exists()


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_a_config_error_under_torchrun_is_each_ranks_one_line_before_the_agents_report(tmp_path):
    """docs/cluster.md: the ranks' own lines come first, once each; the agent's ChildFailedError block follows and
    says only that they exited 1."""
    (tmp_path / "bad.yaml").write_text("train:\n  iterations: -1\n")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "--max-restarts", "0", "-m", "sngan", "train", "--config", str(tmp_path / "bad.yaml"),
                           "--out", str(tmp_path / "run"), "--no-progress"], env=env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).splitlines()
    ours = [i for i, line in enumerate(lines) if line.startswith("error (rank")]
    assert sorted(lines[i][:len("error (rank 0)")] for i in ours) == ["error (rank 0)", "error (rank 1)"]
    assert all("key 'train.iterations' must be >= 1, got -1" in lines[i] for i in ours)
    agent = next(i for i, line in enumerate(lines) if "ChildFailedError" in line)
    assert max(ours) < agent  # the cause first
    assert "exitcode  : 1" in "\n".join(lines[agent:])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_ranks_with_different_configs_are_refused_before_the_first_step_naming_the_key(tmp_path):
    config = write_config(tmp_path / "c.yaml")
    script = tmp_path / "per_rank.py"
    script.write_text(PER_RANK_SET)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), "train", "--config", str(config), "--out", str(tmp_path / "run"),
                           "--no-progress"], env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 2 and all("started with different configs: optim.lr (rank 0: 0.0002, rank 1: 0.0001)"
                                   in line for line in lines), proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_repeated_stop_signals_are_one_request_and_a_later_ctrl_c_stops_at_once(monkeypatch):
    import pytest

    from sngan.train import loop

    said = []
    with loop.SignalGuard(said.append) as guard:
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT):  # Slurm's, torchrun's, a terminal's
            os.kill(os.getpid(), sig)
        assert guard.received == signal.SIGTERM
        assert len(said) == 1 and said[0].startswith("SIGTERM received: finishing this step and writing a checkpoint")
        monkeypatch.setattr(loop, "SAME_REQUEST_S", 0.0)
        os.kill(os.getpid(), signal.SIGTERM)  # a late repeat of the cluster's SIGTERM: still the same request
        with pytest.raises(KeyboardInterrupt, match="second signal SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C, after the first burst
        monkeypatch.setattr(loop, "SAME_TERM_S", 0.0)
        with pytest.raises(KeyboardInterrupt, match="second signal SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is not guard._handle  # handlers restored


def test_repeats_of_a_stop_request_after_training_ended_are_still_that_request(monkeypatch):
    """A killed `study --jobs` parent signals its children once per exiting thread, and torchrun's agent forwards
    Slurm's SIGTERM late: a repeat arriving after the checkpoint, while the stop line is being written, must not turn
    the stop into 'interrupted' (CI saw it: 'interrupted: SIGTERM' after the step's checkpoint)."""
    import pytest

    from sngan.train import loop

    seen = []

    def before(signum, frame):  # the handler in place before training (the CLI's raises Terminated)
        seen.append(signum)
        raise KeyboardInterrupt("previous handler")

    old = {sig: signal.signal(sig, before) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with loop.SignalGuard() as guard:
            os.kill(os.getpid(), signal.SIGTERM)
        assert guard.received == signal.SIGTERM
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):  # repeats after the guard: absorbed
            os.kill(os.getpid(), sig)
        assert seen == []
        with pytest.raises(KeyboardInterrupt, match="previous handler"):
            loop.pass_on(signal.SIGTERM)  # what submitit's task does to requeue: reaches the handler before
        assert seen == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is before
        seen.clear()
        with loop.SignalGuard() as guard:
            os.kill(os.getpid(), signal.SIGTERM)
        monkeypatch.setattr(loop, "SAME_REQUEST_S", 0.0)
        with pytest.raises(KeyboardInterrupt, match="previous handler"):
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C after the burst is the user's, as before the guard
        os.kill(os.getpid(), signal.SIGTERM)  # SIGTERM's window (SAME_TERM_S) is still open
        monkeypatch.setattr(loop, "SAME_TERM_S", 0.0)
        with pytest.raises(KeyboardInterrupt, match="previous handler"):
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGINT, signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is before  # the window over: the previous handler is back
        with loop.SignalGuard():
            pass  # a guard that took no signal restores what it found
        assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is before
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_sighup_and_sigusr2_stop_training_with_a_checkpoint_at_that_step(tmp_path):
    from unittest import mock

    import pytest

    import sngan.train.loop as loop
    import sngan.train.steps as steps
    from sngan.config import load_config
    from sngan.errors import TrainingStopped

    config = load_config(write_config(tmp_path / "c.yaml", {"train": {"iterations": 50, "ckpt_every": 0}}))
    for sig in (signal.SIGHUP, signal.SIGUSR2):  # the terminal closed; Slurm's warning through submitit
        real_update = steps.update_ema

        def update_then_signal(state, sig=sig, real_update=real_update):
            real_update(state)
            if state.step == 3:
                os.kill(os.getpid(), sig)

        run = tmp_path / sig.name
        with mock.patch.object(steps, "update_ema", update_then_signal), \
                pytest.raises(TrainingStopped, match="stopped by a signal at step 3"):
            loop.train(config, run, progress=False, log=lambda _: None)
        assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt-0000003.pt"]
        assert f"{sig.name} received" in (run / "log.txt").read_text()
