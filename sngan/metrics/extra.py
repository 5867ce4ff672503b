"""The metrics `sngan eval --metrics` adds to IS and FID: KID, precision/recall/density/coverage and intra-FID,
all from the pool3 features FID already extracts (no second pass over the images).

Each is computed on the FID's sets (the protocol's FID generated images against its real images, whose features
the reference cache then stores) and named after them like the FID: with `fid5k_train10k`,
- `kid5k_train10k`, `kid5k_train10k_std`: KID mean and std over 100 subsets of min(1000, counts) (`kid.py`);
- `prdc_k5_5k_train10k_precision`, `..._recall`, `..._density`, `..._coverage`: Naeem et al. with k = 5 (`prdc.py`);
- `intra_fid5k_train10k`: conditional models only, the mean over classes of the FID between the generated images
  of a class and the real images of that class (Miyato & Koyama 2018, Sec. 5.2, who report it for ImageNet).
"""

from __future__ import annotations

import numpy as np
import torch

from sngan.errors import MetricError
from sngan.metrics.fid import FeatureStats, frechet_distance
from sngan.metrics.kid import kernel_inception_distance
from sngan.metrics.prdc import NEAREST_K, prdc
from sngan.metrics.stats import ReferenceStats

EXTRA = ("kid", "prdc", "intra_fid")
METRICS = ("is", "fid", *EXTRA)


def parse_metrics(text: str) -> tuple[str, ...]:
    """'is,fid,kid' -> ('kid',): the extra metrics asked for (IS and FID are always computed)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MetricError(f"--metrics: unknown {', '.join(unknown)}; choose from {','.join(METRICS)}")
    return tuple(n for n in EXTRA if n in names)


def intra_fid(fake: np.ndarray, fake_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray,
              num_classes: int) -> float:
    """Mean over classes 0..num_classes-1 of FID(generated of class c, real of class c)."""
    values = []
    for c in range(num_classes):
        f, r = fake[fake_labels == c], real[real_labels == c]
        if min(len(f), len(r)) < 2:
            raise MetricError(f"intra-FID: class {c} has {len(f)} generated and {len(r)} real images; each class "
                              f"needs at least 2 of both (raise --num-samples)")
        stats = []
        for x in (f, r):
            acc = FeatureStats()
            acc.update(torch.from_numpy(np.ascontiguousarray(x)))
            stats.append(acc.mu_sigma())
        values.append(frechet_distance(*stats[0], *stats[1]))
    return float(np.mean(values))


def extra_scores(names: tuple[str, ...], fid_name: str, fake_batches: list[torch.Tensor],
                 fake_labels: torch.Tensor | None, ref: ReferenceStats, num_classes: int) -> dict[str, float]:
    """The asked-for extra metrics of the FID's generated features against the reference's real ones.

    Args:
        names: from `parse_metrics`.
        fid_name: the FID's name, e.g. 'fid5k_train10k' (the others share its counts).
        fake_batches: generated features (B, D) per batch, in latent order (the FID's images).
        fake_labels: the classes of the generated images in latent order (conditional models), else None.
        ref: reference statistics; their `features` (and `labels`, for intra-FID) must be loaded.
        num_classes: the generator's (0 = unconditional).
    """
    if not names:
        return {}
    if ref.features is None:
        raise MetricError(f"{', '.join(names)} need the real images' features, and the statistics {ref.path} hold "
                          f"only mu and sigma; leave out --stats so the cache (which stores features) is used")
    fake, real = torch.cat([f.cpu() for f in fake_batches]).float().numpy(), ref.features
    if not np.isfinite(fake).all():  # a diverged generator: no number, rather than "nan +- nan" in a record
        raise MetricError("the generated images' Inception features hold NaN or inf (a diverged generator?); "
                          "no KID/PRDC/intra-FID is computed")
    counts = fid_name.removeprefix("fid")
    out: dict[str, float] = {}
    if "kid" in names:
        out[f"kid{counts}"], out[f"kid{counts}_std"] = kernel_inception_distance(fake, real)
    if "prdc" in names:
        out |= {f"prdc_k{NEAREST_K}_{counts}_{key}": value for key, value in prdc(fake, real).items()}
    if "intra_fid" in names:
        if not num_classes or fake_labels is None or ref.labels is None:
            raise MetricError("intra-FID needs a conditional checkpoint and real images with labels")
        labels = fake_labels[:len(fake)].numpy()
        out[f"intra_fid{counts}"] = intra_fid(fake, labels, real, ref.labels, num_classes)
    return out
