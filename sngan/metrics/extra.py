"""The metrics `sngan eval --metrics` adds to IS and FID: KID, precision/recall/density/coverage and intra-FID,
all from the pool3 features FID already extracts (no second pass over the images).

Each is computed on the FID's sets (the protocol's FID generated images against its real images, whose features
the reference cache then stores) and named after them like the FID: with `fid5k_train10k`,
- `kid5k_train10k`, `kid5k_train10k_std`: KID mean and std over 100 subsets of min(1000, counts) (`kid.py`);
- `prdc_k5_5k_train10k_precision`, `..._recall`, `..._density`, `..._coverage`: Naeem et al. with k = 5 (`prdc.py`);
- `intra_fid5k_train10k`: conditional models only, the mean over classes of the FID between the generated images
  of a class and the real images of that class (Miyato & Koyama 2018, Sec. 5.2, who report it for ImageNet).

They are a registry (StyleGAN2-ADA style): a new metric is one function decorated with `register(name)`, which
gets the `Features` and returns its named values (named after itself and the FID's counts); it is then a value of
`--metrics`, computed, recorded and printed like these three.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sngan.errors import MetricError
from sngan.metrics.fid import FeatureStats, frechet_distance
from sngan.metrics.kid import SUBSETS, kernel_inception_distance, kid_subset_size
from sngan.metrics.prdc import NEAREST_K, prdc
from sngan.metrics.stats import ReferenceStats


@dataclass(frozen=True)
class Features:
    """What an extra metric is computed from: the FID's generated features (N, 2048) in latent order and the
    reference's real ones, their labels where known, and the FID's counts ('5k_train10k' of 'fid5k_train10k')."""

    fake: np.ndarray
    real: np.ndarray
    fake_labels: np.ndarray | None
    real_labels: np.ndarray | None
    num_classes: int
    counts: str


@dataclass(frozen=True)
class ExtraMetric:
    """A registered metric: `compute` gives its named values, whose names start with the metric's own name;
    `describe(values, num_generated, num_real)` gives its printed lines; `needs_labels`: conditional models only."""

    compute: Callable[[Features], dict[str, float]]
    describe: Callable[[dict[str, float], int, int | None], list[str]]
    needs_labels: bool = False


EXTRA: dict[str, ExtraMetric] = {}  # --metrics name -> metric, in the order they are computed and printed


def plain_lines(values: dict[str, float], num_generated: int, num_real: int | None) -> list[str]:
    return [f"{name} {value:.4f}" for name, value in values.items()]


def register(name: str, describe: Callable[[dict[str, float], int, int | None], list[str]] = plain_lines,
             needs_labels: bool = False) -> Callable:
    """Make the decorated function the `--metrics NAME` metric (a new metric is one function).

    Its values are found in a record by their names' prefix, so no name may be a prefix of another (nor of IS or
    FID): `kid` beside a `kid_rbf` would print the other's values as its own."""
    clash = next((n for n in ("is", "fid", *EXTRA) if n != name and (n.startswith(name) or name.startswith(n))), None)
    if clash:
        raise ValueError(f"metric name '{name}' and '{clash}' start alike; a metric's values are found by its name, "
                         f"so choose a name neither starts with")

    def add(compute: Callable[[Features], dict[str, float]]) -> Callable[[Features], dict[str, float]]:
        EXTRA[name] = ExtraMetric(compute, describe, needs_labels)
        return compute
    return add


def parse_metrics(text: str) -> tuple[str, ...]:
    """'is,fid,kid' -> ('kid',): the extra metrics asked for (IS and FID are always computed)."""
    known = ("is", "fid", *EXTRA)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MetricError(f"--metrics: unknown {', '.join(unknown)}; choose from {','.join(known)}")
    return tuple(n for n in EXTRA if n in names)


def values_of(name: str, metrics: dict[str, float]) -> dict[str, float]:
    """The values metric `name` contributed to a metrics dict (their names start with its name)."""
    return {key: value for key, value in metrics.items() if key.startswith(name)}


def _kid_lines(values: dict[str, float], num_generated: int, num_real: int | None) -> list[str]:
    size = kid_subset_size(num_generated, num_real or num_generated)
    return [f"KID  {value:.5f} ± {values[key + '_std']:.5f}   ({key}: unbiased MMD², cubic kernel, {SUBSETS} subsets "
            f"of {size})" for key, value in values.items() if not key.endswith("_std")]


@register("kid", describe=_kid_lines)
def kid(f: Features) -> dict[str, float]:
    mean, std = kernel_inception_distance(f.fake, f.real)
    return {f"kid{f.counts}": mean, f"kid{f.counts}_std": std}


def _prdc_lines(values: dict[str, float], num_generated: int, num_real: int | None) -> list[str]:
    return [f"{key.rsplit('_', 1)[1]:<9} {value:.4f}   ({key}: Naeem et al. 2020)" for key, value in values.items()]


@register("prdc", describe=_prdc_lines)
def precision_recall_density_coverage(f: Features) -> dict[str, float]:
    return {f"prdc_k{NEAREST_K}_{f.counts}_{key}": value for key, value in prdc(f.fake, f.real).items()}


def _intra_fid_lines(values: dict[str, float], num_generated: int, num_real: int | None) -> list[str]:
    return [f"intra-FID {value:.3f}   ({key}: mean of per-class FIDs)" for key, value in values.items()]


@register("intra_fid", describe=_intra_fid_lines, needs_labels=True)
def intra_fid_metric(f: Features) -> dict[str, float]:
    if not f.num_classes or f.fake_labels is None or f.real_labels is None:
        raise MetricError("intra-FID needs a conditional checkpoint and real images with labels")
    return {f"intra_fid{f.counts}": intra_fid(f.fake, f.fake_labels[:len(f.fake)], f.real, f.real_labels,
                                              f.num_classes)}


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
    features = Features(fake, real, None if fake_labels is None else fake_labels.numpy(), ref.labels, num_classes,
                        fid_name.removeprefix("fid"))
    out: dict[str, float] = {}
    for name in names:
        out |= EXTRA[name].compute(features)
    return out
