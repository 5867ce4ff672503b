"""Building blocks shared by the generator and discriminator families.

Spectral normalization is torch's `spectral_norm` parametrization algorithm (`FP32SpectralNorm`): one power
iteration per forward in training mode with persistent `u` and `v` (saved in the state dict), none in eval mode,
eps 1e-12 — the same algorithm as the authors' Chainer `SNConvolution2D`/`SNLinear`/`SNEmbedID`. We write it
ourselves for two reasons: it runs in float32 with autocast off (under CUDA autocast the power iteration's `mv`
would otherwise run in bf16/fp16, and sigma, a norm of the whole matrix, loses about three significant digits), and
it can be trained under torch.compile (see `FP32SpectralNorm`). It is registered through
`torch.nn.utils.parametrize`, so the state-dict keys are those of torch's `spectral_norm`.
Initialisation follows the authors' code: Glorot-uniform with gain sqrt(2) on the residual 3x3 convs, gain 1 on
shortcuts, dense layers, embeddings and output convs; biases zero.
BatchNorm uses eps 2e-5 and momentum 0.1 (Chainer's defaults: eps 2e-5, decay 0.9).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from sngan.models.norms import norm_activation, norm_weight

BN_EPS = 2e-5
RESIDUAL_GAIN = math.sqrt(2.0)


def glorot(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Glorot-uniform weights (scaled by `gain`) and zero bias, in place; returns the module."""
    nn.init.xavier_uniform_(module.weight, gain=gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


class FP32SpectralNorm(nn.Module):
    """Spectral-norm parametrization (weight / sigma) that torch.compile can train; float32 with autocast off.

    The algorithm and the state are those of torch's `parametrizations.spectral_norm` (buffers `_u`, `_v`; 15
    iterations at construction, drawing the same random numbers; eps 1e-12; in eval mode u and v are used as they
    are). What differs is how the training-mode update is written. torch updates the buffers in place and then
    reads clones of them; compiled, AOTAutograd's partitioner drops those clones and recomputes u and v in backward
    from the buffers, which by then hold the next forward's values (two D forwards, real and fake, share one
    backward): a version-counter error in backward. Here the power iteration is an opaque custom op
    (`power_iteration`) whose fresh output tensors sigma = u^T W v is computed from and backward saves; they are
    copied into the buffers and never mutated. As in torch, u and v are constants for autograd: the gradient of
    sigma flows through W only.
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__()
        if weight.ndim < 2 or n_power_iterations < 1:
            raise ValueError(f"spectral norm needs a weight of 2 or more dimensions and n_power_iterations >= 1, "
                             f"got shape {tuple(weight.shape)} and {n_power_iterations}")
        self.dim, self.eps, self.n_power_iterations = dim, eps, n_power_iterations
        with torch.no_grad():
            weight_mat = self._matrix(weight)  # (out, in * kh * kw)
            h, w = weight_mat.shape
            u = F.normalize(weight_mat.new_empty(h).normal_(0, 1), dim=0, eps=eps)  # drawn as torch does
            v = F.normalize(weight_mat.new_empty(w).normal_(0, 1), dim=0, eps=eps)
            u, v = power_iteration(weight_mat, v, 15, eps)  # start near the top singular vectors, as torch
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)

    def _matrix(self, weight: torch.Tensor) -> torch.Tensor:
        if self.dim != 0:
            weight = weight.permute(self.dim, *(d for d in range(weight.ndim) if d != self.dim))
        return weight.flatten(1)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            weight = weight.float()
            weight_mat = self._matrix(weight)
            if self.training:
                with torch.no_grad():
                    u, v = power_iteration(weight_mat.detach(), self._v, self.n_power_iterations, self.eps)
                    self._u.copy_(u)
                    self._v.copy_(v)
            else:
                u, v = self._u.clone(), self._v.clone()  # what backward saves must not be a buffer
            sigma = torch.vdot(u, torch.mv(weight_mat, v))  # grad through W only: u, v carry no graph
            return weight / sigma

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value


@torch.library.custom_op("sngan::power_iteration", mutates_args=())
def power_iteration(weight_mat: torch.Tensor, v: torch.Tensor, n: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` >= 1 steps of u <- normalize(W v), v <- normalize(W^T u), returned as new tensors (each step starts from
    v alone, as in torch and in the authors' Chainer code, so the previous u is not an input).

    A custom op, opaque to torch.compile, on purpose: compiled, the partitioner would otherwise recompute u and v
    in backward from the buffers' values at graph entry, after the buffers had been overwritten (by this forward's
    update, or by the second D forward that shares the backward) — a version-counter error, or wrong gradients.
    """
    for _ in range(n):
        u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=eps)
        v = F.normalize(torch.mv(weight_mat.H, u), dim=0, eps=eps)
    return u, v


@power_iteration.register_fake
def _(weight_mat: torch.Tensor, v: torch.Tensor, n: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return weight_mat.new_empty(weight_mat.shape[0]), torch.empty_like(v)


def start_sn_exact(model: nn.Module) -> int:
    """Set every spectral-norm layer's u, v to the exact top singular vectors of its weight (float64 eigh of the
    smaller Gram matrix, on the weight's device); returns how many layers. From random vectors (torch: 15 power
    iterations at construction; the authors' Chainer code: none) one power iteration per forward converges slowly,
    because the top singular values of a random matrix are close: sigma-hat stays below sigma for hundreds of steps
    (full-width CIFAR-10 D: up to 1.7 % after 30 forwards). Started exact, W / sigma-hat has spectral norm 1 from
    the first step."""
    layers = [(m.parametrizations.weight.original, norm) for m in model.modules()
              if parametrize.is_parametrized(m, "weight") for norm in m.parametrizations.weight
              if isinstance(norm, FP32SpectralNorm)]
    with torch.no_grad():
        for weight, norm in layers:
            w = norm._matrix(weight.float())
            wide = w.shape[0] <= w.shape[1]  # the top eigenvector of the smaller Gram matrix, then the other side
            gram = (w @ w.T if wide else w.T @ w).double()
            top = torch.linalg.eigh(gram).eigenvectors[:, -1].float()
            other = F.normalize(w.T @ top if wide else w @ top, dim=0, eps=norm.eps)
            norm._u.copy_(top if wide else other)
            norm._v.copy_(other if wide else top)
    return len(layers)


def sn(module: nn.Module, power_iterations: int = 1) -> nn.Module:
    """Wrap `module.weight` in spectral normalization (weight / sigma(weight)), as `spectral_norm(module)`.

    Registered through `torch.nn.utils.parametrize`, so the state-dict keys are those of torch's `spectral_norm`
    (`...parametrizations.weight.original`, `...parametrizations.weight.0._u`, `._v`).
    """
    dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(module, "weight", FP32SpectralNorm(module.weight, power_iterations, dim,
                                                                            eps=1e-12))
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
