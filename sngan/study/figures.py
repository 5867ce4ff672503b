"""The study's figures, in the paper's forms, drawn with matplotlib and written through `sngan.io.atomic_write`.

- `metric-<key>.png`: grouped bars, one group per method, one bar per setting, the mean over seeds with the seeds'
  standard deviation as error bars (paper Figures 1 and 2: IS and FID per method over settings A-F). Without
  evaluation the final D loss is drawn instead, titled as such (losses of different methods are not comparable).
- `seconds_per_iteration.png`: seconds per generator iteration in the same layout (paper Figure 10).
- `samples.png`: each variant's newest sample grid (first seed), methods down, settings across.
- `spectral_norms.png`: for every spectrally normalised run that logged `train.inspect_every` checks, the spectral
  norm of each layer's normalised weight, sigma(W-bar) = sigma(W) / sigma-hat = 1 / `sn_ratio/<layer>`, against G
  updates, one panel per run, every layer named (paper Figure 9, App. C.1: setting C, "they do not deviate by more
  than 0.05 for the most part").
A diverged run has no bar; its place is marked with an x.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sngan.io import atomic_write
from sngan.records import read_records
from sngan.report.charts import COLORS, plt
from sngan.report.page import latest_sample_grid

STUDY_MARKER = ".sngan-study"  # the file `sngan study` leaves in a study folder (sngan.study.run writes it)

Record = dict[str, Any]


def _order(records: list[Record], key: str) -> list[str]:
    return list(dict.fromkeys(r[key] for r in records))


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)
    return path


def grouped_bars(records: list[Record], value: Callable[[Record], float | None], title: str, ylabel: str,
                 path: Path) -> Path:
    """Bars of `value` per (method, setting): mean over seeds, error bar = standard deviation over seeds."""
    methods, settings = _order(records, "method"), _order(records, "setting")
    width = 0.8 / len(settings)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(methods) * max(1, len(settings)) * 0.45 + 2), 3.6), dpi=100)
    labelled: set[str] = set()
    for j, setting in enumerate(settings):
        for i, method in enumerate(methods):
            runs = [r for r in records if r["method"] == method and r["setting"] == setting]
            values = [v for r in runs if not r["diverged"] and (v := value(r)) is not None]
            x = i + (j - (len(settings) - 1) / 2) * width
            if values:
                err = statistics.pstdev(values) if len(values) > 1 else None
                ax.bar(x, statistics.mean(values), width, yerr=err, capsize=2, color=COLORS[j % len(COLORS)],
                       label=setting if setting and setting not in labelled else None)
                labelled.add(setting)
            elif runs:
                ax.plot(x, 0, marker="x", color="black", markersize=6)
    ax.set_xticks(range(len(methods)), methods, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(True, axis="y", color="#e6e6e6")
    ax.set_axisbelow(True)
    if any(settings):
        ax.legend(fontsize=7, ncol=min(len(settings), 6), frameon=False, title="setting", title_fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def sample_mosaic(records: list[Record], out: Path, path: Path) -> Path:
    """Each variant's newest sample grid (its first seed), methods as rows and settings as columns."""
    methods, settings = _order(records, "method"), _order(records, "setting")
    fig, axes = plt.subplots(len(methods), len(settings), figsize=(2.2 * len(settings), 2.4 * len(methods)),
                             dpi=100, squeeze=False)
    for i, method in enumerate(methods):
        for j, setting in enumerate(settings):
            ax = axes[i][j]
            ax.axis("off")
            run = next((r for r in records if r["method"] == method and r["setting"] == setting), None)
            if run is None:
                continue
            grid = latest_sample_grid(out / run["run_dir"])
            ax.set_title(f"{run['variant']}" + (" (diverged)" if run["diverged"] else ""), fontsize=8)
            if grid is not None:
                ax.imshow(plt.imread(grid[1]))
            else:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center", fontsize=8, transform=ax.transAxes)
    fig.tight_layout()
    return _save(fig, path)


def sn_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """layer -> [(step, sigma(W-bar) = 1 / (sigma-hat / sigma))] from a run's inspect records."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for record in read_records(run_dir / "metrics.jsonl"):
        for key, value in record.items():
            if key.startswith("sn_ratio/") and isinstance(value, (int, float)) and value > 0:
                curves.setdefault(key.split("/", 1)[1], []).append((int(record["step"]), 1.0 / value))
    return curves


LINESTYLES = ("-", "--", ":", "-.")


def spectral_norm_panels(runs: list[tuple[str, dict[str, list[tuple[int, float]]]]], path: Path) -> Path:
    """One panel per (title, curves): sigma(W-bar) per layer against G updates (paper Figure 9)."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.6 * len(runs), 3.4), dpi=100, squeeze=False)
    for ax, (title, curves) in zip(axes[0], runs, strict=True):
        for i, (layer, points) in enumerate(curves.items()):  # colour and dash together: 32 layers stay apart
            ax.plot(*zip(*points, strict=True), color=COLORS[i % len(COLORS)],
                    linestyle=LINESTYLES[(i // len(COLORS)) % len(LINESTYLES)], marker=".", markersize=3,
                    linewidth=1, label=layer)
        ax.axhline(1.0, color="#999999", linewidth=0.6)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("G update", fontsize=8)
        ax.set_ylabel("sigma(W-bar)", fontsize=8)
        ax.ticklabel_format(useOffset=False, axis="y")
        ax.grid(True, color="#e6e6e6")
        ax.legend(fontsize=6, ncol=2, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _final_value(key: str, record: Record) -> Any:
    """The run's value of `key` at the end of training (None when it has none)."""
    return record["final"].get(key)


def write_figures(records: list[Record], out: Path, evaluation: bool) -> list[Path]:
    """All figures of a study folder; returns their paths."""
    figures = []
    keys = [k for k in dict.fromkeys(k for r in records for k in r["final"])
            if k.startswith(("is", "fid")) and not k.endswith("_std")] if evaluation else []
    for key in keys:
        figures.append(grouped_bars(records, partial(_final_value, key),
                                    f"{key} at the end of training (mean and std over seeds)", key,
                                    out / f"metric-{key}.png"))
    if not keys:
        figures.append(grouped_bars(records, partial(_final_value, "d_loss"),
                                    "final D loss (evaluation off: not a quality measure; losses differ by method)",
                                    "d_loss", out / "metric-d_loss.png"))
    figures.append(grouped_bars(records, lambda r: r["sec_per_g_iter"], "seconds per generator iteration "
                                "(median over the log; paper Figure 10)", "seconds", out / "seconds_per_iteration.png"))
    figures.append(sample_mosaic(records, out, out / "samples.png"))
    spectral = [(f"{r['variant']}-s{r['seed']}: spectral norm of each normalised weight", curves)
                for r in records if (curves := sn_curves(out / r["run_dir"]))]
    if spectral:
        figures.append(spectral_norm_panels(spectral, out / "spectral_norms.png"))
    return figures


def study_folder_note(folder: Path) -> str | None:
    """What to do with a study folder given to `sngan report` (its table and figures are drawn by `sngan study`,
    one report per run by `sngan report RUN`), or None for any other folder."""

    folder = Path(folder)
    if not ((folder / STUDY_MARKER).is_file() or (folder / "study.jsonl").is_file()):
        return None
    figures = sorted(p.name for p in folder.glob("*.png"))
    drawn = (f"its table is {folder / 'study.md'} and its figures {', '.join(figures)}"
             if (folder / "study.md").is_file() else "it has no table yet")
    return (f"'{folder}' is a study folder, not a run: {drawn}; `sngan study --plan PLAN --out {folder}` redraws them "
            f"from the finished runs (which it skips), and `sngan report {folder}/<run>` draws one run's report")
