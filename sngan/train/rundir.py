"""Run directories: `runs/<config-name>-<NNN>` holding config.yaml, checkpoints/, samples/ and metrics.jsonl.

One writer per run folder: `RunLock` (`sngan.train.ownership.FolderLock`) holds an OS lock on `<run>/.lock` for the
life of a training process; the kernel releases it when the process dies, so a crashed run never blocks its own
resume. Which folders a run may write at all is `sngan.train.ownership.check_owner` (the run marker). `RunLog`
takes the lock, checks everything it needs, and only then changes the folder: records, checkpoints and sample grids
of an abandoned continuation are moved aside (`metrics.superseded-<time>.jsonl`, `checkpoints/superseded-<time>/`,
`samples/superseded-<time>/`), never deleted.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sngan.checkpoint import checkpoint_step, list_checkpoints, read_step
from sngan.errors import SnganError
from sngan.io import (
    append_jsonl,
    atomic_write_all,
    check_can_create,
    remove_stale_temps,
    write_text,
    writing,
)
from sngan.records import read_records
from sngan.train.ownership import MARKER, RunLock, check_owner, new_run_id, read_run_id
from sngan.train.tboard import TensorBoardSink
from sngan.train.wandb_log import WandbSink

DEFAULT_BASE = Path("runs")
GRID = re.compile(r"^step-(\d+)\.png$")  # the training loop's sample grids


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
    try:
        str(run_dir).encode("utf-8")
    except UnicodeEncodeError:  # TensorBoard, W&B and the logs name the folder as text
        raise SnganError(f"--out {os.fsencode(run_dir)!r} is not valid UTF-8; choose a folder name that is") from None
    if run_dir.exists() and not run_dir.is_dir():
        raise SnganError(f"--out '{run_dir}' is a file; a run needs a folder (choose another --out)")
    check_can_create(run_dir / ".lock")


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
    if best.exists() and read_step(best) > step:
        later.append(best)
    return later


def later_grids(samples_dir: Path, step: int) -> list[Path]:
    """Sample grids `step-N.png` with N > `step` (a resumed run would overwrite them)."""
    if not samples_dir.is_dir():
        return []
    return sorted(p for p in samples_dir.iterdir() if (m := GRID.match(p.name)) and int(m.group(1)) > step)


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


class Sink(Protocol):
    """Where the run log writes: metrics.jsonl (`MetricsFile`), TensorBoard (`tboard.TensorBoardSink`), W&B
    (`wandb_log.WandbSink`)."""

    def write(self, record: dict[str, Any]) -> None: ...

    def grid(self, path: Path, step: int) -> None: ...

    def close(self) -> None: ...


class MetricsFile:
    """The first sink: appends records to metrics.jsonl, the file every reader uses (grids are not its job)."""

    def __init__(self, path: Path, run_dir: Path):
        self.path, self.run_dir = path, run_dir

    def write(self, record: dict[str, Any]) -> None:
        try:
            append_jsonl(self.path, record)
        except FileNotFoundError:  # the folder was deleted under the run
            raise SnganError(f"run folder '{self.run_dir}' is gone or no longer this run's (deleted while "
                             f"training): stopping without writing") from None

    def grid(self, path: Path, step: int) -> None:
        pass

    def close(self) -> None:
        pass


class RunLog:
    """The run's text records: config.yaml, and `sinks` that every record and sample grid goes to: metrics.jsonl,
    TensorBoard events (when installed) and a W&B run (`wandb`: `sngan.train.wandb_log.open_wandb` bound to the
    config, when asked for); holds the lock.

    On resume at step S, records after S (written by the interrupted process after its last checkpoint, or by a
    continuation from a later checkpoint) are moved to `metrics.superseded-<time>.jsonl`, later checkpoints to
    `checkpoints/superseded-<time>/` and later sample grids to `samples/superseded-<time>/`; TensorBoard hides its
    later events (`purge_step`: they stay in the event files, which TensorBoard cannot split). The log then describes
    exactly the training that happened, and nothing is lost. Every check (owner, lock, readable log and best.pt)
    passes before the first change to the folder; the marker (`.sngan-run`) is written when the folder lacks one.
    """

    def __init__(self, run_dir: Path, config_yaml: str, start_step: int = 0,
                 notice: Callable[[str], None] | None = None, run_id: str | None = None,
                 resume: Path | None = None, wandb: Callable[[Path, str], Any] | None = None):
        notice = notice or (lambda message: None)
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        check_owner(run_dir, run_id, resume)  # before the lock file is made in it
        self.lock = RunLock(run_dir)
        try:
            check_owner(run_dir, run_id, resume)  # again, now that no other sngan process can change it
            self.run_id = read_run_id(run_dir) or run_id or new_run_id()
            self._prepare(config_yaml, start_step, notice)
            wandb_run = wandb(run_dir, self.run_id) if wandb is not None else None  # open_wandb, bound
            if wandb_run is not None:
                self.sinks.append(WandbSink(wandb_run))
        except BaseException:
            self.lock.release()
            raise

    def _prepare(self, config_yaml: str, start_step: int, notice: Callable[[str], None]) -> None:
        run_dir, ckpt_dir = self.run_dir, self.run_dir / "checkpoints"
        for folder in (run_dir, ckpt_dir, run_dir / "samples"):
            for stale in remove_stale_temps(folder):
                notice(f"removed {stale.name}, a partial file left by a process that was stopped mid-write")
        restarted = not start_step and self.metrics_path.exists()  # a start that stopped before its first save
        records = read_records(run_dir, notice) if start_step or restarted else []
        kept = [r for r in records if r.get("step", 0) <= start_step]
        later_records = [r for r in records if r.get("step", 0) > start_step]
        later = later_checkpoints(ckpt_dir, start_step) if start_step else []
        grids = later_grids(run_dir / "samples", start_step)
        if later_records or restarted:  # both files or neither: a full disk leaves the log as it was
            moved = _aside(run_dir, "metrics.superseded-<time>.jsonl")
            atomic_write_all([(moved, _jsonl(later_records).encode()), (self.metrics_path, _jsonl(kept).encode())])
            count = len(later_records)
            notice(f"{count} log record{'s' if count != 1 else ''} after step {start_step} moved to {moved}"
                   + (" (an earlier start of this run stopped before its first checkpoint)" if restarted else ""))
        elif start_step and self.metrics_path.exists():  # drops a torn last line before the first append
            write_text(self.metrics_path, _jsonl(kept))
        self.purge_step = start_step + 1 if start_step or restarted else None  # TensorBoard hides later events
        aside = _move_aside(later, ckpt_dir)
        if aside is not None:
            notice(f"checkpoints after step {start_step} (from the run being replaced) moved to {aside}")
        aside = _move_aside(grids, run_dir / "samples")
        if aside is not None:
            notice(f"sample grids after step {start_step} moved to {aside}")
        if read_run_id(run_dir) is None:
            write_text(run_dir / MARKER, f"{self.run_id}\n")
        write_text(run_dir / "config.yaml", config_yaml)
        self.sinks: list[Sink] = [MetricsFile(self.metrics_path, run_dir)]
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is the optional extra sngan[tensorboard]
            pass
        else:
            with writing(run_dir / "tensorboard"):
                # events at steps >= purge_step are hidden: step start_step itself is kept, as in metrics.jsonl
                self.sinks.append(TensorBoardSink(SummaryWriter(str(run_dir / "tensorboard"),
                                                                purge_step=self.purge_step)))

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (must hold `step`) to every sink: metrics.jsonl first, then TensorBoard and W&B."""
        for sink in self.sinks:
            sink.write(record)

    def grid(self, path: Path, step: int) -> None:
        """Show a saved sample grid (`samples` at `step`) in every sink that shows images."""
        for sink in self.sinks:
            sink.grid(path, step)

    def close(self) -> None:
        try:
            for sink in self.sinks:
                sink.close()
        finally:
            self.lock.release()


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)



