"""KID and precision/recall/density/coverage: pinned to naive loop computations, and to torch-fidelity and the
authors' `prdc` package on the same features when those are installed."""

import math

import numpy as np
import pytest

from sngan.errors import MetricError
from sngan.metrics.kid import kernel_inception_distance, mmd2_unbiased
from sngan.metrics.prdc import prdc


def naive_mmd2(x, y):
    m, d = len(x), len(x[0])

    def k(a, b):
        return (sum(ai * bi for ai, bi in zip(a, b, strict=True)) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_a_loop_over_pairs_without_the_diagonal():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 3)) + 0.5
    import torch

    assert mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(naive_mmd2(x, y), rel=1e-10)



def naive_kid(fake: np.ndarray, real: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    """KID by loops: `subsets` draws of `size` rows without replacement, generated then real, from one
    RandomState(seed) (torch-fidelity's order); the mean and population std of the naive MMD^2 of each."""
    draws = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        f = fake[draws.choice(len(fake), size, replace=False)]
        r = real[draws.choice(len(real), size, replace=False)]
        values.append(naive_mmd2(f, r))
    mean = sum(values) / subsets
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / subsets)

def test_kid_is_mean_and_population_std_over_subsets_drawn_generated_then_real():
    rng = np.random.default_rng(1)
    fake, real = rng.standard_normal((12, 4)), rng.standard_normal((15, 4)) * 1.3
    assert kernel_inception_distance(fake, real, subsets=6, subset_size=8, seed=5) == pytest.approx(
        naive_kid(fake, real, subsets=6, size=8, seed=5))


def test_kid_clips_the_subset_to_the_smaller_sample_and_is_near_zero_for_one_distribution():
    rng = np.random.default_rng(2)
    fake, real = rng.standard_normal((300, 8)), rng.standard_normal((400, 8))
    same = kernel_inception_distance(fake, real, subsets=20)  # subset size 1000 -> 300
    assert same == kernel_inception_distance(fake, real, subsets=20, subset_size=300)
    shifted = kernel_inception_distance(fake, real + 1, subsets=20)
    assert shifted[0] > 20 * abs(same[0])
    with pytest.raises(MetricError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 8)), np.zeros((5, 8)))


def test_kid_matches_torch_fidelity_on_the_same_features():
    metric_kid = pytest.importorskip("torch_fidelity.metric_kid")
    import torch

    rng = np.random.default_rng(3)
    fake, real = rng.standard_normal((120, 16)).astype(np.float32), rng.standard_normal((150, 16)).astype(np.float32)
    theirs = metric_kid.kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=10,
                                               kid_subset_size=50, verbose=False, rng_seed=2020)
    ours = kernel_inception_distance(fake, real, subsets=10, subset_size=50)
    assert ours == pytest.approx((theirs["kernel_inception_distance_mean"], theirs["kernel_inception_distance_std"]),
                                 rel=1e-4, abs=1e-6)


def naive_prdc(fake, real, k):
    def dist(a, b):
        return math.sqrt(sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True)))

    def radius(points, i):
        return sorted(dist(points[i], points[j]) for j in range(len(points)) if j != i)[k - 1]

    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, j) for j in range(len(fake))]
    precision = sum(any(dist(f, real[i]) < r_real[i] for i in range(len(real))) for f in fake) / len(fake)
    recall = sum(any(dist(r, fake[j]) < r_fake[j] for j in range(len(fake))) for r in real) / len(real)
    density = sum(sum(dist(f, real[i]) < r_real[i] for i in range(len(real))) for f in fake) / (k * len(fake))
    coverage = sum(min(dist(real[i], f) for f in fake) < r_real[i] for i in range(len(real))) / len(real)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_matches_a_loop_over_nearest_neighbour_balls(monkeypatch):
    monkeypatch.setattr("sngan.metrics.prdc.BLOCK", 7)  # several row blocks
    rng = np.random.default_rng(4)
    fake, real = rng.standard_normal((20, 3)) + 0.4, rng.standard_normal((25, 3))
    ours = prdc(fake, real, k=3)
    assert ours == pytest.approx(naive_prdc(fake.tolist(), real.tolist(), 3), abs=1e-12)
    assert 0 < ours["precision"] < 1 and 0 < ours["coverage"] < 1  # the case is not degenerate


def test_prdc_refuses_too_few_features_for_k():
    with pytest.raises(MetricError, match="more than 5"):
        prdc(np.zeros((5, 2)), np.zeros((10, 2)))


def test_prdc_matches_the_authors_package():
    reference = pytest.importorskip("prdc")
    rng = np.random.default_rng(5)
    fake, real = rng.standard_normal((80, 10)) + 0.3, rng.standard_normal((90, 10))
    theirs = reference.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    assert prdc(fake, real) == pytest.approx({k: float(v) for k, v in theirs.items()}, abs=1e-6)


def test_kid_clips_the_subset_to_the_smaller_side_whichever_side_that_is():
    """12 generated, 6 real features, default subset size 1000: every subset takes 6 from each side (all the real
    ones), drawn generated first then real by RandomState(seed), as torch-fidelity; reference by naive loops."""
    rng = np.random.default_rng(6)
    fake, real = rng.standard_normal((12, 3)), rng.standard_normal((6, 3)) + 0.2
    assert kernel_inception_distance(fake, real, subsets=4) == pytest.approx(
        naive_kid(fake, real, subsets=4, size=6, seed=2020))


def test_prdc_balls_are_open_on_hand_placed_points():
    """1-D features on integers (every distance exact in float32), k = 1. Real 0, 1, 2, 10, 11, 12: each real ball
    has radius 1. Generated 3, 11.5, 30, 0.5 (generated radii 2.5, 8.5, 18.5, 2.5). Membership is strict (distance
    < radius, the authors' `prdc`), so 3, at distance exactly 1 from 2, is in no real ball. By hand:
    precision 2/4 (11.5 and 0.5), density (0 + 2 + 0 + 2) / 4 = 1, recall 6/6, coverage 4/6 (0, 1, 11, 12)."""
    real = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    fake = np.array([[3.0], [11.5], [30.0], [0.5]])
    assert prdc(fake, real, k=1) == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0,
                                                   "coverage": 4 / 6}, abs=1e-12)
