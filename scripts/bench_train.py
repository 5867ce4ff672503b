"""Benchmark the training step of a config under each speed variant; prints one markdown table row per variant.

Usage:
    python scripts/bench_train.py --config configs/cifar10_resnet.yaml [--iters 20] [--warmup 5]
        [--variants eager-fp32,bf16,...] [--set model.g_ch=64 ...] [--sn-cost]

Columns: seconds of the `--warmup` first iterations (for compiled variants this includes compiling G and D on
their first calls), then steady state: G-iterations/s (`sngan.train.steps.iteration`, what training runs: lr, one
G step, n_dis D steps, EMA), images/s through D (real + fake per D step, fakes per G step), ms per D step and per G
step (timed alone), peak memory, achieved TFLOP/s (FLOPs of one iteration counted with torch.utils.flop_counter on
the run's eager variants, times it/s) and its share of a matmul peak measured in the same run and precision.
Data are the built-in synthetic set, resident on the device (as the trainer keeps CIFAR-10). `--sn-cost` also
times a D step with spectral norm against the same D with its weights frozen to plain tensors.
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import (
    EAGER_FP32,
    bench_state,
    device_name,
    flops_of,
    matmul_peak,
    peak_memory_mb,
    reset_peak_memory,
    run_iterations,
    sync,
    timed,
)
from torch.nn.utils import parametrize

from sngan.train.steps import d_step, g_step, iteration

VARIANTS = {
    "eager-fp32": EAGER_FP32,
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


def bench(config: str, overrides: list[str], name: str, iters: int, warmup: int) -> dict:
    cfg, state, losses = bench_state(config, [*overrides, *VARIANTS[name]])
    device = state.device
    reset_peak_memory(device)  # after build_state: before CUDA is initialised torch 2.11 calls the device invalid
    d_loss_fn, g_loss_fn = losses
    sync(device)
    start = time.perf_counter()
    run_iterations(state, losses, warmup)
    sync(device)
    warmup_s = time.perf_counter() - start
    it_time = timed(lambda: iteration(state, losses), iters, device)
    g_time = timed(lambda: g_step(state, g_loss_fn), iters, device)
    d_time = timed(lambda: d_step(state, d_loss_fn), iters, device)
    t = cfg.train
    flops = flops_of(lambda: iteration(state, losses)) if state.perf.compile == "off" else None
    peak = matmul_peak(device, state.perf.precision)
    return {"variant": name, "perf": state.perf.describe(), "it_s": 1 / it_time, "warmup_s": warmup_s,
            "img_s": (t.n_dis * 2 * t.batch_size + t.g_batch_size) / it_time, "d_ms": d_time * 1e3,
            "g_ms": g_time * 1e3, "mem_mb": peak_memory_mb(device), "peak": peak, "device": device_name(device),
            "flop_per_it": flops}


def sn_cost(config: str, overrides: list[str], iters: int) -> tuple[float, float]:
    """(ms per D step with spectral norm, ms without) in eager fp32."""
    cfg, state, (d_loss_fn, _) = bench_state(config, [*overrides, *EAGER_FP32])
    with_sn = timed(lambda: d_step(state, d_loss_fn), iters, state.device)
    for module in state.d.module.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    state.opt_d = torch.optim.Adam(state.d.module.parameters(), lr=cfg.optim.lr, betas=(0.0, 0.9))
    without = timed(lambda: d_step(state, d_loss_fn), iters, state.device, warmup=2)
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
