"""Learning probe (a dev check, not a product feature): does the whole path learn from real data?

Trains `configs/cifar10_resnet.yaml` at reduced width on a CIFAR-10 class-folder tree (`data.name: folder`, i.e.
the packed cache and the feeder the product uses) for a fixed number of generator iterations, and reports the
Frechet distance between generated and real test images in the 64-d pooled features of a small CIFAR-10 ResNet-20
classifier (the shared dev copy described in ../shared/data/README.md), at the start, at the end, and for uniform
noise. It is a probe for "does training learn", not FID: numbers are not comparable to published ones.

Usage:
    python scripts/probe_learning.py --train DIR/train --test DIR/test --weights resnet20-12fca82f.th \
        [--iterations 1000] [--num 2000] [--out runs/probe] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sngan import metrics
from sngan.config import DataConfig, load_config
from sngan.data import load_images
from sngan.sample.generate import generate, latents, load_generator
from sngan.sample.writers import to_uint8
from sngan.train.loop import train
from sngan.train.state import build_state

REPO = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# What the probe changes in cifar10_resnet.yaml so that it fits <= 20 min on 2 shared CPU cores: widths 32/32
# (paper 256/128), one D step per G step (paper 5) on batches of 64 real + 64 fake, 64 fakes per G step (paper 128),
# constant lr (a short run has no time to decay). Loss, Adam(2e-4, 0, 0.9) and architecture are the config's.
PROBE_OVERRIDES = ["model.g_ch=32", "model.d_ch=32", "train.n_dis=1", "train.g_batch_size=64",
                   "optim.lr_decay=none", "train.log_every=25", "train.sample_every=0", "train.ckpt_every=0",
                   "train.device=cpu"]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut ("option A": subsample, zero-pad channels), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class ResNet20(nn.Module):
    """The CIFAR ResNet-20 of akamaster/pytorch_resnet_cifar10; `features` gives the 64-d pooled output."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths, layers, cin = (16, 32, 64), [], 16
        for stage, cout in enumerate(widths):
            blocks = [BasicBlock(cin if i == 0 else cout, cout, 2 if stage and i == 0 else 1) for i in range(3)]
            layers.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, 10)

    @torch.no_grad()
    def features(self, images_uint8: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 64) float64 pooled features."""
        out = []
        for start in range(0, len(images_uint8), batch_size):
            x = images_uint8[start:start + batch_size].permute(0, 3, 1, 2).float() / 255.0
            h = F.relu(self.bn1(self.conv1((x - MEAN) / STD)))
            h = self.layer3(self.layer2(self.layer1(h)))
            out.append(h.mean(dim=(2, 3)).double())  # (B, 64)
        return torch.cat(out).numpy()


def load_classifier(path: Path) -> ResNet20:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    net = ResNet20()
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return net.eval()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two feature sets (rows), with the product's float64 maths."""
    return metrics.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def generated_features(net: ResNet20, generator: nn.Module, num: int, z_dim: int) -> np.ndarray:
    z, y = latents(num, z_dim, 0, seed=1234)
    return net.features(to_uint8(generate(generator, z, y)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="CIFAR-10 train class-folder tree")
    parser.add_argument("--test", type=Path, required=True, help="CIFAR-10 test class-folder tree")
    parser.add_argument("--weights", type=Path, required=True, help="resnet20-12fca82f.th")
    parser.add_argument("--iterations", type=int, default=1000, help="generator iterations")
    parser.add_argument("--num", type=int, default=2000, help="generated and test images per distance")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "probe", help="run directory (must be new)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared "
                        "CPU: 2.9 s vs 13.5 s per iteration measured here with 2 threads under load)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net = load_classifier(args.weights)
    test = load_images(DataConfig(name="folder", root=str(args.test)), 32, progress=False)
    pick = np.random.default_rng(0).permutation(len(test.images))[:args.num]
    real = net.features(torch.from_numpy(np.asarray(test.images[np.sort(pick)])))
    noise = torch.randint(0, 256, (args.num, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    print(f"noise baseline: FD {frechet_distance(net.features(noise), real):.2f} (uniform noise vs {args.num} test)")

    overrides = ["data.name=folder", f"data.root={args.train}", f"train.iterations={args.iterations}",
                 *PROBE_OVERRIDES, *args.overrides]
    cfg = load_config(REPO / "configs" / "cifar10_resnet.yaml", overrides)
    start_g = build_state(cfg, torch.device("cpu"), log=lambda s: None).g.module
    start = frechet_distance(generated_features(net, start_g, args.num, cfg.model.z_dim), real)
    print(f"start (step 0): FD {start:.2f}")

    tick = time.perf_counter()
    last = train(cfg, args.out, progress=False, log=print)
    minutes = (time.perf_counter() - tick) / 60
    generator, _ = load_generator(last)
    end = frechet_distance(generated_features(net, generator, args.num, cfg.model.z_dim), real)
    print(f"end (step {cfg.train.iterations}, {minutes:.1f} min of training): FD {end:.2f}")


if __name__ == "__main__":
    main()
