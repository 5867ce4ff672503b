"""The spectra figure of `sngan inspect --plot`: squared singular values over the largest, one curve per layer,
one panel per checkpoint (several with `--compare`, as the paper's Figures 3 and 4 set SN beside WN and weight
clipping).

Every layer can be told apart: colours from a 20-colour qualitative map combined with four line styles (80
distinct pairs, the same layer the same look in every panel), a marker on layers with few values so a one-value
layer (a linear head) is a visible dot rather than a zero-length line, and one legend naming them all beside the
panels. The x axis is the singular value's index over the layer's count (0 = largest, 1 = smallest), so layers of
different sizes share one axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sngan.io import atomic_write

LINE_STYLES = ("-", "--", ":", "-.")
FEW_VALUES = 8  # layers with at most this many singular values get a marker on each


def layer_styles(names: list[str]) -> dict[str, dict[str, Any]]:
    """{layer: matplotlib line keywords}, a distinct (colour, line style) pair per layer, in first-seen order."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    palette = colormaps["tab20"]  # a qualitative map: a listed sequence of 20 colours
    assert isinstance(palette, ListedColormap) and isinstance(palette.colors, (list, tuple))
    colours = palette.colors
    return {name: {"color": colours[i % len(colours)], "linestyle": LINE_STYLES[i // len(colours) % 4]}
            for i, name in enumerate(names)}


def spectra_figure(panels: list[tuple[str, Any]]) -> Any:
    """A matplotlib Figure: one panel per (title, Inspection), shared y, one legend for every layer."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = list(dict.fromkeys(r.name for _, ins in panels for r in ins.layers))
    styles = layer_styles(names)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.8, 4.2), sharey=True, squeeze=False)
    for ax, (title, ins) in zip(axes[0], panels, strict=True):
        for r in ins.layers:
            n = len(r.spectrum)
            x = [i / max(n - 1, 1) for i in range(n)]
            ax.plot(x, r.spectrum, label=r.name, linewidth=1.1, marker="o" if n <= FEW_VALUES else None,
                    markersize=3.5, **styles[r.name])
        ax.set(xlabel="index / count (0 = largest)", title=f"{title}, step {ins.step}", ylim=(0, 1.04),
               xlim=(-0.03, 1.03))
    axes[0][0].set_ylabel("squared singular value / largest")
    handles, labels = [], []
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               ncol=1 + len(labels) // 28, title="layer")
    fig.tight_layout()
    return fig


def save_spectra(panels: list[tuple[str, Any]], path: str | Path) -> Path:
    """Write `spectra_figure(panels)` to `path` (.png, .pdf or .svg, from the suffix)."""
    from matplotlib import pyplot as plt

    fig = spectra_figure(panels)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=150, bbox_inches="tight"))
    finally:
        plt.close(fig)
