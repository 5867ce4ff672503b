"""What every part of `sngan.data` shares: the uint8 image set, the image extensions, dequantization (its error
class, `DataError`, lives with every other in `sngan.errors`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SHOWN_CLASSES = 10  # classes named in the dataset line; the rest are counted (ImageNet has 1000)
SHOWN_NAME = 40  # characters of one class name in the dataset line


@dataclass
class ImageSet:
    """Images and labels in memory (or memory-mapped from a packed cache).

    Attributes:
        images: (N, H, W, 3) uint8, a plain array or a read-only memory map.
        labels: (N,) int64 in [0, len(classes)).
        classes: class names, in label order.
        notes: extra words for the summary line (skipped files, where the cache is).
        manifest: the packed cache's manifest when the set came from one, else None.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    manifest: dict | None = None

    def class_counts(self) -> np.ndarray:
        """(K,) number of images per class."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def summary(self) -> str:
        """`dataset: N images HxW, K classes (0 airplane, 1 automobile, ...), per class min a max b` plus any
        notes; at most SHOWN_CLASSES names, each cut to SHOWN_NAME characters, so a 1000-class line stays short."""
        counts = self.class_counts()
        low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
        text = (f"dataset: {len(self.images)} images {self.images.shape[1]}x{self.images.shape[2]}, "
                f"{len(self.classes)} classes{class_mapping(self.classes)}, per class min {low} max {high}")
        return "; ".join([text, *self.notes])


def class_mapping(classes: tuple[str, ...] | list[str]) -> str:
    """' (0 cat, 1 dog)': the index of each name, the first SHOWN_CLASSES of them, then how many more."""
    if not classes:
        return ""
    shown = [f"{k} {name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME - 3] + '...'}"
             for k, name in enumerate(classes[:SHOWN_CLASSES])]
    more = len(classes) - len(shown)
    return f" ({', '.join(shown)}{f', ... {more} more' if more else ''})"


def to_float(x_uint8: torch.Tensor, dequantize: bool) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [-1, 1]; with `dequantize`, x/128 - 1 + U(0, 1/128) as the authors.

    The noise comes from the global RNG of the tensor's device, so a checkpointed run resumes exactly.
    """
    if dequantize:
        x = x_uint8.float().div_(128.0).sub_(1.0)
        return x.add_(torch.rand_like(x).div_(128.0))
    return x_uint8.float().div_(127.5).sub_(1.0)


def epochs(num_images: int, iterations: int, n_dis: int, batch_size: int) -> float:
    """How many passes over the data a run makes (for the start-of-run summary)."""
    return iterations * n_dis * batch_size / max(num_images, 1) if num_images else math.inf
