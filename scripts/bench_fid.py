"""Time `sngan.metrics.frechet_distance` on random 2048-d statistics and check it against a sqrtm reference.

Usage: python scripts/bench_fid.py [--repeats 5] [--dim 2048]
Prints the median and all timings, and the relative difference to float64 scipy.linalg.sqrtm (itself timed once).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def random_stats(rng: np.random.Generator, dim: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((samples, dim)) @ rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def main() -> None:
    import scipy.linalg
    import torch

    from sngan.metrics import frechet_distance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dim", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    (m1, s1), (m2, s2) = random_stats(rng, args.dim, 2 * args.dim), random_stats(rng, args.dim, 3 * args.dim)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        value = frechet_distance(m1, s1, m2, s2)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    t_ref = time.perf_counter() - start
    ref = float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    print(f"dim {args.dim}, torch threads {torch.get_num_threads()}: frechet_distance median "
          f"{statistics.median(times):.2f} s (all: {', '.join(f'{t:.2f}' for t in times)}); value {value:.6f}; "
          f"sqrtm reference {ref:.6f} in {t_ref:.1f} s; relative difference {abs(value - ref) / abs(ref):.2e}")


if __name__ == "__main__":
    main()
