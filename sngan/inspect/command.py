"""The `sngan inspect` command's plain functions: checkpoint -> Inspection -> table, JSON, spectra figure.

The discriminator is rebuilt from the checkpoint alone; layer input sizes come from forward hooks on one forward
pass at the model resolution. The empirical Lipschitz lower bound uses the first N images of the checkpoint's
dataset (its `data` section) and N images from the checkpoint's generator (EMA when present), labels drawn with
the images (real) or uniformly (generated).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sngan.errors import SnganError
from sngan.inspect.lipschitz import graph_lipschitz_bound
from sngan.inspect.summary import LayerSpectrum, bounds, gradient_norm_max, input_sizes, layer_spectra, probe_inputs
from sngan.io import check_new_output, publishing, write_text

BATCH = 64  # images per gradient pass of the Lipschitz estimate
PLOT_FORMATS = (".png", ".pdf", ".svg")


@dataclass
class Inspection:
    checkpoint: str
    step: int
    resolution: int
    num_classes: int
    layers: list[LayerSpectrum]
    bounds: dict[str, float]  # per-layer products, see sngan.inspect.summary
    lipschitz_lower: float | None = None  # max ||grad_x D|| over lipschitz_samples real + as many generated inputs
    lipschitz_samples: int = 0
    lipschitz_upper: float | None = None  # graph_lipschitz_bound: certified, from the graph as it runs; None: BN/LN
    lipschitz_worst_class: int | None = None  # the class it is attained for (projection D)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Inspection:
        return cls(**{**raw, "layers": [LayerSpectrum(**row) for row in raw["layers"]]})


def inspect_checkpoint(path: str | Path, lipschitz: int = 0, device: torch.device | str = "cpu",
                       seed: int = 0) -> Inspection:
    """Spectra, bounds and (with `lipschitz` > 0) the empirical Lipschitz lower bound of a checkpoint's D."""
    from sngan.checkpoint import open_checkpoint

    opened = open_checkpoint(path, discriminator=True, generator=lipschitz > 0, device=device)
    model, m = opened.discriminator, opened.config.model
    assert model is not None  # asked for with discriminator=True
    sizes = input_sizes(model, m.resolution, m.num_classes)  # (eval mode: no update)
    rows = layer_spectra(model, sizes)
    upper = graph_lipschitz_bound(model, sizes, probe_inputs(m.resolution, m.num_classes, device))
    lower = gradient_norm_max(model, _lipschitz_batches(opened, lipschitz, seed), device) if lipschitz else None
    return Inspection(str(path), int(opened.state["step"]), m.resolution, m.num_classes, rows, bounds(rows),
                      lower, lipschitz, upper.value, upper.worst_class)


def _lipschitz_batches(opened: Any, num: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """`num` real then `num` generated (x, y) pairs, BATCH at a time (y None when unconditional); `opened` holds
    the checkpoint's generator (EMA when present)."""
    from sngan.data import load_images, to_float
    from sngan.sample.generate import generate, latents

    cfg = opened.config
    images = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, progress=False)
    if len(images.images) < num:
        raise SnganError(f"--lipschitz {num} asks for more real images than the dataset has ({len(images.images)})")
    conditional = cfg.model.num_classes > 0
    for start in range(0, num, BATCH):
        x = torch.from_numpy(np.asarray(images.images[start:start + BATCH][:num - start])).permute(0, 3, 1, 2)
        y = torch.from_numpy(np.asarray(images.labels[start:start + x.shape[0]])) if conditional else None
        yield to_float(x, cfg.data.dequantize), y
    z, y = latents(num, cfg.model.z_dim, cfg.model.num_classes, seed)
    fakes = generate(opened.generator, z, y, BATCH)
    for start in range(0, num, BATCH):
        yield fakes[start:start + BATCH], (y[start:start + BATCH] if y is not None else None)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(ins: Inspection) -> str:
    """The command's printed report: one row per layer, then the bounds."""
    head = (f"{'layer':<24} {'shape':<18} {'input':<7} {'sigma_hat':>9} {'exact':>9} {'ratio':>7} {'conv':>9} "
            f"{'conv_ub':>9} | {'exact/sh':>8} {'conv/sh':>8}")
    lines = [f"discriminator of {ins.checkpoint} (step {ins.step})",
             "sigma_hat = u^T W v, what eval mode divides by (random/svd starts: one authors' step from the stored "
             "u; torch: the stored u, v)",
             "exact = largest singular value of W.reshape(out, -1) (float64 SVD)",
             "conv = operator norm of the convolution as it runs (input size, stride, zero padding) by Lanczos:",
             "       a certified lower bound, converged to the norm (sngan.inspect.conv_norm)",
             "conv_ub = certified upper bound: circular FFT norm on the zero-padded grid (Sedghi et al. 2019)",
             "exact/sh, conv/sh = the same for the normalised weights W / sigma_hat", head, "-" * len(head)]
    for r in ins.layers:
        size = "x".join(map(str, r.input_size)) or "-"
        conv = r.sigma_operator if r.kind == "conv" else None
        lines.append(f"{r.name:<24} {'x'.join(map(str, r.shape)):<18} {size:<7} {_fmt(r.sigma_hat):>9} "
                     f"{_fmt(r.sigma_matrix):>9} {_fmt(r.ratio):>7} {_fmt(conv):>9} "
                     f"{_fmt(r.sigma_circular_bound):>9} | "
                     f"{_fmt(r.normalised('matrix')):>8} "
                     f"{_fmt(r.normalised('operator') if conv is not None else None):>8}")
    b = ins.bounds
    if ins.lipschitz_upper is None:
        upper = "none (the D normalises with batch or layer statistics)"
    else:
        worst = "" if ins.lipschitz_worst_class is None else f" (worst class {ins.lipschitz_worst_class}: w + embed(y))"
        upper = f"{ins.lipschitz_upper:.4g}{worst}"
    lines += ["", "certified upper bound of D's Lipschitz constant in x, from the graph as it runs (conv: circular",
              "bound, avg pool 1/2, residual sums add, global sum pooling sqrt(h*w); sngan.inspect.lipschitz): "
              + upper,
              "product of per-layer norms over every layer but class embeddings (the paper's bound for a chain",
              "with 1-Lipschitz activations; residual sums and pooling are not in it, so it bounds nothing here):",
              f"  matrix norms (W.reshape(out, -1)): trained {b['matrix_trained']:.4g}, normalised "
              f"{b['matrix_normalised']:.4g}",
              f"  operator norms (conv: as it runs; dense: matrix): trained {b['operator_trained']:.4g}, "
              f"normalised {b['operator_normalised']:.4g}"]
    if ins.lipschitz_lower is not None:
        lines.append(f"empirical lower bound: max ||grad_x D(x)|| over {ins.lipschitz_samples} real + "
                     f"{ins.lipschitz_samples} generated inputs = {ins.lipschitz_lower:.4g}")
    return "\n".join(lines)


def write_json(ins: Inspection, path: str | Path) -> Path:
    return write_text(path, json.dumps(ins.to_dict(), indent=1) + "\n")


def read_json(path: str | Path) -> Inspection:
    return Inspection.from_dict(json.loads(Path(path).read_text()))


def run_label(checkpoint: str | Path) -> str:
    """A panel title for a checkpoint: its run folder's name (`runs/sn-s0/checkpoints/ckpt.pt` -> 'sn-s0')."""
    path = Path(checkpoint)
    return path.parent.parent.name if path.parent.name == "checkpoints" and path.parent.parent.name else path.stem


def plot_spectra(ins: Inspection, path: str | Path, others: list[Inspection] | tuple[()] = ()) -> Path:
    """Squared singular values over the largest, one curve per layer (the paper's Figures 3 and 9), with one
    panel per checkpoint when `others` are given (`sngan.inspect.figure`)."""
    from sngan.inspect.figure import save_spectra

    return save_spectra([(run_label(i.checkpoint), i) for i in (ins, *others)], path)


def run_inspect(ckpt: Path, lipschitz: int, plot: Path | None, json_out: Path | None, device: str,
                log: Callable[[str], None], force: bool = False, compare: list[Path] | None = None) -> Inspection:
    """What `sngan inspect` does: print the table, then write the figure and the JSON when asked (an existing file
    only with `force`, checked before the work); `compare` checkpoints become more panels of the figure."""
    from sngan.distributed import resolve_device

    if plot is not None and plot.suffix.lower() not in PLOT_FORMATS:
        raise SnganError(f"--plot must end in {', '.join(PLOT_FORMATS)}, got '{plot}'")
    for path in (plot, json_out):
        if path is not None:
            check_new_output(path, force)
    if compare and plot is None:
        raise SnganError("--compare adds panels to the spectra figure: give --plot too")
    ins = inspect_checkpoint(ckpt, lipschitz, resolve_device(device))
    log(format_table(ins))
    others = [inspect_checkpoint(c, 0, resolve_device(device)) for c in compare or []]
    for path, write in ((plot, lambda i, p: plot_spectra(i, p, others)), (json_out, write_json)):
        if path is not None:
            with publishing(path, force) as stage:
                write(ins, stage)
            log(f"wrote {path}")
    return ins
