"""Time `sngan.metrics.frechet_distance` on random 2048-d statistics and check it against a sqrtm reference.

Usage: python scripts/bench_fid.py [--repeats 5] [--dim 2048] [--samples N1,N2]
Prints the median and all timings, and the relative difference to float64 scipy.linalg.sqrtm (itself timed once).
With --samples (e.g. 50,1300: intra-FID's generated and real images of one ImageNet class), the statistics are those
of N1 and N2 samples, singular when fewer than --dim, and the reference is exact: with Σ1 = AᵀA, Σ2 = BᵀB (A, B
the centred samples over sqrt(n - 1)), tr((Σ1Σ2)^½) is the sum of the singular values of A Bᵀ.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def random_stats(rng: np.random.Generator, dim: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((samples, dim)) @ rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def sample_stats(rng: np.random.Generator, dim: int, samples: int, shift: float) -> tuple[np.ndarray, ...]:
    """(mu, sigma, centred samples over sqrt(n - 1)) of `samples` rows with features of unequal scales."""
    x = np.tanh(rng.standard_normal((samples, dim)) @ rng.standard_normal((dim, dim)) / np.sqrt(dim) + shift)
    mu = x.mean(axis=0)
    centred = (x - mu) / np.sqrt(samples - 1)
    return mu, centred.T @ centred, centred


def main() -> None:
    import scipy.linalg
    import torch

    from sngan.metrics import frechet_distance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--samples", default=None, help="N1,N2: statistics of so many samples, exact reference")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.samples:
        n1, n2 = (int(n) for n in args.samples.split(","))
        (m1, s1, a), (m2, s2, b) = sample_stats(rng, args.dim, n1, 0.0), sample_stats(rng, args.dim, n2, 0.3)
    else:
        (m1, s1), (m2, s2) = random_stats(rng, args.dim, 2 * args.dim), random_stats(rng, args.dim, 3 * args.dim)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        value = frechet_distance(m1, s1, m2, s2)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    if args.samples:
        trace_sqrt, kind = np.linalg.svd(a @ b.T, compute_uv=False).sum(), "exact (nuclear norm)"
    else:
        trace_sqrt, kind = np.trace(scipy.linalg.sqrtm(s1 @ s2).real), "sqrtm"
    t_ref = time.perf_counter() - start
    ref = float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)
    print(f"dim {args.dim}{f', samples {args.samples}' if args.samples else ''}, torch threads "
          f"{torch.get_num_threads()}: frechet_distance median "
          f"{statistics.median(times):.2f} s (all: {', '.join(f'{t:.2f}' for t in times)}); value {value:.6f}; "
          f"{kind} reference {ref:.6f} in {t_ref:.1f} s; relative difference {abs(value - ref) / abs(ref):.2e}")


if __name__ == "__main__":
    main()
