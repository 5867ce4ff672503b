"""The report as one matplotlib figure, for `sngan report --out report.pdf` or `.svg`: the same header, charts
and newest sample grid as the PNG, with the charts as vector graphics (text stays text) for papers; the sample
grid is embedded as the image it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image

from sngan.report.charts import Series, draw_heatmap, draw_lines

Panel = tuple[str, Series, str]  # ("lines" | "heatmap", series, title)


def report_figure(title: tuple[str, str], panels: list[Panel], grid: tuple[int, Path] | None) -> Figure:
    """Header on top, charts stacked on the left, the sample grid (step, path) on the right."""
    heights = [max(2.4, 0.6 + 0.14 * len(series)) if kind == "heatmap" else 2.4 for kind, series, _ in panels]
    fig = plt.figure(figsize=(13, 1.0 + sum(heights)))
    layout = fig.add_gridspec(len(panels), 2, height_ratios=heights, width_ratios=(1.2, 1), left=0.07, right=0.98,
                              top=1 - 0.9 / (1.0 + sum(heights)), bottom=0.04, hspace=0.55, wspace=0.12)
    fig.text(0.01, 0.995, f"{title[0]}\n{title[1]}", va="top", fontsize=11)
    for i, (kind, series, name) in enumerate(panels):
        ax = fig.add_subplot(layout[i, 0])
        draw_heatmap(ax, series, name) if kind == "heatmap" else draw_lines(ax, series, name)
    ax = fig.add_subplot(layout[:, 1])
    ax.axis("off")
    if grid is not None:
        with Image.open(grid[1]) as image:
            ax.imshow(np.asarray(image.convert("RGB")), interpolation="nearest")
        ax.set_anchor("N")
        ax.set_title(f"samples at step {grid[0]} ({grid[1].name})", loc="left", fontsize=10)
    return fig
