"""Run folders: their names (`runs/<config-name>-<NNN>`), and `RunFolder`, the one owner of a run folder's life:
the checks before the first write, the lock, the marker, setting aside what a resume abandons, and every write and
delete while the run lasts, each through a handle on the folder.

A run folder is recognised by its marker `<run>/.sngan-run`, which holds the run's id (32 hex digits, made when the
run starts); every checkpoint records the same id (`run_id`). The rules (`check_owner`), checked before anything is
written:
- a new run goes only into a folder that does not exist or is empty, or into a run folder sngan made (marked) that
  holds no checkpoint: a start that stopped before its first save, whose log and grids are then moved aside, so the
  same command starts it again;
- a resume writes only into the folder of the run its checkpoint belongs to (same run id), or into a new, empty
  `--out`; a folder of another run, or one sngan did not make, is refused. The run folder of a checkpoint in
  `RUN/checkpoints/superseded-<time>/` is RUN, never the superseded folder.
- the parts of a run folder (checkpoints/, samples/, tensorboard/) must be real folders or absent, and its files
  (marker, config.yaml, metrics.jsonl, log.txt) regular files or absent: a `samples` that is a file, a
  `tensorboard` FIFO or a linked `checkpoints` is refused at the start, not at the first grid.
There is one folder format, this one: a folder without the marker is not a run folder.

`RunFolder.open` makes every check, takes the lock, checks again under it, and only then changes the folder: the
marker, records, checkpoints and sample grids of an abandoned continuation moved aside
(`metrics.superseded-<time>.jsonl`, `checkpoints/superseded-<time>/`, `samples/superseded-<time>/`, never deleted),
config.yaml last. A refused start changes nothing in the folder but its lock file.

Handles. The run folder and each part are opened once as `sngan.io.Folder` handles (`O_DIRECTORY | O_NOFOLLOW`);
checkpoints, grids, records, log lines and pruning go through them with the `*at` calls, and each write first checks
that the part's name still leads to the folder the run made (`Folder.check`). A part moved away and replaced by a
link, a file or another folder mid-run (`checkpoints/ -> elsewhere`) is never written through: the run writes a
checkpoint of the current step in its own folder (`rescue`: `checkpoints/` when that part is intact, else a new
`checkpoints.rescued-<time>/`), says so in one line and stops. `keep_checkpoints` deletes only files of the folder
the run made. A run folder deleted or replaced as a whole is no longer the run's: the run stops without writing.

`FolderLock` holds an OS lock (`fcntl.flock`) on `<folder>/.lock`, opened through the folder's handle without
following links, with the holder's `host:pid` inside; the kernel releases it when the process dies, so a crashed run
never blocks its own resume. A `.lock` that holds anything else is a user's file: refused, never truncated.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sngan.checkpoint import checkpoint_step, list_checkpoints, read_step
from sngan.errors import CheckpointError, FolderChanged, SnganError
from sngan.io import Folder, check_can_create, file_kind, open_regular, read_jsonl, writing

# Ownership: the run marker and the rules of `check_owner`

MARKER = ".sngan-run"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
PARTS = ("checkpoints", "samples", "tensorboard")  # the run's own folders
RUN_FILES = (MARKER, "config.yaml", "metrics.jsonl", "log.txt")  # files a run writes or appends to
HOLDER = re.compile(r"^([^\s:]{1,255}:\d{1,10})?$")  # a lock file's content: host:pid while held, empty after


def read_run_id(run_dir: Path, folder: Folder | None = None) -> str | None:
    """The id in `run_dir`'s marker, read through `folder` (the run folder's handle) when given, or None when there
    is no marker (or a link, not a regular file, not an id)."""
    try:
        text = open_regular(run_dir / MARKER, 300, folder).decode(errors="replace").strip()
    except SnganError:
        return None
    return text if RUN_ID.match(text) else None


def checkpoint_run_id(state: dict[str, Any]) -> str:
    """The run id a checkpoint records (checkpoint format 1 always records one)."""
    run_id = state.get("run_id")
    if not (isinstance(run_id, str) and RUN_ID.match(run_id)):
        raise CheckpointError(f"its 'run_id' must be 32 hex digits, got {str(run_id)[:40]!r} (checkpoint format 1, "
                              f"the only one, records the run it belongs to)")
    return run_id


def run_folder_of(ckpt_path: Path) -> Path | None:
    """The run folder a checkpoint lies in (RUN/checkpoints/x.pt, RUN/checkpoints/superseded-*/x.pt), else None.
    A superseded checkpoint is never continued in that folder (`check_owner`), only into a new --out."""
    parent = ckpt_path.parent
    if parent.name.startswith("superseded-") and parent.parent.name == "checkpoints":
        parent = parent.parent
    return parent.parent if parent.name == "checkpoints" else None


def newest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The checkpoint `--resume auto` continues: the newest periodic one, else best.pt (a folder whose periodic
    checkpoints were deleted); None when there is neither. A new run refuses a folder where this is not None."""
    found = list_checkpoints(ckpt_dir)
    best = ckpt_dir / "best.pt"
    return found[-1] if found else best if best.is_file() and not best.is_symlink() else None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _is_released_lock(path: Path) -> bool:
    """An unheld sngan lock file (a regular file, empty or host:pid) that an empty folder may hold."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 300:
        return False
    return HOLDER.match(path.read_bytes().strip().decode(errors="replace")) is not None


def check_parts(run_dir: Path) -> None:
    """Refuse a run folder whose parts could not take the run's outputs: a part (checkpoints/, samples/,
    tensorboard/) that is a link or not a folder, a run file that is a link or not a regular file."""
    for name in (*PARTS, *RUN_FILES, ".lock"):
        try:
            mode = os.stat(run_dir / name, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        folder = name in PARTS
        if stat.S_ISLNK(mode) and folder:
            raise SnganError(f"'{run_dir / name}' is a symbolic link; a run folder's {name}/ must be a real folder "
                             f"(sngan never writes through links)")
        if stat.S_ISLNK(mode):
            raise SnganError(f"cannot write {run_dir / name}: it is a symbolic link; sngan never writes through "
                             f"links (remove the link or choose another --out)")
        if folder and not stat.S_ISDIR(mode):
            raise SnganError(f"'{run_dir / name}' is {file_kind(mode)}, not a folder: the run would write its "
                             f"{name} there (move it aside)")
        if not folder and not stat.S_ISREG(mode):
            raise SnganError(f"'{run_dir / name}' is {file_kind(mode)}, not a regular file (move it aside)")


def check_owner(run_dir: Path, run_id: str | None, ckpt_path: Path | None) -> None:
    """Every check of the folder a start makes, before anything is written: raise SnganError unless `run_dir` can be
    created or written (not a file, a path under a file, a read-only parent), its parts can take the run's outputs
    (`check_parts`), and this run may write it (module docstring): a new run (`ckpt_path` None) or the resume of
    `ckpt_path`, whose checkpoint records `run_id`."""
    try:
        str(run_dir).encode("utf-8")
    except UnicodeEncodeError:  # TensorBoard, W&B and the logs name the folder as text
        raise SnganError(f"--out {os.fsencode(run_dir)!r} is not valid UTF-8; choose a folder name that is") from None
    if run_dir.exists() and not run_dir.is_dir():
        raise SnganError(f"--out '{run_dir}' is a file; a run needs a folder (choose another --out)")
    check_can_create(run_dir / ".lock")
    if run_dir.is_symlink():
        raise SnganError(f"--out '{run_dir}' is a symbolic link; sngan never writes through links (give the real "
                         f"folder)")
    check_parts(run_dir)
    if not run_dir.is_dir() or all(p.name == ".lock" and _is_released_lock(p) for p in run_dir.iterdir()):
        return  # a new or empty folder (an unheld lock file aside)
    marker = read_run_id(run_dir)
    if ckpt_path is None:
        if newest_checkpoint(run_dir / "checkpoints") is not None:
            raise SnganError(f"run directory '{run_dir}' already holds checkpoints: continue it with --resume auto "
                             f"or choose another --out")
        if marker is None:
            raise SnganError(f"--out '{run_dir}' is not empty and is not a run folder sngan made: a new run needs an "
                             f"empty or new folder (choose another --out)")
        return  # a marked run folder without a checkpoint: a start that stopped before its first save
    own = run_folder_of(ckpt_path)
    if own is not None and _same(own, run_dir) and ckpt_path.parent.name.startswith("superseded-"):
        raise SnganError(f"{ckpt_path} is a checkpoint of an abandoned branch of '{run_dir}' (set aside by an "
                         f"earlier resume): the folder's log and grids are another branch's history, so it is not "
                         f"continued there; resume it into a new, empty --out")
    if marker is None:
        raise SnganError(f"'{run_dir}' is not a run folder sngan made (no {MARKER} marker): resume into the "
                         f"checkpoint's own run folder or a new, empty --out")
    if marker != run_id:
        raise SnganError(f"'{run_dir}' is the folder of another run (run id {marker}); {ckpt_path} belongs to run "
                         f"{run_id}: resume into the checkpoint's own run folder or a new, empty --out")


# The folder lock

def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def describe_holder(content: bytes) -> str:
    """'host H, PID P' from a lock file's 'H:P'."""
    host, _, pid = content.decode(errors="replace").strip().rpartition(":")
    return f"host {host or 'unknown'}, PID {pid or 'unknown'}"


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
    """An exclusive `flock` on `<folder>/.lock` (creating the folder), or SnganError naming the holder.

    The folder is opened as a handle (`folder`, a `sngan.io.Folder`) and the lock file through it, created
    exclusively or opened without following links; it must be a regular file holding what sngan writes there
    (`HOLDER`: empty, or `host:pid`): a user's `.lock` is refused, never truncated. It holds `host:pid` while locked
    and is emptied on release, so a finished run leaves it byte-identical.
    """

    def __init__(self, folder: Path, what: str = "run directory", hint: str = "choose another --out",
                 wait_s: float = 0.0):
        self.path = folder / ".lock"
        self.folder = Folder.open(folder, create=True)
        try:
            self.fd = self._open(what, folder, hint, wait_s)
        except BaseException:
            self.folder.close()
            raise

    def _open(self, what: str, folder: Path, hint: str, wait_s: float) -> int:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        with writing(self.path):
            try:
                fd = os.open(".lock", flags | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=self.folder.fd)
            except FileExistsError:
                fd = os.open(".lock", flags, dir_fd=self.folder.fd)
        info = os.fstat(fd)
        content = os.pread(fd, 301, 0) if stat.S_ISREG(info.st_mode) else b""
        if not stat.S_ISREG(info.st_mode) or len(content) > 300 or \
                HOLDER.match(content.strip().decode(errors="replace")) is None:
            os.close(fd)
            why = "it holds other data" if stat.S_ISREG(info.st_mode) else "not a regular file"
            raise SnganError(f"'{self.path}' is not a lock file sngan made ({why}): sngan keeps its lock there and "
                             f"will not overwrite it; move it aside")
        deadline = time.monotonic() + wait_s
        while not _try_flock(fd):
            if time.monotonic() >= deadline:
                holder = describe_holder(os.pread(fd, 300, 0))
                os.close(fd)
                raise SnganError(f"{what} '{folder}' is in use by another sngan process ({holder}); wait for it "
                                 f"to finish or stop it, or {hint}") from None
            time.sleep(0.1)
        with writing(self.path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode(), 0)  # this process: host:pid
        return fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:  # the lock still goes with the descriptor
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = -1
        self.folder.close()


# Names of run folders

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


def aside_name(names: list[str], name: str) -> str:
    """`name` with `<time>` filled in, not among `names`, unique even for two resumes in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    new, n = name.replace("<time>", stamp), 1
    while new in names:
        n += 1
        new = name.replace("<time>", f"{stamp}-{n}")
    return new


# The run folder's life

class RunFolder:
    """One run folder, from the checks before its first write to the release of its lock (module docstring).

    `RunFolder.open` checks, locks and prepares the folder; then every write of the run goes through it: `save`
    (checkpoints), `prune`, `write_grid`, `append_record` (metrics.jsonl), `handle` (the folder's own handle:
    log.txt is appended through it), `part` (a part's handle: TensorBoard writes through `part("tensorboard")`),
    and `rescue` when a part was swapped. `close` releases the lock.
    """

    def __init__(self, path: Path, run_id: str, lock: FolderLock, purge_step: int | None):
        self.path, self.run_id, self.lock = path, run_id, lock
        self.handle = lock.folder
        self.purge_step = purge_step  # TensorBoard hides events at or after it (a resume's abandoned steps)
        self.parts: dict[str, Folder] = {}

    @classmethod
    def open(cls, path: Path, config_yaml: str, start_step: int = 0, notice: Callable[[str], None] | None = None,
             run_id: str | None = None, resume: Path | None = None) -> RunFolder:
        """Check, lock, check again under the lock (no other sngan process can change it now), then prepare the
        folder for a run continuing from `start_step` (0: a new run) of `resume`, whose checkpoint records `run_id`:
        partial files removed, what a resume abandons moved aside, the marker and config.yaml written."""
        notice = notice or (lambda message: None)
        check_owner(path, run_id, resume)
        lock = FolderLock(path)
        folder = None
        try:
            check_owner(path, run_id, resume)
            marker = read_run_id(path, lock.folder)
            folder = cls(path, marker or run_id or uuid.uuid4().hex, lock, None)
            folder._prepare(config_yaml, start_step, notice, write_marker=marker is None)
        except BaseException:
            if folder is not None:
                folder.close()  # its part handles and the lock
            else:
                lock.release()
            raise
        return folder

    def part(self, name: str) -> Folder:
        """The handle on part `name` (checkpoints, samples, tensorboard), made on first use; checked on each use:
        a part swapped for a link, a file or another folder is FolderChanged."""
        self.check_ours()
        if name not in self.parts:
            self.parts[name] = self.handle.folder(name)
        else:
            self.parts[name].check()
        return self.parts[name]

    def check_ours(self) -> None:
        """Raise SnganError when the folder is no longer this run's: deleted, moved, replaced, or its marker gone or
        changed (saving would re-create the run's parts in a folder that is not the run's)."""
        try:
            self.handle.check()
            marker = read_run_id(self.path, self.handle)
        except (FolderChanged, OSError):
            marker = None
        if marker != self.run_id:
            raise SnganError(f"run folder '{self.path}' is gone or no longer this run's (its {MARKER} marker is "
                             f"missing or changed): stopping without writing; the weights since the last checkpoint "
                             f"are lost")

    def save(self, name: str, write: Callable[[IO[bytes]], Any]) -> Path:
        """Write checkpoint `name` atomically into the run's checkpoints/ (through its handle)."""
        return self.part("checkpoints").write(name, write)

    def rescue(self, name: str, write: Callable[[IO[bytes]], Any]) -> Path:
        """Write a checkpoint after a part was swapped mid-run: into checkpoints/ when that part is still the
        folder the run made, else into a new `checkpoints.rescued-<time>/` of the run folder."""
        try:
            return self.save(name, write)
        except FolderChanged:
            folder = self.handle.folder(aside_name(self.handle.names(), "checkpoints.rescued-<time>"))
            try:
                return folder.write(name, write)
            finally:
                folder.close()

    def prune(self, keep: int) -> None:
        """Delete all but the newest `keep` periodic checkpoints of the checkpoints/ the run made (best.pt is
        kept); nothing outside that folder, whatever its name now leads to."""
        folder = self.part("checkpoints")
        periodic = sorted((checkpoint_step(n), n) for n in folder.names() if _is_periodic(folder, n))
        for _, name in periodic[:-keep]:
            folder.unlink(name)

    def write_grid(self, name: str, write: Callable[[IO[bytes]], Any]) -> Path:
        return self.part("samples").write(name, write)

    def append_record(self, text: str) -> None:
        """Append lines to metrics.jsonl (through the folder's handle)."""
        self.check_ours()
        self.handle.append("metrics.jsonl", text)

    def close(self) -> None:
        for folder in self.parts.values():
            folder.close()
        self.parts = {}
        self.lock.release()

    # Preparing the folder: every decision read first, then the changes

    def _prepare(self, config_yaml: str, start_step: int, notice: Callable[[str], None], write_marker: bool) -> None:
        handle = self.handle
        records_path = self.path / "metrics.jsonl"
        restarted = not start_step and handle.lstat("metrics.jsonl") is not None  # a start stopped before a save
        records = read_jsonl(records_path, notice) if start_step or restarted else []
        kept = [r for r in records if r.get("step", 0) <= start_step]
        later_records = [r for r in records if r.get("step", 0) > start_step]
        later = self._later_checkpoints(start_step) if start_step else []
        grids = [n for n in self._names("samples") if (m := GRID.match(n)) and int(m.group(1)) > start_step]
        # the changes, after every check and read
        if write_marker:
            handle.write(MARKER, f"{self.run_id}\n".encode())
        if not write_marker:  # a folder the run wrote before (an unmarked one holds nothing but its lock)
            for folder in [handle, *(self.part(p) for p in ("checkpoints", "samples") if handle.lstat(p) is not None)]:
                for stale in folder.remove_stale_temps():
                    notice(f"removed {stale}, a partial file left by a process that was stopped mid-write")
        if later_records or restarted:  # both files or neither: a full disk leaves the log as it was
            moved = aside_name(handle.names(), "metrics.superseded-<time>.jsonl")
            handle.write_all([(moved, _jsonl(later_records).encode()), ("metrics.jsonl", _jsonl(kept).encode())])
            count = len(later_records)
            notice(f"{count} log record{'s' if count != 1 else ''} after step {start_step} moved to "
                   f"{self.path / moved}" + (" (an earlier start of this run stopped before its first checkpoint)"
                                             if restarted else ""))
        elif start_step and handle.lstat("metrics.jsonl") is not None:  # drops a torn last line before appending
            handle.write("metrics.jsonl", _jsonl(kept).encode())
        self.purge_step = start_step + 1 if start_step or restarted else None
        for part, names, what in (("checkpoints", later, "checkpoints"), ("samples", grids, "sample grids")):
            if names:
                aside = self._move_aside(part, names)
                notice(f"{what} after step {start_step} (from the run being replaced) moved to {aside}"
                       if part == "checkpoints" else f"{what} after step {start_step} moved to {aside}")
        handle.write("config.yaml", config_yaml.encode())

    def _names(self, part: str) -> list[str]:
        info = self.handle.lstat(part)
        return self.part(part).names() if info is not None else []

    def _later_checkpoints(self, step: int) -> list[str]:
        """Periodic checkpoints and best.pt written after `step` (by a continuation that resuming abandons)."""
        names = self._names("checkpoints")
        later = [n for n in names if (_step_of(n) or 0) > step]
        if "best.pt" in names and read_step(self.path / "checkpoints" / "best.pt") > step:
            later.append("best.pt")
        return later

    def _move_aside(self, part: str, names: list[str]) -> Path:
        """Move `names` of `part` into a new `part/superseded-<time>/`. Without this, pruning would delete the
        continued run's checkpoints first (lower step numbers) and `--resume auto` would pick the abandoned one."""
        folder = self.part(part)
        aside = folder.folder(aside_name(folder.names(), "superseded-<time>"))
        try:
            for name in names:
                folder.rename(name, aside)
        finally:
            aside.close()
        return aside.path


def _step_of(name: str) -> int | None:
    try:
        return checkpoint_step(name)
    except CheckpointError:
        return None


def _is_periodic(folder: Folder, name: str) -> bool:
    info = folder.lstat(name)
    return _step_of(name) is not None and info is not None and stat.S_ISREG(info.st_mode)


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)
