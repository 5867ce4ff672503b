"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
Generative Models", Sec. 3; k = 5 as recommended there), from k-nearest-neighbour balls in feature space.

With B_k(x) the ball around x reaching its k-th nearest neighbour in the same set (itself excluded):
- precision: share of generated features inside some real ball;
- recall: share of real features inside some generated ball;
- density: mean over generated features of (number of real balls containing it) / k;
- coverage: share of real features whose own ball contains a generated feature.

Distances are Euclidean, in float32 on the features' device, computed in row blocks so memory stays O(block · N).
Membership is strict (distance < radius), as in the authors' `prdc` package.
"""

from __future__ import annotations

import numpy as np
import torch

from sngan.errors import MetricError

NEAREST_K = 5
BLOCK = 1024


def _as_features(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float32)


def kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x (N, d) to its k-th nearest other row -> (N,)."""
    radii = []
    for start in range(0, len(x), BLOCK):
        d = torch.cdist(x[start:start + BLOCK], x)  # (B, N); the self-distance 0 is the smallest
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def prdc(generated: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor,
         k: int = NEAREST_K) -> dict[str, float]:
    """{'precision', 'recall', 'density', 'coverage'} of generated features (N, d) against real ones (M, d)."""
    fake, true = _as_features(generated), _as_features(real)
    if fake.ndim != 2 or true.ndim != 2 or fake.shape[1] != true.shape[1]:
        raise MetricError(f"PRDC needs two feature matrices of one width, got {tuple(fake.shape)} and "
                          f"{tuple(true.shape)}")
    if min(len(fake), len(true)) <= k:
        raise MetricError(f"PRDC with k={k} needs more than {k} features on each side, got {len(fake)} and "
                          f"{len(true)}")
    fake = fake.to(true.device)
    real_radius, fake_radius = kth_neighbour_radius(true, k), kth_neighbour_radius(fake, k)
    balls_per_fake = torch.zeros(len(fake), dtype=torch.float64, device=true.device)
    real_recalled = torch.zeros(len(true), dtype=torch.bool, device=true.device)
    real_covered = torch.zeros(len(true), dtype=torch.bool, device=true.device)
    for start in range(0, len(true), BLOCK):
        d = torch.cdist(true[start:start + BLOCK], fake)  # (B real, N generated)
        inside_real = d < real_radius[start:start + BLOCK, None]
        balls_per_fake += inside_real.sum(dim=0)
        real_recalled[start:start + BLOCK] = (d < fake_radius[None, :]).any(dim=1)
        real_covered[start:start + BLOCK] = inside_real.any(dim=1)
    return {"precision": float((balls_per_fake > 0).double().mean()),
            "recall": float(real_recalled.double().mean()),
            "density": float(balls_per_fake.mean() / k),
            "coverage": float(real_covered.double().mean())}
