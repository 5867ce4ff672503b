"""What a study plan costs: each method's D and G step timed on this device, then the whole plan in hours.

Usage:
    python scripts/bench_study.py --plan configs/study/figure1_cifar10.yaml [--iters 10] [--warmup 3]
        [--set perf.precision=fp32 ...]

For each method of the plan (its first variant: settings change n_dis and the optimiser's numbers, not the cost of
a step), ms per D step and per G step (medians, full-size model of the plan's base config, the config's default
fast path unless `--set` says otherwise, synthetic data resident on the device). A G-iteration costs
n_dis x D step + G step, so every variant's seconds per G-iteration follow from its own n_dis; the plan's total is
the sum over runs of iterations x that. Evaluation passes (IS/FID) and checkpoints are not included.
"""

from __future__ import annotations

import argparse

import torch
from timing import bench_state, device_name, run_iterations, sync, timed

from sngan.config import load_config
from sngan.distributed import resolve_device
from sngan.study.plan import load_plan
from sngan.train.steps import d_step, g_step


def step_times(config, overrides: list[str], iters: int, warmup: int) -> tuple[float, float]:
    """(seconds per D step, seconds per G step), medians after `warmup` G iterations."""
    _, state, (d_loss, g_loss) = bench_state(config, overrides, num_images=2048)
    run_iterations(state, (d_loss, g_loss), warmup)
    sync(state.device)
    return (timed(lambda: d_step(state, d_loss), iters, state.device),
            timed(lambda: g_step(state, g_loss), iters, state.device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    plan = load_plan(args.plan)
    device = resolve_device(load_config(plan.base, args.overrides).train.device)
    name = device_name(device)
    print(f"plan {args.plan} on {name}, torch {torch.__version__}, {' '.join(args.overrides)}")
    print("| method | ms/D step | ms/G step | s per 1K G-it at n_dis 1 | at n_dis 5 |")
    print("|---|---|---|---|---|")
    per_method: dict[str, tuple[float, float]] = {}
    for variant in plan.variants:
        if variant.method in per_method:
            continue
        d, g = step_times(plan.base, [*variant.overrides, *args.overrides], args.iters, args.warmup)
        per_method[variant.method] = d, g
        print(f"| {variant.method} | {d * 1e3:.2f} | {g * 1e3:.2f} | {1e3 * (d + g):.1f} | {1e3 * (5 * d + g):.1f} |",
              flush=True)
    total = 0.0
    for variant in plan.variants:
        t = plan.config(variant, plan.seeds[0]).train
        d, g = per_method[variant.method]
        total += t.iterations * (t.n_dis * d + g) * len(plan.seeds)
    runs = len(plan.variants) * len(plan.seeds)
    print(f"plan total: {runs} runs, {total / 3600:.1f} device-hours of training steps on {name} "
          f"(evaluation and checkpoints not included)")


if __name__ == "__main__":
    main()
