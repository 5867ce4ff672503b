"""Image sources -> uint8 arrays (N, H, W, 3) + int64 labels -> batches in [-1, 1] on the training device.

Sources: `synthetic` (procedural coloured shapes, built in, offline), `folder` (a class-folder tree read with
torchvision's ImageFolder) and `cifar10` (torchvision). The whole uint8 array is kept on the training device and
batches are drawn there by index: one shuffled permutation per epoch, like the authors' SerialIterator.

Dequantization follows the authors' `datasets/cifar10.py`: x / 128 - 1 + U(0, 1/128), i.e. values in [-1, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sngan.config import DataConfig, SnganError

SYNTHETIC_CLASSES = ("circle", "square", "triangle")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class DataError(SnganError):
    """A dataset problem (missing files, empty folder, wrong layout), in one line."""


@dataclass
class ImageSet:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]

    def summary(self) -> str:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return (f"dataset: {len(self.images)} images {self.images.shape[1]}x{self.images.shape[2]}, "
                f"{len(self.classes)} classes, per class min {counts.min()} max {counts.max()}")


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


def load_folder(root: str | Path, resolution: int) -> ImageSet:
    """Read a class-folder tree (root/<class>/<image>) with torchvision, resized and centre-cropped."""
    from torchvision import datasets, transforms

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root '{root}' is not a folder")
    transform = transforms.Compose([transforms.Resize(resolution), transforms.CenterCrop(resolution)])
    try:
        folder = datasets.ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"data.root '{root}': {str(exc).splitlines()[0]}") from None
    images = np.stack([np.asarray(img.convert("RGB"), dtype=np.uint8) for img, _ in folder])
    return ImageSet(images, np.asarray(folder.targets, dtype=np.int64), tuple(folder.classes))


def load_cifar10(root: str | Path, split: str, download: bool) -> ImageSet:
    """CIFAR-10 through torchvision (train: 50,000 images; test: 10,000)."""
    from torchvision import datasets

    if split not in ("train", "test"):
        raise DataError(f"data.split must be train or test for cifar10, got {split!r}")
    try:
        ds = datasets.CIFAR10(str(root), train=split == "train", download=download)
    except Exception as exc:  # offline download failures surface as URLError/OSError/RuntimeError
        raise DataError(f"CIFAR-10 not available under '{root}' ({type(exc).__name__}): download "
                        f"{CIFAR10_URL} and place it (or its extracted folder cifar-10-batches-py/) in '{root}', "
                        f"or set data.root to where it is") from None
    return ImageSet(np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64), tuple(ds.classes))


def load_images(data_cfg: DataConfig, resolution: int, seed: int = 0) -> ImageSet:
    """The uint8 image set named by the `data` config section at `resolution`."""
    if data_cfg.name == "synthetic":
        images = synthetic_shapes(data_cfg.num_images, resolution, seed)
    elif data_cfg.name == "folder":
        images = load_folder(data_cfg.root, resolution)
    elif data_cfg.name == "cifar10":
        images = load_cifar10(data_cfg.root, data_cfg.split, data_cfg.download)
    else:
        raise DataError(f"data.name '{data_cfg.name}' is not supported yet")
    if len(images.images) == 0:
        raise DataError(f"data source '{data_cfg.name}' at '{data_cfg.root}' holds no images")
    if images.images.shape[1:3] != (resolution, resolution):
        raise DataError(f"images are {images.images.shape[1]}x{images.images.shape[2]} but model.resolution is "
                        f"{resolution}")
    return images


def to_float(x_uint8: torch.Tensor, dequantize: bool) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [-1, 1]; with `dequantize`, x/128 - 1 + U(0, 1/128) as the authors."""
    if dequantize:
        x = x_uint8.float().div_(128.0).sub_(1.0)
        return x.add_(torch.rand_like(x).div_(128.0))
    return x_uint8.float().div_(127.5).sub_(1.0)


class Batches:
    """Random batches drawn by index from a device-resident uint8 array, epoch by epoch."""

    def __init__(self, image_set: ImageSet, device: torch.device, seed: int, dequantize: bool = True):
        self.images = torch.from_numpy(image_set.images).permute(0, 3, 1, 2).contiguous().to(device)  # (N,3,H,W)
        self.labels = torch.from_numpy(image_set.labels).to(device)
        self.num_classes = len(image_set.classes)
        self.dequantize = dequantize
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.images), generator=self.generator)
        self.position = 0

    def __len__(self) -> int:
        return len(self.images)

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 3, H, W) float in [-1, 1], labels (B,) int64), both on the device."""
        parts, need = [], batch_size
        while need > 0:
            if self.position >= len(self.order):
                self.order = torch.randperm(len(self.images), generator=self.generator)
                self.position = 0
            take = self.order[self.position:self.position + need]
            self.position += len(take)
            need -= len(take)
            parts.append(take)
        index = torch.cat(parts).to(self.images.device)
        return to_float(self.images[index], self.dequantize), self.labels[index]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.position = int(state["position"])


def epochs(num_images: int, iterations: int, n_dis: int, batch_size: int) -> float:
    """How many passes over the data a run makes (for the start-of-run summary)."""
    return iterations * n_dis * batch_size / max(num_images, 1) if num_images else math.inf
