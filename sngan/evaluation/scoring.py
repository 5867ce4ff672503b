"""Scoring a generator: generate -> uint8 -> Inception -> IS, FID (and KID, PRDC, intra-FID), in exact float32.

Generated images are quantised to uint8 by the protocol's rule (`paper`: truncated, as the authors' `gen_images`;
`standard`, `quick`: rounded, as a saved PNG; `sngan.evaluation.protocols.QUANTISE`) and then go through the same
path as real images: /255, the protocol's Inception input path (`sngan.metrics.inception.INCEPTION_INPUTS`),
pytorch-fid's FID Inception weights. Latents come from `sngan.sample.generate.latents(seed)`, so an evaluation
never touches the training RNGs. `TrainingEvaluator` is the same scoring during training.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sngan.config import Config
from sngan.distributed import SINGLE, DistInfo, broadcast_object, gather_rows, together
from sngan.errors import MetricError
from sngan.evaluation.images import ImageInput
from sngan.evaluation.protocols import INPUT, PRECISION, QUANTISE, Protocol, make_protocol, metric_names
from sngan.evaluation.reference import check_reference, reference_stats
from sngan.metrics import FeatureStats, frechet_distance, inception_score_from_logits
from sngan.metrics.dinov2 import ScoringNetwork, fd_network_of, feature_dim_of, score_record
from sngan.metrics.extra import extra_scores
from sngan.metrics.inception import FEATURE_DIM, load_inception
from sngan.metrics.precision import scoring_precision
from sngan.metrics.stats import ReferenceStats, uint8_to_unit
from sngan.progress import PassProgress, cpu_hint
from sngan.sample.generate import generate, latent_sizes, latents
from sngan.sample.writers import to_uint8

EVAL_BATCH = 100  # images per Inception pass during training (the authors' evaluation batch)
IS_MIN_PER_SPLIT = 5000  # images per IS split in the standard protocol (Salimans et al.; the paper's App. B.1)



def check_scoring(ref: ReferenceStats, net: ScoringNetwork, protocol: Protocol) -> None:
    """Refuse statistics of another network or input path, and a network fed otherwise than `protocol` says."""
    check_reference(ref, net)
    if fd_network_of(net) != protocol.fd_network:
        raise MetricError(f"the Fréchet distance's network is {fd_network_of(net)} but protocol {protocol.name!r} says "
                          f"{protocol.fd_network}")
    if net.inception_input != protocol.inception_input:
        raise MetricError(f"the Inception network feeds the {net.inception_input} input path but protocol "
                          f"{protocol.name!r} says {protocol.inception_input}")


def score_generator(generator: nn.Module, net: ScoringNetwork, protocol: Protocol, ref: ReferenceStats,
                    seed: int, batch_size: int, info: DistInfo = SINGLE, extra: tuple[str, ...] = (),
                    progress: bool = False, log: Callable[[str], None] | None = None) -> dict[str, float]:
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
        progress: a bar on a terminal, a line every few seconds elsewhere (`sngan.progress`), on rank 0.
        log: where those lines go (default stderr).

    Returns:
        {is name: mean, is name + '_std': std, fid name: value, extra names: values}.
    """
    check_scoring(ref, net, protocol)
    z_dim, num_classes = latent_sizes(generator)
    z, y = latents(protocol.num_generated, z_dim, num_classes, seed, truncation=protocol.truncation)
    all_starts = list(range(0, protocol.num_generated, batch_size))
    starts = all_starts[info.rank::info.world_size]  # rank r scores batches r, r + W, r + 2W, ...
    bar = PassProgress(protocol.num_generated, "generate + inception pass", progress and info.is_main, log=log,
                   hint=cpu_hint(next(net.buffers()).device))
    logits, kept = [], []
    for start in starts:
        stop = min(start + batch_size, protocol.num_generated)
        features, batch_logits = _inception_batch(generator, net, z[start:stop], None if y is None else y[start:stop],
                                                  protocol.quantise)
        logits.append(batch_logits)
        kept.append(features[:max(0, protocol.fid_generated - start)])
        bar.update((stop - start) * info.world_size)
    bar.close()
    if not info.enabled:
        return metrics_from_outputs(torch.cat(logits), [f for f in kept if len(f)], protocol, ref, extra, y,
                                    num_classes)
    # every rank's rows go to rank 0 as plain tensors (logits (n, 1008), FD features (m, D)), which puts the
    # batches back in index order and scores them; the others receive the numbers
    local_logits = torch.cat(logits) if logits else torch.empty(0, 1008)
    local_features = torch.cat([f.cpu() for f in kept]) if kept else torch.empty(0, feature_dim_of(net))
    logits_parts, feature_parts = gather_rows(local_logits, info), gather_rows(local_features, info)
    scores = None
    with together(info, "scoring the gathered features"):
        if info.is_main:
            assert logits_parts is not None and feature_parts is not None  # rank 0 receives every rank's rows
            ordered_logits, ordered_features = _in_batch_order(logits_parts, feature_parts, all_starts, protocol,
                                                               batch_size, info.world_size)
            scores = metrics_from_outputs(torch.cat(ordered_logits), [f for f in ordered_features if len(f)],
                                          protocol, ref, extra, y, num_classes)
    return broadcast_object(scores, info)


def _in_batch_order(logits: list[torch.Tensor], features: list[torch.Tensor], starts: list[int],
                    protocol: Protocol, batch_size: int, world: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-batch logits and FID features in index order, from each rank's rows (batch b was scored by rank
    b % world, its rows following that rank's earlier batches)."""
    taken_logits, taken_features = [0] * world, [0] * world
    out_logits, out_features = [], []
    for b, start in enumerate(starts):
        rank, rows = b % world, min(batch_size, protocol.num_generated - start)
        fid_rows = min(rows, max(0, protocol.fid_generated - start))
        out_logits.append(logits[rank][taken_logits[rank]:taken_logits[rank] + rows])
        out_features.append(features[rank][taken_features[rank]:taken_features[rank] + fid_rows])
        taken_logits[rank] += rows
        taken_features[rank] += fid_rows
    return out_logits, out_features


def metrics_from_outputs(logits: torch.Tensor, fid_features: list[torch.Tensor], protocol: Protocol,
                         ref: ReferenceStats, extra: tuple[str, ...] = (), labels: torch.Tensor | None = None,
                         num_classes: int = 0) -> dict[str, float]:
    """IS from all logits (N, 1008) in order, FID (and the extras) from the FID's features, named by the protocol.

    Args:
        logits: the Inception logits of every scored image, in order.
        fid_features: the pool3 features (B, 2048) of the protocol's first `fid_generated` images, per batch.
        protocol: the counts (names the metrics).
        ref: the real images' statistics.
        extra: from `parse_metrics`.
        labels: the classes of the generated images (intra-FID), or None.
        num_classes: the generator's (0 = unconditional, or images without a model).
    """
    acc = FeatureStats()
    is_mean, is_std = inception_score_from_logits(logits.numpy(), protocol.splits)
    for features in fid_features:
        acc.update(features)
    mu, sigma = acc.mu_sigma()
    is_name, fid_name = metric_names(protocol, ref.protocol)
    return {is_name: is_mean, f"{is_name}_std": is_std, fid_name: frechet_distance(mu, sigma, ref.mu, ref.sigma),
            **extra_scores(extra, fid_name, fid_features, labels, ref, num_classes)}


def score_images(images: ImageInput, net: ScoringNetwork, protocol: Protocol, ref: ReferenceStats,
                 batch_size: int, extra: tuple[str, ...] = (), progress: bool = True,
                 log: Callable[[str], None] | None = None) -> dict[str, float]:
    """The metrics of `generator`'s `score_generator`, of the first `protocol.num_generated` images of `images`
    (a folder or npz): the same uint8 -> /255 -> Inception path, the same batches, the same names."""
    check_scoring(ref, net, protocol)
    device = next(net.buffers()).device
    logits, kept = [], []
    bar = PassProgress(protocol.num_generated, "inception pass", progress, log=log, hint=cpu_hint(device))
    start = 0
    for batch in images.batches(protocol.num_generated, batch_size):
        features, batch_logits = net(uint8_to_unit(torch.from_numpy(batch.copy()).to(device)))
        logits.append(batch_logits.cpu())
        kept.append(features[:max(0, protocol.fid_generated - start)])
        start += len(batch)
        bar.update(len(batch))
    bar.close()
    return metrics_from_outputs(torch.cat(logits), [f for f in kept if len(f)], protocol, ref, extra)


def count_warnings(protocol: Protocol, num_real: int | None, dim: int = FEATURE_DIM) -> list[str]:
    """One line per count too small for a number to be read as the literature's (the number is still given):
    IS below 5,000 images per split (the standard split size), FID (FD) below `dim` images on either side (the
    feature dimension: 2,048 for the Inception; the covariance is then rank-deficient)."""
    out = []
    per_split = protocol.num_generated // protocol.splits
    if per_split < IS_MIN_PER_SPLIT:
        out.append(f"IS from {per_split} images per split (< {IS_MIN_PER_SPLIT}): biased low, not comparable to "
                   f"published IS")
    small = [f"{n} {what}" for n, what in ((protocol.fid_generated, "generated"), (num_real, "real"))
             if n is not None and n < dim]
    if small:
        fd = "FID" if protocol.fd_network == "inception" else f"FD in {protocol.fd_network} features"
        out.append(f"{fd} from {' and '.join(small)} images (< {dim}): the covariance is rank-deficient, "
                   f"the number is not comparable to published {fd}")
    return out


def reference_warnings(ref: ReferenceStats) -> list[str]:
    """One line when statistics written by an earlier sngan took "the first N" real images (a class-sorted folder
    then gave a few classes only); the number is still given."""
    record = ref.protocol or {}
    if "network" in record and "subset_rule" not in record and str(record.get("subset", "")).startswith("first"):
        return [f"reference statistics {ref.path or ''} were made by an earlier sngan from the {record['subset']} "
                f"(from a class-sorted folder: a few classes only): recompute them with `sngan stats` (docs/eval.md, "
                f"Which real images)"]
    return []


def _inception_batch(generator: nn.Module, net: ScoringNetwork, z: torch.Tensor, y: torch.Tensor | None,
                     quantise: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool3 features (B, 2048) on the network's device, logits (B, 1008) on the CPU) of generated images,
    computed in exact float32 (`scoring_precision`)."""
    device = next(net.buffers()).device
    with scoring_precision():  # exact float32 for G too, whatever precision training set
        images = generate(generator, z, y, len(z))
        features, logits = net(uint8_to_unit(to_uint8(images, quantise).to(device)))
    return features, logits.cpu()


def protocol_record(protocol: Protocol, net: ScoringNetwork, ref: ReferenceStats, **extra: Any) -> dict[str, Any]:
    """Everything a reader needs to reproduce a score (appended to --json files)."""
    real = ref.protocol or {}
    return {"time": time.time(), "protocol": protocol.name, "protocol_description": protocol.description,
            "fd_network": protocol.fd_network, **score_record(net), "num_generated": protocol.num_generated,
            "is_splits": protocol.splits, "fid_generated": protocol.fid_generated,
            "num_real": real.get("num_real"), "real_dataset": real.get("dataset"),
            "split": real.get("split"), "real_subset": real.get("subset"),
            "stats": str(ref.path) if ref.path else None, "input": INPUT,
            "quantise": protocol.quantise, "quantisation": QUANTISE[protocol.quantise],
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
        self.net = load_inception(cfg.train.eval_inception_weights or None, device, self.protocol.inception_input)
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
