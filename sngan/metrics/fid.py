"""Fréchet distance between Gaussians, in float64, and the streaming mean/covariance that feeds it.

FID = ‖μ1 − μ2‖² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1 Σ2)^½).

The trace term avoids `scipy.linalg.sqrtm` (pytorch-fid 0.3.0 calls it with an argument scipy 1.18 removed, and
the Schur route is slow and can return complex noise). For any factor F with F Fᵀ = Σ1, Σ1 Σ2 = F (Fᵀ Σ2) has the
same eigenvalues as the symmetric positive semi-definite M = Fᵀ Σ2 F, so tr((Σ1 Σ2)^½) = Σ_i sqrt(λ_i(M)), found
with one symmetric eigenvalue call. F is the Cholesky factor when the covariance is positive definite (the usual
case: more samples than dimensions), else LAPACK's pivoted Cholesky (`dpstrf`), stopped at the matrix's numerical
rank r (the largest remaining diagonal below D·eps·max(diag), LAPACK's default): F is (D, r), so a null
space (fewer samples than dimensions) adds exact zeros to the spectrum instead of sqrt(round-off) noise, and costs
O(D²r) instead of a full eigendecomposition. Both covariances are factored and the one of lower rank is used
(tr((Σ1Σ2)^½) = tr((Σ2Σ1)^½)): M then has no null directions of the factored side, and is as small as it can be.
Tiny negative eigenvalues are clipped to 0.

The eigenvalues are found by torch in float64 on the CPU (its eigvalsh was faster than numpy's) on one thread:
OpenMP spin-waiting made the multi-threaded eigensolver slower on a busy CPU (timings: benchmarks/RESULTS.md, FID
maths).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from sngan.errors import MetricError


def _rank_factor(a: np.ndarray) -> torch.Tensor:
    """F (D, r) with F Fᵀ = a up to round-off, r = a's numerical rank: the Cholesky factor when a is positive
    definite, else the pivoted one (Pᵀ a P = L Lᵀ) cut at the rank."""
    chol, info = torch.linalg.cholesky_ex(torch.from_numpy(a))
    if info.item() == 0:
        return chol
    lower, pivots, rank, info = scipy.linalg.lapack.dpstrf(a, lower=1)
    if info < 0:
        raise MetricError(f"LAPACK dpstrf rejected argument {-info} (a covariance of shape {a.shape})")
    factor = np.empty((a.shape[0], rank))
    factor[pivots - 1] = np.tril(lower)[:, :rank]  # a = (P L)(P L)ᵀ: row k of L is row pivots[k] of P L
    return torch.from_numpy(factor)


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^½) for symmetric PSD float64 matrices, as sum(sqrt(eigvalsh(Fᵀ other F))), F the
    rank factor of the matrix of lower rank."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        factor1, factor2 = _rank_factor(sigma1), _rank_factor(sigma2)
        factor, other = (factor1, sigma2) if factor1.shape[1] <= factor2.shape[1] else (factor2, sigma1)
        if factor.shape[1] == 0:  # a zero covariance: every image gave the same features
            return 0.0
        middle = factor.T @ torch.from_numpy(other) @ factor  # (r, r)
        return torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum().item()
    finally:
        torch.set_num_threads(threads)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed exactly in float64.

    Args:
        mu1: mean, shape (D,).
        sigma1: covariance, shape (D, D) (symmetric positive semi-definite).
        mu2: mean, shape (D,).
        sigma2: covariance, shape (D, D).

    Returns:
        The distance (the FID when the statistics are Inception pool3 features).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise MetricError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                          f"{sigma2.shape} (were they computed with the same network layer?)")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise MetricError("statistics contain NaN or inf")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    diff = mu1 - mu2
    trace_term = np.trace(sigma1) + np.trace(sigma2) - 2.0 * _trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + trace_term)


class FeatureStats:
    """Streaming mean and covariance (ddof=1, as pytorch-fid's np.cov) of feature rows, accumulated in float64.

    Rows are shifted by the first batch's mean before the sums are taken, so the covariance keeps its precision
    when features sit far from 0. Sums stay on the device the features come from.
    """

    def __init__(self) -> None:
        self.count = 0
        self._shift: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._outer: torch.Tensor | None = None

    def update(self, features: torch.Tensor) -> None:
        """Add rows of `features` (B, D) (any float dtype, any device)."""
        x = features.detach().to(torch.float64)
        if self._shift is None:
            self._shift = x.mean(dim=0)
            self._sum = torch.zeros_like(self._shift)
            self._outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
        x = x - self._shift
        self._sum += x.sum(dim=0)
        self._outer += x.T @ x  # (D, B) @ (B, D) -> (D, D)
        self.count += x.shape[0]

    def mu_sigma(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu (D,), sigma (D, D)) as float64 numpy arrays; needs at least 2 rows."""
        if self.count < 2:
            raise MetricError(f"a covariance needs at least 2 images, got {self.count}")
        mean_shifted = self._sum / self.count
        sigma = (self._outer - self.count * torch.outer(mean_shifted, mean_shifted)) / (self.count - 1)
        return (mean_shifted + self._shift).cpu().numpy(), sigma.cpu().numpy()
