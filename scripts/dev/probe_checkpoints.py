"""The learning curve of a run: the ResNet-20 probe (scripts/probe_learning.py) on every checkpoint of a run folder,
for the raw and the EMA generator, as a markdown table and optionally a figure.

Usage:
    python scripts/dev/probe_checkpoints.py --run RUN_DIR --test DIR/test --weights resnet20-12fca82f.th \
        [--num 2000] [--plot docs/length_run.png] [--json curve.json]

Each row: the checkpoint's step, then the Fréchet distance in the classifier's 64-d pooled features between `num`
generated images (fixed latents) and `num` test images, for the raw generator and, when the run keeps one, the EMA
generator (BatchNorm statistics as saved). A probe for "does it learn", not FID: not comparable to published numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sngan.checkpoint import list_checkpoints
from sngan.config import DataConfig
from sngan.data import load_images
from sngan.sample.generate import load_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/, for probe_learning.py
from probe_learning import frechet_distance, generated_features, load_classifier  # noqa: E402


def curve(run: Path, test: Path, weights: Path, num: int, device: str) -> list[dict]:
    net = load_classifier(weights)
    images = load_images(DataConfig(name="folder", root=str(test)), 32, progress=False)
    pick = np.sort(np.random.default_rng(0).permutation(len(images.images))[:num])
    real = net.features(torch.from_numpy(np.asarray(images.images[pick])))
    rows = []
    for path in list_checkpoints(run / "checkpoints"):
        generator, state = load_generator(path, ema=False, device=device)
        z_dim = state["config"]["model"]["z_dim"]
        row = {"step": int(state["step"]), "raw": frechet_distance(generated_features(net, generator, num, z_dim),
                                                                   real)}
        if state.get("generator_ema") is not None:
            ema, _ = load_generator(path, ema=True, device=device)
            row["ema"] = frechet_distance(generated_features(net, ema, num, z_dim), real)
        rows.append(row)
        print(f"| {row['step']} | {row['raw']:.2f} | {row.get('ema', float('nan')):.2f} |", flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["raw"] for r in rows], marker="o", label="raw generator")
    if all("ema" in r for r in rows):
        ax.plot(steps, [r["ema"] for r in rows], marker="s", label="EMA generator")
    ax.set_xlabel("generator iterations")
    ax.set_ylabel("ResNet-20 FD (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder (its checkpoints/ are probed)")
    parser.add_argument("--test", type=Path, required=True, help="CIFAR-10 test class-folder tree")
    parser.add_argument("--weights", type=Path, required=True, help="resnet20-12fca82f.th")
    parser.add_argument("--num", type=int, default=2000, help="generated and test images per distance")
    parser.add_argument("--plot", type=Path, help="write the curve as a figure (png, pdf or svg)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args()
    print("| G iterations | FD raw | FD EMA |\n|---|---|---|")
    rows = curve(args.run, args.test, args.weights, args.num, "cuda" if torch.cuda.is_available() else "cpu")
    if args.json:
        args.json.write_text(json.dumps(rows))
    if args.plot and rows:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
