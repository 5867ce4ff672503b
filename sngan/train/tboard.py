"""What a run's TensorBoard shows: records' numbers as scalars under grouped tags, sample grids as images.

Tags group by their first component, as TensorBoard lays them out: `loss/d`, `loss/g`; `train/lr`,
`train/it_per_s`; peak memory under `resources/` (`resources/cpu_mem_gb`, on CUDA `resources/cuda_mem_gb`);
spectral-norm diagnostics (`train.inspect_every`) under `sn/` (`sn/ratio/<layer>`, `sn/ratio_min`,
`sn/lipschitz_bound`); everything else, the metrics (`is5k`, `fid5k_train50k`, ...), under `metrics/`. A
record's `time` (Unix seconds) is the event's wall time, not a scalar: as float32 every value would read 1.796e9.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_TAGS = {"d_loss": "loss/d", "g_loss": "loss/g", "lr": "train/lr", "it_per_s": "train/it_per_s",
              "cpu_mem_gb": "resources/cpu_mem_gb", "cuda_mem_gb": "resources/cuda_mem_gb"}  # StyleGAN2-ADA's group
SN_KEYS = ("sn_ratio", "lipschitz_bound", "operator_norm_product")


def tensorboard_tag(key: str) -> str:
    """'d_loss' -> 'loss/d', 'sn_ratio/block1.c1' -> 'sn/ratio/block1.c1', 'fid5k_train50k' -> 'metrics/...'."""
    if key in TRAIN_TAGS:
        return TRAIN_TAGS[key]
    if key.startswith(SN_KEYS):
        return "sn/" + key.removeprefix("sn_")
    return f"metrics/{key}"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """{tag: value} of a record's finite numbers, `step` and `time` left out."""
    return {tensorboard_tag(k): float(v) for k, v in record.items()
            if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


class TensorBoardSink:
    """One of the run log's sinks: a record's scalars at its step, stamped with its own wall time when it has one,
    and sample grids (PNG) as the image `samples`."""

    def __init__(self, writer: Any):  # a torch.utils.tensorboard.SummaryWriter
        self.writer = writer

    def write(self, record: dict[str, Any]) -> None:
        walltime = record.get("time")
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"], walltime=walltime)

    def grid(self, path: Path, step: int) -> None:
        from PIL import Image

        with Image.open(path) as image:
            self.writer.add_image("samples", np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()
