"""Charts drawn with matplotlib (Agg backend, no display needed), returned as Pillow images or written as PNGs.

`line_chart` draws the report's curves; `figure_image` turns any matplotlib figure into an RGB image of an exact
pixel size, so `sngan.report.page` can compose charts and sample grids with Pillow. The study figures
(`sngan.study.figures`) use the same colours.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402
from PIL import Image  # noqa: E402

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DPI = 100
MAX_LEGEND = 6  # a chart with more series draws no legend (its title says what they are)
MAX_MARKERS = 30  # dots on the points only where they stay readable

Series = dict[str, list[tuple[float, float]]]  # name -> [(x, y), ...]


def figure_image(fig: Figure) -> Image.Image:
    """Render `fig` and close it; an RGB image of the figure's size in pixels."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # pyplot's figures, under the Agg backend chosen above
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4)
    plt.close(fig)
    return Image.fromarray(rgba[:, :, :3].copy())


def line_chart(series: Series, title: str, size: tuple[int, int] = (640, 260), x_label: str = "step") -> Image.Image:
    """`line_figure` rendered as an RGB image of `size`."""
    return figure_image(line_figure(series, title, size, x_label))


def plain_ticks(ax: plt.Axes) -> None:
    """Tick labels that carry their whole value: no offset or power-of-ten text above the axis, which would overlap
    the title (1.00001 and 1.00002 read as such, not as '+1' and 1e-5, 2e-5)."""
    for axis in (ax.xaxis, ax.yaxis):
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        axis.set_major_formatter(formatter)


def line_figure(series: Series, title: str, size: tuple[int, int] = (640, 260), x_label: str = "step") -> Figure:
    """A chart of one or more (x, y) series with a title, grid and legend.

    Args:
        series: name -> points (non-finite values are skipped); a single point is drawn as a dot.
        title: text above the chart.
        size: (width, height) in pixels of the returned image.
        x_label: text under the x axis.

    Returns:
        The figure (`size` pixels at DPI).
    """
    fig, ax = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    draw_lines(ax, series, title, x_label)
    fig.tight_layout(pad=0.4)
    return fig


def draw_lines(ax: plt.Axes, series: Series, title: str, x_label: str = "step") -> None:
    """`line_figure`'s chart drawn into `ax` (the vector report draws every chart into one figure)."""
    plain_ticks(ax)
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_xlabel(x_label, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    drawn = 0
    for i, (name, pts) in enumerate(series.items()):
        pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        marker = "o" if len(pts) <= MAX_MARKERS else None
        ax.plot(xs, ys, color=COLORS[i % len(COLORS)], linewidth=1.5 if len(pts) > 1 else 0, marker=marker,
                markersize=3, label=name)
        drawn += 1
    if 0 < drawn <= MAX_LEGEND:
        ax.legend(fontsize=7, loc="best", frameon=False)
    if not drawn:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#444444")


def heatmap_figure(series: Series, title: str, width: int = 640) -> Figure:
    """Many series (e.g. `sn_ratio/<layer>`) as a labelled heatmap: one row per series, named on the y axis, one
    column per step, the value in colour (colour bar beside); a step a series was not logged at stays blank."""
    fig, ax = plt.subplots(figsize=(width / DPI, (60 + 14 * len(series)) / DPI), dpi=DPI)
    draw_heatmap(ax, series, title)
    fig.tight_layout(pad=0.4)
    return fig


def draw_heatmap(ax: plt.Axes, series: Series, title: str) -> None:
    """`heatmap_figure`'s chart drawn into `ax`, its colour bar beside it."""
    names = list(series)
    steps = sorted({x for pts in series.values() for x, _ in pts})
    column = {x: j for j, x in enumerate(steps)}
    grid = np.full((len(names), len(steps)), np.nan)
    for i, name in enumerate(names):
        for x, y in series[name]:
            grid[i, column[x]] = y if math.isfinite(y) else np.nan
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_yticks(range(len(names)), [n.split("/", 1)[-1] for n in names], fontsize=7)
    ticks: np.ndarray | list[int] = []  # at most 8 step columns, evenly spread
    if steps:
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int))
    ax.set_xticks(ticks, [f"{steps[j]:g}" for j in ticks], fontsize=7)
    ax.set_xlabel("step", fontsize=8)
    ax.figure.colorbar(image, ax=ax, pad=0.01).ax.tick_params(labelsize=7)
