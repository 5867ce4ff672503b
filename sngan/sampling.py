"""Generating images from a generator: seeded latents, batched generation, and the files they go to.

Latents are drawn on the CPU from a seeded generator and then moved, so the same seed gives the same z on every
device. The generator runs in eval mode (BatchNorm uses its running statistics), as the authors' sampling code.

Every writer is deterministic: the same images give byte-identical files (PNG via PIL carries no timestamp; the
npz zip entries carry a fixed date). Writers never replace existing work unless asked to (`force`).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from sngan.config import SnganError

FOLDER_NAME = re.compile(r"^\d+(_class\d+)?\.png$")  # the files save_folder writes (and --force replaces)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip entry date, so npz files are byte-identical across runs


class SamplingError(SnganError):
    """A sampling request the model or the file system cannot satisfy, in one line."""


def latents(num: int, z_dim: int, num_classes: int, seed: int,
            classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Seeded z ~ N(0, I) of shape (num, z_dim) and, for conditional models, labels (num,).

    Args:
        num: how many latents.
        z_dim: latent size.
        num_classes: 0 for unconditional models (labels None).
        seed: the same seed gives the same latents and labels.
        classes: fixed labels to use instead of uniformly drawn ones.

    Returns:
        (z, y) on the CPU.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num, z_dim, generator=g)
    if num_classes == 0:
        return z, None
    y = classes if classes is not None else torch.randint(0, num_classes, (num,), generator=g)
    return z, y.long()


@torch.no_grad()
def generate_batches(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
                     batch_size: int = 256, progress: bool = False) -> Iterator[torch.Tensor]:
    """Images in [-1, 1], one (B, 3, R, R) float32 CPU batch at a time, from latents z (N, z_dim) in eval mode.

    Streaming keeps long exports at one batch of memory; the progress bar (counted in images) also covers whatever
    the caller does with each batch.

    Args:
        generator: the generator (its mode is restored when the iteration ends).
        z: latents on any device.
        y: labels (N,) or class weights (N, num_classes) for conditional models.
        batch_size: images per forward pass.
        progress: show a progress bar.

    Yields:
        Consecutive batches of generated images on the CPU.
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        with tqdm(total=len(z), disable=not progress, desc="sample", unit="img", dynamic_ncols=True) as bar:
            for start in range(0, len(z), batch_size):
                zb = z[start:start + batch_size].to(device)
                yb = None if y is None else y[start:start + batch_size].to(device)
                yield generator(zb, yb).float().cpu()
                bar.update(len(zb))
    finally:
        generator.train(was_training)


def generate(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
             batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """All images of `generate_batches` at once: (N, 3, R, R) float32 in [-1, 1] on the CPU.

    Args:
        generator: the generator (its mode is restored afterwards).
        z: latents on any device.
        y: labels (N,) or class weights (N, num_classes) for conditional models.
        batch_size: images per forward pass.
        progress: show a progress bar.

    Returns:
        The generated images.
    """
    return torch.cat(list(generate_batches(generator, z, y, batch_size, progress)))


def generate_uint8(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
                   batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """Like `generate`, converted batch by batch to uint8 (N, R, R, 3): a quarter of the float memory."""
    return torch.cat([to_uint8(b) for b in generate_batches(generator, z, y, batch_size, progress)])


def parse_classes(text: str, num_classes: int) -> list[int]:
    """The classes named by `--classes`: a comma-separated list ("0,3,7") or "all", checked against the model.

    Args:
        text: the option's value.
        num_classes: the model's class count (0 = unconditional: always an error).

    Returns:
        Class indices in the order given.
    """
    if text.strip().lower() == "all":
        check_class(0, num_classes)
        return list(range(num_classes))
    try:
        classes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SamplingError(f"--classes must be comma-separated class indices or 'all', got {text!r}") from None
    if not classes:
        raise SamplingError("--classes needs at least one class index (or 'all')")
    for k in classes:
        check_class(k, num_classes)
    return classes


def check_class(k: int, num_classes: int) -> None:
    """Raise SamplingError unless class `k` exists in a model with `num_classes` classes."""
    if num_classes == 0:
        raise SamplingError("this model is unconditional (model.num_classes 0): --class/--classes need a "
                            "class-conditional checkpoint")
    if not 0 <= k < num_classes:
        raise SamplingError(f"class {k} is out of range: the model has {num_classes} classes (0-{num_classes - 1})")


def check_output(path: Path, folder: bool, force: bool) -> None:
    """Refuse to replace existing work: an existing file, or a folder that holds anything, needs `force`.

    Args:
        path: the output file or folder.
        folder: whether the output is a folder.
        force: allow replacing an existing file, or writing into a non-empty folder.
    """
    if folder and path.exists() and not path.is_dir():
        raise SamplingError(f"--out '{path}' is a file; a folder export needs a folder (or use --format)")
    if not folder and path.is_dir():
        raise SamplingError(f"--out '{path}' is a folder; give a file name (.png, .npz or .gif)")
    if force:
        return
    if folder and path.is_dir() and any(path.iterdir()):
        raise SamplingError(f"folder '{path}' is not empty; choose a new folder or add --force to replace its "
                            f"sample PNGs")
    if not folder and path.exists():
        raise SamplingError(f"'{path}' exists; choose another --out or add --force to overwrite it")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N, 3, H, W) -> uint8 (N, H, W, 3), rounded as torchvision's save_image does."""
    return ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def default_nrow(num: int) -> int:
    """Images per grid row for a roughly square grid: the ceiling of sqrt(num)."""
    return max(1, int(num ** 0.5 + 0.999))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] (N, 3, H, W) as one PNG grid with 2-pixel padding.

    Args:
        images: generated images.
        path: PNG destination (folder created if needed).
        nrow: images per row; default the ceiling of sqrt(N).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or default_nrow(len(images))
    save_image(images, path, nrow=nrow, normalize=True, value_range=(-1, 1), format="PNG")
    return path


def save_folder(batches: Iterable[torch.Tensor], labels: torch.Tensor | None, folder: str | Path,
                num: int) -> list[Path]:
    """Save each image as its own PNG: `00000.png`, ... or `00000_class3.png` for conditional models.

    Earlier sample PNGs in the folder (same naming) are removed first, so the folder holds exactly this export;
    other files are left alone. Callers check with `check_output` before.

    Args:
        batches: images in [-1, 1], (B, 3, H, W) per batch (e.g. `generate_batches`), written as they come.
        labels: (num,) class labels, or None.
        folder: destination folder (created if needed).
        num: total number of images (sets the zero-padding of the names).

    Returns:
        The paths written, in index order.
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file() and FOLDER_NAME.match(old.name):
            old.unlink()
    width = max(5, len(str(num - 1)))
    paths: list[Path] = []
    for batch in batches:
        for image in to_uint8(batch).numpy():  # (H, W, 3)
            i = len(paths)
            suffix = "" if labels is None else f"_class{int(labels[i])}"
            paths.append(folder / f"{i:0{width}d}{suffix}.png")
            Image.fromarray(image).save(paths[-1], format="PNG")
    return paths


def save_npz(pixels: torch.Tensor, labels: torch.Tensor | None, path: str | Path) -> Path:
    """Save `x` (N, H, W, 3) uint8 and, for conditional models, `y` (N,) int64 in an uncompressed .npz.

    The file is written beside its destination and renamed into place, and its zip entries carry a fixed date, so
    the same images always give the same bytes. `numpy.load(path)["x"]` reads it.

    Args:
        pixels: uint8 images (N, H, W, 3), as `generate_uint8` returns them.
        labels: (N,) class labels, or None.
        path: destination (.npz).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x": pixels.numpy()}
    if labels is not None:
        arrays["y"] = labels.numpy().astype(np.int64)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for key, array in arrays.items():
                with archive.open(zipfile.ZipInfo(f"{key}.npy", ZIP_DATE), "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def grid_tensor(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """The grid as a (3, H, W) tensor in [0, 1] (for TensorBoard and reports)."""
    return make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1))


def load_generator(path: str | Path, ema: bool | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the generator stored in a checkpoint (needs nothing but the file).

    Args:
        path: checkpoint written by `sngan train`.
        ema: True = the EMA generator (error if absent), False = the raw generator, None = EMA when present.
        device: where the generator goes.

    Returns:
        (generator in eval mode, checkpoint dict).
    """
    from sngan.checkpoint import CheckpointError, load_checkpoint
    from sngan.config import ConfigError, from_dict
    from sngan.models import build_generator

    state = load_checkpoint(path)
    try:
        model_cfg = from_dict({"model": state["config"].get("model", {})}).model
    except (ConfigError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its model config is invalid: {exc}") from None
    has_ema = state.get("generator_ema") is not None
    if ema and not has_ema:
        raise CheckpointError(f"{path}: has no EMA generator (trained with train.ema_decay 0); use --no-ema")
    weights = state["generator_ema"] if (has_ema and ema is not False) else state["generator"]
    generator = build_generator(model_cfg)
    try:
        generator.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f"{path}: generator weights do not match its model config") from None
    return generator.to(device).eval(), state
