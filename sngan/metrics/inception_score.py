"""Inception Score: exp(E_x KL(p(y|x) ‖ p(y))), averaged over in-order splits, as the original TF code.

The N images are cut into `splits` consecutive parts (np.array_split, so N need not divide evenly); each part gets
its own marginal p(y) and its own score; the result is the mean and the population standard deviation (ddof=0,
as np.std in Salimans et al.'s code) of the per-split scores. All arithmetic is float64.
"""

from __future__ import annotations

import numpy as np

from sngan.errors import MetricError


def _split_score(probs: np.ndarray) -> float:
    """exp(mean KL(p(y|x) ‖ p(y))) for one split of probabilities (n, K); 0·log 0 counts as 0."""
    marginal = probs.mean(axis=0, keepdims=True)  # (1, K)
    safe = np.where(probs > 0, probs, 1.0)
    kl = np.where(probs > 0, probs * (np.log(safe) - np.log(np.where(marginal > 0, marginal, 1.0))), 0.0)
    return float(np.exp(kl.sum(axis=1).mean()))


def _check_splits(num: int, splits: int) -> None:
    if splits < 1 or num < splits:
        raise MetricError(f"the Inception Score needs at least one image per split: {num} images, {splits} splits")


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score of class probabilities.

    Args:
        probs: (N, K) rows of p(y|x), each summing to 1 (for the FID Inception, K = 1008).
        splits: number of consecutive, in-order splits.

    Returns:
        (mean, std) of the per-split scores, std with ddof=0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise MetricError(f"probabilities must be (N, K), got shape {probs.shape}")
    _check_splits(len(probs), splits)
    scores = [_split_score(part) for part in np.array_split(probs, splits)]
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_from_logits(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """The Inception Score of softmax(logits), computed split by split in float64 (memory: one split at a time).

    Args:
        logits: (N, K) unnormalised log-probabilities (float32 is fine; softmax is done in float64).
        splits: number of consecutive, in-order splits.

    Returns:
        (mean, std) of the per-split scores, std with ddof=0.
    """
    if logits.ndim != 2:
        raise MetricError(f"logits must be (N, K), got shape {logits.shape}")
    _check_splits(len(logits), splits)
    scores = []
    for part in np.array_split(np.arange(len(logits)), splits):
        z = logits[part].astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        scores.append(_split_score(p / p.sum(axis=1, keepdims=True)))
    return float(np.mean(scores)), float(np.std(scores))
