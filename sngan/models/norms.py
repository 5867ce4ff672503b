"""The discriminator normalisations of the paper's comparison (section 4.1): where each acts, in one place.

`model.d_norm` picks one kind; the D constructors ask this module twice per layer:
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

import torch
from torch import nn
from torch.nn.utils import parametrize

from sngan.config import D_NORMS as KINDS
from sngan.models.spectral import FP32SpectralNorm, sn

WN_EPS = 1e-12
BN_EPS = 2e-5  # every BatchNorm/LayerNorm of G and D (Chainer's default)


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
    elif kind not in KINDS:
        raise ValueError(f"unknown discriminator normalisation {kind!r}; choose one of {'|'.join(KINDS)}")
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


def add_learnt_scale(model: nn.Module) -> int:
    """Chain a `LearntScale` after the normalisation of every SN or WN weight of `model`; returns how many.

    gamma starts at sigma(W) / sigma(W-bar) of the weight as it is now (float64 SVDs): sigma(W) for SN (the
    authors' `use_gamma` start: the exact sigma(W-bar) is 1), the same spectral norm as W for WN.
    """
    count = 0
    for module in model.modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        norm = module.parametrizations.weight[0]
        if not isinstance(norm, (FP32SpectralNorm, UnitRowNorm)):
            continue
        with torch.no_grad():
            raw = module.parametrizations.weight.original.double()
            gamma = torch.linalg.matrix_norm(raw.flatten(1), ord=2)
            if isinstance(norm, UnitRowNorm):
                gamma = gamma / torch.linalg.matrix_norm(norm(raw).flatten(1), ord=2)
        parametrize.register_parametrization(module, "weight", LearntScale(float(gamma)))
        count += 1
    return count
