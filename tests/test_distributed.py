"""torchrun / DistributedDataParallel on CPU with gloo: real 2-process runs."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sngan.checkpoint import list_checkpoints, load_checkpoint
from sngan.config import ModelConfig, from_dict, load_config
from sngan.distributed import DistInfo, gather_rows, local_batch
from sngan.errors import SnganError
from sngan.models import build_discriminator, build_generator
from sngan.train.losses import hinge_d
from sngan.train.perf import Perf
from sngan.train.steps import d_step
from tests.helpers import REPO, write_config

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
HARNESS = """
import sys, torch
import sngan.train.loop as loop
from sngan.config import load_config
from sngan.distributed import from_env, init_process_group, shutdown
info = from_env()
init_process_group(info)
real_save = loop.save_periodic

def dump_then_save(state, *where):  # each rank's own weights in memory, before the checkpoint's rank check
    torch.save({"g": state.g.module.state_dict(), "d": state.d.module.state_dict(), "step": state.step},
               f"{sys.argv[3]}/rank{info.rank}.pt")
    return real_save(state, *where)

loop.save_periodic = dump_then_save
loop.train(load_config(sys.argv[1]), sys.argv[2], progress=False, info=info)
shutdown()
"""


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_torchrun_two_processes_write_one_checkpoint_log_and_per_rank_random_streams(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", {"train": {"ckpt_every": 0, "sample_every": 0}})
    run = tmp_path / "run"
    proc = subprocess.run([*TORCHRUN, "-m", "sngan", "train", "--config", str(config), "--out", str(run),
                           "--no-progress"], capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt-0000003.pt"]
    assert sorted(p.name for p in run.iterdir() if p.is_file()) == [".lock", ".sngan-run", "config.yaml", "log.txt",
                                                                     "metrics.jsonl"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    state = load_checkpoint(run / "checkpoints" / "ckpt-0000003.pt")
    assert len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])  # per-rank streams
    # the checkpoint is written only after every rank's weights were compared to rank 0's
    assert "differs between ranks" not in proc.stderr


def _optimizer_steps(ckpt: dict) -> tuple[set[float], set[float]]:
    return tuple({float(s["step"]) for s in ckpt[k]["state"].values()} for k in ("opt_g", "opt_d"))


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_resuming_with_another_number_of_processes_restores_weights_and_optimizers_and_says_so_in_one_line(
        tmp_path):
    """2 processes -> 1 -> 2: weights and Adam moments carry over (step counters continue), the random streams
    restart from the seed, and one line says that the resume is not bitwise exact."""
    from sngan.train.loop import train

    config = write_config(tmp_path / "tiny.yaml", {"train": {"iterations": 2, "ckpt_every": 0, "sample_every": 0}})
    run = tmp_path / "run"
    proc = subprocess.run([*TORCHRUN, "-m", "sngan", "train", "--config", str(config), "--out", str(run),
                           "--no-progress"], capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = []
    one = train(load_config(config, ["train.iterations=3"]), run, resume=run / "checkpoints" / "ckpt-0000002.pt",
                progress=False, log=lines.append)
    notice = [line for line in lines if "process(es)" in line]
    assert notice == ["checkpoint was written by 2 process(es), this run has 1: weights and optimizers are "
                      "restored, random streams restart from the seed (not bitwise exact)"]
    state = load_checkpoint(one)
    assert state["step"] == 3 and _optimizer_steps(state) == ({3.0}, {6.0})  # n_dis 2: 2 + 1 G, 4 + 2 D updates
    proc = subprocess.run([*TORCHRUN, "-m", "sngan", "train", "--out", str(run), "--resume", "auto", "--set",
                           "train.iterations=4", "--no-progress"], capture_output=True, text=True, env=env(),
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = (proc.stdout + proc.stderr).splitlines()
    assert [line for line in output if "process(es)" in line] == [
        "checkpoint was written by 1 process(es), this run has 2: weights and optimizers are restored, random "
        "streams restart from the seed (not bitwise exact)"]
    state = load_checkpoint(run / "checkpoints" / "ckpt-0000004.pt")
    assert _optimizer_steps(state) == ({4.0}, {8.0}) and len(state["rng_ranks"]) == 2
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def checkpoint_keys(ckpt: dict) -> dict:
    """Every section's keys, and the keys of each state dict inside (weights, optimisers, EMA)."""
    return {k: sorted(v) if isinstance(v, dict) and k != "config" else None for k, v in ckpt.items()}


@pytest.mark.slow
def test_torchrun_two_processes_train_compiled_write_eager_keys_and_resume_eagerly(tmp_path):
    """The compiled 2-process gloo run's checkpoint has exactly an eager run's keys (no `_orig_mod.` prefix) and
    an eager 2-process job resumes it bitwise from its random streams."""
    runs = {}
    for mode in ("off", "default"):
        config = write_config(tmp_path / f"{mode}.yaml", {"train": {"ckpt_every": 0, "sample_every": 0},
                                                           "perf": {"compile": mode}})
        runs[mode] = tmp_path / mode
        proc = subprocess.run([*TORCHRUN, "-m", "sngan", "train", "--config", str(config), "--out", str(runs[mode]),
                               "--no-progress"], capture_output=True, text=True, env=env(), cwd=tmp_path,
                              timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "differs between ranks" not in proc.stderr  # weights compared across ranks before the save
    assert "training step: compiled (perf.compile default)" in proc.stdout + proc.stderr
    eager, compiled = (load_checkpoint(runs[m] / "checkpoints" / "ckpt-0000003.pt") for m in ("off", "default"))
    assert checkpoint_keys(compiled) == checkpoint_keys(eager)
    assert compiled["config"]["perf"]["compile"] == "default"
    proc = subprocess.run([*TORCHRUN, "-m", "sngan", "train", "--out", str(runs["default"]), "--resume", "auto",
                           "--set", "perf.compile=off", "--set", "train.iterations=5", "--no-progress"],
                          capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training step: eager (perf.compile off)" in proc.stdout + proc.stderr
    assert "random streams restart" not in proc.stdout + proc.stderr  # both ranks' streams restored
    resumed = load_checkpoint(runs["default"] / "checkpoints" / "ckpt-0000005.pt")
    assert resumed["step"] == 5 and checkpoint_keys(resumed) == checkpoint_keys(eager)


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_each_rank_holds_the_same_trained_weights_in_memory_when_the_checkpoint_is_written(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", {"train": {"ckpt_every": 0, "sample_every": 0}})
    script = tmp_path / "dump.py"
    script.write_text(HARNESS)
    proc = subprocess.run([*TORCHRUN, str(script), str(config), str(tmp_path / "run"), str(tmp_path)],
                          capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] == 3
    torch.manual_seed(0)
    fresh = build_generator(load_config(config).model)
    assert not torch.equal(fresh.state_dict()["l1.weight"], r0["g"]["l1.weight"])  # trained, not the init
    for net in ("g", "d"):  # BatchNorm statistics included: the loop broadcasts rank 0's before a checkpoint
        assert r0[net].keys() == r1[net].keys()
        for name, tensor in r0[net].items():
            assert torch.equal(tensor, r1[net][name]), (net, name)


def _first_d_update(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    x_real, x_fake, d = _fixed_problem()
    shard = slice(rank * 4, rank * 4 + 4)
    ddp = torch.nn.parallel.DistributedDataParallel(d)
    opt = torch.optim.SGD(d.parameters(), lr=0.1)  # linear in the gradient: a wrong split cannot hide
    d_step(_fixed_state(ddp, d, opt, x_real[shard], x_fake[shard]), hinge_d)
    if rank == 0:
        torch.save(d.state_dict(), out)
    dist.destroy_process_group()


class _Fixed(torch.nn.Module):
    """Stands in for the generator and the data: always the same fake (or real) batch."""

    def __init__(self, images):
        super().__init__()
        self.images = images

    def forward(self, z, y=None):
        return self.images

    def next(self, n):
        return self.images, torch.zeros(n, dtype=torch.long)


def _fixed_state(d_train, d, opt, x_real, x_fake):
    """The parts of a TrainState that the production `d_step` reads, around fixed batches."""
    cfg = from_dict({"model": {"z_dim": 8}})
    return SimpleNamespace(batches=_Fixed(x_real), d_batch=len(x_real), cfg=cfg, device=torch.device("cpu"),
                           perf=Perf(), g=SimpleNamespace(frozen=_Fixed(x_fake)),
                           d=SimpleNamespace(module=d, trained=d_train, frozen=d), opt_d=opt)


def _fixed_problem():
    g = torch.Generator().manual_seed(1)
    x_real, x_fake = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    torch.manual_seed(0)
    d = build_discriminator(ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=8))
    return x_real, x_fake, d


def test_two_process_d_update_equals_one_process_update_on_the_global_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_first_d_update, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    x_real, x_fake, d = _fixed_problem()
    opt = torch.optim.SGD(d.parameters(), lr=0.1)
    d_step(_fixed_state(d, d, opt, x_real, x_fake), hinge_d)
    ddp_state = torch.load(out, weights_only=True)
    for name, tensor in d.state_dict().items():
        assert torch.allclose(tensor, ddp_state[name], atol=1e-6, rtol=1e-5), name
    fresh = _fixed_problem()[2].state_dict()
    moved = sum(not torch.equal(fresh[k], v) for k, v in d.state_dict().items())
    assert moved > 0  # the update did something


def test_global_batch_must_split_evenly():
    assert local_batch(64, DistInfo(rank=1, world_size=4), "train.batch_size") == 16
    with pytest.raises(SnganError, match="must be divisible by the number of processes"):
        local_batch(64, DistInfo(rank=0, world_size=3), "train.batch_size")


FAILING_RANK = """
import sys
import sngan.train.steps as T
from sngan.errors import SnganError
from sngan.cli import main
original = T.d_step
def failing(state, loss_fn):
    if state.dist.rank == 1 and state.step == 2:
        raise SnganError("rank 1 cannot read its data")
    return original(state, loss_fn)
T.d_step = failing
sys.argv = ["sngan", "train", "--config", sys.argv[1], "--out", sys.argv[2], "--no-progress"]
main()
"""


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
def test_a_failing_rank_ends_the_job_with_readable_messages(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", {"train": {"iterations": 1000}})
    script = tmp_path / "failing.py"
    script.write_text(FAILING_RANK)
    proc = subprocess.run([*TORCHRUN, str(script), str(config), str(tmp_path / "run")], capture_output=True,
                          text=True, env=env(), cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "error (rank 1): rank 1 cannot read its data" in proc.stderr
    assert "error (rank 0): lost contact with another process" in proc.stderr


class FakeInception(torch.nn.Module):
    """A cheap stand-in with the InceptionFeatures interface: 16-d 'features', 10-way logits."""

    network, sha256, inception_input, features_key = "fake-net", "0" * 64, "tf1", "fake-net-tf1"

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("proj", torch.randn(3 * 32 * 32, 16, generator=g) / 50)
        self.register_buffer("fc", torch.randn(16, 10, generator=g))

    def forward(self, images):
        features = images.flatten(1) @ self.proj
        return features, features @ self.fc


def _score(info, out):
    import numpy as np

    from sngan.evaluation.protocols import Protocol
    from sngan.evaluation.scoring import score_generator
    from sngan.metrics.stats import ReferenceStats

    torch.manual_seed(0)
    from sngan.models import build_generator

    # conditional, with intra-FID: the generated labels must follow their features back into latent order
    generator = build_generator(ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4, num_classes=2))
    real = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    ref = ReferenceStats(np.zeros(16), np.eye(16), {"network": "fake-net", "inception_input": "tf1"}, None, real,
                         np.arange(40) % 2)
    protocol = Protocol("test", 40, 4, 30, None, "test")
    torch.save(score_generator(generator, FakeInception(), protocol, ref, seed=5, batch_size=6, info=info,
                               extra=("intra_fid",)), out)


def _sharded_score(rank: int, world: int, init_file: str, out: str, threads: int) -> None:
    torch.set_num_threads(threads)  # the single-process run's: a convolution's sums follow the thread count
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    info = DistInfo(rank, world, rank)
    _score(info, f"{out}.{rank}")
    gathered = gather_rows(torch.full((rank + 1, 2), float(rank)), info)  # uneven row counts, padded to travel
    if rank == 0:
        torch.save(gathered, f"{out}.gathered")
    dist.destroy_process_group()


# 7 batches: shared 3 + 2 + 2 (uneven, the last batch short) in the default run; 4 + 3 in the slow set
@pytest.mark.parametrize("world", [pytest.param(2, marks=pytest.mark.slow), 3])
def test_sharded_evaluation_equals_single_process(tmp_path, world):
    """Features travel to rank 0 as tensors (`gather_rows`) and are put back in batch order there: a wrong order
    would change IS (its splits) and FID (only the first 30 images' features count)."""
    from sngan.distributed import SINGLE

    _score(SINGLE, tmp_path / "single.pt")
    mp.spawn(_sharded_score, args=(world, str(tmp_path / "init"), str(tmp_path / "ddp.pt"), torch.get_num_threads()),
             nprocs=world, join=True)
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    for rank in range(world):
        sharded = torch.load(tmp_path / f"ddp.pt.{rank}", weights_only=True)
        assert sharded.keys() == single.keys()
        for key, value in single.items():
            assert abs(sharded[key] - value) <= 1e-9 * max(1.0, abs(value)), key
    assert "intra_fid30_ext" in single
    gathered = torch.load(tmp_path / "ddp.pt.gathered", weights_only=True)
    assert [part.tolist() for part in gathered] == [[[float(r)] * 2] * (r + 1) for r in range(world)]
