"""Config -> a ready `TrainState`: seeding, data (rank 0 packs first), models, optimisers, DDP, then compile.

`build_state` gives identical weights on every rank (seeded before the models are built) and per-rank latent
streams and data shares under torchrun. Every step that can fail ends in `distributed.together` (a data folder
missing on one node stops every rank with one line), before DDP's first collective.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import numpy as np
import torch

from sngan.config import Config
from sngan.data import epochs, load_images, make_batches
from sngan.distributed import SINGLE, DistInfo, together, wrap
from sngan.errors import SnganError
from sngan.models import build_discriminator, build_generator
from sngan.models.spectral import start_sn
from sngan.train.perf import adam, compiled, prepare, resolve_perf, set_matmul_precision
from sngan.train.regularizers import orthogonal_init
from sngan.train.state import Net, TrainState


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def build_state(cfg: Config, device: torch.device, log: Callable[[str], None] = print,
                info: DistInfo = SINGLE) -> TrainState:
    """Seeded models, optimizers and data for `cfg` on `device` (identical weights on every rank)."""
    seed_everything(cfg.train.seed)
    image_set = None
    with together(info, "packing the dataset"):  # rank 0 packs the dataset cache first; the others then read it
        if info.is_main:
            image_set = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, log=log)
    with together(info, "reading the dataset and building the networks"):
        if image_set is None:
            image_set = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, log=log)
        _check_labels(cfg, len(image_set.classes))
        passes = epochs(len(image_set.images), cfg.train.iterations, cfg.train.n_dis, cfg.train.batch_size)
        log(f"{image_set.summary()}; {passes:.1f} epochs")
        perf = resolve_perf(cfg.perf, device)
        set_matmul_precision(perf)
        generator = prepare(build_generator(cfg.model).to(device), perf)
        d_net = build_discriminator(cfg.model)
        if cfg.loss.orthonormal_weight > 0:  # the paper starts orthonormal regularisation from orthonormal weights
            orthogonal_init(d_net)
        discriminator = prepare(d_net.to(device), perf)
        start_sn(discriminator, cfg.model.sn_init)  # a resumed run then loads its own u, v over these
        opt_g = adam(generator.parameters(), cfg.optim.lr, (cfg.optim.beta1, cfg.optim.beta2), perf)
        opt_d = adam(discriminator.parameters(), cfg.optim.lr, (cfg.optim.beta1, cfg.optim.beta2), perf)
        ema = copy.deepcopy(generator).requires_grad_(False) if cfg.train.ema_decay > 0 else None
        if info.enabled:  # latents differ per rank (data: disjoint shares of one epoch order); weights do not
            torch.manual_seed(cfg.train.seed + 10_007 * info.rank)
        batches = make_batches(image_set, device, seed=cfg.train.seed + 1, dequantize=cfg.data.dequantize,
                               budget_mb=cfg.data.device_budget_mb, rank=info.rank, world=info.world_size, log=log)
    if perf.compile != "off":
        log(f"compiled: generator, discriminator (mode {perf.compile}; the first iterations include compiling)")
    g = Net(generator, compiled(wrap(generator, info, device), perf), compiled(generator, perf))
    d = Net(discriminator, compiled(wrap(discriminator, info, device), perf), compiled(discriminator, perf))
    names = [str(name) for name in image_set.classes] if cfg.model.num_classes else []  # plain data for the ckpt
    return TrainState(cfg, device, g, d, opt_g, opt_d, batches, ema, info, perf=perf, class_names=names)


def _check_labels(cfg: Config, num_data_classes: int) -> None:
    k = cfg.model.num_classes
    if k and num_data_classes < 2:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} class: a conditional "
                         f"model needs a class-folder tree with at least 2 classes")
    if k and k != num_data_classes:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} classes")
