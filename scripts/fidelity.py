"""Fidelity of a speed variant (a dev check for the GPU run): train, then a ResNet-20 Fréchet distance to real images.

Trains a config (default `configs/cifar10_resnet.yaml` at full width) on a CIFAR-10 class-folder tree for a fixed
number of G iterations with one `perf` variant and seed, then scores the final generator with the probe of
`scripts/probe_learning.py` (64-d pooled features of the shared ResNet-20 classifier, `num` generated vs `num` test
images). Prints one JSON line: variant, seed, iterations, seconds, distance, and the loss curve (every log line).
Run the variants side by side and compare the distances with the spread between fp32 seeds.

Usage:
    python scripts/fidelity.py --train DIR/train --test DIR/test --weights resnet20-12fca82f.th \
        --variant eager|fast|compiled --seed 0 --iterations 1500 --out runs/fidelity-eager-s0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from probe_learning import frechet_distance, generated_features, load_classifier
from timing import EAGER_FP32

from sngan.config import DataConfig, load_config
from sngan.data import load_images
from sngan.records import read_records
from sngan.sample.generate import load_generator
from sngan.train.loop import train

REPO = Path(__file__).resolve().parents[1]
# eager = eager fp32; fast = the config's perf section (bf16 on CUDA, eager); compiled = fast + CUDA graphs
VARIANTS = {"eager": EAGER_FP32, "fast": [], "compiled": ["perf.compile=reduce-overhead"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cifar10_resnet.yaml")
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--variant", choices=tuple(VARIANTS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    overrides = ["data.name=folder", f"data.root={args.train}", f"train.iterations={args.iterations}",
                 f"train.seed={args.seed}", "train.log_every=100", "train.sample_every=0", "train.ckpt_every=0",
                 *VARIANTS[args.variant], *args.overrides]
    cfg = load_config(args.config, overrides)
    tick = time.perf_counter()
    last = train(cfg, args.out, progress=False, log=lambda s: None)
    seconds = time.perf_counter() - tick
    net = load_classifier(args.weights)
    test = load_images(DataConfig(name="folder", root=str(args.test)), 32, progress=False)
    pick = np.sort(np.random.default_rng(0).permutation(len(test.images))[:args.num])
    real = net.features(torch.from_numpy(np.asarray(test.images[pick])))
    generator, _ = load_generator(last, device="cuda" if torch.cuda.is_available() else "cpu")
    distance = frechet_distance(generated_features(net, generator, args.num, cfg.model.z_dim), real)
    curve = [(r["step"], r["d_loss"], r["g_loss"]) for r in read_records(args.out) if "d_loss" in r]
    print(json.dumps({"variant": args.variant, "seed": args.seed, "iterations": args.iterations,
                      "seconds": round(seconds, 1), "frechet_resnet20": round(distance, 3), "curve": curve}))


if __name__ == "__main__":
    main()
