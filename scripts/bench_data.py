"""Measure images/s delivered to the training step, and (optionally) images/s a training step consumes.

Delivered: `next(batch_size)` of the device-resident feeder and of the memory-mapped + prefetch-thread feeder, on a
packed set (uint8 -> float in [-1, 1] with dequantization noise, on the device); the median over repeats.
Consumed: real images per second taken by full G iterations (1 G step + n_dis D steps) of a config.

Usage:
    python scripts/bench_data.py --root DIR/train [--config configs/cifar10_resnet.yaml] \
        [--train-iterations 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from timing import sync, timed

from sngan.config import DataConfig, load_config
from sngan.data import Batches, StreamBatches, load_images
from sngan.distributed import resolve_device
from sngan.train.losses import LOSSES
from sngan.train.state import build_state
from sngan.train.steps import iteration

REPO = Path(__file__).resolve().parents[1]


def delivered(feeder, device: torch.device, batch_size: int, batches: int, repeats: int) -> float:
    """Median images/s over `repeats` runs of `batches` calls to `feeder.next(batch_size)`."""
    for _ in range(3):
        feeder.next(batch_size)
    rates = []
    for _ in range(repeats):
        sync(device)
        tick = time.perf_counter()
        for _ in range(batches):
            x, _ = feeder.next(batch_size)
        sync(device)
        rates.append(batches * batch_size / (time.perf_counter() - tick))
    return statistics.median(rates)


def consumed(config: Path, root: str, device: torch.device, iterations: int) -> tuple[float, float]:
    """(median seconds per G iteration, real images/s) of `iterations` full iterations of `config`."""
    cfg = load_config(config, ["data.name=folder", f"data.root={root}", f"train.device={device.type}"])
    state = build_state(cfg, device, log=lambda s: None)
    losses = LOSSES[cfg.loss.type]
    seconds = timed(lambda: iteration(state, losses), iterations, device)
    return seconds, cfg.train.n_dis * cfg.train.batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="class-folder tree (e.g. the CIFAR-10 JPEG train folder)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cifar10_resnet.yaml")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=200, help="batches per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--train-iterations", type=int, default=0, help="full G iterations to time (0 = skip)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {device}, torch intra-op threads {torch.get_num_threads()}")
    data = load_images(DataConfig(name="folder", root=args.root), 32, progress=True, log=print)
    print(data.summary())
    for name, cls in (("resident", Batches), ("memmap+prefetch", StreamBatches)):
        feeder = cls(data, device, seed=0, dequantize=True)
        rate = delivered(feeder, device, args.batch_size, args.batches, args.repeats)
        feeder.close()
        print(f"delivered {name} on {device}: {rate:,.0f} images/s (median of {args.repeats} x {args.batches} "
              f"batches of {args.batch_size})")
    if args.train_iterations:
        seconds, rate = consumed(args.config, args.root, device, args.train_iterations)
        print(f"consumed by {args.config.name} on {device}: {seconds:.1f} s per G iteration = {rate:,.1f} real "
              f"images/s (median of {args.train_iterations} iterations)")


if __name__ == "__main__":
    main()
