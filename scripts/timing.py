"""What the benchmarks in scripts/ share: a benchmark state on synthetic data, device syncs, medians, FLOPs, peaks.

Imported as `from timing import ...`: Python puts a script's own folder first on `sys.path`, so the scripts need no
path edits. Every benchmark times `sngan.train.steps.iteration`, the function the training loop calls, so what is
timed is what training runs (learning rate, G step, n_dis D steps, EMA).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from sngan.config import Config, load_config
from sngan.distributed import resolve_device
from sngan.train.losses import LOSSES
from sngan.train.state import TrainState, build_state
from sngan.train.steps import iteration

EAGER_FP32 = ["perf.precision=fp32", "perf.channels_last=off", "perf.fused_adam=off", "perf.compile=off"]


def bench_state(config, overrides: list[str], num_images: int = 4096) -> tuple[Config, TrainState, tuple]:
    """(config, state, losses) for `config` with `overrides`, on the built-in synthetic set resident on the device
    (as the trainer keeps CIFAR-10), quiet."""
    cfg = load_config(config, ["data.name=synthetic", f"data.num_images={num_images}", *overrides])
    state = build_state(cfg, resolve_device(cfg.train.device), log=lambda message: None)
    return cfg, state, LOSSES[cfg.loss.type]


def run_iterations(state: TrainState, losses: tuple, n: int) -> None:
    for _ in range(n):
        iteration(state, losses)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def timed(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 0) -> float:
    """Median seconds of `fn()` over `repeats` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(device: torch.device, precision: str) -> float:
    """Measured TFLOP/s of a large square matmul in the given precision (best of 10 after 3 warm-ups)."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = timed(lambda: a @ b, 1, device, warmup=3)
    for _ in range(9):
        best = min(best, timed(lambda: a @ b, 1, device))
    return 2 * n ** 3 / best / 1e12


def flops_of(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (torch.utils.flop_counter; run it on eager code: compiled graphs would be traced
    again under the counter's dispatch mode)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory since the last reset, or this process's peak resident set on the CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
