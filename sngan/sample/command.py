"""`sngan sample` as plain Python: choose the format, check the request against the model, generate, write.

Formats (`--format`, or from `--out`): `grid` (.png), `folder` (no extension, or an existing folder: one PNG per
image, for external FID tools; conditional models get one sub-folder per class named by the checkpoint's class
names, `cat/00012.png`, as torchvision's ImageFolder reads (`writers.class_folders`), or with `--flat`
`00012_class3.png`), `npz` (.npz: `x` and `arr_0` the same uint8 (N, H, W, 3),
`y` int64 (N,) when conditional) and, with `--interpolate`, a PNG strip plus a GIF (.png or .gif: both written).
`--seeds 0-35` gives one image per seed (`seed0035.png` in a folder), each the same whatever the other seeds;
`--truncation T` redraws latent entries with |z| > T (the truncation trick: not the paper's protocol).

Class options (conditional models only), each class given by its name (`cat`; stored in the checkpoint since
issue 30, else '0', '1', ...) or its index: `--class K` makes every image class K; `--classes cat,dog`,
`--classes 0,3,7` or `--classes all` gives `--num` images per listed class (one grid row per class), or, with
`--interpolate`, a path through the listed classes at fixed z. A name holding a comma is given by its index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sngan.config import MAX_BATCH, MAX_CLASSES, MAX_GRID
from sngan.errors import SamplingError
from sngan.io import publishing
from sngan.sample.generate import (
    MAX_SEED,
    generate,
    generate_batches,
    generate_uint8,
    latent_sizes,
    latents,
    parse_seeds,
    seed_latents,
)
from sngan.sample.interpolation import METHODS, class_path, latent_path
from sngan.sample.writers import check_output, save_folder, save_gif, save_grid, save_npz, save_strip

EXPORT_FORMATS = ("grid", "folder", "npz", "gif")
SUFFIX_FORMATS = {".png": "grid", ".npz": "npz", ".gif": "gif"}
DEFAULT_NUM = 64  # images in a grid, folder or npz
DEFAULT_PER_CLASS = 10  # images per class with --classes
DEFAULT_PATHS = 8  # interpolation paths (strip rows)
# Bounds checked before anything is generated or allocated. MAX_EXPORT is the standard FID sample count (a folder
# or npz for an external tool); a grid, strip or GIF frame is held whole in memory and kept to config.MAX_GRID
# images; batch and class bounds are the config's (`sngan.config`: one definition of each limit).
MAX_EXPORT = 50_000
MAX_FRAMES = 256  # interpolation frames
MAX_NROW = 1024  # images per grid row


@dataclass
class SampleRequest:
    """What `sngan sample` was asked for (None = not given)."""

    out: Path
    fmt: str | None = None
    num: int | None = None
    seed: int = 0
    nrow: int | None = None
    class_index: int | str | None = None  # --class: an index or a class name (resolved against the checkpoint)
    classes: str | None = None
    interpolate: int | None = None
    method: str | None = None
    end_seed: int | None = None
    batch_size: int = 256
    progress: bool = False
    force: bool = False
    seeds: str | None = None  # '0-35': one image per seed (StyleGAN style), instead of --num from --seed
    truncation: float | None = None  # redraw |z| > T (not the paper's protocol)
    flat: bool = False  # conditional folder exports: one folder, class in the name, instead of class sub-folders
    scale: int | None = None  # strip and GIF enlarged this many times (nearest neighbour); None: 1 for the strip,
    # the least that makes the GIF >= 256 px wide

    def __post_init__(self) -> None:
        """Every size the user typed, bounded before anything is generated."""
        for option, value, low, high in (("--num", self.num, 1, MAX_EXPORT), ("--batch-size", self.batch_size, 1,
                                         MAX_BATCH), ("--nrow", self.nrow, 1, MAX_NROW),
                                         ("--interpolate", self.interpolate, 2, MAX_FRAMES),
                                         ("--seed", self.seed, 0, MAX_SEED), ("--end-seed", self.end_seed, 0, MAX_SEED),
                                         ("--class", self.class_index if isinstance(self.class_index, int) else None, 0,
                                          MAX_CLASSES), ("--scale", self.scale, 1, 16)):
            if value is not None and not low <= value <= high:
                raise SamplingError(f"{option} must be between {low} and {high:,}, got {value:,}")
        if self.truncation is not None and not self.truncation > 0:
            raise SamplingError(f"--truncation must be > 0, got {self.truncation}")


def check_count(count: int, limit: int, what: str) -> None:
    """Raise SamplingError when `count` images exceed `limit`."""
    if count > limit:
        raise SamplingError(f"{what} would hold {count:,} images, more than the limit of {limit:,}: lower --num "
                            f"(or --classes / --interpolate)")


def parse_classes(text: str, names: list[str]) -> list[int]:
    """The classes named by `--classes`: a comma-separated list of class names or indices ("cat,dog", "0,3,7") or
    "all", checked against the model.

    Args:
        text: the option's value.
        names: the model's class names in label order ([] = unconditional: always an error).

    Returns:
        Class indices in the order given.
    """
    if text.strip().lower() == "all":
        check_class(0, len(names))
        return list(range(len(names)))
    classes = [class_index(part.strip(), names, "--classes") for part in text.split(",") if part.strip()]
    if not classes:
        raise SamplingError("--classes needs at least one class name or index (or 'all')")
    return classes


def class_index(text: str | int, names: list[str], option: str = "--class") -> int:
    """The index of the class `text` names: a class name of the checkpoint (exactly, else ignoring case when that
    names one class) or an index 0..K-1. A name is looked up first, so a class named '3' is that class."""
    check_class(0, len(names))
    text = str(text)
    if text in names:
        return names.index(text)
    folded = [k for k, name in enumerate(names) if name.casefold() == text.casefold()]
    if len(folded) == 1:
        return folded[0]
    try:
        k = int(text)
    except ValueError:
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} classes)" if len(names) > 10 else "")
        raise SamplingError(f"{option}: no class named {text[:100]!r}; the model's classes are {shown} (or give "
                            f"an index 0-{len(names) - 1})") from None
    check_class(k, len(names))
    return k


def check_class(k: int, num_classes: int) -> None:
    """Raise SamplingError unless class `k` exists in a model with `num_classes` classes."""
    if num_classes == 0:
        raise SamplingError("this model is unconditional (model.num_classes 0): --class/--classes need a "
                            "class-conditional checkpoint")
    if not 0 <= k < num_classes:
        raise SamplingError(f"class {k} is out of range: the model has {num_classes} classes (0-{num_classes - 1})")


def output_format(out: Path, fmt: str | None) -> str:
    """The format named by `fmt`, else the one `out` implies (existing folder or no extension = folder).

    Args:
        out: the output path.
        fmt: grid, folder, npz, gif, or None.

    Returns:
        One of EXPORT_FORMATS.
    """
    if fmt is not None:
        if fmt not in EXPORT_FORMATS:
            raise SamplingError(f"--format must be one of {'|'.join(EXPORT_FORMATS)}, got {fmt!r}")
        return fmt
    if out.is_dir() or out.suffix == "":
        return "folder"
    if out.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[out.suffix.lower()]
    raise SamplingError(f"cannot tell the format of --out '{out}': use .png (grid), .npz, .gif (interpolation), "
                        f"a name without extension (folder of PNGs), or --format")


def export(generator: nn.Module, request: SampleRequest, class_names: list[str] | None = None) -> list[Path]:
    """Generate what `request` asks of `generator` and write it.

    Args:
        generator: a generator with `z_dim` and `num_classes` attributes (see `load_generator`).
        request: the options.
        class_names: the checkpoint's class names in label order (`sngan.checkpoint.class_names`); None = '0', '1'...

    Returns:
        The files written (for a folder, every PNG in index order).
    """
    fmt = output_format(request.out, request.fmt)
    if request.class_index is not None and request.classes is not None:
        raise SamplingError("--class and --classes exclude each other: --class K for one class, --classes for "
                            "several")
    num_classes = latent_sizes(generator)[1]
    names = [str(k) for k in range(num_classes)] if class_names is None else list(class_names)
    if len(names) != num_classes:
        raise SamplingError(f"{len(names)} class names for a model of {num_classes} classes")
    label = None if request.class_index is None else class_index(request.class_index, names)
    classes = parse_classes(request.classes, names) if request.classes is not None else None
    if request.interpolate is not None or fmt == "gif":
        return _interpolation(generator, request, fmt, label, classes)
    if request.method is not None or request.end_seed is not None:
        raise SamplingError("--interp and --end-seed apply only with --interpolate STEPS")
    return _samples(generator, request, fmt, label, classes, names)


def _samples(generator: nn.Module, request: SampleRequest, fmt: str, label: int | None, classes: list[int] | None,
             names: list[str]) -> list[Path]:
    """`label`: the class of every image (--class, resolved), or None."""
    nrow: int | None
    labels: torch.Tensor | None
    seeds: list[int] | None = None
    if classes is not None:
        if request.seeds is not None:
            raise SamplingError("--seeds does not apply with --classes: use --seed and --num per class")
        if request.nrow is not None:
            raise SamplingError("--nrow does not apply with --classes: the grid has one row per class, --num "
                                "images each")
        per_class = request.num or DEFAULT_PER_CLASS
        num, nrow = len(classes) * per_class, per_class
        check_count(num, MAX_EXPORT, "the export")
        labels = torch.tensor(classes).repeat_interleave(per_class)  # (len(classes) * per_class,)
    else:
        seeds = None if request.seeds is None else parse_seeds(request.seeds)
        if seeds is not None and request.num is not None:
            raise SamplingError("--seeds and --num exclude each other: --seeds gives one image per seed")
        num, nrow = len(seeds) if seeds else request.num or DEFAULT_NUM, request.nrow
        check_count(num, MAX_EXPORT, "the export")
        labels = None if label is None else torch.full((num,), label)
    if fmt == "grid":
        check_count(num, MAX_GRID, "the grid")
    check_output(request.out, fmt == "folder", request.force)
    z_dim, num_classes = latent_sizes(generator)
    if seeds is not None:
        z, y = seed_latents(seeds, z_dim, num_classes, labels, request.truncation)
    else:
        z, y = latents(num, z_dim, num_classes, request.seed, labels, request.truncation)
    file_names = None if seeds is None else [f"seed{s:04d}" for s in seeds]
    with publishing(request.out, request.force) as stage:  # the old export stays until the new one is whole
        if fmt == "grid":
            save_grid(generate(generator, z, y, request.batch_size, request.progress), stage, nrow)
        elif fmt == "npz":
            save_npz(generate_uint8(generator, z, y, request.batch_size, request.progress), y, stage)
        else:
            batches = generate_batches(generator, z, y, request.batch_size, request.progress)
            written = save_folder(batches, y, stage, num, request.flat, file_names, names)
            paths = [request.out / p.relative_to(stage) for p in written]
    return paths if fmt == "folder" else [request.out]


def _interpolation(generator: nn.Module, request: SampleRequest, fmt: str, label: int | None,
                   classes: list[int] | None) -> list[Path]:
    steps = request.interpolate
    if steps is None:
        raise SamplingError("a GIF shows an interpolation: add --interpolate STEPS")
    if fmt not in ("grid", "gif"):
        raise SamplingError("--interpolate writes a PNG strip and a GIF: give --out a .png or .gif name")
    strip_path, gif_path = request.out.with_suffix(".png"), request.out.with_suffix(".gif")
    for path in (strip_path, gif_path):
        check_output(path, False, request.force)
    rows = request.num or DEFAULT_PATHS
    check_count(rows * steps, MAX_GRID, "the interpolation strip")
    y: torch.Tensor | None
    if classes is not None:
        z, y = _class_interpolation(generator, request, classes, rows, steps)
    else:
        z, y = _latent_interpolation(generator, request, label, rows, steps)
    images = generate(generator, z, y, request.batch_size, request.progress)  # (rows * steps, 3, H, W)
    with publishing(strip_path, request.force) as strip, publishing(gif_path, request.force) as gif:
        save_strip(images, steps, strip, request.scale)
        save_gif(images, steps, gif, request.nrow, request.scale)
    return [strip_path, gif_path]


def _class_interpolation(generator: nn.Module, request: SampleRequest, classes: list[int], rows: int,
                         steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed z per row, class weights moving through `classes` (the authors' class morphing)."""
    if len(classes) < 2:
        raise SamplingError("class interpolation needs at least two classes in --classes (e.g. --classes 0,1)")
    if request.method is not None or request.end_seed is not None:
        raise SamplingError("--interp and --end-seed apply to latent interpolation; class interpolation keeps z "
                            "fixed")
    z_dim, num_classes = latent_sizes(generator)
    z, _ = latents(rows, z_dim, 0, request.seed)
    weights = class_path(classes, steps, num_classes)  # (steps, K)
    return z.repeat_interleave(steps, dim=0), weights.repeat(rows, 1)


def _latent_interpolation(generator: nn.Module, request: SampleRequest, label: int | None, rows: int,
                          steps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Row r goes from latent r of `--seed` to latent r of `--end-seed` (default seed + 1), class `label` held
    fixed (or drawn per row when None)."""
    method = request.method or "slerp"
    if method not in METHODS:
        raise SamplingError(f"--interp must be one of {'|'.join(METHODS)}, got {method!r}")
    fixed = None if label is None else torch.full((rows,), label)
    z_dim, num_classes = latent_sizes(generator)
    z_start, y = latents(rows, z_dim, num_classes, request.seed, fixed)
    end_seed = request.seed + 1 if request.end_seed is None else request.end_seed
    z_end, _ = latents(rows, z_dim, 0, end_seed)
    z = latent_path(z_start, z_end, steps, method)  # (rows * steps, z_dim)
    return z, None if y is None else y.repeat_interleave(steps)
