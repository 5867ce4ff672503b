"""`sngan eval`: a checkpoint's generator scored under a protocol, printed and appended to --json with its record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sngan.distributed import SINGLE, DistInfo, broadcast_object
from sngan.evaluation.protocols import Protocol, make_protocol
from sngan.evaluation.reference import check_reference, reference_stats
from sngan.evaluation.scoring import protocol_record, score_generator
from sngan.metrics.extra import parse_metrics
from sngan.metrics.inception import load_inception
from sngan.metrics.printout import format_block
from sngan.metrics.stats import load_stats


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
    from sngan.checkpoint import open_checkpoint

    opened = open_checkpoint(ckpt, generator=True, ema=ema, device=device)  # fails before the weights are fetched
    ref = load_stats(stats, bool(extra)) if stats is not None else None  # and so does a missing --stats file
    net = load_inception(weights, device)
    if ref is None and info.is_main:
        cfg = opened.config
        ref = reference_stats(cfg.data, cfg.model.resolution, cfg.train.seed, cfg.data.split, protocol.num_real,
                              net, batch_size, log, bool(extra))
    ref = broadcast_object(ref if info.is_main else None, info)
    check_reference(ref, net.network)
    metrics = score_generator(opened.generator, net, protocol, ref, seed, batch_size, info, extra)
    return protocol_record(protocol, net, ref, checkpoint=str(ckpt), step=int(opened.state["step"]), seed=seed,
                           generator=opened.generator_name, device=str(device), metrics=metrics)


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
    distributed.init_process_group(info)
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
