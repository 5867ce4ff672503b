"""Building blocks shared by the generator and discriminator families, and the discriminator normalisations of
the paper's comparison (section 4.1).

Spectral normalization itself is in `sngan.models.spectral`. Initialisation follows the authors' code:
Glorot-uniform with gain sqrt(2) on the residual 3x3 convs, gain 1 on shortcuts, dense layers, embeddings and
output convs; biases zero. BatchNorm uses eps 2e-5 and momentum 0.1 (Chainer's defaults: eps 2e-5, decay 0.9),
`BN_EPS`.

Normalisations: `model.d_norm` picks one kind, decided here only; the D constructors ask for it twice per layer:
- `norm_weight(layer, kind)`: a weight reparametrisation on every conv/linear of D. spectral wraps it with `sn`
  (W / sigma(W)); weight (WN) with w_i / ||w_i||_2 per output unit, the paper's WN without the multiplier g
  ("we excluded the multiplier parameter gamma in WN, BN and LN", section 4.1); the other kinds leave it as is.
- `norm_activation(kind, channels)`: for batch (BN) and layer (LN) a normalisation of a conv's output, without the
  multiplier gamma but with a learnt shift beta (the paper excludes only gamma); Identity for the other kinds.
Where BN/LN go: the paper does not say. In the standard CNN we follow DCGAN (Radford et al. 2016, the architecture
Table 3 derives from): after every conv except the first, before the lReLU, never on the final dense layer. In the
ResNet blocks we put them where the generator's ResBlock has its BN (Fig. 8: "for the discriminator we removed BN
layers in ResBlock"): before each ReLU of the residual branch, never on the RGB input. LN normalises each sample
over (C, H, W) (`GroupNorm` with one group).

`model.d_norm_gamma` adds the paper's Appendix E reparametrisation W~ = gamma * W-bar (eq. 32) to every normalised
weight: one learnt scalar per layer, for WGAN-GP with SN or WN (Tables 7-8). gamma starts where the authors'
`use_gamma` starts it, at the largest singular value of the initial W (SN: gamma * W / sigma(W) = W at the start);
for WN (the paper's eq. 32 "with W-bar_SN replaced by W normalized by other criterions") we start it at
sigma(W) / sigma(W-bar_WN), so the reparametrised weight also starts with W's spectral norm (our choice).
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from sngan.config import D_NORMS
from sngan.models.spectral import FP32SpectralNorm, sn

BN_EPS = 2e-5  # every BatchNorm/LayerNorm of G and D (Chainer's default)
RESIDUAL_GAIN = math.sqrt(2.0)
WN_EPS = 1e-12
Weighted = TypeVar("Weighted", nn.Linear, nn.Conv2d, nn.Embedding)  # the layers `glorot` initialises


def glorot(module: Weighted, gain: float = 1.0) -> Weighted:
    """Glorot-uniform weights (scaled by `gain`) and zero bias, in place; returns the module."""
    nn.init.xavier_uniform_(module.weight, gain=gain)
    bias = getattr(module, "bias", None)  # nn.Embedding has none
    if bias is not None:
        nn.init.zeros_(bias)
    return module


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
        self.c1 = glorot(nn.Conv2d(in_ch, out_ch, 3, padding=1), RESIDUAL_GAIN)
        self.b2 = batch_norm(out_ch, num_classes)
        self.c2 = glorot(nn.Conv2d(out_ch, out_ch, 3, padding=1), RESIDUAL_GAIN)
        self.c_sc = glorot(nn.Conv2d(in_ch, out_ch, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(apply_bn(self.b1, x, y)), scale_factor=2, mode="nearest")  # (B, Cin, 2H, 2W)
        h = self.c2(F.relu(apply_bn(self.b2, self.c1(h), y)))
        return h + self.c_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Discriminator block: ReLU-conv3x3-ReLU-conv3x3[-avgpool2]; shortcut 1x1 conv[-avgpool2] when shapes change.

    The hidden width equals the input width, as in the authors' `dis_models/resblocks.py`. `d_norm` picks the
    normalisation (`norm_activation`): BN/LN, when chosen, come before each ReLU of the residual branch.
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, power_iterations: int = 1,
                 d_norm: str = "spectral"):
        super().__init__()
        self.downsample = downsample
        self.n1, self.n2 = norm_activation(d_norm, in_ch), norm_activation(d_norm, in_ch)
        self.c1 = norm_weight(glorot(nn.Conv2d(in_ch, in_ch, 3, padding=1), RESIDUAL_GAIN), d_norm, power_iterations)
        self.c2 = norm_weight(glorot(nn.Conv2d(in_ch, out_ch, 3, padding=1), RESIDUAL_GAIN), d_norm, power_iterations)
        learnable_sc = in_ch != out_ch or downsample
        self.c_sc = norm_weight(glorot(nn.Conv2d(in_ch, out_ch, 1)), d_norm, power_iterations) if learnable_sc else None

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
        self.c1 = norm_weight(glorot(nn.Conv2d(in_ch, out_ch, 3, padding=1), RESIDUAL_GAIN), d_norm, power_iterations)
        self.n1 = norm_activation(d_norm, out_ch)
        self.c2 = norm_weight(glorot(nn.Conv2d(out_ch, out_ch, 3, padding=1), RESIDUAL_GAIN), d_norm, power_iterations)
        self.c_sc = norm_weight(glorot(nn.Conv2d(in_ch, out_ch, 1)), d_norm, power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.n1(self.c1(x)))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


# The discriminator normalisations (`model.d_norm`, `model.d_norm_gamma`)
class UnitRowNorm(nn.Module):
    """Weight normalisation without a multiplier: each output unit's weights w_i / ||w_i||_2 (W as (out, -1))."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        rows = weight.flatten(1)  # (out, in * k * k)
        norms = rows.norm(dim=1).clamp_min(WN_EPS)  # (out,)
        return weight / norms.view(-1, *([1] * (weight.dim() - 1)))


class ShiftedNorm(nn.Module):
    """A normalisation without learnt scale, followed by a learnt per-channel shift (beta, init 0)."""

    def __init__(self, norm: nn.Module, channels: int):
        super().__init__()
        self.norm = norm
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) + self.beta.view(1, -1, *([1] * (x.dim() - 2)))


def norm_weight(layer: nn.Module, kind: str, power_iterations: int = 1) -> nn.Module:
    """`layer` with its weight reparametrised for `kind` (spectral: `sn`, weight: WN); returns the layer."""
    if kind == "spectral":
        return sn(layer, power_iterations)
    if kind == "weight":
        parametrize.register_parametrization(layer, "weight", UnitRowNorm())
    elif kind not in D_NORMS:
        raise ValueError(f"unknown discriminator normalisation {kind!r}; choose one of {'|'.join(D_NORMS)}")
    return layer


def norm_activation(kind: str, channels: int) -> nn.Module:
    """The activation normalisation after a conv for `kind`: BN or LN without gamma, else Identity."""
    if kind == "batch":
        return ShiftedNorm(nn.BatchNorm2d(channels, eps=BN_EPS, affine=False), channels)
    if kind == "layer":
        return ShiftedNorm(nn.GroupNorm(1, channels, eps=BN_EPS, affine=False), channels)
    return nn.Identity()


def has_activation_norm(kind: str) -> bool:
    return kind in ("batch", "layer")


class LearntScale(nn.Module):
    """W~ = gamma * W-bar with one learnt scalar gamma (paper App. E, eq. 32), chained after a normalisation."""

    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.gamma * weight


def weight_parametrizations(module: nn.Module) -> parametrize.ParametrizationList | None:
    """The chain of parametrizations on `module.weight` (its raw weight is `.original`), or None if it has none."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    chains = module.parametrizations  # a ModuleDict of ParametrizationList, put there by register_parametrization
    assert isinstance(chains, nn.ModuleDict)
    chain = chains["weight"]
    assert isinstance(chain, parametrize.ParametrizationList)
    return chain


def add_learnt_scale(model: nn.Module) -> int:
    """Chain a `LearntScale` after the normalisation of every SN or WN weight of `model`; returns how many.

    gamma starts at sigma(W) / sigma(W-bar) of the weight as it is now (float64 SVDs): sigma(W) for SN (the
    authors' `use_gamma` start: the exact sigma(W-bar) is 1), the same spectral norm as W for WN.
    """
    count = 0
    for module in model.modules():
        chain = weight_parametrizations(module)
        norm = chain[0] if chain is not None else None
        if chain is None or not isinstance(norm, (FP32SpectralNorm, UnitRowNorm)):
            continue
        with torch.no_grad():
            raw = chain.original.double()
            gamma = torch.linalg.matrix_norm(raw.flatten(1), ord=2)
            if isinstance(norm, UnitRowNorm):
                gamma = gamma / torch.linalg.matrix_norm(norm(raw).flatten(1), ord=2)
        parametrize.register_parametrization(module, "weight", LearntScale(float(gamma)))
        count += 1
    return count
