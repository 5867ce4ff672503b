"""Writing a packed array: uint8 images (N, H, W, 3) and int64 labels as `.npy` files, hashed as they are written.

A source fills a `PackWriter` in order; images it cannot read are never written, so the slots stay dense and the
content hash (sha256 over the image bytes, then the label bytes) describes exactly what training sees.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.lib.format import open_memmap

from sngan.errors import DataError

COPY_CHUNK = 4096  # images per copy when compacting after skipped files


@dataclass
class PackResult:
    """What a source reports after filling a writer.

    Attributes:
        classes: class names in label order.
        skipped: files that could not be read, as 'relative/path: reason'.
        dropped: images left out on purpose, by reason (e.g. the authors' ImageNet size filter).
        notices: facts about the files worth a line, not a refusal (an md5 that is not the official one).
    """

    classes: tuple[str, ...]
    skipped: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


class Source(Protocol):
    """What the cache needs from a source (see sources.py and files.py)."""

    name: str  # data.name
    tag: str  # split or folder name, part of the cache folder's name
    preprocessing: str  # versioned description; changing it invalidates caches
    root: Path

    def identity(self) -> Any:
        """JSON-able facts that change when the source's files change (None: files absent)."""

    def fetch(self) -> Any:
        """Make the files present (download) or explain in one line where to put them."""

    def pack(self, open_writer: Callable[[int], PackWriter], progress: bool) -> PackResult:
        """Fill the writer returned by `open_writer(capacity)`."""


def reserved_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 .npy file of `shape`, memory-mapped, with its disk space reserved first (`posix_fallocate`): a
    write into a memory map that finds the disk full kills the process with SIGBUS, a failed reservation is an
    OSError (one line) before any image is packed. File systems without fallocate keep a sparse file."""
    images = open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            del images
            raise OSError(exc.errno, f"cannot reserve {os.fstat(fd).st_size:,} bytes for {path.name}: "
                                     f"{(exc.strerror or '').lower()}") from None
    finally:
        os.close(fd)
    return images


class PackWriter:
    """Appends images and labels to `folder/images.npy` and `folder/labels.npy` (a memory map, not RAM)."""

    def __init__(self, folder: Path, capacity: int, resolution: int):
        self.folder = folder
        self.capacity = capacity
        self.images = reserved_memmap(folder / "images.npy", (capacity, resolution, resolution, 3))
        self.labels = np.zeros(capacity, dtype=np.int64)
        self.count = 0
        self.digest = hashlib.sha256()

    def add(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Append (B, H, W, 3) uint8 images with their (B,) labels."""
        n = len(images)
        if self.count + n > self.capacity:
            raise DataError(f"source produced more than the {self.capacity} images it announced")
        images = np.ascontiguousarray(images, dtype=np.uint8)
        self.images[self.count:self.count + n] = images
        self.labels[self.count:self.count + n] = labels
        self.digest.update(images.tobytes())
        self.count += n

    def finish(self) -> str:
        """Flush both files (dropping unused slots) and return the content hash (hex sha256)."""
        self.images.flush()
        if self.count < self.capacity:
            self._compact()
        labels = self.labels[:self.count]
        np.save(self.folder / "labels.npy", labels)
        self.digest.update(labels.tobytes())
        del self.images
        return self.digest.hexdigest()

    def _compact(self) -> None:
        final = self.folder / "images-compact.npy"
        out = reserved_memmap(final, (self.count, *self.images.shape[1:]))
        for start in range(0, self.count, COPY_CHUNK):
            out[start:start + COPY_CHUNK] = self.images[start:min(start + COPY_CHUNK, self.count)]
        out.flush()
        del out
        self.images = np.load(final, mmap_mode="r")
        os.replace(final, self.folder / "images.npy")
