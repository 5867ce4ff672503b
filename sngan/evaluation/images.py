"""Images to score that no checkpoint made (`sngan eval --images PATH [--stats FILE | --ref PATH]`), as pytorch-fid.

A PATH is
- a folder, read recursively: every file Pillow knows by its extension (hidden entries skipped), in sorted order
  of the relative path, or, for an export of `sngan sample` (a `manifest.json` listing its files), in the
  manifest's order, which is the latents' order, so IS splits match the checkpoint's evaluation; each image goes
  through `sngan.data.files.to_rgb` (16-bit scaled, transparency over white). All images must have one size (the
  Inception's resize is the same for all, as for generated images);
- an `.npz` holding `arr_0` (OpenAI's evaluator) or `x` (N, H, W, 3) uint8, read member by member in batches, so
  a large file never sits in memory whole; its header is checked before anything is read.

Sizes are bounded before allocation: at most `MAX_IMAGES` images with sides of at most `MAX_SIDE` pixels.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from sngan.config import MAX_IMAGES
from sngan.data.files import READ_ERRORS, to_rgb
from sngan.errors import MetricError, SnganError
from sngan.io import MAX_MANIFEST_BYTES, file_kind, open_input, open_regular

MAX_SIDE = 2048
NPZ_KEYS = ("arr_0", "x")


def _pillow_extensions() -> tuple[str, ...]:
    Image.init()
    return tuple(sorted(Image.registered_extensions()))


@dataclass
class ImageInput:
    """A folder or npz of uint8 RGB images: where, how many, their size, and how to read them in order."""

    path: Path
    kind: str  # 'folder' or 'npz'
    count: int
    side: tuple[int, int]  # (H, W)
    files: list[Path] | None = None  # folder: the images in order
    key: str | None = None  # npz: the array's name

    def describe(self) -> str:
        return f"{self.path} ({self.kind}, {self.count} images {self.side[0]}x{self.side[1]})"

    def labels(self) -> np.ndarray:
        """(count,) int64 classes: a folder's images in sub-folders are labelled by the first sub-folder's name
        (sorted names give 0..K-1, loose images at the top are one more class); an npz is one class."""
        if self.kind == "npz":
            return np.zeros(self.count, np.int64)
        tops = [p.relative_to(self.path).parts[0] if len(p.relative_to(self.path).parts) > 1 else "" for p in
                self.files or []]
        names = {name: k for k, name in enumerate(sorted(set(tops)))}
        return np.asarray([names[t] for t in tops], np.int64)

    def selected_batches(self, keep: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        """The images whose `keep` (count,) is True, in file order, as uint8 (B, H, W, 3) batches."""
        if self.kind == "folder":
            assert self.files is not None  # a folder input lists its files
            chosen = np.flatnonzero(keep)
            for start in range(0, len(chosen), batch_size):
                yield np.stack([self._decode(self.files[i]) for i in chosen[start:start + batch_size]])
            return
        pending, start = [], 0
        for batch in self.batches(self.count, batch_size):
            pending += list(batch[keep[start:start + len(batch)]])
            start += len(batch)
            while len(pending) >= batch_size:
                yield np.stack(pending[:batch_size])
                pending = pending[batch_size:]
        if pending:
            yield np.stack(pending)

    def batches(self, num: int, batch_size: int) -> Iterator[np.ndarray]:
        """The first `num` images as consecutive uint8 (B, H, W, 3) batches."""
        if self.kind == "npz":
            yield from self._npz_batches(num, batch_size)
            return
        assert self.files is not None  # a folder input lists its files
        for start in range(0, num, batch_size):
            yield np.stack([self._decode(f) for f in self.files[start:min(start + batch_size, num)]])

    def _decode(self, path: Path) -> np.ndarray:
        try:
            with open_input(path) as f, Image.open(f) as img:
                if (img.height, img.width) != self.side:
                    raise MetricError(_odd_size(self.path, self.files or []))
                img.load()
                return np.asarray(to_rgb(img), dtype=np.uint8)
        except READ_ERRORS as exc:
            raise MetricError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None

    def _npz_batches(self, num: int, batch_size: int) -> Iterator[np.ndarray]:
        per_image = self.side[0] * self.side[1] * 3
        with open_input(self.path) as f, zipfile.ZipFile(f) as archive, archive.open(f"{self.key}.npy") as member:
            _npy_header(member, self.path)
            for start in range(0, num, batch_size):
                n = min(batch_size, num - start)
                data = member.read(n * per_image)
                if len(data) != n * per_image:
                    raise MetricError(f"{self.path}: '{self.key}' is truncated")
                yield np.frombuffer(data, np.uint8).reshape(n, *self.side, 3)


def _npy_header(member: IO[bytes], path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from an .npy stream, which is left at the first data byte."""
    try:
        version = np.lib.format.read_magic(member)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read(member)
    except ValueError as exc:
        raise MetricError(f"{path}: not a readable .npy member ({exc})") from None


def _image_side(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header (a regular file only: never blocks on a FIFO)."""
    try:
        with open_input(path) as f, Image.open(f) as img:
            return img.height, img.width
    except READ_ERRORS as exc:
        raise MetricError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None


def _odd_size(folder: Path, files: list[Path]) -> str:
    """The line for a folder whose images differ in size: the most common size, and the first file of another.
    Only on this error path is every header read (the sizes are not known before)."""
    sides = [_image_side(f) for f in files]
    common = max(set(sides), key=sides.count)
    odd = next(i for i, side in enumerate(sides) if side != common)
    n_odd = sum(side != common for side in sides)
    return (f"{files[odd]}: {sides[odd][0]}x{sides[odd][1]}, but {len(files) - n_odd} of the {len(files)} images "
            f"under {folder} are {common[0]}x{common[1]} ({n_odd} are not); resize them to one size first")


def _check_count_side(path: Path, count: int, side: tuple[int, int]) -> None:
    if count < 2:
        raise MetricError(f"{path} holds {count} image(s); scoring needs at least 2")
    if count > MAX_IMAGES or max(side) > MAX_SIDE:
        raise MetricError(f"{path}: {count} images of {side[0]}x{side[1]}; at most {MAX_IMAGES} images with sides "
                          f"of at most {MAX_SIDE} are scored")


def _open_npz(path: Path) -> ImageInput:
    try:
        with open_input(path) as f, zipfile.ZipFile(f) as archive:
            names = {n.removesuffix(".npy") for n in archive.namelist()}
            key = next((k for k in NPZ_KEYS if k in names), None)
            if key is None:
                hint = "; a statistics file (mu, sigma) goes to --stats" if {"mu", "sigma"} <= names else ""
                raise MetricError(f"{path}: no image array 'arr_0' or 'x' (has {', '.join(sorted(names)) or 'none'})"
                                  f"{hint}")
            with archive.open(f"{key}.npy") as member:
                shape, fortran, dtype = _npy_header(member, path)
    except (OSError, zipfile.BadZipFile, EOFError):
        raise MetricError(f"{path}: cannot read it as an .npz file (truncated, corrupt or another format)") from None
    if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran:
        raise MetricError(f"{path}: '{key}' must be uint8 (N, H, W, 3) in C order, got {dtype} {shape}"
                          + (" (Fortran order)" if fortran else ""))
    _check_count_side(path, shape[0], shape[1:3])
    return ImageInput(path, "npz", shape[0], (shape[1], shape[2]), key=key)


def _listed_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """An export's files in its manifest's order; else every image file under `folder` in sorted path order."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            names = [Path(str(e["file"])) for e in json.loads(open_regular(manifest, MAX_MANIFEST_BYTES))["files"]]
        except (OSError, ValueError, KeyError, TypeError, RecursionError, SnganError):
            names = []
        # a hand-edited manifest never names files outside its folder
        listed = [folder / n for n in names] if all(not n.is_absolute() and ".." not in n.parts for n in names) else []
        if listed and all(p.is_file() and p.suffix.lower() in extensions for p in listed):
            return listed
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in extensions]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _open_image_folder(path: Path) -> ImageInput:
    extensions = _pillow_extensions()
    files = _listed_files(path, extensions)
    if not files:
        raise MetricError(f"{path}: no image files found in it or its sub-folders")
    side = _image_side(files[0])
    _check_count_side(path, len(files), side)
    return ImageInput(path, "folder", len(files), side, files=files)


def open_images(path: str | Path, option: str = "--images") -> ImageInput:
    """The images at `path` (a folder or an .npz), checked and counted without decoding them all."""
    path = Path(path)
    if path.is_dir():
        return _open_image_folder(path)
    if path.is_file():
        return _open_npz(path)
    if path.exists():
        raise MetricError(f"{option} '{path}' is {file_kind(os.stat(path).st_mode)}, not a folder of images or an "
                          f".npz file")
    raise MetricError(f"{option} '{path}' does not exist (give a folder of images or an .npz with arr_0 or x)")
