"""Training state: devices, seeding, and `TrainState` — everything a checkpoint holds — built from a config.

`build_state` gives identical weights on every rank (seeded before the models are built) and per-rank latent
streams and data shares under torchrun. `TrainState.snapshot`/`restore` turn it into a checkpoint dict and back,
including every random generator in use, so a resumed run continues bitwise-exactly on CPU.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sngan import checkpoint as ckpt
from sngan.config import Config, SnganError
from sngan.data import Batches, StreamBatches, epochs, load_images, make_batches
from sngan.distributed import SINGLE, DistInfo, barrier, gather_objects, local_batch, wrap
from sngan.models import build_discriminator, build_generator
from sngan.perf import Perf, adam, compiled, prepare, resolve_perf, set_matmul_precision


def resolve_device(name: str, info: DistInfo = SINGLE) -> torch.device:
    """`auto` = cuda when available, else cpu; under torchrun each rank takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise SnganError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnganError(f"device {name} asked for but no CUDA device is available; use auto or cpu")
    return torch.device("cuda", info.local_rank) if name == "cuda" else torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    """Everything that changes during training and is checkpointed.

    `generator`/`discriminator` are the plain modules (saved, sampled); `g_train`/`d_train` are what
    the update steps call: DistributedDataParallel wrappers under torchrun and `torch.compile`d when asked for,
    the same modules otherwise.
    """

    cfg: Config
    device: torch.device
    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: Batches | StreamBatches
    generator_ema: nn.Module | None = None
    dist: DistInfo = SINGLE
    step: int = 0
    best: dict[str, Any] | None = None
    perf: Perf = field(default_factory=Perf)
    g_train: nn.Module | None = None
    d_train: nn.Module | None = None

    def __post_init__(self) -> None:
        self.g_train = self.generator if self.g_train is None else self.g_train
        self.d_train = self.discriminator if self.d_train is None else self.d_train
        self.d_batch = local_batch(self.cfg.train.batch_size, self.dist, "train.batch_size")
        self.g_batch = local_batch(self.cfg.train.g_batch_size, self.dist, "train.g_batch_size")

    def rng_state(self) -> dict[str, Any]:
        """This process's generator states (Python, NumPy, torch CPU/CUDA, data order)."""
        np_state = np.random.get_state()
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
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_ema": None if self.generator_ema is None else self.generator_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks if self.dist.enabled else None,
            "best": self.best,
        }

    def restore(self, state: dict[str, Any], log: Callable[[str], None] = print) -> None:
        """Load a checkpoint dict produced by `snapshot` (same model config)."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.generator_ema is not None:
            self.generator_ema.load_state_dict(state.get("generator_ema") or state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        ranks = state.get("rng_ranks") or [state["rng"]]
        if len(ranks) == self.dist.world_size:
            self.set_rng_state(ranks[self.dist.rank])
        else:
            log(f"checkpoint was written by {len(ranks)} process(es), this run has {self.dist.world_size}: "
                f"weights and optimizers are restored, random streams restart from the seed (not bitwise exact)")
        self.step = int(state["step"])
        self.best = state.get("best")


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


def build_state(cfg: Config, device: torch.device, log: Callable[[str], None] = print,
                info: DistInfo = SINGLE) -> TrainState:
    """Seeded models, optimizers and data for `cfg` on `device` (identical weights on every rank)."""
    seed_everything(cfg.train.seed)
    if not info.is_main:
        barrier(info)  # rank 0 packs the dataset cache first; the others then read it
    image_set = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, log=log)
    if info.is_main:
        barrier(info)
    _check_labels(cfg, len(image_set.classes))
    passes = epochs(len(image_set.images), cfg.train.iterations, cfg.train.n_dis, cfg.train.batch_size)
    log(f"{image_set.summary()}; {passes:.1f} epochs")
    perf = resolve_perf(cfg.perf, device)
    set_matmul_precision(perf)
    generator = prepare(build_generator(cfg.model).to(device), perf)
    discriminator = prepare(build_discriminator(cfg.model).to(device), perf)
    opt_g = adam(generator.parameters(), cfg.optim.lr, (cfg.optim.beta1, cfg.optim.beta2), perf)
    opt_d = adam(discriminator.parameters(), cfg.optim.lr, (cfg.optim.beta1, cfg.optim.beta2), perf)
    ema = copy.deepcopy(generator).requires_grad_(False) if cfg.train.ema_decay > 0 else None
    if info.enabled:  # latents differ per rank (data: disjoint shares of one epoch order); weights do not
        torch.manual_seed(cfg.train.seed + 10_007 * info.rank)
    batches = make_batches(image_set, device, seed=cfg.train.seed + 1, dequantize=cfg.data.dequantize,
                           budget_mb=cfg.data.device_budget_mb, rank=info.rank, world=info.world_size, log=log)
    return TrainState(cfg, device, generator, discriminator, opt_g, opt_d, batches, ema, info, perf=perf,
                      g_train=compiled(wrap(generator, info, device), perf),
                      d_train=wrap(discriminator, info, device))


def _check_labels(cfg: Config, num_data_classes: int) -> None:
    k = cfg.model.num_classes
    if k and num_data_classes < 2:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} class: a conditional "
                         f"model needs a class-folder tree with at least 2 classes")
    if k and k != num_data_classes:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} classes")
