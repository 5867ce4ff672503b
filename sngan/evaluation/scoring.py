"""Scoring a generator: generate -> uint8 -> Inception -> IS, FID (and KID, PRDC, intra-FID), in exact float32.

Generated images are quantised to uint8 (as the authors' `gen_images` and any saved PNG) and then go through the
same path as real images: /255, bilinear resize to 299, pytorch-fid's FID Inception. Latents come from
`sngan.sample.generate.latents(seed)`, so an evaluation never touches the training RNGs. `TrainingEvaluator` is the
same scoring during training.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sngan.config import Config
from sngan.distributed import SINGLE, DistInfo, broadcast_object, gather_objects
from sngan.evaluation.protocols import INPUT, PRECISION, Protocol, make_protocol, metric_names
from sngan.evaluation.reference import check_reference, reference_stats
from sngan.metrics import FeatureStats, frechet_distance, inception_score_from_logits
from sngan.metrics.extra import extra_scores
from sngan.metrics.inception import InceptionFeatures, load_inception
from sngan.metrics.precision import scoring_precision
from sngan.metrics.stats import RESIZE, ReferenceStats, uint8_to_unit
from sngan.sample.generate import generate, latents
from sngan.sample.writers import to_uint8

EVAL_BATCH = 100  # images per Inception pass during training (the authors' evaluation batch)



def score_generator(generator: nn.Module, net: InceptionFeatures, protocol: Protocol, ref: ReferenceStats,
                    seed: int, batch_size: int, info: DistInfo = SINGLE,
                    extra: tuple[str, ...] = ()) -> dict[str, float]:
    """IS (mean, std), FID and the `extra` metrics (`sngan.metrics.extra`) of `generator` under `protocol`.

    Args:
        generator: the generator (any mode; evaluated in eval mode, then restored).
        net: the Inception network.
        protocol: the counts.
        ref: reference statistics of real images.
        seed: latent seed.
        batch_size: images per generator and Inception pass.
        info: under torchrun, batches are shared out over the ranks and their features gathered in order, so the
            result equals the single-process one; every rank must call this.
        extra: KID, PRDC, intra-FID from the FID's features (`ref` must hold the real features).

    Returns:
        {is name: mean, is name + '_std': std, fid name: value, extra names: values}.
    """
    check_reference(ref, net.network)
    z, y = latents(protocol.num_generated, generator.z_dim, generator.num_classes, seed,
                   truncation=protocol.truncation)
    starts = list(range(0, protocol.num_generated, batch_size))[info.rank::info.world_size]
    acc, logits = FeatureStats(), {}
    kept: list[tuple[int, torch.Tensor]] = []
    for start in starts:
        stop = min(start + batch_size, protocol.num_generated)
        features, logits[start] = _inception_batch(generator, net, z[start:stop],
                                                   None if y is None else y[start:stop])
        features = features[:max(0, protocol.fid_generated - start)]
        kept.append((start, features.cpu() if info.enabled else features))
    if info.enabled:  # reassemble every rank's batches in index order
        kept = sorted(pair for part in gather_objects(kept, info) for pair in part)
        logits = {k: v for part in gather_objects(logits, info) for k, v in part.items()}
    is_mean, is_std = inception_score_from_logits(torch.cat([logits[k] for k in sorted(logits)]).numpy(),
                                                  protocol.splits)
    for _, features in kept:
        if len(features):
            acc.update(features)
    mu, sigma = acc.mu_sigma()
    is_name, fid_name = metric_names(protocol, ref.protocol)
    return {is_name: is_mean, f"{is_name}_std": is_std, fid_name: frechet_distance(mu, sigma, ref.mu, ref.sigma),
            **extra_scores(extra, fid_name, [f for _, f in kept if len(f)], y, ref, generator.num_classes)}


def _inception_batch(generator: nn.Module, net: InceptionFeatures, z: torch.Tensor,
                     y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool3 features (B, 2048) on the network's device, logits (B, 1008) on the CPU) of generated images,
    computed in exact float32 (`scoring_precision`)."""
    device = next(net.buffers()).device
    with scoring_precision():  # exact float32 for G too, whatever precision training set
        images = generate(generator, z, y, len(z))
        features, logits = net(uint8_to_unit(to_uint8(images).to(device)))
    return features, logits.cpu()


def protocol_record(protocol: Protocol, net: InceptionFeatures, ref: ReferenceStats, **extra: Any) -> dict[str, Any]:
    """Everything a reader needs to reproduce a score (appended to --json files)."""
    real = ref.protocol or {}
    return {"time": time.time(), "protocol": protocol.name, "protocol_description": protocol.description,
            "network": net.network, "weights_sha256": net.sha256, "num_generated": protocol.num_generated,
            "is_splits": protocol.splits, "fid_generated": protocol.fid_generated,
            "num_real": real.get("num_real"), "real_dataset": real.get("dataset"),
            "split": real.get("split"), "real_subset": real.get("subset"),
            "stats": str(ref.path) if ref.path else None, "resize": RESIZE, "input": INPUT,
            "precision": PRECISION, **extra}


class TrainingEvaluator:
    """IS/FID during training under `train.eval_protocol` (its generated count changed by a nonzero
    `train.eval_num_samples`), with latent seed `train.seed`: `sngan eval --protocol P --seed S` on the same
    checkpoint gives the same numbers.

    Creating it loads the Inception weights (so a run with evaluation on fails before training if they are
    missing); the reference statistics are computed (or read from the cache) at the first evaluation.
    """

    def __init__(self, cfg: Config, device: torch.device, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        self.protocol = make_protocol(cfg.train.eval_protocol, cfg.train.eval_num_samples or None)
        self.net = load_inception(cfg.train.eval_inception_weights or None, device)
        self.ref: ReferenceStats | None = None

    def __call__(self, generator: nn.Module, info: DistInfo = SINGLE) -> dict[str, float]:
        """{is name: mean, is name + '_std': std, fid name: value} of `generator` (latent seed train.seed)."""
        if self.ref is None:
            cfg = self.cfg
            if info.is_main:  # one rank reads the data and writes the cache; the others receive the result
                self.ref = reference_stats(cfg.data, cfg.model.resolution, cfg.train.seed, cfg.data.split,
                                           self.protocol.num_real, self.net, EVAL_BATCH, self.log)
            self.ref = broadcast_object(self.ref, info)
        # a contiguous copy: the training copy may be channels_last (perf.channels_last), and a different memory
        # layout picks other conv kernels, so float32 results would differ from `sngan eval`'s in the last bits
        plain = copy.deepcopy(generator).to(memory_format=torch.contiguous_format)
        return score_generator(plain, self.net, self.protocol, self.ref, self.cfg.train.seed, EVAL_BATCH, info)
