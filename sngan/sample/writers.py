"""Where generated images go: PNG grids and strips, animated GIFs, folders of PNGs, and npz arrays.

Every writer goes through `sngan.io.atomic_write` and is deterministic: the same images give byte-identical files
(PNG via PIL carries no timestamp; the npz zip entries carry a fixed date). `check_output` refuses to replace
existing work unless asked to (`force`).

Interpolation layout (strip and GIF): one row per path, one column per step. The strip PNG is that grid; GIF frame
s shows column s of every row as a grid, and the animation plays forward then backward.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

from sngan.errors import SamplingError
from sngan.io import atomic_write, check_can_create, export_foreign, finish_export, refuse_special, write_staged

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")  # characters a class folder name never holds
MAX_FOLDER_NAME = 64  # characters of a class folder name (before any index prefix)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip entry date, so npz files are byte-identical across runs
FRAME_MS = 80  # GIF frame duration in milliseconds
MIN_WIDTH = 256  # px: without --scale, a GIF is enlarged (whole pixels) to at least this width
MAX_SCALE = 16  # the largest enlargement (`--scale`'s bound)
GRID_PADDING = 2  # px of black around and between a grid's images (torchvision's make_grid default)


def check_output(path: Path, folder: bool, force: bool) -> None:
    """Refuse to replace existing work: an existing file, or a folder that holds anything, needs `force`.

    Args:
        path: the output file or folder.
        folder: whether the output is a folder.
        force: allow replacing an existing file, or writing into a non-empty folder.
    """
    refuse_special(path)
    if folder and path.exists() and not path.is_dir():
        raise SamplingError(f"--out '{path}' is a file; a folder export needs a folder (or use --format)")
    if not folder and path.is_dir():
        raise SamplingError(f"--out '{path}' is a folder; give a file name (.png, .npz or .gif)")
    check_can_create(path / "00000.png" if folder else path)
    if force:
        foreign = export_foreign(path) if folder and path.is_dir() and not path.is_symlink() else []
        if foreign:  # --force swaps the whole folder (sngan.io.publishing): only an earlier export may go
            raise SamplingError(f"folder '{path}' holds '{foreign[0]}', which its manifest.json does not list as "
                                f"written by sngan sample (or whose content changed since): --force replaces an "
                                f"unchanged earlier export only; choose a new folder")
        return
    if folder and path.is_dir() and any(path.iterdir()):
        raise SamplingError(f"folder '{path}' is not empty; choose a new folder or add --force to replace its "
                            f"sample PNGs")
    if not folder and path.exists():
        raise SamplingError(f"'{path}' exists; choose another --out or add --force to overwrite it")


def to_uint8(images: torch.Tensor, quantise: str = "round") -> torch.Tensor:
    """[-1, 1] float (N, 3, H, W) -> uint8 (N, H, W, 3): `round` to the nearest level as torchvision's save_image
    (exports, and eval's standard and quick protocols), or `truncate` as the authors' `gen_images`,
    `np.asarray(np.clip(x * 127.5 + 127.5, 0, 255), dtype=np.uint8)`, in the same float32 operations (eval's paper
    protocol; `sngan.evaluation.protocols.QUANTISE`)."""
    if quantise == "truncate":
        return torch.clamp(images * 127.5 + 127.5, 0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def default_nrow(num: int) -> int:
    """Images per grid row for a roughly square grid: the ceiling of sqrt(num)."""
    return max(1, int(num ** 0.5 + 0.999))


def grid_tensor(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """Images in [-1, 1] (N, 3, H, W) as one (3, H', W') grid in [0, 1]: torchvision's `make_grid(normalize=True,
    value_range=(-1, 1))` layout (`nrow` per row, `GRID_PADDING` px of black around each image; one image alone
    unpadded), built here so that a training run does not import torchvision, whose import loads torch._dynamo
    (about a second at every start)."""
    x = (images.clamp(-1, 1) + 1) / 2  # [-1, 1] -> [0, 1], as make_grid's value_range normalisation
    if len(x) == 1:
        return x[0]
    n, channels, h, w = x.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    pad = GRID_PADDING
    grid = x.new_zeros((channels, rows * (h + pad) + pad, cols * (w + pad) + pad))
    for k in range(n):
        top, left = (k // cols) * (h + pad) + pad, (k % cols) * (w + pad) + pad
        grid[:, top:top + h, left:left + w] = x[k]
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] (N, 3, H, W) as one PNG grid with 2-pixel padding.

    Args:
        images: generated images.
        path: PNG destination (folder created if needed).
        nrow: images per row; default the ceiling of sqrt(N).

    Returns:
        The path written.
    """
    return atomic_write(path, grid_writer(images, nrow))


def grid_writer(images: torch.Tensor, nrow: int | None = None) -> Callable[[IO[bytes]], None]:
    """What fills a PNG grid file with `images` (`save_grid`'s layout), for an atomic write by path or through a
    folder handle."""
    nrow = nrow or default_nrow(len(images))
    return lambda fh: _to_pil(grid_tensor(images, nrow)).save(fh, format="PNG")


def class_folders(class_names: list[str]) -> list[str]:
    """A folder name per class, in label order, safe on every file system and sorted as the labels are.

    A name keeps its letters, digits and `._+-` (any other run of characters becomes `_`, leading dots go, at most
    MAX_FOLDER_NAME characters); a number is zero-padded to 5 digits (`00003`, the names of checkpoints without
    class names). torchvision's ImageFolder numbers classes by sorted folder name, so when the cleaned names do not
    sort in label order (or two clean to the same name) every folder is prefixed with its index (`00002_cat`), and
    ImageFolder's labels are then always the model's.
    """
    clean = []
    for k, name in enumerate(class_names):
        safe = _UNSAFE.sub("_", name).lstrip(".")[:MAX_FOLDER_NAME] or str(k)
        clean.append(safe.zfill(5) if safe.isdigit() else safe)
    if clean != sorted(set(clean)):
        clean = [f"{k:05d}_{name}" for k, name in enumerate(clean)]
    return clean


def save_folder(batches: Iterable[torch.Tensor], labels: torch.Tensor | None, folder: str | Path,
                num: int, flat: bool = False, names: list[str] | None = None,
                class_names: list[str] | None = None) -> list[Path]:
    """Save each image as its own PNG: `00000.png`, ...; for conditional models one sub-folder per class named by
    `class_folders` (`cat/00012.png`; the layout torchvision's ImageFolder reads), or with `flat`
    `00012_class3.png`. The manifest then lists each class's index, name and folder.

    `sngan sample` writes into a new staging folder and swaps it in whole (`sngan.io.publishing`), so each PNG is
    written without a sync of its own and the folder is made durable once at the end, `manifest.json` (every file's
    name, size and sha256) last (`sngan.io.finish_export`). Callers check with `check_output` before.

    Args:
        batches: images in [-1, 1], (B, 3, H, W) per batch (e.g. `generate_batches`), written as they come.
        labels: (num,) class labels, or None.
        folder: destination folder (created if needed).
        num: total number of images (sets the zero-padding of the names).
        flat: conditional images side by side with the class in the name, not in sub-folders.
        names: file names without '.png' (e.g. `seed0035` for --seeds) instead of the index.
        class_names: the model's class names in label order (None: '0', '1', ...), for the class folders.

    Returns:
        The paths written, in index order.
    """
    folder = Path(folder)
    classes = None
    if labels is not None:
        class_names = class_names if class_names is not None else [str(k) for k in range(int(labels.max()) + 1)]
        classes = [{"index": k, "name": n, "folder": f} for k, (n, f) in
                   enumerate(zip(class_names, class_folders(class_names), strict=True))]
    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(num - 1)))
    paths: list[Path] = []
    for batch in batches:
        for image in to_uint8(batch).numpy():  # (H, W, 3)
            i = len(paths)
            name = names[i] if names is not None else f"{i:0{width}d}"
            if labels is None:
                paths.append(folder / f"{name}.png")
            elif flat:
                paths.append(folder / f"{name}_class{int(labels[i])}.png")
            else:
                paths.append(folder / classes[int(labels[i])]["folder"] / f"{name}.png")
                paths[-1].parent.mkdir(exist_ok=True)
            write_staged(paths[-1], lambda fh, image=image: Image.fromarray(image).save(fh, format="PNG"))
    if classes and not flat:  # durable once, manifest.json last (with the class folders)
        finish_export(folder, paths, extra={"classes": classes})
    else:
        finish_export(folder, paths)
    return paths


def save_npz(pixels: torch.Tensor, labels: torch.Tensor | None, path: str | Path) -> Path:
    """Save `x` (N, H, W, 3) uint8, the same images again as `arr_0` (the key OpenAI's guided-diffusion evaluator
    and most FID tools read; it doubles the file) and, for conditional models, `y` (N,) int64, uncompressed.

    The file is written atomically (`sngan.io.atomic_write`) and its zip entries carry a fixed date, so
    the same images always give the same bytes. `numpy.load(path)["x"]` (or `["arr_0"]`) reads it.

    Args:
        pixels: uint8 images (N, H, W, 3), as `generate_uint8` returns them.
        labels: (N,) class labels, or None.
        path: destination (.npz).

    Returns:
        The path written.
    """
    arrays = {"x": pixels.numpy(), "arr_0": pixels.numpy()}
    if labels is not None:
        arrays["y"] = labels.numpy().astype(np.int64)

    def write(out: IO[bytes]) -> None:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for key, array in arrays.items():
                with archive.open(zipfile.ZipInfo(f"{key}.npy", ZIP_DATE), "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)

    return atomic_write(path, write)


def auto_scale(width: int) -> int:
    """The smallest whole enlargement that makes `width` pixels at least MIN_WIDTH (at most MAX_SCALE): 32 px cells
    are too small to see in a viewer, and nearest-neighbour enlargement keeps every pixel."""
    return min(MAX_SCALE, max(1, -(-MIN_WIDTH // width)))


def save_strip(images: torch.Tensor, steps: int, path: str | Path, scale: int | None = None) -> Path:
    """Write the paths as one PNG: one row per path, `steps` columns.

    Args:
        images: (R * steps, 3, H, W) in [-1, 1], path-major as `latent_path` orders them.
        steps: points per path.
        path: PNG destination (its folder is created).
        scale: enlarge by this whole factor (nearest neighbour: every pixel becomes a scale x scale block); None =
            1 (a strip is opened in an image viewer that zooms; its pixels stay the generator's).

    Returns:
        The path written.
    """
    return atomic_write(path, lambda fh: _to_pil(grid_tensor(images, nrow=steps), scale or 1).save(fh, format="PNG"))


def save_gif(images: torch.Tensor, steps: int, path: str | Path, nrow: int | None = None,
             scale: int | None = None) -> Path:
    """Write the paths as an animated GIF: frame s shows step s of every path as a grid; plays forward then back.

    Args:
        images: (R * steps, 3, H, W) in [-1, 1], path-major.
        steps: points per path.
        path: GIF destination (its folder is created).
        nrow: paths per frame row (default about sqrt(R)).
        scale: enlarge every frame by this whole factor (nearest neighbour); None = `auto_scale` (browsers and
            chat clients show a GIF at its own size: 32 px cells are too small there).

    Returns:
        The path written.
    """
    paths = images.reshape(-1, steps, *images.shape[1:])  # (R, steps, 3, H, W)
    nrow = nrow or default_nrow(len(paths))
    grids = [grid_tensor(paths[:, s], nrow) for s in range(steps)]  # (3, H, W) each
    frames = [_to_pil(grid, scale or auto_scale(grid.shape[-1])) for grid in grids]
    frames += frames[-2:0:-1]  # back to the start, so the loop has no jump
    def write(fh: Any) -> None:
        try:
            frames[0].save(fh, format="GIF", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0)
        except ValueError as exc:  # Pillow reports a failed allocation while quantizing frames this way
            if "quantiz" not in str(exc):
                raise
            raise MemoryError(f"the GIF writer ran out of memory quantizing {len(frames)} frames of "
                              f"{frames[0].width}x{frames[0].height}: lower --num, --interpolate or --scale") from None

    return atomic_write(path, write)


def _to_pil(grid: torch.Tensor, scale: int = 1) -> Image.Image:
    """(3, H, W) in [0, 1] -> RGB image, rounded as torchvision's save_image, enlarged `scale` times."""
    image = Image.fromarray(grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    return image if scale == 1 else image.resize((image.width * scale, image.height * scale), Image.NEAREST)
