"""Spectra of discriminator weights: the stored spectral-norm estimate and exact singular values.

Pure functions on tensors and modules; nothing here reads files or prints.

- `sn_state(module)` is the one place that knows how a spectral-norm implementation stores its weight and power-
  iteration vectors (torch's parametrization, or plain attributes `weight_orig`/`u`/`v`); adapt it there.
- `sigma_estimate` is what spectral normalization divides by: u^T W v with the stored vectors (torch's step), or,
  for a layer that keeps u only (the authors' step, `FP32SpectralNorm.keeps == "u"`), their step from the stored u.
- `matrix_sigma` is the exact largest singular value of W reshaped to (out, -1), the matrix SN normalises.
- Convolutions' operator norms (zero padding, stride, at the input size) live in `sngan.inspect.conv_norm`.
- `matrix_sigma` (and `conv_norm`) take `exact`: True (the default, `sngan inspect`) computes in float64; False
  (`train.inspect_every`) in float32 on the weights' device, here by `largest_singular_value`: batched matrix
  products instead of a batched SVD, which torch's CUDA SVD runs one small matrix at a time (timings:
  benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sngan.models.spectral import FP32SpectralNorm


@dataclass
class SNState:
    """A layer's raw weight and, when it is spectrally normalised, its stored power-iteration vectors."""

    weight: torch.Tensor  # the weight as trained (before division by sigma)
    u: torch.Tensor | None  # (rows,) left singular vector estimate
    v: torch.Tensor | None  # (cols,) right singular vector estimate; None = the authors' step from u
    dim: int  # the weight dimension that becomes the matrix rows (1 for transposed convs)


def sn_state(module: nn.Module) -> SNState | None:
    """The raw weight and SN vectors of `module`, or None when it has no weight matrix (biases, BN scales)."""
    params = getattr(module, "parametrizations", None)
    if params is not None and "weight" in params:  # torch.nn.utils.parametrizations.spectral_norm and subclasses
        norm = params.weight[0]
        keeps_v = getattr(norm, "keeps", "v") == "v"  # the authors' step (keeps u) never reads the stored v
        return SNState(params.weight.original.detach(), getattr(norm, "_u", None),
                       getattr(norm, "_v", None) if keeps_v else None, getattr(norm, "dim", 0))
    weight_orig = getattr(module, "weight_orig", None)
    if isinstance(weight_orig, torch.Tensor):  # attribute-style implementations
        u = getattr(module, "u", getattr(module, "weight_u", None))
        v = getattr(module, "v", getattr(module, "weight_v", None))
        return SNState(weight_orig.detach(), u, v, getattr(module, "dim", 0))
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:  # an unnormalised layer: exact values only
        return SNState(weight.detach(), None, None, 0)
    return None


def reparametrised_weight(module: nn.Module) -> torch.Tensor | None:
    """The weight a parametrized layer runs with, when it is not W / sigma-hat: weight normalisation, or a learnt
    gamma after SN or WN (paper App. E). None for plain SN (its norms are W's over sigma-hat) and plain layers.
    Computed with the parametrizations in eval mode, so no power iteration runs and u, v stay as stored."""
    params = getattr(module, "parametrizations", None)
    if params is None or "weight" not in params:
        return None
    chain = params.weight
    if len(chain) == 1 and isinstance(chain[0], FP32SpectralNorm):
        return None
    modes = [m.training for m in chain]
    chain.eval()
    try:
        weight = module.weight  # the chain's output: a tensor
        assert isinstance(weight, torch.Tensor)
        return weight.detach()
    finally:
        for m, mode in zip(chain, modes, strict=True):
            m.train(mode)


def weight_matrix(weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """W (out, in, kh, kw) or (out, in) -> the (W.shape[dim], -1) matrix spectral normalization works on."""
    if dim != 0:
        weight = weight.movedim(dim, 0)
    return weight.reshape(weight.shape[0], -1)


def sigma_estimate(state: SNState) -> float | None:
    """The sigma-hat a layer divides by in eval mode (None for a layer without stored vectors): u^T W v with the
    stored u, v; with u only, the authors' step (max_sv.py): v = normalize(W^T u), u' = normalize(W v), u'^T W v."""
    if state.u is None:
        return None
    w = weight_matrix(state.weight, state.dim).double()
    u = state.u.double()
    if state.v is not None:
        return float(u @ (w @ state.v.double()))
    v = nn.functional.normalize(w.t() @ u, dim=0, eps=1e-12)
    u = nn.functional.normalize(w @ v, dim=0, eps=1e-12)
    return float(u @ (w @ v))


def singular_values(weight: torch.Tensor, dim: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All singular values of the reshaped weight, largest first, computed in `dtype` on the weight's device."""
    return torch.linalg.svdvals(weight_matrix(weight, dim).to(dtype))


def largest_singular_value(matrices: torch.Tensor, rtol: float = 1e-5, max_squarings: int = 30) -> float:
    """max over a batch (..., m, n) of the matrices' largest singular values, in float32 by matrix products.

    With G = A^H A (or A A^H, the smaller) scaled to trace 1, P_j = G^(2^j) / tr(G^(2^j)) by repeated squaring.
    Two bounds of each top eigenvalue lambda of G hold at every step: the Rayleigh quotient x^H G x / x^H x of
    P_j's largest column x (a lower bound, converging as (lambda_2 / lambda)^(2^j)) and tr(G^(2^j))^(2^-j) (an
    upper bound, at most dim^(2^-j) times lambda). The loop stops once the batch's largest upper bound is within
    `rtol` of its largest lower bound, and returns the square root of that lower bound (scaled back): the operator
    norm lies in [result, result * sqrt(1 + rtol)] up to float32 rounding.
    """
    a = matrices.detach().reshape(-1, *matrices.shape[-2:])
    a = a.to(torch.complex64 if a.is_complex() else torch.float32)
    if a.shape[-1] > a.shape[-2]:
        a = a.mH
    gram = a.mH @ a  # (B, k, k) Hermitian, k = min(m, n)
    scale = gram.diagonal(dim1=-2, dim2=-1).real.sum(-1).clamp_min(torch.finfo(torch.float32).tiny)
    gram = gram / scale[:, None, None].to(gram.dtype)
    power, log_upper = gram, torch.zeros_like(scale)  # log of tr(G^(2^j))^(2^-j), trace-1 G: starts at 0
    for j in range(1, max_squarings + 1):
        power = power @ power
        trace = power.diagonal(dim1=-2, dim2=-1).real.sum(-1).clamp_min(torch.finfo(torch.float32).tiny)
        power = power / trace[:, None, None].to(power.dtype)
        log_upper = log_upper + trace.log() / 2 ** j
        column = power.abs().square().sum(-2).argmax(-1)  # (B,) the largest column of P_j
        x = power.gather(-1, column[:, None, None].expand(-1, power.shape[-2], 1))  # (B, k, 1)
        lower = ((x.mH @ gram @ x).real / (x.mH @ x).real).flatten().nan_to_num(0.0) * scale  # 0/0: zero A
        best = float(lower.max())
        if float((log_upper.exp() * scale).max()) <= best * (1 + rtol):
            break
    return best ** 0.5


def matrix_sigma(weight: torch.Tensor, dim: int = 0, exact: bool = True) -> float:
    """The largest singular value of the reshaped weight: float64 SVD, or `largest_singular_value` (not exact)."""
    if not exact:
        return largest_singular_value(weight_matrix(weight, dim))
    return float(singular_values(weight, dim)[0])


def normalised_spectrum(weight: torch.Tensor, dim: int = 0) -> list[float]:
    """Squared singular values over the largest squared one, largest first (the paper's Figures 3 and 9)."""
    s = singular_values(weight, dim)
    return (s / s[0]).square().tolist() if s[0] > 0 else s.tolist()


def record_input_sizes(model: nn.Module, layers: dict[str, nn.Module], *inputs: torch.Tensor
                       ) -> dict[str, tuple[int, ...]]:
    """Spatial input size of each layer in `layers` (name -> (H, W); () for dense layers) from one forward."""
    sizes: dict[str, tuple[int, ...]] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple], None]:
        def record(module: nn.Module, args: tuple) -> None:  # a pre-hook's non-None return would replace args
            sizes.setdefault(name, tuple(args[0].shape[2:]))
        return record

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule that owns a weight matrix, by qualified name, in registration order."""
    return {name: module for name, module in model.named_modules()
            if "parametrizations" not in name.split(".") and sn_state(module) is not None}
