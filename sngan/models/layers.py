"""Building blocks shared by the generator and discriminator families.

Spectral normalization itself is in `sngan.models.spectral`; the discriminator's normalisations are chosen in
`sngan.models.norms`. Initialisation follows the authors' code: Glorot-uniform with gain sqrt(2) on the residual
3x3 convs, gain 1 on shortcuts, dense layers, embeddings and output convs; biases zero.
BatchNorm uses eps 2e-5 and momentum 0.1 (Chainer's defaults: eps 2e-5, decay 0.9), `norms.BN_EPS`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sngan.models.norms import BN_EPS, norm_activation, norm_weight

RESIDUAL_GAIN = math.sqrt(2.0)


def glorot(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Glorot-uniform weights (scaled by `gain`) and zero bias, in place; returns the module."""
    nn.init.xavier_uniform_(module.weight, gain=gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def conv(in_ch: int, out_ch: int, kernel: int, gain: float = 1.0, stride: int = 1, padding: int | None = None,
         bias: bool = True) -> nn.Conv2d:
    pad = kernel // 2 if padding is None else padding
    return glorot(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=bias), gain)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, followed by per-class scale and shift (gamma init 1, beta init 0).

    The condition `y` is either integer labels (B,) or float class weights (B, num_classes): with weights the scale
    and shift are the weighted sums of the per-class ones, sum_k w_k gamma_k and sum_k w_k beta_k, as the `weights`
    argument of the authors' CategoricalConditionalBatchNormalization (used for class morphing). One-hot weights
    give exactly the labels' result.
    """

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=BN_EPS, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)  # (B, C, H, W)
        if y.is_floating_point():  # class weights (B, K) @ (K, C) -> (B, C)
            gamma, beta = y @ self.gamma.weight, y @ self.beta.weight
        else:
            gamma, beta = self.gamma(y), self.beta(y)
        return gamma[:, :, None, None] * h + beta[:, :, None, None]


def batch_norm(num_features: int, num_classes: int) -> nn.Module:
    if num_classes > 0:
        return ConditionalBatchNorm2d(num_features, num_classes)
    return nn.BatchNorm2d(num_features, eps=BN_EPS)


def apply_bn(bn: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return bn(x, y) if isinstance(bn, ConditionalBatchNorm2d) else bn(x)


class GBlock(nn.Module):
    """Generator up-block: BN-ReLU-up2(nearest)-conv3x3-BN-ReLU-conv3x3, shortcut up2 then 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, num_classes: int = 0):
        super().__init__()
        self.b1 = batch_norm(in_ch, num_classes)
        self.c1 = conv(in_ch, out_ch, 3, RESIDUAL_GAIN)
        self.b2 = batch_norm(out_ch, num_classes)
        self.c2 = conv(out_ch, out_ch, 3, RESIDUAL_GAIN)
        self.c_sc = conv(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(apply_bn(self.b1, x, y)), scale_factor=2, mode="nearest")  # (B, Cin, 2H, 2W)
        h = self.c2(F.relu(apply_bn(self.b2, self.c1(h), y)))
        return h + self.c_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Discriminator block: ReLU-conv3x3-ReLU-conv3x3[-avgpool2]; shortcut 1x1 conv[-avgpool2] when shapes change.

    The hidden width equals the input width, as in the authors' `dis_models/resblocks.py`. `d_norm` picks the
    normalisation (`sngan.models.norms`): BN/LN, when chosen, come before each ReLU of the residual branch.
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, power_iterations: int = 1,
                 d_norm: str = "spectral"):
        super().__init__()
        self.downsample = downsample
        self.n1, self.n2 = norm_activation(d_norm, in_ch), norm_activation(d_norm, in_ch)
        self.c1 = norm_weight(conv(in_ch, in_ch, 3, RESIDUAL_GAIN), d_norm, power_iterations)
        self.c2 = norm_weight(conv(in_ch, out_ch, 3, RESIDUAL_GAIN), d_norm, power_iterations)
        learnable_sc = in_ch != out_ch or downsample
        self.c_sc = norm_weight(conv(in_ch, out_ch, 1), d_norm, power_iterations) if learnable_sc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(F.relu(self.n2(self.c1(F.relu(self.n1(x))))))
        sc = x if self.c_sc is None else self.c_sc(x)
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)  # (B, C, H/2, W/2)
        return h + sc


class DBlockOptimized(nn.Module):
    """First discriminator block on RGB input: conv3x3-ReLU-conv3x3-avgpool2; shortcut avgpool2 then 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, power_iterations: int = 1, d_norm: str = "spectral"):
        super().__init__()
        self.c1 = norm_weight(conv(in_ch, out_ch, 3, RESIDUAL_GAIN), d_norm, power_iterations)
        self.n1 = norm_activation(d_norm, out_ch)
        self.c2 = norm_weight(conv(out_ch, out_ch, 3, RESIDUAL_GAIN), d_norm, power_iterations)
        self.c_sc = norm_weight(conv(in_ch, out_ch, 1), d_norm, power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.n1(self.c1(x)))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))
