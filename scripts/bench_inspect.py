"""Cost of one `train.inspect_every` check relative to one training iteration, on the same device and model.

Usage:
    python scripts/bench_inspect.py --config configs/cifar10_resnet.yaml [--iters 10] [--warmup 3] [--set k=v ...]

Prints ms per G-iteration (one G step + n_dis D steps, the config's default fast path, synthetic data), ms per
inspection (`sngan.inspect.summary.training_record`: float32 SVDs of every D weight and FFT conv norms, on the
device), and their ratio: the share of training time an inspection every K iterations costs is ratio / K.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sngan.config import load_config
from sngan.distributed import resolve_device
from sngan.inspect.summary import input_sizes, training_record
from sngan.train.build import build_state
from sngan.train.losses import get_losses
from sngan.train.steps import d_step, g_step


def timed(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Median seconds of `fn()` over `iters` runs after `warmup` runs."""
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.config, ["data.name=synthetic", "data.num_images=1024", *args.overrides])
    device = resolve_device(cfg.train.device)
    state = build_state(cfg, device, lambda message: None)
    d_loss, g_loss = get_losses(cfg.loss.type)

    def iteration() -> None:
        g_step(state, g_loss)
        for _ in range(cfg.train.n_dis):
            d_step(state, d_loss)

    sizes = input_sizes(state.discriminator, cfg.model.resolution, cfg.model.num_classes)
    it = timed(iteration, args.iters, args.warmup, device)
    check = timed(lambda: training_record(state.discriminator, sizes), args.iters, args.warmup, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.config} on {name}: {it * 1e3:.1f} ms per G-iteration, {check * 1e3:.1f} ms per inspection, "
          f"ratio {check / it:.3f} (every 1000 iterations: {check / it / 1000:.2e} of training time)")


if __name__ == "__main__":
    main()
