"""`TrainState`: the run in memory, how `build_state` makes it from a config, its conversion to and from a checkpoint
dict; `open_resume`: the one opener of a checkpoint to continue.

`build_state` (seeding, data with rank 0 packing first, models, optimisers, DDP, then compile) gives identical
weights on every rank (seeded before the models are built) and per-rank latent streams and data shares under
torchrun. Every step that can fail ends in `distributed.together` (a data folder missing on one node stops every
rank with one line), before DDP's first collective.

`snapshot`/`restore` cover every random generator in use (Python, NumPy, torch CPU/CUDA, the data order), so a
resumed run continues bitwise-exactly on CPU. Under torchrun every rank's generators are gathered into the
checkpoint and each rank restores its own.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from sngan import checkpoint as ckpt
from sngan import distributed
from sngan.config import Config
from sngan.data import Batches, StreamBatches, load_images, make_batches
from sngan.data.cache import open_packed
from sngan.data.sources import ImageSet
from sngan.datasets import DATASETS
from sngan.distributed import SINGLE, DistInfo, check_same_data, gather_objects, local_batch, together, wrap
from sngan.errors import CheckpointError, SnganError
from sngan.models import build_discriminator, build_generator
from sngan.models.spectral import start_sn
from sngan.train.perf import Perf, compiled, resolve_perf, set_matmul_precision
from sngan.train.regularizers import orthogonal_init
from sngan.train.rundir import checkpoint_run_id


@dataclass(frozen=True)
class Resume:
    """A checkpoint to continue, opened and checked once (`open_resume`): what `train` needs of it."""

    path: Path
    state: dict[str, Any]  # what `TrainState.restore` loads
    run_id: str  # the run it belongs to; the folder must be that run's


def models_differ(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys of the `model` config section whose values differ between two configs (a key one of them lacks
    counts as different: checkpoint format 1, the only one, records every key)."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def open_resume(source: str | Path | ckpt.Opened, cfg: Config) -> Resume:
    """Open (unless `source` is already opened) and check a checkpoint to continue under `cfg`: finite weights (a
    diverged checkpoint is refused before anything is written), the same model, a well-formed run id."""
    opened = source if isinstance(source, ckpt.Opened) else ckpt.open_checkpoint(source)
    saved = opened.state
    try:
        for what in ("generator", "discriminator", "generator_ema"):
            if isinstance(saved.get(what), dict):
                ckpt.check_finite(saved[what], what)
        run_id = checkpoint_run_id(saved)
    except CheckpointError as exc:
        raise CheckpointError(f"{opened.path}: {exc}") from None
    changed = models_differ(saved["config"].get("model", {}), cfg.to_dict()["model"])
    if changed:
        raise SnganError(f"cannot resume {opened.path}: the config changes the model ({', '.join(changed)}); "
                         f"resume with the checkpoint's model settings")
    return Resume(opened.path, saved, run_id)


@dataclass
class Net:
    """One network of the run: `module`, the plain module (saved, sampled, inspected), and two views sharing its
    parameters and buffers: `trained`, for the step that updates this network (DistributedDataParallel under
    torchrun, then `torch.compile`d when asked for), and `frozen`, for its use inside the other network's step (the
    D step's no-grad fakes, the D forward of the G step: compiled when asked for, never DDP, since no gradient of
    it is synchronised there). Without DDP or compile all three are the same module."""

    module: nn.Module
    trained: nn.Module
    frozen: nn.Module


@dataclass
class TrainState:
    """The run in memory: what a checkpoint holds (networks, optimisers, step, best metric, random streams through
    `batches` and the global generators) plus what it runs on (`cfg`, `device`, `dist`, `perf`), which are not saved.
    `g` and `d` are the generator and the discriminator (`Net`: the module and its trained and frozen views).
    """

    cfg: Config
    device: torch.device
    g: Net
    d: Net
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: Batches | StreamBatches
    d_batch: int  # this rank's share of train.batch_size (`distributed.local_batch`)
    g_batch: int  # this rank's share of train.g_batch_size
    generator_ema: nn.Module | None = None
    dist: DistInfo = SINGLE
    step: int = 0
    best: dict[str, Any] | None = None
    run_id: str | None = None  # the run's marker (sngan.train.rundir), recorded in every checkpoint
    class_names: list[str] = field(default_factory=list)  # the dataset's, in label order ([] unconditional)
    perf: Perf = field(default_factory=Perf)

    @property
    def sampler(self) -> nn.Module:
        """The generator to sample, score and show: the EMA generator when the run keeps one, else the live one
        (`checkpoint.uses_ema`, the rule `sngan sample` and `sngan eval` follow)."""
        ema = self.generator_ema
        return ema if ckpt.uses_ema(ema is not None) and ema is not None else self.g.module

    @property
    def sampler_name(self) -> str:
        return ckpt.generator_label(ckpt.uses_ema(self.generator_ema is not None))

    def rng_state(self) -> dict[str, Any]:
        """This process's generator states (Python, NumPy, torch CPU/CUDA, data order)."""
        np_state = cast(tuple, np.random.get_state())  # the legacy tuple (numpy's types allow a dict too)
        rng = {"python": random.getstate(), "torch": torch.get_rng_state(), "data": self.batches.state_dict(),
               "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def set_rng_state(self, rng: dict[str, Any]) -> None:
        random.setstate(_as_tuple(rng["python"]))
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(rest[0]), int(rest[1]), rest[2]))
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.batches.load_state_dict(rng["data"])

    def snapshot(self) -> dict[str, Any]:
        """The checkpoint dict (plain data only). Under torchrun every rank must call it (RNG states are gathered)."""
        rng_ranks = gather_objects(_to_cpu(self.rng_state()), self.dist)
        return {
            "format_version": ckpt.FORMAT_VERSION,
            "config": self.cfg.to_dict(),
            "step": self.step,
            "generator": self.g.module.state_dict(),
            "discriminator": self.d.module.state_dict(),
            "generator_ema": None if self.generator_ema is None else self.generator_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks if self.dist.enabled else None,
            "best": self.best,
            "run_id": self.run_id,
            "class_names": list(self.class_names),
        }

    def restore(self, state: dict[str, Any], log: Callable[[str], None] = print) -> None:
        """Load a checkpoint dict produced by `snapshot` (same model config).

        Every section, tensor shape and optimizer moment is checked before anything is loaded; a mismatch is one
        CheckpointError line naming the first one.
        """
        ema_weights = state.get("generator_ema") or state["generator"]
        ckpt.check_sections(state, ckpt.TRAINING_KEYS)
        ckpt.check_state_dict(self.g.module, state["generator"], "generator")
        ckpt.check_state_dict(self.d.module, state["discriminator"], "discriminator")
        if self.generator_ema is not None:
            ckpt.check_state_dict(self.generator_ema, ema_weights, "generator_ema")
        ckpt.check_optimizer_state(self.opt_g, state["opt_g"], "opt_g")
        ckpt.check_optimizer_state(self.opt_d, state["opt_d"], "opt_d")
        ranks = state.get("rng_ranks") or [state["rng"]]
        try:
            self.g.module.load_state_dict(state["generator"])
            self.d.module.load_state_dict(state["discriminator"])
            if self.generator_ema is not None:
                self.generator_ema.load_state_dict(ema_weights)
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            if len(ranks) == self.dist.world_size:
                self.set_rng_state(ranks[self.dist.rank])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ckpt.CheckpointError(f"the checkpoint's state cannot be restored: {first}") from None
        if len(ranks) != self.dist.world_size:
            log(f"checkpoint was written by {len(ranks)} process(es), this run has {self.dist.world_size}: "
                f"weights and optimizers are restored, random streams restart from the seed (not bitwise exact)")
        self.step = int(state["step"])
        self.best = state.get("best")
        self.run_id = state.get("run_id")


def build_state(cfg: Config, device: torch.device, log: Callable[[str], None] = print,
                info: DistInfo = SINGLE, perf: Perf | None = None) -> TrainState:
    """Seeded models, optimizers and data for `cfg` on `device` (identical weights on every rank), with the speed
    options `perf` (default: `cfg.perf` resolved for a run of `cfg.train.iterations`)."""
    d_batch = local_batch(cfg.train.batch_size, info, "train.batch_size")  # before anything is read or built
    g_batch = local_batch(cfg.train.g_batch_size, info, "train.g_batch_size")
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % 2 ** 32)
    torch.manual_seed(cfg.train.seed)
    image_set = _images_once_per_node(cfg, info, log) if info.enabled and DATASETS[cfg.data.name].packed else None
    with together(info, "reading the dataset"):
        if image_set is None:
            image_set = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, log=log)
        _check_labels(cfg, len(image_set.classes))
    if info.enabled:  # a collective: every rank has its images here
        check_same_data(image_set.fingerprint(), info)
    with together(info, "building the networks"):
        t, n = cfg.train, len(image_set.images)
        passes = t.iterations * t.n_dis * t.batch_size / n if n else math.inf  # over the images, in the whole run
        log(f"{image_set.summary()}; {passes:.1f} epochs")
        if perf is None:
            perf = resolve_perf(cfg.perf, device, cfg.train.iterations)
        set_matmul_precision(perf, device)
        generator = build_generator(cfg.model).to(device)
        d_net = build_discriminator(cfg.model)
        if cfg.loss.orthonormal_weight > 0:  # the paper starts orthonormal regularisation from orthonormal weights
            orthogonal_init(d_net)
        discriminator = d_net.to(device)
        if perf.channels_last:  # the 4-d weights, in place
            for net in (generator, discriminator):
                net.to(memory_format=torch.channels_last)
        start_sn(discriminator, cfg.model.sn_algorithm)  # a resumed run then loads its own u, v over these
        betas = (float(cfg.optim.beta1), float(cfg.optim.beta2))  # torch >= 2.14 refuses an int/float mix
        fused = True if perf.fused_adam else None  # None, not False: torch's own choice (foreach on CUDA)
        opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.optim.lr, betas=betas, fused=fused)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.optim.lr, betas=betas, fused=fused)
        ema = copy.deepcopy(generator).requires_grad_(False) if cfg.train.ema_decay > 0 else None
        if info.enabled:  # latents differ per rank (data: disjoint shares of one epoch order); weights do not
            torch.manual_seed(cfg.train.seed + 10_007 * info.rank)
        batches = make_batches(image_set, device, seed=cfg.train.seed + 1, dequantize=cfg.data.dequantize,
                               budget_mb=cfg.data.device_budget_mb, rank=info.rank, world=info.world_size, log=log)
    if perf.compile != "off":
        log(f"compiled: generator, discriminator (mode {perf.compile}; the first iterations include compiling)")
    g_ddp, d_ddp = (wrap(generator, device), wrap(discriminator, device)) if info.enabled else \
        (generator, discriminator)
    g = Net(generator, compiled(g_ddp, perf), compiled(generator, perf))
    d = Net(discriminator, compiled(d_ddp, perf), compiled(discriminator, perf))
    names = [str(name) for name in image_set.classes] if cfg.model.num_classes else []  # plain data for the ckpt
    return TrainState(cfg, device, g, d, opt_g, opt_d, batches, d_batch, g_batch, ema, info, perf=perf,
                      class_names=names)


def _images_once_per_node(cfg: Config, info: DistInfo, log: Callable[[str], None]) -> ImageSet:
    """The packed data set under torchrun: the first process of each node reads the source (checking its files
    once, packing it if no cache matches) and posts the cache folder; the node's other processes open that folder.
    Every process waits until each node has posted, through the store rather than in a collective (packing
    ImageNet takes longer than a collective's timeout), with a line every few minutes; a failure on any node ends
    every wait at once. Disk space for a pack is reserved once per node."""
    node_processes = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size) or info.world_size)
    nodes = max(1, info.world_size // node_processes)
    mine = f"data/node-{distributed.node_rank()}"
    image_set = None
    if info.local_rank == 0:
        try:
            image_set = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, log=log)
        except Exception as exc:
            distributed.post(mine, f"error node {distributed.node_rank()}: {' '.join(str(exc).split())[:300]}")
            raise
        distributed.post(mine, f"ok {Path(str(image_set.folder)).resolve()}")
    say = log if info.is_main else (lambda line: print(f"rank {info.rank}: {line}")) if info.local_rank == 1 else None
    posted = distributed.wait_posted(
        [f"data/node-{n}" for n in range(nodes)], "the first process of each node to read or pack the dataset",
        say, "pack it first, with `sngan prepare --config CONFIG` on each node (or once on a shared filesystem)")
    if image_set is None:
        image_set = open_packed(Path(posted[mine].removeprefix("ok ")))
    return image_set


def _check_labels(cfg: Config, num_data_classes: int) -> None:
    k = cfg.model.num_classes
    if k and num_data_classes < 2:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} class: a conditional "
                         f"model needs a class-folder tree with at least 2 classes")
    if k and k != num_data_classes:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} classes")


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
