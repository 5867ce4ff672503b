"""Tiny on-disk datasets for the data tests: CIFAR-10 python batches, an STL-10 binary set, image trees.

The CIFAR-10 and STL-10 files have the exact names and layouts of the official ones (python batches pickled as
dicts of a uint8 (N, 3072) array and a label list; STL-10 binaries stored column-major with 1-based labels), so
their md5s differ from the official files' (sngan reports that as a notice). `archive` packs a written folder into
the official `.tar.gz` name and removes the folder.
"""

from __future__ import annotations

import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_batch: int = 4, protocol: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """cifar-10-batches-py/ with 5 train batches and a test batch; returns the train (images NHWC, labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)  # rows are CHW, as the real files
        targets = [int(t) for t in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": targets, "batch_label": name}, f, protocol=protocol)
        if name != "test_batch":
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels += targets
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES}, f, protocol=protocol)
    return np.concatenate(images), np.asarray(labels)


def archive(folder: Path, name: str) -> Path:
    """Pack `folder` as `<its parent>/<name>` (a .tar.gz whose members start with the folder's name), remove it."""
    out = folder.parent / name
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    shutil.rmtree(folder)
    return out


def write_stl10(root: Path, n_train: int = 6, n_unlabeled: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    """stl10_binary/ (images stored column-major as the real files); returns the images as (N, 96, 96, 3) under
    the split's name and the 0-based labels under '<split>_labels'."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", n_train), ("unlabeled", n_unlabeled), ("test", n_test)):
        hwc = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        hwc[:, :48] //= 4  # a dark top half, so orientation mistakes show
        out[split] = hwc
        hwc.transpose(0, 3, 2, 1).tofile(folder / f"{split}_X.bin")  # (N, C, W, H) on disk
        if split != "unlabeled":
            labels = rng.permutation(np.arange(n) % 10)  # 0-based, shuffled so a label/image mix-up shows
            out[f"{split}_labels"] = labels
            (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")  # 1-based on disk
    (folder / "class_names.txt").write_text("\n".join(CIFAR_CLASSES) + "\n")
    return out


def write_image(path: Path, size: tuple[int, int], colour=(200, 30, 30), split_colour=None) -> Path:
    """A PNG/JPEG of `size` (w, h); with `split_colour`, the right half has that colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    if split_colour is not None:
        img.paste(Image.new("RGB", (size[0] - size[0] // 2, size[1]), split_colour), (size[0] // 2, 0))
    img.save(path)
    return path
