"""Cost of one `train.inspect_every` check relative to one training iteration, on the same device and model.

Usage:
    python scripts/bench_inspect.py --config configs/cifar10_resnet.yaml [--iters 10] [--warmup 3] [--set k=v ...]

Prints ms per G-iteration (one G step + n_dis D steps, the config's default fast path, synthetic data), ms per
inspection (`sngan.inspect.summary.spectral_record`: float32 largest singular values of every D weight and the
convolutions' operator norms by Lanczos, `sngan.inspect.conv_norm`, on the device), and their ratio: the share
of training time an inspection every K iterations costs is ratio / K.
"""

from __future__ import annotations

import argparse

from timing import bench_state, device_name, timed

from sngan.inspect.summary import spectral_record
from sngan.train.steps import iteration


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    cfg, state, losses = bench_state(args.config, args.overrides, num_images=1024)
    device = state.device
    it = timed(lambda: iteration(state, losses), args.iters, device, args.warmup)
    m = cfg.model
    check = timed(lambda: spectral_record(state.d.module, m.resolution, m.num_classes), args.iters, device, args.warmup)
    print(f"{args.config} on {device_name(device)}: {it * 1e3:.1f} ms per G-iteration, {check * 1e3:.1f} ms per "
          f"inspection, ratio {check / it:.3f} (every 1000 iterations: {check / it / 1000:.2e} of training time)")


if __name__ == "__main__":
    main()
