"""How --truncation fades a BatchNorm generator: pixel std within an image (contrast) and across images (diversity)
of 256 samples per threshold, with the running statistics sampling uses, and the contrast with batch statistics.

Usage:
    python scripts/truncation_contrast.py CHECKPOINT
"""
import sys

import torch

from sngan.sample.generate import latents, load_generator

g, _ = load_generator(sys.argv[1])
for t in (None, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3):
    z, _ = latents(256, g.z_dim, 0, 0, truncation=t)
    with torch.no_grad():
        x = (g(z, None).clamp(-1, 1) + 1) * 127.5  # (N, 3, H, W) in [0, 255]
        g.train()
        xb = (g(z, None).clamp(-1, 1) + 1) * 127.5
        g.eval()
    contrast = x.flatten(1).std(1).mean().item()  # within-image pixel std
    diversity = x.std(0).mean().item()  # across-image std per pixel
    print(f"T={t}: z std {z.std():.2f} | eval BN: contrast {contrast:.1f}, diversity {diversity:.1f} | "
          f"batch-stat BN: contrast {xb.flatten(1).std(1).mean().item():.1f}")
