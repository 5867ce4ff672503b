"""The `metrics.jsonl` record: what the training log writes, and the one reader everything else uses.

One JSON object per line, each with a numeric `step`. The training log's own keys are `LOG_KEYS` (written by
`loss_record` every `train.log_every`); every other numeric key is a metric logged at some steps (IS/FID under
their protocol names, `sn_ratio/<layer>` and `lipschitz_bound` from `train.inspect_every`, ...), which
`metric_keys` lists for the report and the study table. `read_records` reads a run's file through
`sngan.io.read_jsonl` (a torn last line, from a process killed while appending, is dropped with a notice).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sngan.io import read_jsonl

LOG_KEYS = ("step", "time", "d_loss", "g_loss", "lr", "it_per_s", "cpu_mem_gb", "cuda_mem_gb")
MAX_VALUE = 1e300  # larger values are not numbers a reader can use (a chart's range would overflow)


def loss_record(step: int, d_loss: float, g_loss: float, lr: float, it_per_s: float,
                    memory: dict[str, float] | None = None) -> dict[str, Any]:
    """The training log's record for the window ending at `step` (wall time added), with the peak memory
    (`cpu_mem_gb`: the process's peak resident set; `cuda_mem_gb` on CUDA: the most allocated since the previous
    record; GiB), as StyleGAN2-ADA's log has it."""
    return {"step": step, "d_loss": d_loss, "g_loss": g_loss, "lr": lr, "it_per_s": it_per_s, **(memory or {}),
            "time": time.time()}


def is_number(value: Any) -> bool:
    """A usable logged number: int or float within +-MAX_VALUE (NaN, inf, 1e308 and 10**400 are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -MAX_VALUE <= value <= MAX_VALUE


def read_records(path: str | Path, notice: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (or of a run folder's) that carry a step, in order."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    return [r for r in read_jsonl(path, notice) if is_number(r.get("step"))]


def metric_keys(records: list[dict[str, Any]]) -> list[str]:
    """Numeric keys that are not part of the training log, in order of first appearance."""
    keys: dict[str, None] = {}
    for record in records:
        keys.update({k: None for k, v in record.items() if k not in LOG_KEYS and is_number(v)})
    return list(keys)
