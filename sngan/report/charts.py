"""Small line charts drawn with Pillow (axes, ticks, labels, legend), for `sngan report`.

Why not matplotlib: the report needs a few line charts, and Pillow (already a dependency through torchvision)
draws them in ~150 lines; a plotting library would add a large dependency for one picture. Charts are drawn at
twice their size and downsampled, which antialiases the lines.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 2
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_LEGEND = 6  # a chart with more series draws no legend
AXIS, GRID, TEXT = "#444444", "#e6e6e6", "#222222"

Series = dict[str, list[tuple[float, float]]]  # name -> [(x, y), ...]


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` pixels (the fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi].

    Args:
        lo: smallest value.
        hi: largest value (equal to lo is allowed).
        count: wanted number of intervals.

    Returns:
        Increasing tick values; the first is <= lo and the last >= hi.
    """
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    n = math.ceil((hi - first) / step - 1e-9)
    return [first + i * step for i in range(n + 1)]


def tick_label(value: float) -> str:
    """A short exact label for a round tick value: 50000 -> 50k, 1500000 -> 1.5M, 0.8 -> 0.8, 0.00019 -> 1.9e-04."""
    if abs(value) < 1e-12:
        return "0"
    if abs(value) < 1e-3:
        mantissa = value / 10 ** math.floor(math.log10(abs(value)))
        return f"{value:.{_decimals(mantissa)}e}"
    div, unit = next((d, u) for d, u in ((1e6, "M"), (1e3, "k"), (1.0, "")) if abs(value) >= d or d == 1.0)
    return f"{value / div:.{_decimals(value / div)}f}{unit}"


def _decimals(value: float) -> int:
    """Fewest decimals (at most 6) that write `value` exactly (to rounding noise)."""
    return next((d for d in range(6) if abs(round(value, d) - value) < 1e-9 * max(1.0, abs(value))), 6)


def line_chart(series: Series, title: str, size: tuple[int, int] = (640, 260), x_label: str = "step") -> Image.Image:
    """A chart of one or more (x, y) series with axes, grid lines, tick labels, a title and a legend.

    Args:
        series: name -> points (non-finite y values are skipped); a single point is drawn as a dot.
        title: text above the chart.
        size: (width, height) in pixels of the returned image.
        x_label: text under the x axis (which starts at 0 unless some x is negative).

    Returns:
        An RGB image of `size`.
    """
    s = SUPERSAMPLE
    width, height = size[0] * s, size[1] * s
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    small, big = font(11 * s), font(14 * s)
    left, right, top, bottom = 62 * s, width - 14 * s, 30 * s, height - 36 * s
    points = {name: [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)] for name, pts in series.items()}
    xs = [x for pts in points.values() for x, _ in pts]
    ys = [y for pts in points.values() for _, y in pts]
    draw.text((left, 6 * s), title, fill=TEXT, font=big)
    if not xs:
        draw.text((left, (top + bottom) // 2), "no data", fill=AXIS, font=small)
        return image.resize(size, Image.Resampling.LANCZOS)
    x_ticks, y_ticks = nice_ticks(min(0.0, *xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def to_px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for x in x_ticks:
        px = to_px(x, y0)[0]
        draw.line([(px, top), (px, bottom)], fill=GRID, width=s)
        draw.text((px, bottom + 4 * s), tick_label(x), fill=TEXT, font=small, anchor="ma")
    for y in y_ticks:
        py = to_px(x0, y)[1]
        draw.line([(left, py), (right, py)], fill=GRID, width=s)
        draw.text((left - 5 * s, py), tick_label(y), fill=TEXT, font=small, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=AXIS, width=s)
    draw.text(((left + right) // 2, height - 4 * s), x_label, fill=AXIS, font=small, anchor="md")
    legend_x = right
    for i, (name, pts) in enumerate(reversed(list(points.items()))):
        color = COLORS[(len(points) - 1 - i) % len(COLORS)]
        pixels = [to_px(x, y) for x, y in pts]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=2 * s, joint="curve")
        markers = pixels if len(pixels) <= 30 else []  # dots only where they stay readable
        for px, py in markers:
            draw.ellipse([px - 2.5 * s, py - 2.5 * s, px + 2.5 * s, py + 2.5 * s], fill=color)
        if len(points) > MAX_LEGEND:  # too many series to name: the title says what they are
            continue
        legend_x -= draw.textlength(name, font=small) + 26 * s
        draw.line([(legend_x, 17 * s), (legend_x + 16 * s, 17 * s)], fill=color, width=3 * s)
        draw.text((legend_x + 20 * s, 17 * s), name, fill=TEXT, font=small, anchor="lm")
    return image.resize(size, Image.Resampling.LANCZOS)
