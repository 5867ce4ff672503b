"""Time evaluation on the device: Inception feature extraction, and IS + FID of N generated images end to end.

The real FID Inception weights cannot be fetched on an offline machine, so the network (pytorch-fid's FID
Inception, exactly its structure) gets randomly initialised weights of the same shapes
(`sngan/metrics/random_inception.py`); speed does not depend on the values. The generator is
`configs/cifar10_resnet.yaml`'s at full width, freshly initialised, and the reference statistics are random 2048-d
ones: the scores are meaningless, the seconds are the point.

Usage:
    python scripts/bench_eval.py [--num 50000] [--batch 500] [--config configs/cifar10_resnet.yaml]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import device_name, sync, timed

from sngan.config import load_config
from sngan.distributed import resolve_device
from sngan.evaluation.protocols import PROTOCOLS
from sngan.evaluation.scoring import score_generator
from sngan.metrics.inception import load_inception
from sngan.metrics.random_inception import random_inception_state
from sngan.metrics.stats import ReferenceStats
from sngan.models import build_generator

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "cifar10_resnet.yaml"))
    parser.add_argument("--num", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    device = resolve_device("auto")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "random-inception.pth"
        torch.save(random_inception_state(), weights)
        net = load_inception(weights, device)
    images = torch.rand(args.batch, 3, 32, 32, device=device)
    per_batch = timed(lambda: net(images), 10, device, warmup=3)
    print(f"Inception features (random weights, pytorch-fid structure, fp32, TF32 off), batch {args.batch}: "
          f"{args.batch / per_batch:.0f} images/s (median of 10 batches, {per_batch * 1e3:.1f} ms each)")

    cfg = load_config(args.config)
    generator = build_generator(cfg.model).to(device)
    rng = np.random.default_rng(0)
    ref = ReferenceStats(rng.standard_normal(2048), np.eye(2048), {"split": "train", "num_real": 50000})
    protocol = PROTOCOLS["standard"]
    if args.num != protocol.num_generated:
        protocol = type(protocol)("custom", args.num, 10, args.num, None, "timing run")
    sync(device)
    start = time.perf_counter()
    metrics = score_generator(generator, net, protocol, ref, seed=0, batch_size=args.batch)
    sync(device)
    seconds = time.perf_counter() - start
    print(f"IS + FID of {args.num} generated images (generation, uint8 quantisation, Inception, IS, 2048-d FID): "
          f"{seconds:.1f} s on {device_name(device)} "
          f"({sorted(metrics)})")


if __name__ == "__main__":
    main()
