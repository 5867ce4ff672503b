"""FID maths and Inception Score: closed forms, references (scipy sqrtm, pytorch-fid), streaming statistics."""

import time
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from sngan.errors import MetricError
from sngan.metrics import FeatureStats, frechet_distance, inception_score, inception_score_from_logits


def random_stats(rng, dim, samples):
    x = rng.standard_normal((samples, dim)) @ rng.standard_normal((dim, dim)) / np.sqrt(dim) + rng.random(dim)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def sqrtm_reference(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    assert np.abs(covmean.imag).max() < 1e-6
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def pytorch_fid_reference(mu1, s1, mu2, s2):
    from pytorch_fid.fid_score import calculate_frechet_distance

    try:
        with warnings.catch_warnings():  # its sqrtm call passes `disp`, deprecated in scipy 1.16: not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            return float(calculate_frechet_distance(mu1, s1, mu2, s2))
    except TypeError as exc:  # scipy >= 1.18 removed sqrtm's `disp` argument that pytorch-fid 0.3.0 passes
        pytest.skip(f"pytorch-fid's calculate_frechet_distance fails with this scipy: {exc}")


def test_frechet_distance_matches_sqrtm_and_pytorch_fid_on_random_statistics():
    rng = np.random.default_rng(0)
    (m1, s1), (m2, s2) = random_stats(rng, 128, 300), random_stats(rng, 128, 400)
    ours = frechet_distance(m1, s1, m2, s2)
    assert ours == pytest.approx(sqrtm_reference(m1, s1, m2, s2), rel=1e-6)
    assert ours == pytest.approx(pytorch_fid_reference(m1, s1, m2, s2), rel=1e-6)
    assert ours == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-9)  # symmetric


def test_rank_deficient_covariances_take_the_eigen_route_and_stay_exact():
    rng = np.random.default_rng(1)
    (m1, s1), (m2, s2) = random_stats(rng, 64, 20), random_stats(rng, 64, 30)  # fewer samples than dimensions
    assert np.linalg.matrix_rank(s1) < 64
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(sqrtm_reference(m1, s1, m2, s2), rel=1e-6)
    assert abs(frechet_distance(m1, s1, m1, s1)) < 1e-8
    (m3, s3) = random_stats(rng, 64, 500)  # positive definite against singular, both ways round
    assert frechet_distance(m3, s3, m2, s2) == pytest.approx(sqrtm_reference(m3, s3, m2, s2), rel=1e-6)
    assert frechet_distance(m2, s2, m3, s3) == pytest.approx(sqrtm_reference(m3, s3, m2, s2), rel=1e-6)


@pytest.mark.parametrize("n1, n2", [(6, 12), (12, 6), (6, 6), (400, 9), (9, 400), (1, 30)])
def test_the_trace_term_of_sample_covariances_is_the_nuclear_norm_of_their_samples_product(n1, n2):
    """For Σ1 = AᵀA and Σ2 = BᵀB (A, B the centred samples over sqrt(n - 1)), the eigenvalues of Σ1Σ2 are the
    squared singular values of A Bᵀ, so tr((Σ1Σ2)^½) = ‖A Bᵀ‖_* exactly: a reference that needs no matrix square
    root. Fewer samples than dimensions on either side or both, the lower rank on either side, one image (Σ = 0)."""
    rng = np.random.default_rng(n1 * 1000 + n2)
    dim = 200
    basis = rng.standard_normal((40, dim))
    xs = [np.tanh(rng.standard_normal((n, 40)) @ basis / 4 + shift) for n, shift in ((n1, 0.0), (n2, 0.3))]
    mus = [x.mean(axis=0) for x in xs]
    centred = [(x - mu) / np.sqrt(max(len(x) - 1, 1)) for x, mu in zip(xs, mus, strict=True)]
    sigmas = [c.T @ c for c in centred]
    nuclear = np.linalg.svd(centred[0] @ centred[1].T, compute_uv=False).sum()
    expected = float((mus[0] - mus[1]) @ (mus[0] - mus[1]) + np.trace(sigmas[0]) + np.trace(sigmas[1]) - 2 * nuclear)
    assert frechet_distance(mus[0], sigmas[0], mus[1], sigmas[1]) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mus[1], sigmas[1], mus[0], sigmas[0]) == pytest.approx(expected, rel=1e-9)


def test_closed_forms_in_2048_dimensions():
    rng = np.random.default_rng(2)
    mu1, sigma = random_stats(rng, 2048, 3000)
    mu2 = mu1 + rng.standard_normal(2048)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float((mu1 - mu2) @ (mu1 - mu2)), rel=1e-7)
    assert abs(frechet_distance(mu1, sigma, mu1, sigma)) < 1e-8
    # diagonal covariances: FID = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.random(2048) + 0.1, rng.random(2048) + 0.1
    expected = float((mu1 - mu2) @ (mu1 - mu2) + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_rejects_mismatched_or_non_finite_statistics():
    with pytest.raises(MetricError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(MetricError, match="NaN"):
        frechet_distance(np.zeros(2), np.eye(2), np.array([0.0, np.nan]), np.eye(2))


def test_feature_stats_stream_equals_numpy_mean_and_cov_even_far_from_zero():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 5)) + 1e4
    acc = FeatureStats()
    for chunk in np.array_split(x, 4):
        acc.update(torch.from_numpy(chunk).float())
    mu, sigma = acc.mu_sigma()
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mu, x32.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x32, rowvar=False), rtol=1e-9, atol=1e-9)
    with pytest.raises(MetricError, match="at least 2"):
        FeatureStats().mu_sigma()


@pytest.mark.slow
def test_2048d_agrees_with_references_and_takes_at_most_3_seconds():
    rng = np.random.default_rng(4)
    (m1, s1), (m2, s2) = random_stats(rng, 2048, 4096), random_stats(rng, 2048, 6144)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        ours = frechet_distance(m1, s1, m2, s2)
        times.append(time.perf_counter() - start)
    assert sorted(times)[1] <= 3.0, times
    assert ours == pytest.approx(sqrtm_reference(m1, s1, m2, s2), rel=1e-6)
    assert ours == pytest.approx(pytorch_fid_reference(m1, s1, m2, s2), rel=1e-6)


def test_inception_score_closed_forms():
    assert inception_score(np.full((100, 1008), 1 / 1008)) == pytest.approx((1.0, 0.0), abs=1e-12)
    k = 7
    one_hot = np.eye(k)[np.tile(np.arange(k), 10 * 3)]  # every split of 21 images holds each class 3 times
    mean, std = inception_score(one_hot, splits=10)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_uses_in_order_splits_and_population_std():
    # first split: 2 balanced classes (IS 2); second split: all one class (IS 1)
    probs = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=float)
    mean, std = inception_score(probs, splits=2)
    assert (mean, std) == pytest.approx((1.5, 0.5))  # np.std with ddof=0 of [2, 1]


def test_inception_score_from_logits_equals_softmax_then_score():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((50, 1008)).astype(np.float32) * 4
    z = logits.astype(np.float64)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert inception_score_from_logits(logits, 5) == pytest.approx(inception_score(probs, 5), rel=1e-12)
    with pytest.raises(MetricError, match="one image per split"):
        inception_score(probs[:3], splits=10)


def test_inception_score_is_exp_of_the_mean_kl_not_the_mean_of_per_image_exps():
    """One split of [1, 0], [1, 0], [0, 1]: p(y) = (2/3, 1/3), so KL(p(y|x) ‖ p(y)) is ln(3/2) for the first two
    images and ln 3 for the third (natural log, Salimans et al.'s code), and IS = exp(mean KL) = (1.5² · 3)^(1/3),
    by hand. The mean of per-image exps would be (1.5 + 1.5 + 3) / 3 = 2; log2 would give 2^(mean KL in bits)."""
    probs = np.array([[1, 0], [1, 0], [0, 1]], dtype=float)
    expected = (1.5 ** 2 * 3) ** (1 / 3)  # 1.8899...
    assert inception_score(probs, splits=1) == pytest.approx((expected, 0.0), rel=1e-12, abs=1e-12)
    assert inception_score_from_logits(np.log(np.clip(probs, 1e-300, None)), 1)[0] == pytest.approx(expected,
                                                                                                    rel=1e-12)


def test_inception_score_splits_are_consecutive_blocks_for_probabilities_and_logits():
    """Rows A, A, B, B (A = [0.9, 0.1], B = [0.1, 0.9]) in 2 splits: consecutive blocks hold one kind each, so every
    split has p(y) = p(y|x) and IS = 1 exactly (mean 1, std 0). Interleaved splits ([A, B] twice) would give
    exp(0.9 ln 1.8 + 0.1 ln 0.2) = 1.896 per split."""
    a, b = [0.9, 0.1], [0.1, 0.9]
    probs = np.array([a, a, b, b])
    assert inception_score(probs, splits=2) == pytest.approx((1.0, 0.0), abs=1e-12)
    assert inception_score_from_logits(np.log(probs).astype(np.float32), 2) == pytest.approx((1.0, 0.0), abs=1e-6)
    mixed = np.exp(0.9 * np.log(1.8) + 0.1 * np.log(0.2))  # one split holding A and B once each, by hand
    assert inception_score(probs[[0, 2, 1, 3]], splits=2) == pytest.approx((mixed, 0.0), rel=1e-12, abs=1e-12)


def test_inception_score_from_huge_logits_does_not_overflow():
    """Logits of 1000 (float32 holds them; exp(1000) overflows float64): softmax is one-hot to within e^-1000, so two
    images of different classes in one split score exactly 2 (a softmax without the max shift gives NaN)."""
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=np.float32)
    assert inception_score_from_logits(logits, 1) == pytest.approx((2.0, 0.0), rel=1e-12, abs=1e-12)
