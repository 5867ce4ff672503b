"""ResNet generator and discriminator of the SN-GAN paper (Tables 4-6) and the authors' Chainer code.

Widths are `base width x multiplier`, one multiplier per stage, fixed per resolution:

| resolution | G: dense, block widths (x g_ch) | D: block widths (x d_ch); downsample? | source                        |
|------------|---------------------------------|---------------------------------------|-------------------------------|
| 32         | 4x4; 1 1 1 1                    | 1 1 1 1; T T F F                      | Table 4, sn_cifar10 (256/128) |
| 48         | 6x6; 8 4 2 1                    | 1 2 4 8 16; T T T T F                 | Table 5 (64/64)               |
| 64         | 4x4; 16 8 4 2 1                 | 1 2 4 8 16; T T T T T                 | resnet_64/snresnet_64 (64/64) |
| 128        | 4x4; 16 16 8 4 2 1              | 1 2 4 8 16 16; T T T T T F            | Table 6, sn_projection (64/64)|

The concat discriminator (`ResNetConcatDiscriminator`, the projection paper's comparison, SN-GAN Table 6's
"concat") is the authors' `SNResNetConcatDiscriminator`: an SN class embedding of CONCAT_EMBED_DIM channels is
broadcast over the feature map and concatenated after the third block; no projection term.
"""

from __future__ import annotations

from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from sngan.models.layers import BN_EPS, DBlock, DBlockOptimized, GBlock, glorot, norm_weight


class Layout(TypedDict):
    bottom_width: int  # G's first feature map is bottom_width x bottom_width
    g_mult: tuple[int, ...]  # G's widths: g_ch x each
    d_mult: tuple[int, ...]  # D's block widths: d_ch x each
    d_down: tuple[bool, ...]  # whether each D block downsamples


LAYOUTS: dict[int, Layout] = {
    32: {"bottom_width": 4, "g_mult": (1, 1, 1, 1), "d_mult": (1, 1, 1, 1), "d_down": (True, True, False, False)},
    48: {"bottom_width": 6, "g_mult": (8, 4, 2, 1), "d_mult": (1, 2, 4, 8, 16),
         "d_down": (True, True, True, True, False)},
    64: {"bottom_width": 4, "g_mult": (16, 8, 4, 2, 1), "d_mult": (1, 2, 4, 8, 16),
         "d_down": (True, True, True, True, True)},
    128: {"bottom_width": 4, "g_mult": (16, 16, 8, 4, 2, 1), "d_mult": (1, 2, 4, 8, 16, 16),
          "d_down": (True, True, True, True, True, False)},
}
CONCAT_EMBED_DIM = 128  # authors' SNResNetConcatDiscriminator(dim_emb=128)
CONCAT_AFTER = 3  # the class embedding joins the features after this many blocks (authors' block3)


def _d_blocks(widths: list[int], down: tuple[bool, ...], power_iterations: int, d_norm: str = "spectral",
              extra_in: int = 0, extra_at: int = -1) -> list[nn.Module]:
    """Optimized first block, then one block per width; block `extra_at` takes `extra_in` more input channels."""
    blocks: list[nn.Module] = [DBlockOptimized(3, widths[0], power_iterations, d_norm)]
    for i, (a, b, d) in enumerate(zip(widths[:-1], widths[1:], down[1:], strict=True), start=1):
        blocks.append(DBlock(a + (extra_in if i == extra_at else 0), b, d, power_iterations, d_norm))
    return blocks


class ResNetGenerator(nn.Module):
    """z (B, z_dim) [, y: labels (B,) or class weights (B, num_classes)] -> images (B, 3, R, R) in [-1, 1]."""

    def __init__(self, z_dim: int, resolution: int, g_ch: int, num_classes: int = 0):
        super().__init__()
        layout = LAYOUTS[resolution]
        widths = [g_ch * m for m in layout["g_mult"]]
        self.z_dim, self.num_classes = z_dim, num_classes
        self.bottom_width = layout["bottom_width"]
        self.l1 = glorot(nn.Linear(z_dim, self.bottom_width ** 2 * widths[0]))
        self.blocks = nn.ModuleList(GBlock(a, b, num_classes) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.bn = nn.BatchNorm2d(widths[-1], eps=BN_EPS)
        self.out = glorot(nn.Conv2d(widths[-1], 3, 3, padding=1))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.l1(z).view(z.shape[0], -1, self.bottom_width, self.bottom_width)  # (B, C0, bw, bw)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))  # (B, 3, R, R)


class ResNetDiscriminator(nn.Module):
    """images (B, 3, R, R) [, y (B,)] -> logits (B,); projection term <embed(y), h> when conditional."""

    def __init__(self, resolution: int, d_ch: int, num_classes: int = 0, linear_bias: bool = False,
                 power_iterations: int = 1, d_norm: str = "spectral"):
        super().__init__()
        layout = LAYOUTS[resolution]
        widths = [d_ch * m for m in layout["d_mult"]]
        self.num_classes = num_classes
        self.blocks = nn.Sequential(*_d_blocks(widths, layout["d_down"], power_iterations, d_norm))
        self.linear = norm_weight(glorot(nn.Linear(widths[-1], 1, bias=linear_bias)), d_norm, power_iterations)
        self.embed = norm_weight(glorot(nn.Embedding(num_classes, widths[-1])), d_norm, power_iterations) \
            if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling: (B, C, h, w) -> (B, C)
        out = self.linear(h).squeeze(1)  # (B,)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(dim=1)
        return out


class ResNetConcatDiscriminator(nn.Module):
    """images (B, 3, R, R), y (B,) -> logits (B,); embed(y) (B, E) is concatenated to the features after block 3."""

    def __init__(self, resolution: int, d_ch: int, num_classes: int, linear_bias: bool = False,
                 power_iterations: int = 1, d_norm: str = "spectral"):
        super().__init__()
        layout = LAYOUTS[resolution]
        widths = [d_ch * m for m in layout["d_mult"]]
        self.num_classes = num_classes
        blocks = _d_blocks(widths, layout["d_down"], power_iterations, d_norm, CONCAT_EMBED_DIM, CONCAT_AFTER)
        self.head, self.tail = nn.Sequential(*blocks[:CONCAT_AFTER]), nn.Sequential(*blocks[CONCAT_AFTER:])
        self.embed = norm_weight(glorot(nn.Embedding(num_classes, CONCAT_EMBED_DIM)), d_norm, power_iterations)
        self.linear = norm_weight(glorot(nn.Linear(widths[-1], 1, bias=linear_bias)), d_norm, power_iterations)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.head(x)  # (B, C, H, W)
        emb = self.embed(y)[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])  # (B, E) -> (B, E, H, W)
        h = F.relu(self.tail(torch.cat([h, emb], dim=1))).sum(dim=(2, 3))  # (B, C+E, H, W) -> ... -> (B, C')
        return self.linear(h).squeeze(1)  # (B,)
