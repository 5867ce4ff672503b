"""Image sources -> packed uint8 arrays (N, H, W, 3) + int64 labels -> batches in [-1, 1] on the training device.

- `sources`: synthetic shapes (built in), cifar10 and stl10 (torchvision); `files`: image folders and ImageNet.
- `pack` + `cache`: a source is decoded once into a memory-mappable cache (`sngan prepare`, or on first use).
- `feed`: device-resident batches when the array fits `data.device_budget_mb`, else memory map + prefetch thread.

Dequantization follows the authors' `datasets/cifar10.py`: x / 128 - 1 + U(0, 1/128), i.e. values in [-1, 1).
This package needs only `sngan.config`.
"""

from sngan.data.cache import cache_root, load_images, open_packed, prepare
from sngan.data.feed import Batches, IndexOrder, StreamBatches, make_batches, to_float
from sngan.data.sources import SYNTHETIC_CLASSES, ImageSet, synthetic_shapes
from sngan.errors import DataError

__all__ = ["SYNTHETIC_CLASSES", "Batches", "DataError", "ImageSet", "IndexOrder", "StreamBatches", "cache_root",
           "load_images", "make_batches", "open_packed", "prepare", "synthetic_shapes", "to_float"]
