"""Standard CNN generator and discriminator of the SN-GAN paper (Table 3), unconditional.

Where Table 3 is silent we follow PFN's chainer-gan-lib SN-DCGAN (the authors' group's CNN code) and say so:
- G: the dense layer's BatchNorm is a 1-d BN over the flattened (M_g * M_g * 512) output, before the reshape;
- all weights start from N(0, 0.02); the D's final dense layer has a bias (d_linear_bias in the configs).
Where the two disagree we follow the paper: lReLU slope 0.1, widths 64-64-128-128-256-256-512 in D (the
stride-2 conv keeps the width, the next 3x3 conv doubles it), and a 3x3 stride-1 conv (not a deconv) at G's end.

Widths: G `g_ch` (512 in the paper) halves after each deconv; D widths are `d_ch` (64) x (1, 1, 2, 2, 4, 4, 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sngan.models.layers import BN_EPS, has_activation_norm, norm_activation, norm_weight

LRELU_SLOPE = 0.1
INIT_STD = 0.02
D_MULT = (1, 1, 2, 2, 4, 4, 8)
CNN_SIDES = (32, 48)  # the sides the paper runs it at (M_g = 4, 6: CIFAR-10 and STL-10, Table 3); R = 8 * M_g


def _normal_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class CNNGenerator(nn.Module):
    """z (B, z_dim) -> images (B, 3, R, R) in [-1, 1]; R = 8 * M_g (M_g = 4 for 32, 6 for 48)."""

    def __init__(self, z_dim: int, resolution: int, g_ch: int, num_classes: int = 0):
        super().__init__()
        if num_classes:
            raise ValueError("the standard CNN generator is unconditional")
        self.z_dim, self.num_classes = z_dim, 0
        self.bottom_width = resolution // 8
        self.l0 = nn.Linear(z_dim, self.bottom_width ** 2 * g_ch)
        self.bn0 = nn.BatchNorm1d(self.bottom_width ** 2 * g_ch, eps=BN_EPS)
        layers: list[nn.Module] = []
        width = g_ch
        for _ in range(3):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),
                       nn.BatchNorm2d(width // 2, eps=BN_EPS), nn.ReLU()]
            width //= 2
        layers += [nn.Conv2d(width, 3, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        _normal_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.bn0(self.l0(z)))  # (B, M_g * M_g * C)
        return self.body(h.view(z.shape[0], -1, self.bottom_width, self.bottom_width))  # (B, 3, R, R)


class CNNDiscriminator(nn.Module):
    """images (B, 3, R, R) -> logits (B,); every conv and the dense layer normalised by `d_norm` (default SN)."""

    def __init__(self, resolution: int, d_ch: int, num_classes: int = 0, linear_bias: bool = True,
                 power_iterations: int = 1, d_norm: str = "spectral"):
        super().__init__()
        if num_classes:
            raise ValueError("the standard CNN discriminator is unconditional")
        self.num_classes = 0
        widths = [d_ch * m for m in D_MULT]
        layers: list[nn.Module] = []
        in_ch = 3
        for i, out_ch in enumerate(widths):
            kernel, stride = (4, 2) if i % 2 else (3, 1)  # odd layers halve the resolution
            layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=1))
            if i > 0 and has_activation_norm(d_norm):  # BN/LN after every conv but the first (DCGAN)
                layers.append(norm_activation(d_norm, out_ch))
            layers.append(nn.LeakyReLU(LRELU_SLOPE))
            in_ch = out_ch
        self.body = nn.Sequential(*layers)
        self.linear = nn.Linear((resolution // 8) ** 2 * in_ch, 1, bias=linear_bias)
        _normal_init(self)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                norm_weight(m, d_norm, power_iterations)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x).flatten(1)  # (B, 512, M, M) -> (B, 512 * M * M)
        return self.linear(h).squeeze(1)
