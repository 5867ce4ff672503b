"""IS and FID of a generator under a named protocol: generate -> Inception -> scores, stamped with how.

A protocol fixes every count a reader would otherwise have to guess:

| protocol | generated | IS splits | FID generated | FID real |
|---|---|---|---|---|
| standard | 50,000 | 10 (5,000 each) | all 50,000 | every image of the training split (CIFAR-10 train: 50,000) |
| paper (SN-GAN App. B.1) | 50,000 | 10 (5,000 each) | the first 5,000 | the first 10,000 of the training split |
| quick (ours, a cheap signal) | 5,000 | 10 (500 each) | all 5,000 | every image of the training split |

The paper's App. B.1: "we calculated the score for randomly generated 5000 examples ... We repeated each experiment
10 times" (IS over 10 x 5,000) and "We computed the Frechet inception distance between the true distribution and
the generated distribution empirically over 10000 and 5000 samples". quick's IS of 500-image splits is biased low
against the 5,000-image splits of the other two: its numbers are for watching a run, not for a table.
The same names serve `sngan eval --protocol` and `train.eval_protocol` (training-time evaluation, study plans).

The training split is the checkpoint's `data.split` (CIFAR-10: train).

Generated images are quantised to uint8 (as the authors' `gen_images` and any saved PNG) and then go through the
same path as real images: /255, bilinear resize to 299, pytorch-fid's FID Inception. Latents come from
`sngan.sample.generate.latents(seed)`, so an evaluation never touches the training RNGs. Metric names encode the
protocol (StyleGAN2-ADA style): `is50k` = IS of 50,000 images in 10 splits, `fid5k_train10k` = FID of 5,000 generated
against 10,000 real images of the train split.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sngan.config import Config, DataConfig
from sngan.data import load_images
from sngan.data.cache import cache_root
from sngan.distributed import SINGLE, DistInfo, broadcast_object, gather_objects
from sngan.errors import MetricError
from sngan.metrics import FeatureStats, frechet_distance, inception_score_from_logits
from sngan.metrics.extra import extra_scores, parse_metrics
from sngan.metrics.inception import InceptionFeatures, load_inception
from sngan.metrics.precision import scoring_precision
from sngan.metrics.printout import format_block
from sngan.metrics.stats import (
    RESIZE,
    ReferenceStats,
    cache_path,
    feature_stats,
    load_stats,
    save_stats,
    uint8_to_unit,
)
from sngan.sample.generate import generate, latents, load_generator
from sngan.sample.writers import to_uint8

INPUT = "generated images quantised to uint8, then /255 (real images: uint8 /255)"
PRECISION = "float32, eval mode, TF32 off"
EVAL_BATCH = 100  # images per Inception pass during training (the authors' evaluation batch)


@dataclass(frozen=True)
class Protocol:
    """How many images go where. Real images come from the training split; `num_real` None = all of them."""

    name: str
    num_generated: int
    splits: int
    fid_generated: int
    num_real: int | None
    description: str
    truncation: float | None = None  # latents redrawn at |z| > T (`sample --truncation`): never the paper's protocol


PROTOCOLS = {
    "standard": Protocol("standard", 50000, 10, 50000, None,
                         "IS 50k in 10 splits; FID 50k generated vs the whole training split"),
    "paper": Protocol("paper", 50000, 10, 5000, 10000,
                      "SN-GAN App. B.1: IS 10 x 5000 generated; FID 5000 generated vs 10000 real (first 10000 of "
                      "the training split)"),
    "quick": Protocol("quick", 5000, 10, 5000, None,
                      "ours, a cheap in-training signal: IS 5000 generated in 10 splits of 500 (biased low against "
                      "10 x 5000); FID 5000 generated vs the whole training split"),
}


def make_protocol(name: str, num_samples: int | None = None, splits: int | None = None) -> Protocol:
    """A named protocol, with the number of generated images and IS splits optionally changed.

    Args:
        name: standard | paper.
        num_samples: generated images (IS uses all; FID the protocol's count, at most this many).
        splits: IS splits.

    Returns:
        The protocol (its name gains ' (modified)' when a count differs from the definition).
    """
    if name not in PROTOCOLS:
        raise MetricError(f"protocol must be one of {'|'.join(PROTOCOLS)}, got {name!r}")
    base = PROTOCOLS[name]
    n = base.num_generated if num_samples is None else num_samples
    s = base.splits if splits is None else splits
    fid_n = n if base.fid_generated == base.num_generated else min(base.fid_generated, n)
    if n < max(2, s):
        raise MetricError(f"--num-samples {n} is too small: IS needs one image per split ({s}) and FID at least 2")
    if (n, s) == (base.num_generated, base.splits):
        return base
    changed = f"modified here: IS {n} generated in {s} splits, FID {fid_n} generated"
    return dataclasses.replace(base, name=f"{name} (modified)", num_generated=n, splits=s, fid_generated=fid_n,
                               description=f"{base.description}; {changed}")


def count_label(n: int) -> str:
    """50000 -> '50k', 5000 -> '5k', 6 -> '6'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def metric_names(protocol: Protocol, real: dict[str, Any] | None) -> tuple[str, str]:
    """(IS name, FID name), e.g. ('is50k', 'fid5k_train10k'), from the protocol and the reference statistics'
    record (split and count); statistics without a record (foreign files) read 'ext'."""
    is_name = f"is{count_label(protocol.num_generated)}"
    if protocol.splits != 10:
        is_name += f"_{protocol.splits}splits"
    known = real is not None and "split" in real and "num_real" in real
    label = f"{real['split']}{count_label(real['num_real'])}" if known else "ext"
    trunc = "" if protocol.truncation is None else f"_trunc{protocol.truncation:g}"  # e.g. fid5k_train10k_trunc0.5
    return is_name + trunc, f"fid{count_label(protocol.fid_generated)}_{label}{trunc}"


def reference_stats(data_cfg: DataConfig, resolution: int, seed: int, split: str, num: int | None,
                    net: InceptionFeatures, batch_size: int, log: Callable[[str], None] = print,
                    features: bool = False) -> ReferenceStats:
    """Statistics of real images from the cache, computed (and cached) when absent.

    Args:
        data_cfg: the data section (name, root, cache_dir) of the run.
        resolution: image side (the model's resolution).
        seed: the run's seed (synthetic images depend on it).
        split: which split of the dataset.
        num: the first `num` images of the split, or None for all.
        net: the Inception network (names the cache entry).
        batch_size: images per Inception pass.
        log: progress messages.
        features: also load (or compute and store) the real features and labels, for KID, PRDC and intra-FID.

    Returns:
        The statistics with their protocol record and cache path.
    """
    path = cache_path(cache_root(data_cfg), data_cfg, seed, split, num, resolution, net.network)
    if path.is_file():
        try:
            ref = load_stats(path, features)
        except MetricError as exc:
            raise MetricError(f"{exc}; delete this cached file to rebuild it") from None
        if not features or ref.features is not None:
            return ref
    loaded = load_images(dataclasses.replace(data_cfg, split=split), resolution, seed=seed)
    images, labels = loaded.images, loaded.labels
    if num is not None and num > len(images):
        raise MetricError(f"{num} real images requested but {data_cfg.name} {split} holds {len(images)}")
    images, labels = (images, labels) if num is None else (images[:num], labels[:num])
    log(f"computing reference statistics of {len(images)} {data_cfg.name} {split} images -> {path}")
    device = next(net.buffers()).device
    kept: list | None = [] if features else None
    mu, sigma = feature_stats(images, net, batch_size, device, kept)
    real = (np.concatenate(kept), np.asarray(labels)) if kept is not None else (None, None)
    record = {"dataset": data_cfg.name, "root": str(data_cfg.root), "split": split, "num_real": len(images),
              "subset": "first N in dataset order", "resolution": resolution, "seed": seed, "network": net.network,
              "weights_sha256": net.sha256, "resize": RESIZE, "input": "uint8 /255", "precision": PRECISION}
    try:
        save_stats(path, mu, sigma, record, *real)
    except OSError as exc:
        raise MetricError(f"cannot write reference statistics to {path} ({exc.strerror or exc}); set data.cache_dir "
                          f"to a writable folder") from None
    return ReferenceStats(mu, sigma, record, path, *real)


def check_reference(ref: ReferenceStats, network: str) -> None:
    """Refuse reference statistics recorded with another network (FIDs across networks are not comparable)."""
    recorded = (ref.protocol or {}).get("network")
    if recorded not in (None, network):
        raise MetricError(f"{ref.path}: statistics were computed with {recorded} but this evaluation uses "
                          f"{network}; FIDs across networks are not comparable")


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


def evaluate_checkpoint(ckpt: str | Path, protocol: Protocol, *, stats: str | Path | None = None,
                        batch_size: int = 250, seed: int = 0, ema: bool | None = None,
                        weights: str | Path | None = None, device: str | torch.device = "cpu",
                        log: Callable[[str], None] = print, info: DistInfo = SINGLE,
                        extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """IS, FID and the `extra` metrics of a checkpoint's generator, with the full protocol record.

    Args:
        ckpt: checkpoint written by `sngan train` (its config names the dataset for reference statistics).
        protocol: the counts (see `make_protocol`).
        stats: a reference statistics file; None = the cache, built from the dataset when absent.
        batch_size: images per generator and Inception pass.
        seed: latent seed.
        ema: True/False/None = EMA generator / raw generator / EMA when present.
        weights: Inception weights file; None = torch hub cache, then download.
        device: where the generator and the Inception run.
        log: progress messages.
        info: under torchrun, rank 0 prepares the reference statistics and every rank scores a share of the
            generated images (the result equals the single-process one).
        extra: from `sngan.metrics.extra.parse_metrics` (they need the real features: `stats` must hold them).

    Returns:
        The record: protocol fields, checkpoint, step, seed, generator, and `metrics`.
    """
    from sngan.checkpoint import generator_label, generator_weights
    from sngan.config import from_dict

    generator, state = load_generator(ckpt, ema, device)  # a bad checkpoint fails before the weights are fetched
    ref = load_stats(stats, bool(extra)) if stats is not None else None  # and so does a missing --stats file
    net = load_inception(weights, device)
    if ref is None and info.is_main:
        cfg = from_dict(state["config"])
        ref = reference_stats(cfg.data, cfg.model.resolution, cfg.train.seed, cfg.data.split, protocol.num_real,
                              net, batch_size, log, bool(extra))
    ref = broadcast_object(ref if info.is_main else None, info)
    check_reference(ref, net.network)
    _, used_ema = generator_weights(state, ema)
    metrics = score_generator(generator, net, protocol, ref, seed, batch_size, info, extra)
    return protocol_record(protocol, net, ref, checkpoint=str(ckpt), step=int(state["step"]), seed=seed,
                           generator=generator_label(used_ema), device=str(device), metrics=metrics)


def evaluate_command(ckpt: Path, protocol: str, *, num_samples: int | None, splits: int | None,
                     stats: Path | None, batch_size: int, seed: int, ema: bool | None, weights: Path | None,
                     device: str, json_out: Path | None, log: Callable[[str], None], metrics: str = "is,fid",
                     truncation: float | None = None) -> None:
    """`sngan eval`: score a checkpoint (sharded over the processes under torchrun), print it, append --json."""
    from sngan import distributed
    from sngan.io import append_jsonl

    chosen, extra = make_protocol(protocol, num_samples, splits), parse_metrics(metrics)
    if (t := truncation) is not None:  # ours, not the paper's: stamped into the protocol's and the metrics' names
        chosen = dataclasses.replace(chosen, truncation=t, name=f"{chosen.name} + truncation {t:g} (not the paper's)")
    info = distributed.from_env()
    distributed.init_process_group(info, distributed.resolve_device(device).type)
    try:
        record = evaluate_checkpoint(ckpt, chosen, stats=stats, batch_size=batch_size, seed=seed, ema=ema,
                                     weights=weights, device=distributed.resolve_device(device, info),
                                     log=log if info.is_main else lambda message: None, info=info, extra=extra)
    finally:
        distributed.shutdown()
    if info.is_main:
        log(format_block(record))
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(json_out, record)


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
        return score_generator(generator, self.net, self.protocol, self.ref, self.cfg.train.seed, EVAL_BATCH, info)
