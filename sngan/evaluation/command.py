"""`sngan eval`: a checkpoint's generator, or images (a folder or an npz, `--images`), scored under a protocol,
printed and appended to --json with its record.

Every input is checked before anything is generated or the network is loaded: metric names, the protocol's
counts against the images and real images there are (the fix: `--protocol quick`, `--num-samples N` or
`--num-real N`), a statistics file's content against the metrics asked (KID/PRDC need its features)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sngan.config import Config
from sngan.datasets import DATASETS
from sngan.distributed import SINGLE, DistInfo, broadcast_object
from sngan.errors import MetricError
from sngan.evaluation.images import ImageInput, open_images
from sngan.evaluation.protocols import PROTOCOLS, Protocol, make_protocol
from sngan.evaluation.reference import (
    announce_cost,
    check_reference,
    reference_path,
    reference_stats,
    stats_of_images,
)
from sngan.evaluation.scoring import (
    count_warnings,
    protocol_record,
    reference_warnings,
    score_generator,
    score_images,
)
from sngan.metrics.dinov2 import DinoFeatures, ScoringNetwork, feature_dim_of, load_dinov2_model
from sngan.metrics.extra import EXTRA, parse_metrics, values_of
from sngan.metrics.inception import load_inception
from sngan.metrics.stats import ReferenceStats, load_stats
from sngan.sample.generate import latent_sizes


def evaluate_checkpoint(ckpt: str | Path, protocol: Protocol, *, stats: str | Path | None = None,
                        batch_size: int = 250, seed: int = 0, ema: bool | None = None,
                        weights: str | Path | None = None, device: str | torch.device = "cpu",
                        log: Callable[[str], None] = print, info: DistInfo = SINGLE,
                        extra: tuple[str, ...] = (), overrides: tuple[str, ...] = (),
                        progress: bool = False, dinov2_repo: str | Path | None = None) -> dict[str, Any]:
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
        overrides: `section.key=value` applied to the checkpoint's config for the reference statistics (another
            data.root or data.cache_dir on this machine).
        progress: report the generate + Inception pass (`sngan.progress`).
        dinov2_repo: a local checkout of facebookresearch/dinov2, when `protocol.fd_network` is DINOv2's
            (`sngan.metrics.dinov2`); None = the torch hub cache, then a download.

    Returns:
        The record: protocol fields, checkpoint, step, seed, generator, and `metrics`.
    """
    from sngan.checkpoint import open_checkpoint
    from sngan.config import apply_overrides, from_dict

    opened = open_checkpoint(ckpt, generator=True, ema=ema, device=device)  # fails before the weights are fetched
    cfg = from_dict(apply_overrides(opened.config.to_dict(), overrides)) if overrides else opened.config
    generator = opened.generator
    assert generator is not None  # asked for with generator=True
    ref = checked_stats(stats, extra)  # a missing or too thin --stats file fails before anything is generated
    if labelled(extra) and not latent_sizes(generator)[1]:
        raise MetricError("intra_fid needs a conditional checkpoint (model.num_classes > 0); this one is "
                          "unconditional")
    if ref is None:
        check_real_count(cfg, protocol)
    net = scoring_network(protocol, weights, device, dinov2_repo)
    if info.is_main:
        real_due = ref is None and not reference_path(cfg.data, cfg.model.resolution, cfg.train.seed,
                                                      cfg.data.split, protocol.num_real, net).is_file()
        real = [(protocol.num_real or DATASETS[cfg.data.name].known_size(cfg.data), "real")] if real_due else []
        announce_cost(net, [(protocol.num_generated, "generated")] + real, log)
    if ref is None and info.is_main:
        ref = reference_stats(cfg.data, cfg.model.resolution, cfg.train.seed, cfg.data.split, protocol.num_real,
                              net, batch_size, log, bool(extra))
    ref = broadcast_object(ref if info.is_main else None, info)
    check_reference(ref, net)
    metrics = score_generator(generator, net, protocol, ref, seed, batch_size, info, extra, progress, log)
    return protocol_record(protocol, net, ref, checkpoint=str(ckpt), step=int(opened.state["step"]), seed=seed,
                           generator=opened.generator_name, device=str(device), metrics=metrics,
                           warnings=count_warnings(protocol, (ref.protocol or {}).get("num_real"),
                                                   feature_dim_of(net))
                           + reference_warnings(ref))


def scoring_network(protocol: Protocol, weights: str | Path | None, device: str | torch.device,
                    dinov2_repo: str | Path | None = None) -> ScoringNetwork:
    """The networks `protocol` scores with: the Inception (IS, and FID), with DINOv2 for the Fréchet distance
    when the protocol's `fd_network` says so (`sngan.metrics.dinov2`: IS stays on the Inception)."""
    if protocol.fd_network == "inception":
        return load_inception(weights, device, protocol.inception_input)
    model = load_dinov2_model(dinov2_repo)  # first: a wrong --dinov2-repo is said before the Inception loads
    return DinoFeatures(model.to(device), load_inception(weights, device, protocol.inception_input))


def checked_stats(stats: str | Path | None, extra: tuple[str, ...]) -> ReferenceStats | None:
    """The --stats file, refused at once when a metric asked for needs features it does not hold."""
    if stats is None:
        return None
    ref = load_stats(stats, bool(extra))
    if extra and ref.features is None:
        raise MetricError(f"--metrics {','.join(extra)} need the real images' features, and {stats} holds only mu "
                          f"and sigma: write one with `sngan stats --features`, or leave out --stats (the cache "
                          f"stores features)")
    if labelled(extra) and ref.labels is None:
        raise MetricError(f"intra_fid needs the real images' labels, and {stats} holds none")
    return ref


def check_real_count(cfg: Config, protocol: Protocol) -> None:
    """Refuse a protocol that needs more real images than the dataset has, when the count is known without
    packing (a packed cache's manifest or the synthetic count); otherwise the cache build says it."""
    if protocol.num_real is None:
        return
    available = DATASETS[cfg.data.name].known_size(cfg.data)
    if available is not None and protocol.num_real > available:
        raise MetricError(f"protocol {protocol.name} needs {protocol.num_real} real images but {cfg.data.name} "
                          f"{cfg.data.split} holds {available}: use --protocol quick or --num-real {available}")


def evaluate_images(images: ImageInput, protocol: Protocol, *, stats: str | Path | None, ref_images: ImageInput | None,
                    batch_size: int, weights: str | Path | None, device: torch.device, log: Callable[[str], None],
                    extra: tuple[str, ...] = (), progress: bool = True,
                    dinov2_repo: str | Path | None = None) -> dict[str, Any]:
    """IS, FID and the `extra` metrics of `images` against `stats` or the images `ref_images`, with the record."""
    ref = checked_stats(stats, extra)
    if ref is None and ref_images is None:
        raise MetricError("images are scored against a reference: give --stats FILE or --ref PATH")
    if ref_images is not None and protocol.num_real is not None and protocol.num_real > ref_images.count:
        raise MetricError(f"protocol {protocol.name} needs {protocol.num_real} real images but --ref "
                          f"{ref_images.describe()}: use --protocol quick or --num-real {ref_images.count}")
    net = scoring_network(protocol, weights, device, dinov2_repo)
    reals: list[tuple[int | None, str]] = [] if ref is not None or ref_images is None else [
        (ref_images.count if protocol.num_real is None else protocol.num_real, "real")]
    announce_cost(net, [(protocol.num_generated, "generated")] + reals, log)
    if ref is None:
        assert ref_images is not None  # checked at the top
        log(f"computing reference statistics of {ref_images.describe()}")
        ref = stats_of_images(ref_images, protocol.num_real, net, batch_size, bool(extra), progress, log)
    check_reference(ref, net)
    metrics = score_images(images, net, protocol, ref, batch_size, extra, progress, log)
    return protocol_record(protocol, net, ref, quantise="none", quantisation="the images' own uint8 pixels",
                           images=str(images.path), images_kind=images.kind,
                           images_available=images.count, device=str(device), metrics=metrics,
                           warnings=count_warnings(protocol, (ref.protocol or {}).get("num_real"),
                                                   feature_dim_of(net))
                           + reference_warnings(ref))


def evaluate_command(ckpt: Path | None, protocol: str, *, num_samples: int | None, splits: int | None,
                     stats: Path | None, batch_size: int, seed: int, ema: bool | None, weights: Path | None,
                     device: str, json_out: Path | None, log: Callable[[str], None], metrics: str = "is,fid",
                     truncation: float | None = None, images: Path | None = None, ref: Path | None = None,
                     num_real: int | None = None, overrides: tuple[str, ...] = (), progress: bool = True,
                     inception_input: str | None = None, fd_network: str = "inception",
                     dinov2_repo: Path | None = None) -> None:
    """`sngan eval`: score a checkpoint (sharded over the processes under torchrun) or `images`, print the result,
    append --json."""
    from sngan import distributed
    from sngan.io import refuse_special
    from sngan.sample.generate import check_truncation

    chosen = make_protocol(protocol, num_samples, splits, num_real, inception_input, fd_network)
    extra = parse_metrics(metrics)
    if extra and fd_network != "inception":
        raise MetricError(f"--metrics {','.join(extra)} are computed on the Inception's features; with --fd-network "
                          f"{fd_network} only IS and the Fréchet distance are (run eval again without it for them)")
    if dinov2_repo is not None and fd_network == "inception":
        raise MetricError("--dinov2-repo applies to --fd-network dinov2_vitl14")
    check_truncation(truncation)
    if json_out is not None:  # checked before the work: a FIFO there would block after the whole evaluation
        refuse_special(json_out)
    if (ckpt is None) == (images is None):
        raise MetricError("give either --ckpt CKPT or --images PATH (a folder of images or an .npz)")
    if images is not None:
        if (stats is None) == (ref is None):
            raise MetricError("--images needs one reference: --stats FILE (.npz with mu, sigma) or --ref PATH (a "
                              "folder of images or an .npz with arr_0 or x)")
        if truncation is not None or overrides or labelled(extra):
            given = "--truncation" if truncation is not None else "--set" if overrides else \
                f"--metrics {labelled(extra)}"
            raise MetricError(f"{given} applies to a checkpoint, not to --images")
        scored = open_images(images)
        real = None if ref is None else open_images(ref, "--ref")
        chosen = counts_from_images(chosen, scored, real, num_samples, num_real, log)
        if chosen.num_generated > scored.count:
            raise MetricError(f"--num-samples {chosen.num_generated} but --images {scored.describe()}")
        record = evaluate_images(scored, chosen, stats=stats, ref_images=real, batch_size=batch_size,
                                 weights=weights, device=distributed.resolve_device(device), log=log, extra=extra,
                                 progress=progress, dinov2_repo=dinov2_repo)
        return _publish(record, json_out, log)
    if (t := truncation) is not None:  # ours, not the paper's: stamped into the protocol's and the metrics' names
        chosen = dataclasses.replace(chosen, truncation=t, name=f"{chosen.name} + truncation {t:g} (not the paper's)")
    info = distributed.from_env()
    distributed.init_process_group(info)
    try:
        assert ckpt is not None  # exactly one of ckpt, images (checked above)
        record = evaluate_checkpoint(ckpt, chosen, stats=stats, batch_size=batch_size, seed=seed, ema=ema,
                                     weights=weights, device=distributed.resolve_device(device, info),
                                     log=log if info.is_main else lambda message: None, info=info, extra=extra,
                                     overrides=overrides, progress=progress, dinov2_repo=dinov2_repo)
    finally:
        distributed.shutdown()
    if info.is_main:
        _publish(record, json_out, log)


def counts_from_images(chosen: Protocol, scored: ImageInput, real: ImageInput | None, num_samples: int | None,
                       num_real: int | None, log: Callable[[str], None]) -> Protocol:
    """The protocol with the counts that `--images` (and `--ref`) can give, said in one line each: where the
    protocol asks more images than there are and no count was typed, all of them are scored (as pytorch-fid A B);
    a typed count is kept (and refused later when too large)."""
    name = chosen.name.split(" (")[0]
    generated = chosen.num_generated
    if num_samples is None and generated > scored.count:
        log(f"--images holds {scored.count} images and protocol {name} scores {generated}: scoring all "
            f"{scored.count} (a modified protocol; --num-samples N to choose)")
        generated = scored.count
    reals = chosen.num_real
    if real is not None and num_real is None and reals is not None and reals > real.count:
        log(f"--ref holds {real.count} images and protocol {name} takes {reals} real: taking all "
            f"{real.count} (a modified protocol; --num-real N to choose)")
        reals = real.count
    if (generated, reals) == (chosen.num_generated, chosen.num_real):
        return chosen
    return make_protocol(name, generated, chosen.splits if chosen.splits != PROTOCOLS[name].splits else None,
                         reals, chosen.inception_input, chosen.fd_network)


def _publish(record: dict[str, Any], json_out: Path | None, log: Callable[[str], None]) -> None:
    from sngan.io import append_jsonl

    for warning in record.get("warnings", []):
        log(f"warning: {warning}")
    log(format_block(record))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(json_out, record)


def labelled(extra: tuple[str, ...]) -> str:
    """The asked-for metrics that need class labels (a conditional checkpoint), comma-separated ('' for none)."""
    return ",".join(name for name in extra if EXTRA[name].needs_labels)


def format_block(record: dict[str, Any]) -> str:
    """The printed result: IS mean ± std, FID (or FD in DINOv2 features), each extra metric's lines (its
    `describe`) and the protocol."""
    metrics = record["metrics"]
    is_name = next(k for k in metrics if k.startswith("is") and not k.endswith("_std"))
    fid_name = next(k for k in metrics if k.startswith(("fid", "fd_")))
    fd_label = "FID " if fid_name.startswith("fid") else "FD  "
    real = f"{record['num_real']} {record['real_dataset']} {record['split']}" if record["num_real"] else \
        f"statistics {record['stats']}"
    generated = "images" if "images" in record else "generated"
    extra = [line for name, metric in EXTRA.items() if (values := values_of(name, metrics))
             for line in metric.describe(values, record["fid_generated"], record["num_real"])]
    return "\n".join([
        f"IS   {metrics[is_name]:.3f} ± {metrics[is_name + '_std']:.3f}   ({is_name}: {record['num_generated']} "
        f"{generated}, {record['is_splits']} in-order splits, std ddof=0)",
        f"{fd_label} {metrics[fid_name]:.3f}   ({fid_name}: {record['fid_generated']} {generated} vs {real} images)",
        *extra,
        f"protocol: {record['protocol']} - {record['protocol_description']}",
        f"network {record['network']} (sha256 {record['weights_sha256'][:8]}) | input "
        f"{record.get('feature_input', record['inception_input'])}: {record['resize']} | "
        + (f"IS: {record['is_network']} (sha256 {record['is_weights_sha256'][:8]}), input {record['inception_input']}"
           f" | " if record.get("is_network") else "")
        + f"{record['precision']} | "
        + (f"images {record['images']} ({record['images_kind']})" if "images" in record
           else f"seed {record['seed']} | step {record['step']} | {record['generator']} generator | uint8 by "
                f"{record['quantise']}"),
    ])
