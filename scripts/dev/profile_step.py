"""Profile G-iterations of a config with torch.profiler and print the top kernels (what bounds the step).

Usage:
    python scripts/dev/profile_step.py --config configs/cifar10_resnet.yaml [--iters 5] [--warmup 5] [--rows 15]
        [--set perf.precision=bf16 ...]

Prints the `rows` operators with the most device time (self CUDA time on a GPU, self CPU time on the CPU), the
number of kernel launches per G-iteration, and the device-busy fraction of the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/, for timing.py
from timing import bench_state, run_iterations, sync  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg, state, losses = bench_state(args.config, args.overrides)
    device = state.device
    run_iterations(state, losses, args.warmup)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        run_iterations(state, losses, args.iters)
        sync(device)
    wall = time.perf_counter() - start
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"{cfg.perf} | {args.iters} G-iterations in {wall:.3f} s (profiled)")
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    if cuda:
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1e6
        print(f"kernel launches per G-iteration: {len(kernels) / args.iters:.0f}; device busy {busy:.3f} s of "
              f"{wall:.3f} s wall ({100 * busy / wall:.0f}%)")


if __name__ == "__main__":
    main()
