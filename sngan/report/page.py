"""`sngan report RUN_DIR`: one PNG with a run's loss curves, learning rate, metric curves and newest sample grid.

It reads only the run's files: `metrics.jsonl` (every numeric key other than the training log's own - step, time,
d_loss, g_loss, lr, it_per_s - is a metric, e.g. IS or FID logged at some steps, and gets its own chart; keys
sharing a `prefix/` share one chart, so per-layer series such as `sn_ratio/<layer>` add one chart, not dozens: a
heatmap of layers x steps with every layer named when there are more than a legend holds),
`samples/step-*.png` (the newest grid) and `config.yaml` (the title line). It works on a run in progress too (a
half-written last line is dropped). The report is derived data: writing it again replaces the old picture.
"""

from __future__ import annotations

import io
import re
import statistics
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from sngan.config import read_yaml
from sngan.errors import ReportError, SnganError
from sngan.io import atomic_write, open_regular
from sngan.records import is_number, metric_keys, read_records
from sngan.report.charts import MAX_LEGEND, Series, figure_image, heatmap_figure, line_chart, plt

OUT_SUFFIXES = (".png", ".pdf", ".svg")  # --out: the composed PNG, or one vector figure (sngan.report.vector)
SAMPLE_NAME = re.compile(r"^step-(\d+)\.png$")
CHART_SIZE = (640, 240)
GRID_WIDTH = 560  # the sample grid is scaled (by whole factors when enlarged) to about this width
HEADER = 64
MARGIN = 16
TEXT = "#222222"
MAX_GRID_PIXELS = 4096 * 130 * 130  # the largest grid sngan writes: 4096 images of 128 px with padding
MAX_GRID_SIDE = 16384  # a side: training grids are about square (sqrt(num_samples) a row); PIL resizes this safely
MAX_GRID_BYTES = 256 << 20  # a PNG of MAX_GRID_PIXELS, uncompressed, with room


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` pixels (the fixed bitmap font on Pillow < 10.1), for the header lines."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def chart_groups(records: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(title, keys) per chart: one key alone, or every key of one `prefix/` together."""
    groups: dict[str, list[str]] = {}
    for key in metric_keys(records):
        prefix = key.split("/", 1)[0] + "/*" if "/" in key else key
        groups.setdefault(prefix, []).append(key)
    return [(f"{title} ({len(keys)} series)" if title.endswith("/*") else title, keys)
            for title, keys in groups.items()]


def curves(records: list[dict[str, Any]], keys: tuple[str, ...] | list[str]) -> Series:
    """(step, value) points of each key, from the records that hold it."""
    return {k: [(float(r["step"]), float(r[k])) for r in records if is_number(r.get(k))] for k in keys}


def latest_sample_grid(run_dir: Path) -> tuple[int, Path] | None:
    """(step, path) of the newest `samples/step-NNNNNNN.png`, or None."""
    folder = run_dir / "samples"
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := SAMPLE_NAME.match(p.name))] \
        if folder.is_dir() else []
    return max(found) if found else None


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the report of a run directory into one PNG (or PDF / SVG, from `out`'s suffix).

    Args:
        run_dir: a directory written by `sngan train` (finished or in progress).
        out: the file to write, .png, .pdf or .svg (default RUN_DIR/report.png).

    Returns:
        The path written.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory '{run_dir}' not found")
    out = Path(out) if out is not None else run_dir / "report.png"
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise ReportError(f"--out must end in {', '.join(OUT_SUFFIXES)}, got '{out}'")
    records = read_records(run_dir / "metrics.jsonl")
    grid = latest_sample_grid(run_dir)
    if not records and grid is None:
        raise ReportError(f"'{run_dir}' is not a run directory with results: no metrics.jsonl records and no "
                          f"samples/step-*.png")
    panels = [("lines", curves(records, ("d_loss", "g_loss")), "losses"),
              ("lines", curves(records, ("lr",)), "learning rate")]
    panels += [("lines" if len(keys) <= MAX_LEGEND else "heatmap", curves(records, keys), title)
               for title, keys in chart_groups(records)]
    if out.suffix.lower() != ".png":  # vector charts for papers (sngan.report.vector)
        from sngan.report.vector import report_figure

        fig = report_figure(_title(run_dir, records), panels, grid)
        try:
            with plt.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):  # text stays editable text
                return atomic_write(out, lambda fh: fig.savefig(fh, format=out.suffix.lower()[1:]))
        finally:
            plt.close(fig)
    charts = [line_chart(series, title, CHART_SIZE) if kind == "lines" else
              figure_image(heatmap_figure(series, title, CHART_SIZE[0])) for kind, series, title in panels]
    picture = _compose(_title(run_dir, records), charts, _sample_panel(grid))
    return atomic_write(out, lambda fh: picture.save(fh, format="PNG"))


def _compose(title: tuple[str, str], charts: list[Image.Image], samples: Image.Image) -> Image.Image:
    """Header on top, charts stacked on the left, samples on the right."""
    charts_height = sum(c.height for c in charts)
    width = MARGIN * 3 + CHART_SIZE[0] + samples.width
    height = HEADER + max(charts_height, samples.height) + MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, 10), title[0], fill=TEXT, font=font(20))
    draw.text((MARGIN, 38), title[1], fill=TEXT, font=font(13))
    y = HEADER
    for chart in charts:
        canvas.paste(chart, (MARGIN, y))
        y += chart.height
    canvas.paste(samples, (MARGIN * 2 + CHART_SIZE[0], HEADER))
    return canvas


def _title(run_dir: Path, records: list[dict[str, Any]]) -> tuple[str, str]:
    """(run name and model, last-step summary) for the header."""
    config_path = run_dir / "config.yaml"
    name = run_dir.resolve().name
    try:
        cfg = read_yaml(config_path)  # bounded: size, depth, UTF-8; a ConfigError when missing
        model, data = cfg["model"], cfg["data"]
        classes = f", {model['num_classes']} classes" if model["num_classes"] else ""
        name += f"  -  {model['arch']} {model['resolution']}px, {data['name']}{classes}"
    except (SnganError, TypeError, KeyError):
        pass  # a report without the model line is still useful
    if not records:
        return name, "no metrics logged yet"
    parts = [f"step {int(records[-1]['step'])}"]
    logged = [r for r in records if is_number(r.get("d_loss")) or is_number(r.get("g_loss"))]
    last = logged[-1] if logged else {}  # the last loss record: inspect and eval records carry no losses
    parts += [f"{k} {last[k]:.4g}" for k in ("d_loss", "g_loss") if is_number(last.get(k))]
    speeds = [r["it_per_s"] for r in records if is_number(r.get("it_per_s"))]
    if speeds:
        parts.append(f"{statistics.median(speeds):.3g} it/s (median)")
    return name, "   |   ".join(parts)


def _sample_panel(grid: tuple[int, Path] | None) -> Image.Image:
    """The newest sample grid under a caption, scaled to about GRID_WIDTH pixels."""
    caption_height = 28
    if grid is None:
        panel = Image.new("RGB", (GRID_WIDTH, caption_height), "white")
        ImageDraw.Draw(panel).text((0, 6), "no sample grid yet", fill=TEXT, font=font(14))
        return panel
    step, path = grid
    try:
        data = open_regular(path, MAX_GRID_BYTES)  # never blocks on a FIFO named like a grid
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                if opened.width * opened.height > MAX_GRID_PIXELS or max(opened.size) > MAX_GRID_SIDE:
                    raise ReportError(f"{path}: {opened.width}x{opened.height} pixels is too large for a sample "
                                      f"grid (at most {MAX_GRID_PIXELS:,} pixels, {MAX_GRID_SIDE} a side)")
                image = opened.convert("RGB")
    except (SnganError, OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, ReportError):
            raise
        raise ReportError(f"{path}: cannot read the sample grid ({str(exc)[:200]}); move it aside to draw the "
                          f"report") from None
    if image.width <= GRID_WIDTH:
        factor = max(1, GRID_WIDTH // image.width)
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    else:
        image = image.resize((GRID_WIDTH, round(image.height * GRID_WIDTH / image.width)), Image.Resampling.LANCZOS)
    panel = Image.new("RGB", (image.width, image.height + caption_height), "white")
    ImageDraw.Draw(panel).text((0, 6), f"samples at step {step} ({path.name})", fill=TEXT, font=font(14))
    panel.paste(image, (0, caption_height))
    return panel

