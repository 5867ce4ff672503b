"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", Sec. 4): the unbiased MMD² between
generated and real features under the cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over random
subsets.

The defaults are torch-fidelity's (and the paper's code's): 100 subsets of 1,000 features from each side, drawn
without replacement by `numpy.random.RandomState(seed)` (generated first, then real, per subset), mean and std
(ddof=0) of the subset MMD²s. The subset size is clipped to the smaller sample count (torch-fidelity refuses
instead), so a small evaluation still gets a number; the metric name records the counts used.
"""

from __future__ import annotations

import numpy as np
import torch

from sngan.errors import MetricError

SUBSETS = 100
SUBSET_SIZE = 1000
SEED = 2020  # torch-fidelity's rng_seed default


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(x·y / d + 1)³ for rows of x (N, d) and y (M, d) -> (N, M)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² of two equal-size samples (m, d): the within-sample means leave out the diagonal."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(generated: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor,
                              subsets: int = SUBSETS, subset_size: int = SUBSET_SIZE,
                              seed: int = SEED) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD² over `subsets` random subsets, computed in float64.

    Args:
        generated: features of generated images (N, d).
        real: features of real images (M, d).
        subsets: how many subsets.
        subset_size: features per subset from each side (clipped to min(N, M)).
        seed: the subset draws' seed.
    """
    fake = torch.as_tensor(np.asarray(generated), dtype=torch.float64)
    true = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    if fake.ndim != 2 or true.ndim != 2 or fake.shape[1] != true.shape[1]:
        raise MetricError(f"KID needs two feature matrices of one width, got {tuple(fake.shape)} and "
                          f"{tuple(true.shape)}")
    size = min(subset_size, len(fake), len(true))
    if size < 2:
        raise MetricError(f"KID needs at least 2 features on each side, got {len(fake)} and {len(true)}")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        f = fake[torch.from_numpy(rng.choice(len(fake), size, replace=False))]
        r = true[torch.from_numpy(rng.choice(len(true), size, replace=False))]
        mmds[i] = mmd2_unbiased(f, r)
    return float(mmds.mean()), float(mmds.std())


def kid_subset_size(num_generated: int, num_real: int) -> int:
    """The subset size `kernel_inception_distance` uses for these counts (for the protocol record)."""
    return min(SUBSET_SIZE, num_generated, num_real)
