"""Train the same config twice, eager fp32 and the default fast path, and print both loss curves side by side.

Usage:
    python scripts/compare_fast_eager.py --config configs/cifar10_resnet.yaml --iterations 2000 --out /tmp/cmp
        [--set KEY=VALUE ...]

Both runs share seed, data (the built-in synthetic set, so it runs offline) and schedule; only the `perf` section
differs. Runs go to fresh numbered folders under --out (eager-NNN, fast-NNN). Prints one row per logged step
(d_loss and g_loss of each run) and the mean absolute difference over the second half of the run.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from sngan.config import load_config
from sngan.train.loop import train
from sngan.train.rundir import next_run_dir, read_metrics

EAGER = ["perf.precision=fp32", "perf.channels_last=off", "perf.fused_adam=off", "perf.compile=off"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    common = ["data.name=synthetic", "data.num_images=4096", f"train.iterations={args.iterations}",
              "train.ckpt_every=0", "train.sample_every=0",
              f"train.log_every={max(1, args.iterations // 20)}", *args.overrides]
    curves = {}
    for name, perf in (("eager", EAGER), ("fast", [])):
        cfg = load_config(args.config, [*common, *perf])
        run = next_run_dir(name, args.out)
        train(cfg, run, progress=False)
        curves[name] = read_metrics(run)
    print("| step | eager d_loss | fast d_loss | eager g_loss | fast g_loss |")
    print("|---|---|---|---|---|")
    for e, f in zip(curves["eager"], curves["fast"], strict=True):
        print(f"| {e['step']} | {e['d_loss']:.4f} | {f['d_loss']:.4f} | {e['g_loss']:.4f} | {f['g_loss']:.4f} |")
    half = len(curves["eager"]) // 2
    for key in ("d_loss", "g_loss"):
        diff = statistics.mean(abs(e[key] - f[key]) for e, f in zip(curves["eager"][half:], curves["fast"][half:],
                                                                       strict=True))
        print(f"mean |eager - fast| {key} over the second half: {diff:.4f}")


if __name__ == "__main__":
    main()
