"""Image files on disk: `folder` (a class-folder tree or a flat folder) and `imagenet` (ILSVRC2012 train layout).

Layout rules for `folder`: when `root` holds sub-folders with images, each sub-folder is a class (sorted names give
labels 0..K-1, images found recursively inside); when it holds only image files, it is one class named after the
folder. A root that mixes loose images with class folders is refused, so a tree is never silently read as one class.
Folders named `sngan-cache` and hidden entries are ignored.

Preprocessing (decoded with Pillow, converted to RGB):
- folder: resize the short side to `model.resolution` (bilinear, antialiased when shrinking), centre crop.
- imagenet, as the authors' `datasets/preprocess.sh` + `datasets/imagenet.py`: images with a side < 256 are DROPPED
  (the shell script skips them; they are counted in the manifest), the short side is resized to 256 (Lanczos, as
  ImageMagick's `-resize` when shrinking; the long side rounded half up, as its geometry), centre crop 256x256,
  then a bilinear resize to `model.resolution` (their `imresize(..., 'bilinear')`). Their intermediate JPEG
  (quality 95) is not reproduced: one lossy step fewer.

Every mode Pillow opens becomes 8-bit RGB by `to_rgb`, not by a bare `convert("RGB")` (which clips 16-bit and
32-bit grey to white and drops transparency onto whatever colour hides under it): 16-bit grey ('I;16*', and 'I', as
Pillow opens 16-bit PNG and TIFF) is scaled by 255/65535; float grey ('F') is read as [0, 1]; transparency ('RGBA',
'LA', 'PA', 'P' or 'L' with a transparent colour, premultiplied 'RGBa'/'La') is composited over white; '1', 'L',
'P', 'CMYK', 'YCbCr' go through Pillow's own conversion.

Unreadable or corrupt files are skipped and reported, never fatal. Decoding runs in a few threads (Pillow releases
the GIL while decoding).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from sngan.config import DataConfig
from sngan.data.pack import PackResult, PackWriter
from sngan.datasets import CACHE_FOLDER, DATASETS, class_name_problem
from sngan.errors import DataError, SnganError
from sngan.io import open_input
from sngan.progress import PassProgress

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DECODE_CHUNK = 512  # files handed to the thread pool at a time
IMAGENET_MIN_SIDE = 256  # authors' preprocess.sh keeps an image only if both sides are >= 256
TRANSPARENT_BACKGROUND = (255, 255, 255, 255)  # what transparent pixels become
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _is_image(entry: os.DirEntry) -> bool:
    return entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith(".")


def _walk_images(folder: Path) -> Iterator[os.DirEntry]:
    """Image files under `folder`, recursively, in sorted order (hidden and cache folders skipped)."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith(".") or entry.name == CACHE_FOLDER:
            continue
        if entry.is_dir():
            yield from _walk_images(Path(entry.path))
        elif _is_image(entry):
            yield entry


def list_class_tree(root: Path) -> tuple[tuple[str, ...], list[tuple[str, int]], str]:
    """Classes, (relative path, label) pairs and a listing hash (names, sizes, mtimes) of an image folder.

    Args:
        root: a class-folder tree or a flat folder of images.

    Returns:
        (class names, files as (path relative to root, label), sha256 hex of the listing).
    """
    if not root.is_dir():
        raise DataError(f"data.root '{root}' is not a folder")
    with os.scandir(root) as it:
        top = sorted(it, key=lambda e: e.name)
    loose = [e for e in top if _is_image(e)]
    subdirs = [e for e in top if e.is_dir() and not e.name.startswith(".") and e.name != CACHE_FOLDER]
    digest = hashlib.sha256()
    files: list[tuple[str, int]] = []
    classes: list[str] = []
    groups = [(root.resolve().name, loose)] if loose else []
    groups += [(d.name, list(_walk_images(Path(d.path)))) for d in subdirs]
    groups = [(name, entries) for name, entries in groups if entries]
    if loose and len(groups) > 1:
        raise DataError(f"data.root '{root}' holds both image files and class folders: move the loose images into "
                        f"a class folder (or point data.root at one class)")
    for label, (name, entries) in enumerate(groups):
        classes.append(name)
        for entry in entries:
            rel = os.path.relpath(entry.path, root)
            stat = entry.stat()
            # the name's own bytes: a name that is not UTF-8 (caf\xe9.png) hashes too, as UTF-8 names always did
            digest.update(os.fsencode(rel) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            files.append((rel, label))
    if not files:
        raise DataError(f"data.root '{root}' holds no images ({', '.join(IMAGE_EXTENSIONS)}), directly or in class "
                        f"folders")
    why = class_name_problem(classes)
    if why:  # before any image is decoded: a folder name that is not printable text would reach the logs
        raise DataError(f"data.root '{root}': {why}; rename that class folder (as UTF-8 text, printable)")
    return tuple(classes), files, digest.hexdigest()


def empty_class_folders(root: Path) -> list[str]:
    """The class folders of `root` (as `list_class_tree` sees them) that hold no image, sorted."""
    with os.scandir(root) as it:
        subdirs = sorted((e for e in it if e.is_dir() and not e.name.startswith(".") and e.name != CACHE_FOLDER),
                         key=lambda e: e.name)
    return [d.name for d in subdirs if next(iter(_walk_images(Path(d.path))), None) is None]


def _centre_crop(img: Image.Image, side: int) -> Image.Image:
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def _resize_short(img: Image.Image, side: int, resample: int) -> Image.Image:
    """The short side to `side`, the long side scaled alike and rounded half up, as ImageMagick's `-resize 256x256^`
    (`floor(x + 0.5)` in its geometry parser; Python's `round` would send a 513x512 image to 256x256, not 257x256)."""
    short = min(img.size)
    size = (max(side, (2 * img.width * side + short) // (2 * short)),  # floor(w * side / short + 1/2), exactly
            max(side, (2 * img.height * side + short) // (2 * short)))
    return img if img.size == size else img.resize(size, resample)


def folder_transform(img: Image.Image, resolution: int) -> np.ndarray | str:
    """Short side to `resolution` (bilinear), centre crop -> (R, R, 3) uint8."""
    img = _centre_crop(_resize_short(img, resolution, Image.Resampling.BILINEAR), resolution)
    return np.asarray(img, dtype=np.uint8)


def imagenet_transform(img: Image.Image, resolution: int) -> np.ndarray | str:
    """The authors' ImageNet preprocessing -> (R, R, 3) uint8, or the reason the image is dropped."""
    if min(img.size) < IMAGENET_MIN_SIDE:
        return f"side < {IMAGENET_MIN_SIDE}"
    img = _centre_crop(_resize_short(img, IMAGENET_MIN_SIDE, Image.Resampling.LANCZOS), IMAGENET_MIN_SIDE)
    if resolution != IMAGENET_MIN_SIDE:
        img = img.resize((resolution, resolution), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` in any Pillow mode as 8-bit RGB, with high bit depths scaled and transparency over white."""
    if img.mode.startswith("I") or img.mode == "F":
        grey = np.asarray(img, dtype=np.float64)  # (H, W)
        scale = 255.0 if img.mode == "F" else 255.0 / 65535.0
        grey = np.clip(np.rint(np.nan_to_num(grey) * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, TRANSPARENT_BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _decode(path: Path, transform: Callable, resolution: int) -> np.ndarray | str | Exception:
    """The transformed image, a drop reason (str) or the read error (returned, never raised)."""
    try:
        with open_input(path) as f, Image.open(f) as img:  # a file swapped for a FIFO since the listing: skipped
            img.load()
            return transform(to_rgb(img), resolution)
    except (SnganError, *READ_ERRORS) as exc:
        return exc


class FolderSource:
    """Images under `data.root` (see the module docstring), at `model.resolution`."""

    name = "folder"
    preprocessing = ("folder-v3: RGB (16-bit scaled, alpha over white), bilinear short side to resolution, "
                     "centre crop")
    transform = staticmethod(folder_transform)

    def __init__(self, cfg: DataConfig, resolution: int):
        self.root, self.resolution = Path(cfg.root), resolution
        self.tag = DATASETS[cfg.name].cache_tag(cfg)
        self.workers = min(4, os.cpu_count() or 1)
        self._listing: tuple | None = None

    def listing(self) -> tuple[tuple[str, ...], list[tuple[str, int]], str]:
        if self._listing is None:
            self._listing = list_class_tree(self.root)
        return self._listing

    def identity(self) -> str:
        return self.listing()[2]

    def fetch(self) -> tuple:
        """Nothing to download: reading the listing is all (it raises when the folder is missing or empty)."""
        return self.listing()

    def pack(self, open_writer: Callable[[int], PackWriter], progress: bool) -> PackResult:
        classes, files, _ = self.listing()
        writer = open_writer(len(files))
        result = PackResult(classes)
        empty = empty_class_folders(self.root)
        if empty:  # left out of the numbering: say so, a conditional model's labels depend on it
            shown = ", ".join(n if n.isprintable() else ascii(n) for n in empty[:5]) + \
                (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            result.notices.append(f"{len(empty)} empty class folder{'s' if len(empty) > 1 else ''} left out "
                                  f"({shown}): the {len(classes)} classes are numbered without "
                                  f"{'them' if len(empty) > 1 else 'it'}")
        bar = PassProgress(len(files), f"packing {self.tag}", progress)
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(files), DECODE_CHUNK):
                chunk = files[start:start + DECODE_CHUNK]
                outs = pool.map(lambda f: _decode(self.root / f[0], self.transform, self.resolution), chunk)
                self._collect(writer, result, chunk, list(outs))
                bar.update(len(chunk))
        bar.close()
        return result

    @staticmethod
    def _collect(writer: PackWriter, result: PackResult, chunk: list, outs: list) -> None:
        keep = [i for i, out in enumerate(outs) if isinstance(out, np.ndarray)]
        for (rel, _), out in zip(chunk, outs, strict=True):
            if isinstance(out, Exception):
                result.skipped.append(f"{rel}: {type(out).__name__}: {str(out).splitlines()[0] if str(out) else ''}")
            elif isinstance(out, str):
                result.dropped[out] = result.dropped.get(out, 0) + 1
        if keep:
            writer.add(np.stack([outs[i] for i in keep]), np.asarray([chunk[i][1] for i in keep], dtype=np.int64))


class ImageNetSource(FolderSource):
    """An ILSVRC2012 train folder (root/<wnid>/<image>.JPEG), preprocessed as the authors."""

    name = "imagenet"
    preprocessing = ("imagenet-v3: RGB (16-bit scaled, alpha over white), drop side < 256, lanczos short side 256, "
                     "centre crop 256, bilinear to resolution")
    transform = staticmethod(imagenet_transform)

    def __init__(self, cfg: DataConfig, resolution: int):
        if resolution > IMAGENET_MIN_SIDE:
            raise DataError(f"model.resolution {resolution} is larger than the 256x256 ImageNet crops")
        if not Path(cfg.root).is_dir():
            raise DataError(f"data.root '{cfg.root}' is not a folder: ILSVRC2012 cannot be downloaded "
                            f"automatically; place the train folder (one sub-folder per class, e.g. "
                            f"n01440764/*.JPEG) there")
        super().__init__(cfg, resolution)
