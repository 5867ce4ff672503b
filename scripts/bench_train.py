"""Benchmark the training step of a config under each speed variant; prints one markdown table row per variant.

Usage:
    python scripts/bench_train.py --config configs/cifar10_resnet.yaml [--iters 20] [--warmup 5]
        [--variants eager-fp32,bf16,...] [--set model.g_ch=64 ...] [--sn-cost]

Columns: seconds of the `--warmup` first iterations (for compiled variants this includes compiling G and D on
their first calls), then steady state: G-iterations/s (one G step + n_dis D steps), images/s through D (real +
fake per D step, fakes per G step), ms per D step and per G step (timed alone), peak memory, achieved TFLOP/s
(FLOPs of one iteration counted with torch.utils.flop_counter on the run's eager variants, times it/s) and its
share of a matmul peak measured in the same run and precision.
Data are the built-in synthetic set, resident on the device (as the trainer keeps CIFAR-10). `--sn-cost` also
times a D step with spectral norm against the same D with its weights frozen to plain tensors.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from sngan.config import load_config
from sngan.distributed import resolve_device
from sngan.train.build import build_state
from sngan.train.losses import get_losses
from sngan.train.steps import d_step, g_step

VARIANTS = {
    "eager-fp32": ["perf.precision=fp32", "perf.channels_last=off", "perf.fused_adam=off", "perf.compile=off"],
    "tf32": ["perf.precision=tf32", "perf.channels_last=off", "perf.fused_adam=off", "perf.compile=off"],
    "bf16": ["perf.precision=bf16", "perf.channels_last=off", "perf.fused_adam=off", "perf.compile=off"],
    "bf16+cl": ["perf.precision=bf16", "perf.channels_last=on", "perf.fused_adam=off", "perf.compile=off"],
    "bf16+cl+fused": ["perf.precision=bf16", "perf.channels_last=on", "perf.fused_adam=on", "perf.compile=off"],
    "bf16+cl+fused+compile": ["perf.precision=bf16", "perf.channels_last=on", "perf.fused_adam=on",
                              "perf.compile=default"],
    "bf16+cl+fused+cudagraphs": ["perf.precision=bf16", "perf.channels_last=on", "perf.fused_adam=on",
                                 "perf.compile=reduce-overhead"],
    "default": [],
    "default+compile": ["perf.compile=default"],
    "default+reduce-overhead": ["perf.compile=reduce-overhead"],
    "default+d-single-pass": ["perf.d_single_pass=true"],
}
CUDA_ONLY = {"tf32", "bf16+cl+fused+cudagraphs"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def iteration(state, d_loss_fn, g_loss_fn) -> None:
    g_step(state, g_loss_fn)
    for _ in range(state.cfg.train.n_dis):
        d_step(state, d_loss_fn)


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of `fn()` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(device: torch.device, precision: str) -> float:
    """Measured TFLOP/s of a large square matmul in the variant's precision (best of 10 after 3 warm-ups)."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e12


def flops_per_iteration(state, d_loss_fn, g_loss_fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        iteration(state, d_loss_fn, g_loss_fn)
    return counter.get_total_flops()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(config: str, overrides: list[str], name: str, iters: int, warmup: int) -> dict:
    cfg = load_config(config, ["data.name=synthetic", "data.num_images=4096", *overrides, *VARIANTS[name]])
    device = resolve_device(cfg.train.device)
    state = build_state(cfg, device, log=lambda s: None)
    if device.type == "cuda":  # after build_state: before CUDA is initialised torch 2.11 calls the device invalid
        torch.cuda.reset_peak_memory_stats(device)
    d_loss_fn, g_loss_fn = get_losses(cfg.loss.type)
    sync(device)
    start = time.perf_counter()
    for _ in range(warmup):
        iteration(state, d_loss_fn, g_loss_fn)
    sync(device)
    warmup_s = time.perf_counter() - start
    it_time = timed(lambda: iteration(state, d_loss_fn, g_loss_fn), iters, device)
    g_time = timed(lambda: g_step(state, g_loss_fn), iters, device)
    d_time = timed(lambda: d_step(state, d_loss_fn), iters, device)
    t = cfg.train
    # the FLOP counter runs the step under a dispatch mode, which compiled graphs would trace again
    flops = flops_per_iteration(state, d_loss_fn, g_loss_fn) if state.perf.compile == "off" else None
    peak = matmul_peak(device, state.perf.precision)
    return {"variant": name, "perf": state.perf.describe(), "it_s": 1 / it_time, "warmup_s": warmup_s,
            "img_s": (t.n_dis * 2 * t.batch_size + t.g_batch_size) / it_time, "d_ms": d_time * 1e3,
            "g_ms": g_time * 1e3, "mem_mb": peak_memory_mb(device), "peak": peak,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "flop_per_it": flops}


def sn_cost(config: str, overrides: list[str], iters: int) -> tuple[float, float]:
    """(ms per D step with spectral norm, ms without) in eager fp32."""
    cfg = load_config(config, ["data.name=synthetic", "data.num_images=4096", *overrides, *VARIANTS["eager-fp32"]])
    device = resolve_device(cfg.train.device)
    state = build_state(cfg, device, log=lambda s: None)
    d_loss_fn, _ = get_losses(cfg.loss.type)
    with_sn = timed(lambda: d_step(state, d_loss_fn), iters, device)
    for module in state.discriminator.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    state.opt_d = torch.optim.Adam(state.discriminator.parameters(), lr=cfg.optim.lr, betas=(0.0, 0.9))
    for _ in range(2):
        d_step(state, d_loss_fn)
    without = timed(lambda: d_step(state, d_loss_fn), iters, device)
    return with_sn * 1e3, without * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--sn-cost", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    names = [n for n in args.variants.split(",") if cuda or n not in CUDA_ONLY]
    print(f"torch {torch.__version__}, config {args.config} {' '.join(args.overrides)}, iters {args.iters}")
    print(f"| variant | first {args.warmup} it (s) | G-it/s | img/s | ms/D step | ms/G step | peak MiB | TFLOP/s | "
          f"% of matmul peak | options |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows, flops = [], None
    for name in names:
        r = bench(args.config, args.overrides, name, args.iters, args.warmup)
        rows.append(r)
        flops = r["flop_per_it"] or flops
        r["flop_per_it"] = flops
        tflops = f"{flops * r['it_s'] / 1e12:.2f}" if flops else "n/a"
        share = f"{100 * flops * r['it_s'] / 1e12 / r['peak']:.0f}%" if flops else "n/a"
        print(f"| {name} | {r['warmup_s']:.1f} | {r['it_s']:.2f} | {r['img_s']:.0f} | {r['d_ms']:.1f} | "
              f"{r['g_ms']:.1f} | {r['mem_mb']:.0f} | {tflops} | {share} of {r['peak']:.2f} | {r['perf']} |",
              flush=True)
    base = next((r for r in rows if r["variant"] == "eager-fp32"), None)
    if base:
        for r in rows:
            print(f"{r['variant']}: {r['it_s'] / base['it_s']:.2f}x eager fp32")
    if flops:
        print(f"device: {rows[0]['device']}; FLOP per G-iteration: {flops / 1e12:.2f} T")
    if args.sn_cost:
        with_sn, without = sn_cost(args.config, args.overrides, args.iters)
        print(f"spectral norm: D step {with_sn:.1f} ms with SN, {without:.1f} ms without ({with_sn / without:.2f}x)")


if __name__ == "__main__":
    main()
