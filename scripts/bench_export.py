"""Folder export cost: one atomic, synced write per PNG (the former save_folder) against staged writes synced
once at the end with a manifest (`sngan.io.write_staged` + `finish_export`, what `sngan sample` does now), and a
plain Pillow save for scale. Medians of alternating rounds in one process.

Usage: python scripts/bench_export.py --folder DIR [--num 2000] [--rounds 3]   (DIR on the disk you export to)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sngan.io import atomic_write, finish_export, write_staged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = np.random.default_rng(0).integers(0, 256, (args.num, 32, 32, 3), dtype=np.uint8)

    def png(image):
        return lambda fh: Image.fromarray(image).save(fh, format="PNG")

    def synced_each(folder: Path) -> None:
        for i, image in enumerate(images):
            atomic_write(folder / f"{i:05d}.png", png(image))

    def synced_once(folder: Path) -> None:
        finish_export(folder, [write_staged(folder / f"{i:05d}.png", png(image)) for i, image in enumerate(images)])

    def plain(folder: Path) -> None:
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{i:05d}.png")

    times: dict[str, list[float]] = {"synced per PNG": [], "synced once + manifest": [], "plain save": []}
    for _ in range(args.rounds):
        for (name, fn) in zip(times, (synced_each, synced_once, plain), strict=True):
            folder = args.folder / "bench-export"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            start = time.perf_counter()
            fn(folder)
            times[name].append(time.perf_counter() - start)
            shutil.rmtree(folder)
    for name, values in times.items():
        print(f"{name:24} median {statistics.median(values):.2f} s over {args.rounds} rounds ({args.num} PNGs)")


if __name__ == "__main__":
    main()
