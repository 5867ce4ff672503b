"""How far two fp32 runs of the same maths drift apart: eager fp32 against one change (default: channels_last).

Usage:
    python scripts/fp32_drift.py --config configs/demo.yaml [--iterations 20] [--params-at 5]
        [--change perf.channels_last=on ...] [--set model.g_ch=16 ...]

Both runs use one seed and the built-in synthetic data on the CPU; the second differs only by `--change`. Prints,
per G iteration, the losses of the first run (G step, then the n_dis D steps) and the largest absolute and relative
loss difference, then the parameters that differ most after `--params-at` iterations. The point: Adam with beta1 0
starts as lr * sign(gradient), so rounding differences that flip the sign of a near-zero gradient (the biases
before a BatchNorm have an exactly zero one) become lr-sized parameter differences from the first step.
"""

from __future__ import annotations

import argparse

import torch

from sngan.config import load_config
from sngan.train.build import build_state
from sngan.train.losses import get_losses
from sngan.train.steps import d_step, g_step

EAGER = ["perf.precision=fp32", "perf.channels_last=off", "perf.fused_adam=off", "perf.compile=off",
         "train.device=cpu", "data.name=synthetic", "data.num_images=512"]


def run(config: str, overrides: list[str], iterations: int, params_at: int):
    cfg = load_config(config, [*EAGER, *overrides])
    state = build_state(cfg, torch.device("cpu"), log=lambda s: None)
    d_loss, g_loss = get_losses(cfg.loss.type)
    losses, params = [], {}
    for i in range(iterations):
        row = [float(g_step(state, g_loss))]
        row += [float(d_step(state, d_loss)) for _ in range(cfg.train.n_dis)]
        losses.append(row)
        if i + 1 == params_at:
            for prefix, net in (("G", state.generator), ("D", state.discriminator)):
                params.update({f"{prefix}.{k}": v.detach().clone() for k, v in net.named_parameters()})
    return losses, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--params-at", type=int, default=5)
    parser.add_argument("--change", action="append", default=[])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    change = args.change or ["perf.channels_last=on"]
    base, base_params = run(args.config, args.overrides, args.iterations, args.params_at)
    other, other_params = run(args.config, [*args.overrides, *change], args.iterations, args.params_at)
    print(f"eager fp32 vs {' '.join(change)}: losses of the first run, largest |difference| (absolute, relative)")
    for i, (a, b) in enumerate(zip(base, other, strict=True)):
        gaps = [abs(x - y) for x, y in zip(a, b, strict=True)]
        rel = max(g / abs(x) if x else (0.0 if g == 0 else float("inf")) for g, x in zip(gaps, a, strict=True))
        print(f"{i:3d}  {' '.join(f'{x:8.4f}' for x in a)}  abs {max(gaps):.1e}  rel {rel:.1e}")
    print(f"largest parameter differences after {args.params_at} iterations (|difference|, |value| max):")
    diffs = sorted(((base_params[k] - other_params[k]).abs().max().item(), k) for k in base_params)
    for diff, name in diffs[-6:][::-1]:
        print(f"  {name:32s} {diff:.1e}  {base_params[name].abs().max().item():.1e}")


if __name__ == "__main__":
    main()
