"""Reference statistics (mean and covariance of pool3 features) of real images: compute, save, load, cache.

Files are `.npz` with float64 `mu` (2048,) and `sigma` (2048, 2048), the keys pytorch-fid and the TTUR code use,
plus `protocol`: a JSON string saying what they were computed from (dataset, split, count, resolution, network,
resize). KID and precision/recall need the real features themselves, not only their moments: those files also hold
float32 `features` (N, 2048) and int64 `labels` (N,) (intra-FID's classes). Features are stored only when a metric
asks for them (CIFAR-10 train: 400 MB), so a cached file without them is rebuilt the first time one does.
Cached files live in `<data.cache_dir or data.root/sngan-cache>/fid-stats/`, one per dataset, split, count,
sampling rule, resolution and network, and are written atomically so an interrupted run never leaves a torn file.

Which real images: `reference_subset`, a rule that reads the pixels and labels, never the order the files are stored
in (`SUBSET_TEXT`). Under the earlier rule, "the first N in dataset order", a folder packed in sorted class order
gave CIFAR-10's `paper` reference (10,000 of 50,000) airplanes and automobiles only, and the official batches
(class-mixed) a fair sample: the FID depended on the file format. The rule's name (`SUBSET_RULE`) is part of the
cache file's name, so statistics cached under the old rule are never reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sngan.config import DataConfig
from sngan.datasets import DATASETS
from sngan.errors import MetricError
from sngan.io import atomic_write, open_input
from sngan.metrics.dinov2 import ScoringNetwork, features_of
from sngan.metrics.fid import FeatureStats


@dataclass
class ReferenceStats:
    """mu (D,), sigma (D, D) and the record of how they were made (None for foreign files without one)."""

    mu: np.ndarray
    sigma: np.ndarray
    protocol: dict[str, Any] | None
    path: Path | None = None
    features: np.ndarray | None = None  # float32 (N, D) pool3 features of the real images, when stored
    labels: np.ndarray | None = None  # int64 (N,) their classes, when stored


def uint8_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1], the Inception input, always in contiguous NCHW
    memory: a channels-last view picks other conv kernels, so the same pixels read from a file and from a generator
    would differ in the last bits."""
    return images.permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def feature_stats(images: np.ndarray, net: ScoringNetwork, batch_size: int, device: torch.device | str,
                  keep: list[np.ndarray] | None = None, progress: bool = False,
                  log: Callable[[str], None] | None = None,
                  indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the pool3 features of uint8 images (N, H, W, 3), batched on `device`.

    Args:
        images: real images, uint8 (N, H, W, 3).
        net: the scoring network (`InceptionFeatures`, or `DinoFeatures`), already on `device`.
        batch_size: images per forward pass.
        device: where batches go.
        keep: when given, each batch's float32 features (B, 2048) are appended to it.
        progress: report the pass (`sngan.progress`: a bar on a terminal, a line every few seconds elsewhere).
        log: where those lines go (default stderr).
        indices: the images to use, in this order (default: all, in order); gathered a batch at a time, so a
            memory-mapped set is never copied whole.

    Returns:
        float64 mean (2048,) and covariance (2048, 2048) (ddof=1).
    """
    from sngan.progress import PassProgress, cpu_hint

    acc = FeatureStats()
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    bar = PassProgress(len(indices), "inception pass (reference)", progress, log=log, hint=cpu_hint(device))
    for start in range(0, len(indices), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[indices[start:start + batch_size]])).to(device)
        features = features_of(net, uint8_to_unit(batch))  # (B, D)
        acc.update(features)
        if keep is not None:
            keep.append(features.float().cpu().numpy())
        bar.update(len(batch))
    bar.close()
    return acc.mu_sigma()


SUBSET_RULE = "strat-blake2b-v1"  # named in the cache file's name and the record: a new rule gets a new name
SUBSET_TEXT = ("class-stratified: each class gets its share of N by largest remainder, and within a class the images "
               "with the smallest blake2b-64 hash of their uint8 pixels, in (class, hash) order")
HASH_CHUNK = 4096  # images read from a memory map per step while hashing


def content_hashes(images: np.ndarray) -> np.ndarray:
    """(N,) uint64: the 8-byte blake2b digest (big-endian) of each uint8 image's (H, W, 3) bytes in C order."""
    out = np.empty(len(images), np.uint64)
    for start in range(0, len(images), HASH_CHUNK):
        chunk = np.ascontiguousarray(images[start:start + HASH_CHUNK], dtype=np.uint8)
        for i, image in enumerate(chunk):
            out[start + i] = int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "big")
    return out


def class_shares(counts: np.ndarray, num: int) -> np.ndarray:
    """How many of `num` images each class gives: floor(num * c_k / total), and one more to the classes with the
    largest remainders (ties: the lower class index), in exact integer arithmetic (Hamilton's method)."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    share = counts * num // total
    remainder = counts * num % total
    extra = num - int(share.sum())
    order = sorted(range(len(counts)), key=lambda k: (-int(remainder[k]), k))
    share[order[:extra]] += 1
    return share


def reference_subset(images: np.ndarray, labels: np.ndarray, num: int | None) -> np.ndarray:
    """Indices of the reference images (`SUBSET_TEXT`), all of them when `num` is None or covers the set.

    The result depends on the pixels and labels only: the same images stored in another order (CIFAR-10's
    class-mixed batches, a class-sorted folder, a repacked copy) give the same images in the same order, so the
    same statistics. Identical images tie on their hash; which copy is taken does not change the pixels.
    """
    return subset_order(content_hashes(images), labels, num)


def subset_order(hashes: np.ndarray, labels: np.ndarray, num: int | None) -> np.ndarray:
    """`reference_subset` from the images' `content_hashes`."""
    labels = np.asarray(labels, np.int64)
    order = np.lexsort((hashes, labels))  # by class, then hash (stable: ties keep their index order)
    if num is None or num >= len(order):
        return order
    counts = np.bincount(labels, minlength=int(labels.max()) + 1 if len(labels) else 0)
    share = class_shares(counts, num)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # where each class begins in `order`
    return np.concatenate([order[s:s + n] for s, n in zip(starts, share, strict=True)])


def cache_path(root: Path, data_cfg: DataConfig, seed: int, split: str, num: int | None, resolution: int,
               network: str) -> Path:
    """Where the statistics of (dataset, split, count, sampling rule, resolution, features) are cached under the
    cache `root`; `network` names what produced the features (`InceptionFeatures.features_key`: weights and input
    path)."""
    count = "all" if num is None else str(num)
    tag = DATASETS[data_cfg.name].stats_tag(data_cfg, seed)  # synthetic: count and seed; folders: their path
    return root / "fid-stats" / f"{tag}-{split}-{resolution}px-n{count}-{SUBSET_RULE}-{network}.npz"


def save_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray, protocol: dict[str, Any],
               features: np.ndarray | None = None, labels: np.ndarray | None = None) -> Path:
    """Write mu, sigma and the protocol record (JSON) to `path` atomically.

    Args:
        path: destination `.npz` (folder created).
        mu: mean (D,).
        sigma: covariance (D, D).
        protocol: what the statistics were computed from.
        features: the real features (N, D), stored as float32 when given.
        labels: their classes (N,), stored when given.

    Returns:
        The path written.
    """
    record = np.array(json.dumps(protocol, sort_keys=True))
    # typed Any: numpy's `savez` stub would check these values against its keyword `allow_pickle: bool`
    arrays: dict[str, Any] = {} if features is None else {"features": np.asarray(features, np.float32)}
    arrays |= {} if labels is None else {"labels": np.asarray(labels, np.int64)}
    return atomic_write(path, lambda fh: np.savez(fh, mu=mu, sigma=sigma, protocol=record, **arrays))


def load_stats(path: str | Path, features: bool = False) -> ReferenceStats:
    """Read a statistics file (ours, pytorch-fid's or TTUR's: keys `mu` and `sigma`).

    Args:
        path: the `.npz` file.
        features: also read the stored real features and labels (None when the file has none).

    Returns:
        The statistics; `protocol` is None when the file carries no record.
    """
    path = Path(path)
    if not path.is_file():
        raise MetricError(f"{path}: statistics file not found")
    try:
        with open_input(path) as fh, np.load(fh, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise MetricError(f"{path}: not a statistics file (needs arrays 'mu' and 'sigma', has "
                                  f"{', '.join(data.files) or 'none'})")
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            protocol = json.loads(str(data["protocol"])) if "protocol" in data else None
            real = data["features"] if features and "features" in data else None
            labels = data["labels"] if features and "labels" in data else None
    except MetricError:
        raise
    except Exception:  # zip/pickle/JSON failures all mean an unreadable file
        raise MetricError(f"{path}: cannot read statistics (truncated, corrupt or not an .npz file)") from None
    if protocol is not None and not isinstance(protocol, dict):
        raise MetricError(f"{path}: its 'protocol' must be a JSON object (what the statistics were computed from), "
                          f"got {type(protocol).__name__}")
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise MetricError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    check_covariance(mu, sigma, str(path))
    if real is not None and real.shape[1:] != mu.shape:
        raise MetricError(f"{path}: features {real.shape} do not fit mu {mu.shape}")
    if real is not None and not np.isfinite(real).all():
        raise MetricError(f"{path}: its stored features hold NaN or inf")
    return ReferenceStats(mu, sigma, protocol, path, real, labels)


SYMMETRY_TOL = 1e-6  # |sigma - sigma^T| relative to the largest |sigma| entry: float32 round-off passes, a lower
EIGEN_TOL = 1e-6  # triangle does not; the most negative eigenvalue relative to the largest (round-off of a
#                   rank-deficient covariance is ~1e-12)


def check_covariance(mu: np.ndarray, sigma: np.ndarray, where: str) -> None:
    """Refuse statistics no set of features can have: NaN/inf, a sigma that is not symmetric, or not positive
    semi-definite (FID would then be a number with no meaning, e.g. 70,863 for sigma = -I)."""
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise MetricError(f"{where}: mu or sigma holds NaN or inf")
    scale = float(np.abs(sigma).max()) or 1.0
    if float(np.abs(sigma - sigma.T).max()) > SYMMETRY_TOL * scale:
        raise MetricError(f"{where}: sigma is not symmetric, so it is not a covariance matrix")
    eigen = np.linalg.eigvalsh(sigma)  # ascending
    if eigen[0] < -EIGEN_TOL * max(float(eigen[-1]), 0.0) or eigen[-1] < 0:
        raise MetricError(f"{where}: sigma is not positive semi-definite (smallest eigenvalue {eigen[0]:.3g}, "
                          f"largest {eigen[-1]:.3g}), so it is not a covariance matrix")
