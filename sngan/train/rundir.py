"""Run directories: `runs/<config-name>-<NNN>` holding config.yaml, checkpoints/, samples/ and metrics.jsonl.

One writer per run folder: `RunLock` holds an OS lock (`fcntl.flock`) on `<run>/.lock` for the life of a training
process, with the holder's PID written inside; the kernel releases it when the process dies, so a crashed run never
blocks its own resume. `RunLog` takes the lock, checks everything it needs, and only then changes the folder:
records and checkpoints of an abandoned continuation are moved aside (`metrics.superseded-<time>.jsonl`,
`checkpoints/superseded-<time>/`), never deleted.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sngan.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint
from sngan.errors import SnganError
from sngan.io import append_jsonl, check_can_create, read_jsonl, remove_stale_temps, write_text, writing

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


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that cannot be created or written: a file, a path under a file, a read-only parent."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SnganError(f"--out '{run_dir}' is a file; a run needs a folder (choose another --out)")
    check_can_create(run_dir / ".lock")


def check_fresh(run_dir: Path) -> None:
    """Refuse to start a new run on top of an existing one (its checkpoints would be overwritten)."""
    if list_checkpoints(run_dir / "checkpoints") or (run_dir / "checkpoints" / "best.pt").exists():
        raise SnganError(f"run directory '{run_dir}' already holds checkpoints: continue it with --resume auto "
                         f"or choose another --out")
    if (run_dir / "metrics.jsonl").exists():
        raise SnganError(f"run directory '{run_dir}' already holds the log of another run (metrics.jsonl): choose "
                         f"another --out")


class RunLock:
    """An exclusive `flock` on `<run_dir>/.lock` (creating the folder), or SnganError naming the holder's PID.

    The file holds the PID while locked and is emptied on release, so a finished run leaves it byte-identical.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        with writing(self.path):
            run_dir.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise SnganError(f"run directory '{run_dir}' is in use by another sngan process (PID {holder}); wait "
                             f"for it to finish or stop it, or choose another --out") from None
        with writing(self.path):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:  # the lock still goes with the descriptor
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = -1


def _aside(folder: Path, name: str) -> Path:
    """A new path `folder/name` with `<time>` filled in, unique even for two resumes in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / name.replace("<time>", stamp), 1
    while path.exists():
        n += 1
        path = folder / name.replace("<time>", f"{stamp}-{n}")
    return path


def later_checkpoints(ckpt_dir: Path, step: int) -> list[Path]:
    """Periodic checkpoints and best.pt written after `step` (by a continuation that resuming abandons)."""
    later = [p for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) > step]
    best = ckpt_dir / "best.pt"
    if best.exists() and load_checkpoint(best)["step"] > step:
        later.append(best)
    return later


def _move_aside(paths: list[Path], ckpt_dir: Path) -> Path | None:
    """Move `paths` into a new `ckpt_dir/superseded-<time>/` (None when there are none). Without this, pruning would
    delete the continued run's checkpoints first (lower step numbers) and `--resume auto` would pick the abandoned
    one."""
    if not paths:
        return None
    folder = _aside(ckpt_dir, "superseded-<time>")
    with writing(folder):
        folder.mkdir()
        for path in paths:
            path.rename(folder / path.name)
    return folder


class RunLog:
    """The run's text records: config.yaml, metrics.jsonl and (when installed) TensorBoard events; holds the lock.

    On resume at step S, records after S (written by the interrupted process after its last checkpoint, or by a
    continuation from a later checkpoint) are moved to `metrics.superseded-<time>.jsonl` and later checkpoints to
    `checkpoints/superseded-<time>/`; TensorBoard drops its later events (`purge_step`). The log then describes
    exactly the training that happened, and nothing is lost. A start at step 0 refuses a folder holding another run.
    Every check (lock, fresh folder, readable log and best.pt) passes before the first change to the folder.
    """

    def __init__(self, run_dir: Path, config_yaml: str, start_step: int = 0,
                 notice: Callable[[str], None] | None = None):
        notice = notice or (lambda message: None)
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self.lock = RunLock(run_dir)
        try:
            self._prepare(config_yaml, start_step, notice)
        except BaseException:
            self.lock.release()
            raise

    def _prepare(self, config_yaml: str, start_step: int, notice: Callable[[str], None]) -> None:
        run_dir, ckpt_dir = self.run_dir, self.run_dir / "checkpoints"
        for folder in (run_dir, ckpt_dir, run_dir / "samples"):
            for stale in remove_stale_temps(folder):
                notice(f"removed {stale.name}, a partial file left by a process that was stopped mid-write")
        if not start_step:
            check_fresh(run_dir)
        records = read_metrics(run_dir, notice) if start_step else []
        kept = [r for r in records if r.get("step", 0) <= start_step]
        later_records = [r for r in records if r.get("step", 0) > start_step]
        later = later_checkpoints(ckpt_dir, start_step) if start_step else []
        aside = _move_aside(later, ckpt_dir)
        if aside is not None:
            notice(f"checkpoints after step {start_step} (from the run being replaced) moved to {aside}")
        if later_records:
            moved = write_text(_aside(run_dir, "metrics.superseded-<time>.jsonl"), _jsonl(later_records))
            notice(f"{len(later_records)} log records after step {start_step} moved to {moved}")
        if start_step and self.metrics_path.exists():
            write_text(self.metrics_path, _jsonl(kept))
        write_text(run_dir / "config.yaml", config_yaml)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is the optional extra sngan[tensorboard]
            self.tensorboard = None
        else:
            with writing(run_dir / "tensorboard"):
                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (must hold `step`) to metrics.jsonl and its finite numbers to TensorBoard."""
        append_jsonl(self.metrics_path, record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        try:
            if self.tensorboard is not None:
                self.tensorboard.close()
        finally:
            self.lock.release()


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def read_metrics(run_dir: str | Path, notice: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Records of a run's metrics.jsonl, in order (`sngan.io.read_jsonl`: a torn last line is dropped)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl", notice)
