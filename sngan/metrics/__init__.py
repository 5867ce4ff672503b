"""Inception Score and FID, computed the way papers report them and stamped with their protocol.

- `fid.py`: the Fréchet distance in float64 (symmetric eigendecompositions, no sqrtm) and streaming statistics.
- `inception_score.py`: IS over in-order splits, std with ddof=0.
- `inception.py`: pytorch-fid's FID Inception and the resolution of its weights (offline-friendly).
- `dinov2.py`: DINOv2 ViT-L/14 features from torch hub, the optional network of the Fréchet distance (FD_DINOv2).
- `stats.py`: reference statistics of real images (npz with mu/sigma + protocol record) and their cache.
- `kid.py`: Kernel Inception Distance (unbiased MMD² under the cubic kernel, over random subsets).
- `prdc.py`: precision, recall, density and coverage from k-nearest-neighbour balls in feature space.
- `extra.py`: the registry of metrics `sngan eval --metrics` adds to IS and FID (KID, PRDC, intra-FID), computed
  from the FID's features.
- `precision.py`: float32 matmul precision: the TF32 switch, and the exact float32 context every score runs in.

Generating images and choosing a protocol happen one level up, in `sngan.evaluation`.
"""

from sngan.errors import MetricError
from sngan.metrics.fid import FeatureStats, frechet_distance
from sngan.metrics.inception_score import inception_score, inception_score_from_logits

__all__ = ["FeatureStats", "MetricError", "frechet_distance", "inception_score", "inception_score_from_logits"]
