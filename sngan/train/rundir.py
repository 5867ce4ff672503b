"""Run folders: their names (`runs/<config-name>-<NNN>`), who may write them (the run marker, the ownership checks,
the folder lock), and setting aside what a resume abandons.

A run folder is recognised by its marker `<run>/.sngan-run`, which holds the run's id (32 hex digits, made when the
run starts); every checkpoint records the same id (`run_id`). The rules (`check_owner`), checked before anything is
written:
- a new run goes only into a folder that does not exist or is empty, or into a run folder sngan made (marked) that
  holds no checkpoint: a start that stopped before its first save, whose log and grids are then moved aside
  (`RunLog`), so the same command starts it again;
- a resume writes only into the folder of the run its checkpoint belongs to (same run id), or into a new, empty
  `--out`; a folder of another run, or one sngan did not make, is refused. The run folder of a checkpoint in
  `RUN/checkpoints/superseded-<time>/` is RUN, never the superseded folder;
- checkpoints written before run ids existed (no `run_id`) resume into their own folder, the RUN of
  `RUN/checkpoints/x.pt`, when it holds a config.yaml (a folder of an older sngan), and then get the folder's id.
The parts of a run folder (checkpoints/, samples/, tensorboard/) must be real folders, not links.

`FolderLock` holds an OS lock (`fcntl.flock`) on `<folder>/.lock`, opened without following links, with the
holder's `host:pid` inside; the kernel releases it when the process dies.

One writer per run folder: `RunLock` (`FolderLock`) holds an OS lock on `<run>/.lock` for the life of a training
process; the kernel releases it when the process dies, so a crashed run never blocks its own resume. The run log
(`sngan.train.runlog.RunLog`) takes the lock, checks everything it needs, and only then changes the folder:
records, checkpoints and sample grids of an abandoned continuation are moved aside
(`metrics.superseded-<time>.jsonl`, `checkpoints/superseded-<time>/`, `samples/superseded-<time>/`), never deleted.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from sngan.checkpoint import checkpoint_step, list_checkpoints, read_step
from sngan.errors import CheckpointError, SnganError
from sngan.io import check_can_create, writing

# Ownership: the run marker and the rules of `check_owner`

MARKER = ".sngan-run"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
PARTS = ("checkpoints", "samples", "tensorboard")  # the run's own folders
RUN_FILES = (MARKER, "config.yaml", "metrics.jsonl", "log.txt")  # files a run writes or appends to
HOLDER = re.compile(r"^([^\s:]{1,255}:)?\d{0,10}$")  # a lock file's content: host:pid, a PID (older sngan) or empty


def holder_id() -> str:
    """This process as a lock names it: 'host:pid'."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_run_id() -> str:
    return uuid.uuid4().hex


def read_run_id(run_dir: Path) -> str | None:
    """The id in `run_dir`'s marker, or None when there is no marker (or a link, or not an id)."""
    path = run_dir / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    with open(path, "rb") as fh:
        text = fh.read(64).decode(errors="replace").strip()
    return text if RUN_ID.match(text) else None


def checkpoint_run_id(state: dict[str, Any]) -> str | None:
    """The run id a checkpoint records (None for checkpoints from before run ids)."""
    run_id = state.get("run_id")
    if run_id is not None and not (isinstance(run_id, str) and RUN_ID.match(run_id)):
        raise CheckpointError(f"its 'run_id' must be 32 hex digits, got {str(run_id)[:40]!r}")
    return run_id


def run_folder_of(ckpt_path: Path) -> Path | None:
    """The run folder a checkpoint lies in (RUN/checkpoints/x.pt, RUN/checkpoints/superseded-*/x.pt), else None.
    A superseded checkpoint is never continued in that folder (`check_owner`), only into a new --out."""
    parent = ckpt_path.parent
    if parent.name.startswith("superseded-") and parent.parent.name == "checkpoints":
        parent = parent.parent
    return parent.parent if parent.name == "checkpoints" else None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _is_released_lock(path: Path) -> bool:
    """An unheld sngan lock file (a regular file, empty or a PID) that an empty folder may hold."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 300:
        return False
    return HOLDER.match(path.read_bytes().strip().decode(errors="replace")) is not None


def _entries(run_dir: Path) -> list[Path]:
    if run_dir.is_symlink() and not run_dir.exists():
        raise SnganError(f"--out '{run_dir}' is a dangling symbolic link; choose another --out")
    if not run_dir.is_dir():
        return []
    return [p for p in run_dir.iterdir() if not (p.name == ".lock" and _is_released_lock(p))]


def check_owner(run_dir: Path, run_id: str | None, ckpt_path: Path | None) -> None:
    """Raise SnganError unless this run may write `run_dir` (module docstring): a new run (`ckpt_path` None) or the
    resume of `ckpt_path`, whose checkpoint records `run_id`."""
    entries = _entries(run_dir)
    for part in PARTS:
        if (run_dir / part).is_symlink():
            raise SnganError(f"'{run_dir / part}' is a symbolic link; a run folder's {part}/ must be a real folder "
                             f"(sngan never writes through links)")
    for name in RUN_FILES:
        if (run_dir / name).is_symlink():
            raise SnganError(f"cannot write {run_dir / name}: it is a symbolic link; sngan never writes through "
                             f"links (remove the link or choose another --out)")
    if not entries:
        return
    marker = read_run_id(run_dir)
    if ckpt_path is None:
        if list_checkpoints(run_dir / "checkpoints") or (run_dir / "checkpoints" / "best.pt").exists():
            raise SnganError(f"run directory '{run_dir}' already holds checkpoints: continue it with --resume auto "
                             f"or choose another --out")
        if marker is None:
            raise SnganError(f"--out '{run_dir}' is not empty and is not a run folder sngan made: a new run needs an "
                             f"empty or new folder (choose another --out)")
        return  # a marked run folder without a checkpoint: a start that stopped before its first save
    own = run_folder_of(ckpt_path)
    in_own = own is not None and _same(own, run_dir)
    if in_own and ckpt_path.parent.name.startswith("superseded-"):
        raise SnganError(f"{ckpt_path} is a checkpoint of an abandoned branch of '{run_dir}' (set aside by an "
                         f"earlier resume): the folder's log and grids are another branch's history, so it is not "
                         f"continued there; resume it into a new, empty --out")
    if marker is not None:
        if marker == run_id or (run_id is None and in_own):
            return
        raise SnganError(f"'{run_dir}' is the folder of another run (run id {marker}); {ckpt_path} belongs to "
                         f"{f'run {run_id}' if run_id else 'no recorded run'}: resume into the checkpoint's own run "
                         f"folder or a new, empty --out")
    if in_own and (run_dir / "config.yaml").is_file():
        return  # a run folder of an sngan from before run markers
    raise SnganError(f"'{run_dir}' is not a run folder sngan made (no {MARKER} marker): resume into the "
                     f"checkpoint's own run folder or a new, empty --out")


# The folder lock

def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def describe_holder(content: bytes) -> str:
    """'host H, PID P' from a lock file's 'H:P' (an older sngan wrote the PID alone)."""
    host, _, pid = content.decode(errors="replace").strip().rpartition(":")
    return f"host {host}, PID {pid}" if host else f"PID {pid or 'unknown'}"


def lock_holder(folder: Path) -> str | None:
    """Who holds `folder`'s lock ('host H, PID P'), or None when no live process does (the kernel releases the
    lock of a dead one, on this host and, through the NFS lock manager, across hosts)."""
    path = folder / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if _try_flock(fd):
            return None  # closing the descriptor below releases it
        return describe_holder(os.pread(fd, 300, 0))
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive `flock` on `<folder>/.lock` (creating the folder), or SnganError naming the holder's PID.

    The file is created exclusively or opened without following links, and must be a regular file. It holds
    `host:pid` while locked and is emptied on release, so a finished run leaves it byte-identical.
    """

    def __init__(self, folder: Path, what: str = "run directory", hint: str = "choose another --out",
                 wait_s: float = 0.0):
        self.path = folder / ".lock"
        with writing(self.path):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  0o666)
            except FileExistsError:
                self.fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise SnganError(f"'{self.path}' is not a regular file; remove it (sngan keeps its lock there)")
        deadline = time.monotonic() + wait_s
        while not _try_flock(self.fd):
            if time.monotonic() >= deadline:
                holder = describe_holder(os.pread(self.fd, 300, 0))
                os.close(self.fd)
                raise SnganError(f"{what} '{folder}' is in use by another sngan process ({holder}); wait for it "
                                 f"to finish or stop it, or {hint}") from None
            time.sleep(0.1)
        with writing(self.path):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{holder_id()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:  # the lock still goes with the descriptor
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = -1


RunLock = FolderLock


# Names of run folders, and what a resume sets aside

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


def aside_path(folder: Path, name: str) -> Path:
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


def move_aside(paths: list[Path], ckpt_dir: Path) -> Path | None:
    """Move `paths` into a new `ckpt_dir/superseded-<time>/` (None when there are none). Without this, pruning would
    delete the continued run's checkpoints first (lower step numbers) and `--resume auto` would pick the abandoned
    one."""
    if not paths:
        return None
    folder = aside_path(ckpt_dir, "superseded-<time>")
    with writing(folder):
        folder.mkdir()
        for path in paths:
            path.rename(folder / path.name)
    return folder
