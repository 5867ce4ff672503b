"""How far W / sigma-hat is from spectral norm 1 during the first D steps, for each `model.sn_algorithm` start.

The CIFAR-10 ResNet D of configs/cifar10_resnet.yaml (full width unless --d-ch), trained as a D step does: Adam with
the config's lr and betas, the hinge loss on a "real" and a "fake" batch (uniform noise images in [-1, 1]; no data
needed), one backward per step, so every step is two training-mode forwards and W changes between steps. At every
forward each spectrally normalised layer's exact sigma(W) (float64 SVD of the W that forward saw) is compared with
the sigma-hat it divided by; printed: the worst |sigma(W) / sigma-hat - 1| over the layers at forward 1 and at
forward --forwards.

Usage:
    python scripts/probe_sn_start.py [--seeds 0 1 2] [--forwards 30] [--d-ch 128] [--batch 64]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from sngan.config import load_config
from sngan.models import build_discriminator
from sngan.models.spectral import FP32SpectralNorm, start_sn

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cifar10_resnet.yaml"


def worst_errors(start: str, seed: int, forwards: int, d_ch: int, batch: int) -> tuple[float, float]:
    cfg = load_config(CONFIG, [f"model.sn_algorithm={start}"])
    torch.manual_seed(seed)
    d = build_discriminator(dataclasses.replace(cfg.model, d_ch=d_ch)).train()
    start_sn(d, start)
    errors: list[float] = []  # one worst error per forward

    def hook(module, args, out):
        w = args[0].detach().double().movedim(module.dim, 0).flatten(1)
        sigma_hat = float(args[0].detach().double().norm() / out.detach().double().norm())
        errors.append(abs(float(torch.linalg.svdvals(w)[0]) / sigma_hat - 1))

    norms = [m for m in d.modules() if isinstance(m, FP32SpectralNorm)]
    for n in norms:
        n.register_forward_hook(hook)
    opt = torch.optim.Adam(d.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    for _ in range(forwards // 2):
        opt.zero_grad()
        real, fake = torch.rand(batch, 3, 32, 32) * 2 - 1, torch.rand(batch, 3, 32, 32) * 2 - 1
        (F.relu(1 - d(real)).mean() + F.relu(1 + d(fake)).mean()).backward()
        opt.step()
    per_forward = [max(errors[i:i + len(norms)]) for i in range(0, len(errors), len(norms))]
    return per_forward[0], per_forward[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--forwards", type=int, default=30)
    parser.add_argument("--d-ch", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--starts", nargs="+", default=["random", "torch", "svd"])
    args = parser.parse_args()
    for start in args.starts:
        for seed in args.seeds:
            first, last = worst_errors(start, seed, args.forwards, args.d_ch, args.batch)
            print(f"sn_algorithm {start:6s} seed {seed}: worst |sigma/sigma-hat - 1| forward 1 {first:.4f}, "
                  f"forward {args.forwards} {last:.4f}", flush=True)


if __name__ == "__main__":
    main()
