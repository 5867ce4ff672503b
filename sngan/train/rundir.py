"""Run directories: `runs/<config-name>-<NNN>` holding config.yaml, checkpoints/, samples/ and metrics.jsonl."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sngan.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint
from sngan.errors import SnganError
from sngan.io import append_jsonl, read_jsonl, write_text

DEFAULT_BASE = Path("runs")


def numbered_runs(base: Path, name: str) -> list[tuple[int, Path]]:
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
    if not base.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in base.iterdir() if (m := pattern.match(p.name)) and p.is_dir())


def next_run_dir(name: str, base: Path = DEFAULT_BASE) -> Path:
    """The first unused `base/name-NNN` (not created)."""
    runs = numbered_runs(base, name)
    return base / f"{name}-{(runs[-1][0] + 1 if runs else 0):03d}"


def latest_run_dir(name: str, base: Path = DEFAULT_BASE) -> Path | None:
    runs = numbered_runs(base, name)
    return runs[-1][1] if runs else None


def check_fresh(run_dir: Path) -> None:
    """Refuse to start a new run on top of an existing one (its checkpoints would be overwritten)."""
    if list_checkpoints(run_dir / "checkpoints") or (run_dir / "checkpoints" / "best.pt").exists():
        raise SnganError(f"run directory '{run_dir}' already holds checkpoints: continue it with --resume auto "
                         f"or choose another --out")
    if (run_dir / "metrics.jsonl").exists():
        raise SnganError(f"run directory '{run_dir}' already holds the log of another run (metrics.jsonl): choose "
                         f"another --out")


def set_aside_later_checkpoints(ckpt_dir: Path, step: int) -> Path | None:
    """Move checkpoints newer than `step` into `superseded-<time>/` (resuming from an older checkpoint).

    Without this, pruning would delete the checkpoints of the continued run first (they have lower step numbers)
    and `--resume auto` would pick up the abandoned one; nothing is deleted. Returns the folder, or None.
    """
    later = [p for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) > step]
    best = ckpt_dir / "best.pt"
    if best.exists() and load_checkpoint(best)["step"] > step:
        later.append(best)
    if not later:
        return None
    folder = ckpt_dir / time.strftime("superseded-%Y%m%d-%H%M%S")
    folder.mkdir()
    for path in later:
        path.rename(folder / path.name)
    return folder


class RunLog:
    """The run's text records: config.yaml, metrics.jsonl and (when installed) TensorBoard events.

    On resume at step S, records after S (written by the interrupted process after its last checkpoint) are dropped
    from metrics.jsonl and TensorBoard (`purge_step`), so the log describes exactly the training that happened.
    """

    def __init__(self, run_dir: Path, config_yaml: str, start_step: int = 0,
                 notice: Callable[[str], None] | None = None):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        kept = [r for r in read_metrics(run_dir, notice) if r.get("step", 0) <= start_step] if start_step else None
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", config_yaml)
        if kept is not None and self.metrics_path.exists():
            write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is the optional extra sngan[tensorboard]
            self.tensorboard = None
        else:
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (must hold `step`) to metrics.jsonl and its finite numbers to TensorBoard."""
        append_jsonl(self.metrics_path, record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(run_dir: str | Path, notice: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Records of a run's metrics.jsonl, in order (`sngan.io.read_jsonl`: a torn last line is dropped)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl", notice)
