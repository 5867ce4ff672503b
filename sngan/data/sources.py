"""What every source gives, the uint8 `ImageSet`, and the built-in and downloadable sources: `synthetic`
(procedural shapes), `cifar10` and `stl10`.

A source knows its identity (cheap facts that change when its files change: names, sizes, modification times),
and how to fill a `PackWriter`. CIFAR-10 and STL-10 are read by `archives.py` from the extracted folder or the
official `.tar.gz` (checked by shape and label, an md5 difference is a notice). When neither is there, torchvision's
`download_and_extract_archive` fetches the archive if `data.download` is on and the machine is online; otherwise
one line says which file to place where.

STL-10 is resized from 96x96 to `model.resolution` (48 in the paper) with an antialiased bilinear resize, in chunks
of uint8 tensors. Its `unlabeled` images carry no class: such a set is one class named `unlabeled`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sngan.config import DataConfig
from sngan.data.archives import (
    CIFAR10_ARCHIVE,
    CIFAR10_FOLDER,
    STL10_ARCHIVE,
    STL10_FOLDER,
    Files,
    RawSplit,
    read_cifar10,
    read_stl10,
)
from sngan.data.pack import PackResult, PackWriter
from sngan.datasets import DATASETS
from sngan.errors import DataError
from sngan.progress import PassProgress

SYNTHETIC_CLASSES = ("circle", "square", "triangle")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_ARCHIVE_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
RESIZE_CHUNK = 1000  # STL-10 images resized per call
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
        folder: that cache's folder, else None.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    manifest: dict | None = None
    folder: Path | None = None  # the packed cache it was read from

    def fingerprint(self) -> dict[str, Any]:
        """What ranks compare to know they read the same data: count, class names and a content hash (the packed
        cache's hash of its images, else the sha256 of the labels and the image shape)."""
        content = (self.manifest or {}).get("content_sha256")
        if content is None:
            content = hashlib.sha256(np.ascontiguousarray(self.labels).tobytes()
                                     + str(self.images.shape).encode()).hexdigest()
        return {"count": int(len(self.images)), "classes": [str(c) for c in self.classes], "content": content}

    def summary(self) -> str:
        """`dataset: N images HxW, K classes (0 airplane, 1 automobile, ...), per class min a max b` plus any
        notes; at most SHOWN_CLASSES names, each cut to SHOWN_NAME characters, so a 1000-class line stays short."""
        counts = np.bincount(self.labels, minlength=len(self.classes))  # (K,) images per class
        low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
        shown = [f"{k} {name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME - 3] + '...'}"
                 for k, name in enumerate(self.classes[:SHOWN_CLASSES])]
        more = len(self.classes) - len(shown)
        names = f" ({', '.join(shown)}{f', ... {more} more' if more else ''})" if shown else ""  # (0 cat, 1 dog)
        text = (f"dataset: {len(self.images)} images {self.images.shape[1]}x{self.images.shape[2]}, "
                f"{len(self.classes)} classes{names}, per class min {low} max {high}")
        return "; ".join([text, *self.notes])


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


def _download(url: str, root: Path, md5: str, what: str, place: str) -> None:
    """Fetch and extract the official archive into `root` (torchvision's public helper), or say where to put it.
    A failed download leaves nothing behind: no partial archive, and none of the folders it created."""
    from torchvision.datasets.utils import download_and_extract_archive

    archive = root / url.rsplit("/", 1)[-1]
    had_archive = archive.exists()
    created = [parent for parent in (root, *root.parents) if not parent.exists()]  # deepest first
    try:
        download_and_extract_archive(url, str(root), md5=md5)
    except Exception as exc:  # offline downloads fail as URLError/OSError/RuntimeError
        if not had_archive:
            archive.unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()  # only when empty: whatever else is there stays
            except OSError:
                break
        raise DataError(f"{what} is absent under '{root}' and the download failed ({type(exc).__name__}): "
                        f"{place}") from None


class ArchiveSource:
    """What CIFAR-10 and STL-10 share: files in `root` as a folder or the official archive, read once."""

    name: str  # data.name
    folder: str
    archive: str
    url: str
    archive_md5: str
    title: str

    def __init__(self, cfg: DataConfig):
        self.root, self.split, self.download = Path(cfg.root), cfg.split, cfg.download
        self.tag = DATASETS[cfg.name].cache_tag(cfg)
        self.files = Files(self.root, self.folder, self.archive)

    def place(self) -> str:
        return (f"download {self.url} and place it in '{self.root}' as {self.archive} (read as it is) or extract "
                f"it there (giving {self.root / self.folder}/), or set data.root to where it is")

    def identity(self) -> list | None:
        return self.files.identity()

    def fetch(self) -> None:
        """Nothing when the folder or the archive is there; else download it (when allowed) or say where to put it."""
        if self.files.present:
            return
        if not self.download:
            raise DataError(f"{self.title} is absent under '{self.root}' (data.download is off): {self.place()}")
        _download(self.url, self.root, self.archive_md5, self.title, self.place())
        self.files = Files(self.root, self.folder, self.archive)

    def read(self) -> RawSplit:
        raise NotImplementedError

    def pack(self, open_writer: Callable[[int], PackWriter], progress: bool) -> PackResult:
        raw = self.read()
        writer = open_writer(len(raw))
        bar = PassProgress(len(raw), f"packing {self.name} {self.split}", progress)
        done = 0
        for part in raw.parts:
            for start in range(0, len(part), RESIZE_CHUNK):
                chunk = self.transform(part[start:start + RESIZE_CHUNK])
                writer.add(chunk, raw.labels[done:done + len(chunk)])
                done += len(chunk)
                bar.update(len(chunk))
        bar.close()
        return PackResult(raw.classes, notices=raw.notices)

    def transform(self, chunk: np.ndarray) -> np.ndarray:
        return chunk


class Cifar10Source(ArchiveSource):
    """CIFAR-10: `train` (50,000 images) or `test` (10,000), 32x32, 10 classes, from the python batches."""

    name = "cifar10"
    # the text it had when torchvision read the files: the same bytes are packed, so existing caches stay valid
    preprocessing = "cifar10-v1: torchvision CIFAR10 arrays as they are"
    folder, archive, url, archive_md5, title = CIFAR10_FOLDER, CIFAR10_ARCHIVE, CIFAR10_URL, CIFAR10_ARCHIVE_MD5, \
        "CIFAR-10"

    def __init__(self, cfg: DataConfig, resolution: int):
        if resolution != 32:
            raise DataError(f"CIFAR-10 images are 32x32 but model.resolution is {resolution}: set "
                            f"model.resolution=32")
        super().__init__(cfg)

    def read(self) -> RawSplit:
        return read_cifar10(self.root, self.split)


class Stl10Source(ArchiveSource):
    """STL-10 (96x96 binary files), resized with antialiasing to `model.resolution`."""

    name = "stl10"
    preprocessing = "stl10-v1: torchvision STL10, antialiased bilinear resize of uint8 tensors"  # as Cifar10Source
    folder, archive, url, archive_md5, title = STL10_FOLDER, STL10_ARCHIVE, STL10_URL, STL10_ARCHIVE_MD5, "STL-10"

    def __init__(self, cfg: DataConfig, resolution: int):
        if resolution > 96:
            raise DataError(f"STL-10 images are 96x96 but model.resolution is {resolution}: use 48 (paper) or "
                            f"at most 96")
        super().__init__(cfg)
        self.resolution = resolution

    def read(self) -> RawSplit:
        return read_stl10(self.root, self.split)

    def transform(self, chunk: np.ndarray) -> np.ndarray:
        """(B, 96, 96, 3) uint8 -> (B, R, R, 3) uint8, antialiased bilinear."""
        from torchvision.transforms.functional import resize

        if self.resolution == chunk.shape[1]:
            return chunk
        nchw = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)  # (B, 3, 96, 96)
        return resize(nchw, [self.resolution, self.resolution], antialias=True).permute(0, 2, 3, 1).numpy()
