"""Operator norms of 2-D convolutions as they run: zero padding, stride, dilation and groups at the input size.

A convolution layer is the linear map A: (in, H, W) -> (out, H', W') that `F.conv2d` computes with the layer's
stride, padding, dilation and groups (bias aside). Its operator norm ||A||_2 has no closed form once the padding is
zeros or the stride exceeds 1, so it is computed iteratively from A and its adjoint A^T (`F.conv_transpose2d` with
the `output_padding` that gives the adjoint's output the input's shape):

- `conv_operator_norm`: Lanczos on A^T A (a Krylov refinement of the power iteration, with full
  reorthogonalisation) from a seeded random start. The value returned is ||A y|| / ||y|| for the final Ritz vector
  y, computed by one more application of A, so it is a certified lower bound of ||A||_2 (up to rounding in the
  dtype it is evaluated in). That it equals ||A||_2 is a converged estimate, not a certificate: the iteration
  stops once the top Ritz pair (theta, y) of A^T A has residual ||A^T A y - theta y|| <= rtol * theta, which places
  theta within rtol * theta of *an* eigenvalue of A^T A; a start orthogonal to the top singular vectors
  (probability zero for a random one) or the step budget `max_steps` hit first would leave it below the top one.
- `circular_bound`: a certified upper bound. Zero padding embeds the input isometrically into the (H + 2p) x
  (W + 2p) grid; on that grid the valid, strided correlation takes a subset of the outputs of the stride-1
  correlation with circular wrap-around (those that do not wrap), so A is a submatrix of that circular operator,
  whose norm the 2-D DFT gives exactly (Sedghi, Gupta & Long, ICLR 2019): the largest singular value over the
  frequencies of the (out x in) matrices of the kernel's transform. For the paper's 4x4 stride-2 convolutions it
  is far above ||A||_2; it is reported only as a bound.

`exact` as elsewhere in `sngan.inspect`. Both modes iterate in float32 on the weights' device; False (for
`train.inspect_every`) stops at a residual of 1e-5 and returns the float32 quotient; True (the `sngan inspect` table)
stops at 1e-6 and evaluates the quotient ||A y|| / ||y|| of the same Ritz vector in float64. The quotient's error
is quadratic in the vector's, so float64 iterations (several times slower on a CPU) would change it only far below
the stopping tolerance; float32 rounding would keep residuals much below 1e-6 out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import eigh_tridiagonal
from torch import nn

from sngan.inspect.spectra import largest_singular_value

RTOL = {True: 1e-6, False: 1e-5}  # Lanczos residual tolerance relative to theta = sigma^2, by `exact`
MAX_STEPS = 300  # Lanczos steps at most (the basis has that many vectors of the input's size)


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) from a per-dimension tuple of a 2-d convolution."""
    h, w = values
    return h, w


@dataclass(frozen=True)
class ConvGeometry:
    """How a Conv2d walks its input: per-dimension (H, W) stride, zero padding and dilation, and channel groups."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @classmethod
    def of(cls, conv: nn.Conv2d) -> ConvGeometry:
        """The geometry of `conv`; padding 'same' only when it is symmetric (odd dilated kernel extents)."""
        if conv.padding_mode != "zeros":
            raise ValueError(f"operator norms cover padding_mode='zeros' only, this conv has {conv.padding_mode!r}")
        padding = conv.padding
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            extent = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
            if any(e % 2 for e in extent):
                raise ValueError(f"padding='same' with an even kernel extent {extent} pads asymmetrically; "
                                 "operator norms cover symmetric padding only")
            padding = tuple(e // 2 for e in extent)
        assert not isinstance(padding, str)  # "valid" and "same" are the only strings Conv2d takes
        return cls(_pair(conv.stride), _pair(padding), _pair(conv.dilation), conv.groups)

    def output_size(self, kernel: torch.Tensor, size: tuple[int, int]) -> tuple[int, int]:
        return _pair(tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                           zip(size, self.padding, self.dilation, kernel.shape[2:], self.stride, strict=True)))

    def output_padding(self, kernel: torch.Tensor, size: tuple[int, int]) -> tuple[int, int]:
        """What `conv_transpose2d` must add so that the adjoint maps back onto the full (H, W) input: the rows and
        columns the strided conv never reads (0 <= value < stride)."""
        return _pair(tuple(n - ((m - 1) * s - 2 * p + d * (k - 1) + 1) for n, m, s, p, d, k in
                           zip(size, self.output_size(kernel, size), self.stride, self.padding, self.dilation,
                               kernel.shape[2:], strict=True)))


def apply(kernel: torch.Tensor, x: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """A x: the convolution without bias, (B, in, H, W) -> (B, out, H', W')."""
    g = geometry
    return F.conv2d(x, kernel, None, g.stride, g.padding, g.dilation, g.groups)


def adjoint(kernel: torch.Tensor, y: torch.Tensor, geometry: ConvGeometry, size: tuple[int, int]) -> torch.Tensor:
    """A^T y: (B, out, H', W') -> (B, in, H, W), so that <A x, y> = <x, A^T y> for inputs of spatial `size`."""
    g = geometry
    return F.conv_transpose2d(y, kernel, None, g.stride, g.padding, g.output_padding(kernel, size), g.groups,
                              g.dilation)


def _top_ritz(alphas: list[float], betas: list[float]) -> tuple[float, np.ndarray]:
    """Largest eigenvalue and its eigenvector of the Lanczos tridiagonal matrix (float64, on the host)."""
    top = len(alphas) - 1
    values, vectors = eigh_tridiagonal(alphas, betas[:top], select="i", select_range=(top, top))
    return float(values[0]), vectors[:, 0]


def _lanczos(kernel: torch.Tensor, size: tuple[int, int], geometry: ConvGeometry, start: torch.Tensor, rtol: float,
             max_steps: int) -> tuple[float, torch.Tensor]:
    """(||A y|| / ||y||, y) for the top Ritz vector y of A^T A, Lanczos from `start` in the kernel's dtype."""
    shape = (1, kernel.shape[1] * geometry.groups, *size)
    q = start.flatten().to(kernel.dtype)
    q = q / q.norm()
    steps = min(max_steps, q.numel())  # the Krylov space of A^T A cannot grow past the input's dimension
    basis = q.new_empty(min(steps, 32), q.numel())  # (rows, n), doubled when full
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        if j == basis.shape[0]:
            basis = torch.cat([basis, basis.new_empty(min(j, steps - j), q.numel())])
        basis[j] = q
        w = adjoint(kernel, apply(kernel, q.view(shape), geometry), geometry, size).flatten()  # A^T A q
        alpha = q @ w
        for _ in range(2):  # full reorthogonalisation against the whole basis, twice ("twice is enough")
            w = w - basis[:j + 1].t() @ (basis[:j + 1] @ w)
        alpha, beta = torch.stack([alpha, w.norm()]).tolist()  # one device sync per step
        alphas.append(alpha)
        betas.append(beta)
        theta, ritz = _top_ritz(alphas, betas)
        if betas[-1] * abs(float(ritz[-1])) <= rtol * theta:  # the top Ritz pair's residual ||A^T A y - theta y||
            break
        q = w / betas[-1]
    y = (basis[:len(alphas)].t() @ torch.from_numpy(ritz).to(kernel.device, kernel.dtype)).view(shape)
    return float(apply(kernel, y, geometry).norm() / y.norm()), y


def conv_operator_norm(kernel: torch.Tensor, size: tuple[int, int], geometry: ConvGeometry = ConvGeometry(),
                       exact: bool = True, max_steps: int = MAX_STEPS, seed: int = 0) -> float:
    """||A||_2 of the convolution with `kernel` (out, in/groups, kh, kw) on (in, *size) inputs: a certified lower
    bound, converged as the module docstring says. Runs on the kernel's device from a seeded random start."""
    kernel = kernel.detach()
    generator = torch.Generator(device=kernel.device).manual_seed(seed)
    start = torch.randn((kernel.shape[1] * geometry.groups, *size), generator=generator, device=kernel.device)
    sigma, y = _lanczos(kernel.float(), size, geometry, start, RTOL[exact], max_steps)
    if exact:  # the same Ritz vector's quotient in float64
        y = y.double()
        sigma = float(apply(kernel.double(), y, geometry).norm() / y.norm())
    return sigma


def dense_kernel(kernel: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """A grouped, dilated kernel as the equivalent (out, in, extent_h, extent_w) ungrouped, undilated one."""
    out_ch, per_group, kh, kw = kernel.shape
    dh, dw = geometry.dilation
    full = kernel.new_zeros(out_ch, per_group * geometry.groups, dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    block = out_ch // geometry.groups
    for g in range(geometry.groups):
        full[g * block:(g + 1) * block, g * per_group:(g + 1) * per_group, ::dh, ::dw] = \
            kernel[g * block:(g + 1) * block]
    return full


def circular_norm(kernel: torch.Tensor, size: tuple[int, int], exact: bool = True) -> float:
    """Exact norm of the stride-1 circular convolution with `kernel` (out, in, kh, kw) on an (in, H, W) grid.

    Per frequency (p, q) the conv acts as the complex matrix K_hat[:, :, p, q] (out x in); the largest singular
    value over all H*W of them is the norm. Cross-correlation (PyTorch's conv) and convolution share it. A real
    kernel's transform at (-p, -q) is the conjugate of that at (p, q), with the same singular values, so the half
    spectrum of `rfft2` holds every value. The kernel must fit the grid (kh <= H, kw <= W).
    """
    dtype = torch.float64 if exact else torch.float32
    transform = torch.fft.rfft2(kernel.detach().to(dtype), s=size, dim=(2, 3))  # (out, in, H, W // 2 + 1)
    per_frequency = transform.permute(2, 3, 0, 1)  # (H, W // 2 + 1, out, in)
    if not exact:
        return largest_singular_value(per_frequency)
    return float(torch.linalg.matrix_norm(per_frequency, ord=2).max())


def circular_bound(kernel: torch.Tensor, size: tuple[int, int], geometry: ConvGeometry = ConvGeometry(),
                   exact: bool = True) -> float:
    """A certified upper bound of `conv_operator_norm`: the circular norm on the zero-padded grid (module doc)."""
    full = dense_kernel(kernel.detach(), geometry)
    grid = _pair(tuple(max(n + 2 * p, k) for n, p, k in zip(size, geometry.padding, full.shape[2:], strict=True)))
    return circular_norm(full, grid, exact)
