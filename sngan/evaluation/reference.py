"""Reference statistics of real images: from the cache, computed (and cached) when absent, and `sngan stats`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sngan.config import DataConfig
from sngan.data import load_images
from sngan.data.cache import cache_root
from sngan.datasets import DATASETS
from sngan.errors import MetricError
from sngan.evaluation.images import ImageInput
from sngan.evaluation.protocols import PRECISION
from sngan.io import real_folders, refuse_link
from sngan.metrics.dinov2 import ScoringNetwork, fd_network_of, feature_input_of, features_of, stats_record
from sngan.metrics.inception import DEFAULT_INCEPTION_INPUT
from sngan.metrics.precision import scoring_precision
from sngan.metrics.stats import (
    SUBSET_RULE,
    SUBSET_TEXT,
    ReferenceStats,
    cache_path,
    content_hashes,
    feature_stats,
    load_stats,
    reference_subset,
    save_stats,
    subset_order,
    uint8_to_unit,
)


def reference_stats(data_cfg: DataConfig, resolution: int, seed: int, split: str, num: int | None,
                    net: ScoringNetwork, batch_size: int, log: Callable[[str], None] = print,
                    features: bool = False) -> ReferenceStats:
    """Statistics of real images from the cache, computed (and cached) when absent.

    Args:
        data_cfg: the data section (name, root, cache_dir) of the run.
        resolution: image side (the model's resolution).
        seed: the run's seed (synthetic images depend on it).
        split: which split of the dataset.
        num: the first `num` images of the split, or None for all.
        net: the Inception network (its weights and input path name the cache entry).
        batch_size: images per Inception pass.
        log: progress messages.
        features: also load (or compute and store) the real features and labels, for KID, PRDC and intra-FID.

    Returns:
        The statistics with their protocol record and cache path.
    """
    split_label = DATASETS[data_cfg.name].split_label(dataclasses.replace(data_cfg, split=split))
    path = reference_path(data_cfg, resolution, seed, split, num, net)
    if path.is_file():
        try:
            ref = load_stats(path, features)
        except MetricError as exc:
            raise MetricError(f"{exc}; delete this cached file to rebuild it") from None
        if not features or ref.features is not None:
            return ref
    real_folders(cache_root(data_cfg), path.parent)  # before the work: the file must land where it is named
    refuse_link(path)
    loaded = load_images(dataclasses.replace(data_cfg, split=split), resolution, seed=seed)
    images, labels = loaded.images, loaded.labels
    if num is not None and num > len(images):
        raise MetricError(f"{num} real images requested but {data_cfg.name} {split} holds {len(images)}: use "
                          f"--protocol quick or --num-real {len(images)}")
    log(f"choosing the reference images of {data_cfg.name} {split_label}: {'all' if num is None else num} of "
        f"{len(images)}, {SUBSET_TEXT}")
    chosen = reference_subset(images, labels, num)  # indices, in the rule's order (read batch by batch)
    log(f"computing reference statistics of {len(chosen)} {data_cfg.name} {split_label} images -> {path}")
    device = next(net.buffers()).device
    kept: list | None = [] if features else None
    mu, sigma = feature_stats(images, net, batch_size, device, kept, progress=True, log=log, indices=chosen)
    real = (np.concatenate(kept), np.asarray(labels)[chosen]) if kept is not None else (None, None)
    record = {"dataset": data_cfg.name, "root": str(data_cfg.root), "split": split_label, "num_real": len(chosen),
              "subset": SUBSET_TEXT, "subset_rule": SUBSET_RULE, "per_class": per_class(labels, chosen),
              "resolution": resolution, "seed": seed, **stats_record(net), "input": "uint8 /255",
              "precision": PRECISION}
    try:
        save_stats(path, mu, sigma, record, *real)
    except OSError as exc:
        raise MetricError(f"cannot write reference statistics to {path} ({exc.strerror or exc}); set data.cache_dir "
                          f"to a writable folder") from None
    return ReferenceStats(mu, sigma, record, path, *real)


def reference_path(data_cfg: DataConfig, resolution: int, seed: int, split: str, num: int | None,
                   net: ScoringNetwork) -> Path:
    """Where `reference_stats` caches (and finds) these statistics."""
    split_label = DATASETS[data_cfg.name].split_label(dataclasses.replace(data_cfg, split=split))
    return cache_path(cache_root(data_cfg), data_cfg, seed, split_label, num, resolution, net.features_key)


def per_class(labels: np.ndarray, chosen: np.ndarray) -> list[int]:
    """How many of the `chosen` images each class gives (the record's `per_class`: the reference's histogram)."""
    labels = np.asarray(labels, np.int64)
    return np.bincount(labels[chosen], minlength=int(labels.max()) + 1 if len(labels) else 0).tolist()


def stats_of_images(images: ImageInput, num: int | None, net: ScoringNetwork, batch_size: int,
                    features: bool = False, progress: bool = True,
                    log: Callable[[str], None] | None = None, label: str = "ref") -> ReferenceStats:
    """Statistics of a folder or npz (`sngan eval --ref`, `sngan stats --images`), not cached: all its images, or
    `num` of them chosen by the reference rule (`SUBSET_TEXT`; a folder's classes are its sub-folders), read in
    file order. `label` is the record's split (metric names: `fid5k_ref10k`)."""
    from sngan.metrics.fid import FeatureStats
    from sngan.progress import PassProgress, cpu_hint

    num = images.count if num is None else num
    labels = images.labels()
    keep = np.ones(images.count, bool)
    if num < images.count:  # the rule reads every image's pixels once
        hashes = np.concatenate([content_hashes(batch) for batch in images.batches(images.count, batch_size)])
        keep = np.zeros(images.count, bool)
        keep[subset_order(hashes, labels, num)] = True
    device = next(net.buffers()).device
    acc, kept = FeatureStats(), []
    bar = PassProgress(num, "inception pass (reference)", progress, log=log, hint=cpu_hint(device))
    for batch in images.selected_batches(keep, batch_size):
        pool = features_of(net, uint8_to_unit(torch.from_numpy(batch.copy()).to(device)))
        acc.update(pool)
        if features:
            kept.append(pool.float().cpu().numpy())
        bar.update(len(batch))
    bar.close()
    mu, sigma = acc.mu_sigma()
    record = {"dataset": str(images.path), "root": str(images.path), "split": label, "num_real": num,
              "subset": "all, in file order" if num == images.count else f"{SUBSET_TEXT}; read in file order",
              "subset_rule": SUBSET_RULE, "per_class": np.bincount(labels[keep]).tolist(),
              "resolution": images.side[0], **stats_record(net), "input": "uint8 /255", "precision": PRECISION}
    return ReferenceStats(mu, sigma, record, None, np.concatenate(kept) if features else None,
                          labels[keep] if features else None)


def recorded_input(record: dict) -> str | None:
    """The input path a statistics record names (`feature_input` for DINOv2, else the Inception's); records of
    sngan before input paths existed (a network, no input path) were pytorch-fid's; None for foreign files without
    a record."""
    if "feature_input" in record:
        return record["feature_input"]
    if "inception_input" in record:
        return record["inception_input"]
    return "pytorch-fid" if "network" in record else None


def check_reference(ref: ReferenceStats, net: ScoringNetwork) -> None:
    """Refuse reference statistics recorded with another network (Inception vs DINOv2), other weights of it, or
    another Inception input path (distances across any of them are not comparable)."""
    record = ref.protocol or {}
    recorded = record.get("network")
    if recorded not in (None, net.network):
        raise MetricError(f"{ref.path}: statistics were computed with {recorded} but this evaluation uses "
                          f"{net.network}; FIDs across networks are not comparable")
    if recorded is not None and record.get("weights_sha256") not in (None, net.sha256):
        raise MetricError(f"{ref.path}: statistics were computed with {recorded} weights of sha256 "
                          f"{str(record['weights_sha256'])[:8]}... but this evaluation's have {net.sha256[:8]}...; "
                          f"recompute them with these weights")
    if recorded_input(record) not in (None, feature_input_of(net)):
        raise MetricError(f"{ref.path}: statistics were computed through the {recorded_input(record)} Inception "
                          f"input but this evaluation uses {net.inception_input}; recompute them (sngan stats "
                          f"--inception-input {net.inception_input})")


def stats_command(config: Path | None, out: Path, *, split: str | None, num: int | None, weights: Path | None,
                  batch_size: int, device: str, force: bool, log: Callable[[str], None], features: bool = False,
                  overrides: tuple[str, ...] = (), inception_input: str = DEFAULT_INCEPTION_INPUT,
                  images: Path | None = None, progress: bool = True, fd_network: str = "inception",
                  dinov2_repo: Path | None = None) -> None:
    """`sngan stats`: reference statistics (mu, sigma + protocol record) of a config's real images, or of a folder
    or npz of images (`images`), into `out`, in the features of `fd_network` (the Inception, or DINOv2 from
    `dinov2_repo`, the hub cache or a download)."""
    from sngan.config import load_config
    from sngan.distributed import resolve_device
    from sngan.evaluation.images import open_images
    from sngan.io import check_new_output, publishing
    from sngan.metrics.dinov2 import FD_NETWORKS, load_dinov2
    from sngan.metrics.inception import check_inception_input, load_inception

    if fd_network not in FD_NETWORKS:
        raise MetricError(f"--fd-network must be one of {'|'.join(FD_NETWORKS)}, got {fd_network!r}")
    if dinov2_repo is not None and fd_network == "inception":
        raise MetricError("--dinov2-repo applies to --fd-network dinov2_vitl14")
    check_inception_input(inception_input)

    def network(device_name: str) -> ScoringNetwork:  # DINOv2's statistics need no Inception (IS is not computed)
        if fd_network == "inception":
            return load_inception(weights, resolve_device(device_name), inception_input)
        return load_dinov2(dinov2_repo, resolve_device(device_name))

    if (config is None) == (images is None):
        raise MetricError("give either --config CONFIG (a dataset) or --images PATH (a folder of images or an .npz)")
    if images is not None and (split is not None or overrides):
        raise MetricError(f"{'--split' if split is not None else '--set'} applies to --config, not to --images")
    check_new_output(out, force)
    if images is not None:
        from sngan.datasets import folder_label

        source = open_images(images)
        if num is not None and num > source.count:
            raise MetricError(f"--num {num} but --images {source.describe()}")
        net = network(device)
        announce_cost(net, [(num or source.count, "real")], log)
        ref = stats_of_images(source, num, net, batch_size, features, progress, log,
                              label=folder_label(source.path) if source.kind == "folder" else "ref")
    else:
        assert config is not None  # exactly one of config, images (checked above)
        cfg = load_config(config, overrides)
        DATASETS[cfg.data.name].check_split(split or cfg.data.split)  # before the network is loaded
        net = network(device)
        if not reference_path(cfg.data, cfg.model.resolution, cfg.train.seed, split or cfg.data.split, num,
                              net).is_file():
            announce_cost(net, [(num or DATASETS[cfg.data.name].known_size(cfg.data), "real")], log)
        ref = reference_stats(cfg.data, cfg.model.resolution, cfg.train.seed, split or cfg.data.split, num, net,
                              batch_size, log, features)
    record = ref.protocol
    if record is None:  # a cached file of another tool
        raise MetricError(f"{ref.path}: these cached statistics carry no record of what they were computed from; "
                          f"delete the file to rebuild it")
    with publishing(out, force) as stage:
        save_stats(stage, ref.mu, ref.sigma, record, ref.features, ref.labels)
    log(f"wrote {out}: {record['num_real']} {record['dataset']} {record['split']} images, "
        f"{record['network']}, {recorded_input(record)} input"
        + (f" (cache {ref.path})" if ref.path else ""))


MEASURE_IMAGES = 8  # images of the timed Inception batch that estimates a CPU evaluation's length
MEASURE_FROM = 1000  # evaluations of fewer images are not measured (the measurement would cost more than it tells)


def announce_cost(net: ScoringNetwork, counts: list[tuple[int | None, str]], log: Callable[[str], None]) -> None:
    """On the CPU, before any Inception pass: time one batch, and when the passes ahead take longer than
    `sngan.progress.LONG_PASS_S`, say how long and what to do instead, in one line.

    Args:
        net: the Inception network (its device decides: nothing is measured on a GPU).
        counts: (images, what) of each pass ahead; None = a count not known yet (said, not added).
        log: where the line goes.
    """
    from sngan.progress import LONG_PASS_S, eta

    known = sum(n for n, _ in counts if n)
    if next(net.buffers()).device.type != "cpu" or known < MEASURE_FROM:
        return
    probe = torch.randint(0, 256, (MEASURE_IMAGES + 1, 32, 32, 3), dtype=torch.uint8)
    with scoring_precision():
        net(uint8_to_unit(probe[:1]))  # warm-up: the first call allocates
        start = time.perf_counter()
        net(uint8_to_unit(probe[1:]))
        rate = MEASURE_IMAGES / max(time.perf_counter() - start, 1e-9)
    seconds = known / rate
    if seconds < LONG_PASS_S:
        return
    passes = " + ".join(f"{n:,} {what}" if n else f"every {what}" for n, what in counts)
    through = "the Inception network" if fd_network_of(net) == "inception" else f"the Inception and {net.network}"
    log(f"notice: this runs {passes} images through {through} on the CPU, measured here at "
        f"{rate:.1f} img/s: about {eta(seconds)} before the result. Instead: --protocol quick (5,000 generated, "
        f"about {eta(5000 / rate)} of generated images; a signal, not a table number), or a GPU (--device cuda), "
        f"where the same takes minutes")
