"""Built-in and torchvision sources: `synthetic` (procedural shapes), `cifar10` and `stl10`.

A source knows its identity (cheap facts that change when its files change: names, sizes, modification times),
and how to fill a `PackWriter`. Torchvision downloads the archives when `data.download` is on and the machine is
online; otherwise one line says which file to place where.

STL-10 is resized from 96x96 to `model.resolution` (48 in the paper) with an antialiased bilinear resize, in chunks
of uint8 tensors. Its `unlabeled` images carry no class: such a set is one class named `unlabeled`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sngan.config import DataConfig
from sngan.data.common import ImageSet
from sngan.data.pack import PackResult, PackWriter
from sngan.errors import DataError

SYNTHETIC_CLASSES = ("circle", "square", "triangle")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_SPLITS = ("unlabeled", "train", "test", "train+unlabeled")
RESIZE_CHUNK = 1000  # STL-10 images resized per call


def synthetic_shapes(num: int, resolution: int, seed: int = 0) -> ImageSet:
    """Deterministic coloured shapes (circle, square, triangle) on a plain background.

    Args:
        num: number of images.
        resolution: image side in pixels.
        seed: the same seed always gives the same images.

    Returns:
        ImageSet with labels 0=circle, 1=square, 2=triangle.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(SYNTHETIC_CLASSES), (num,), generator=g)
    centre = 0.5 + (torch.rand(num, 2, generator=g) - 0.5) * 0.3  # (N, 2) in image fractions
    radius = 0.22 + torch.rand(num, generator=g) * 0.1
    fg_hue = torch.rand(num, 3, generator=g)
    fg = (0.35 + 0.65 * fg_hue / fg_hue.amax(dim=1, keepdim=True))  # saturated, bright colours
    bg = 0.05 + 0.2 * torch.rand(num, 1, generator=g).expand(num, 3)  # dark grey
    axis = (torch.arange(resolution) + 0.5) / resolution
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")  # (H, W)
    dx = xx[None] - centre[:, 0, None, None]  # (N, H, W)
    dy = yy[None] - centre[:, 1, None, None]
    r = radius[:, None, None]
    circle = dx ** 2 + dy ** 2 <= r ** 2
    square = (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    triangle = (dy <= r * 0.8) & (dy >= -r) & (dx.abs() <= (dy + r) * 0.6)
    masks = torch.stack([circle, square, triangle], dim=1)  # (N, 3, H, W)
    mask = masks[torch.arange(num), labels][..., None]  # (N, H, W, 1)
    img = torch.where(mask, fg[:, None, None, :], bg[:, None, None, :])  # (N, H, W, 3)
    images = (img * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return ImageSet(images, labels.numpy().astype(np.int64), SYNTHETIC_CLASSES)


def listing_identity(folder: Path) -> list[list] | None:
    """[name, size, mtime_ns] of every file directly in `folder`, sorted; None when the folder is absent."""
    if not folder.is_dir():
        return None
    entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in folder.iterdir() if e.is_file())
    return [list(e) for e in entries] or None


class Cifar10Source:
    """CIFAR-10 through torchvision: `train` (50,000 images) or `test` (10,000), 32x32, 10 classes."""

    name = "cifar10"
    preprocessing = "cifar10-v1: torchvision CIFAR10 arrays as they are"

    def __init__(self, cfg: DataConfig, resolution: int):
        if cfg.split not in ("train", "test"):
            raise DataError(f"data.split must be train or test for cifar10, got {cfg.split!r}")
        if resolution != 32:
            raise DataError(f"CIFAR-10 images are 32x32 but model.resolution is {resolution}: set "
                            f"model.resolution=32")
        self.root, self.split, self.download = Path(cfg.root), cfg.split, cfg.download
        self.tag = cfg.split
        self._dataset = None

    def identity(self) -> list | None:
        return listing_identity(self.root / "cifar-10-batches-py")

    def fetch(self):
        """The torchvision dataset (downloaded when allowed and absent), loaded once."""
        from torchvision import datasets

        if self._dataset is None:
            try:
                self._dataset = datasets.CIFAR10(str(self.root), train=self.split == "train", download=self.download)
            except Exception as exc:  # offline downloads fail as URLError/OSError/RuntimeError
                raise DataError(f"CIFAR-10 not available under '{self.root}' ({type(exc).__name__}): download "
                                f"{CIFAR10_URL} and extract it there (giving {self.root / 'cifar-10-batches-py'}/), "
                                f"or set data.root to where it is") from None
        return self._dataset

    def pack(self, open_writer: Callable[[int], PackWriter], progress: bool) -> PackResult:
        ds = self.fetch()
        writer = open_writer(len(ds.data))
        writer.add(np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64))
        return PackResult(tuple(ds.classes))


class Stl10Source:
    """STL-10 through torchvision (96x96), resized with antialiasing to `model.resolution`."""

    name = "stl10"
    preprocessing = "stl10-v1: torchvision STL10, antialiased bilinear resize of uint8 tensors"

    def __init__(self, cfg: DataConfig, resolution: int):
        if cfg.split not in STL10_SPLITS:
            raise DataError(f"data.split must be one of {'|'.join(STL10_SPLITS)} for stl10, got {cfg.split!r}")
        if resolution > 96:
            raise DataError(f"STL-10 images are 96x96 but model.resolution is {resolution}: use 48 (paper) or "
                            f"at most 96")
        self.root, self.split, self.download, self.resolution = Path(cfg.root), cfg.split, cfg.download, resolution
        self.tag = cfg.split.replace("+", "-")
        self._dataset = None

    def identity(self) -> list | None:
        return listing_identity(self.root / "stl10_binary")

    def fetch(self):
        """The torchvision dataset (downloaded when allowed and absent), loaded once."""
        from torchvision import datasets

        if self._dataset is None:
            try:
                self._dataset = datasets.STL10(str(self.root), split=self.split, download=self.download)
            except Exception as exc:  # offline downloads fail as URLError/OSError/RuntimeError
                raise DataError(f"STL-10 not available under '{self.root}' ({type(exc).__name__}): download "
                                f"{STL10_URL} and extract it there (giving {self.root / 'stl10_binary'}/ with "
                                f"*_X.bin, *_y.bin), or set data.root to where it is") from None
        return self._dataset

    def pack(self, open_writer: Callable[[int], PackWriter], progress: bool) -> PackResult:
        from torchvision.transforms.functional import resize

        ds = self.fetch()
        labels = np.asarray(ds.labels, dtype=np.int64)
        classes = tuple(getattr(ds, "classes", None) or (str(i) for i in range(10)))  # class_names.txt is optional
        if (labels < 0).any():  # unlabeled images (label -1): the whole set is one class
            labels, classes = np.zeros_like(labels), ("unlabeled",)
        writer = open_writer(len(ds.data))
        size = [self.resolution, self.resolution]
        for start in tqdm(range(0, len(ds.data), RESIZE_CHUNK), desc="stl10", unit="chunk", disable=not progress):
            chunk = torch.from_numpy(ds.data[start:start + RESIZE_CHUNK])  # (B, 3, 96, 96) uint8
            if self.resolution != chunk.shape[-1]:
                chunk = resize(chunk, size, antialias=True)  # (B, 3, R, R) uint8
            writer.add(chunk.permute(0, 2, 3, 1).numpy(), labels[start:start + RESIZE_CHUNK])
        return PackResult(classes)
