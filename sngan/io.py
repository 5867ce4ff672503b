"""The two ways sngan touches files: every file is written atomically, and JSON-lines logs are read tolerantly.

`atomic_write` is how the package writes a file (checkpoints, config.yaml, the metrics rewrite on resume, FID
statistics, PNG/GIF/npz samples, reports): the bytes go to a temporary file in the destination's folder, are
flushed and fsynced, the file is renamed over the destination, and the folder is fsynced so the rename itself
survives a power cut. A crash at any moment leaves the old file or the new one, never a torn one. Temporary files
are named `.<name>.<random>.tmp` (`TEMP_FILE`), so a later start can recognise and remove ones a killed process
left behind. Files get the mode a plain `open()` gives (0666 minus the umask). Two writers stage a whole folder
instead and rename it into place, the same guarantee one level up: a folder export (`write_staged` then
`finish_export`: one sync at the end, manifest.json last) and the packed data cache (`sngan.data.cache`, whose
multi-GB arrays are filled through `np.lib.format.open_memmap` inside its private staging folder).

Links: nothing is written through a symbolic link. Temporaries are created with `O_EXCL | O_NOFOLLOW`, a
destination that is a link is refused (`cannot write X: it is a symbolic link ...`), and appends open with
`O_NOFOLLOW`, so a planted link can never make sngan write or truncate a file outside the folder it writes in.
Folders are reached through handles (`Folder`: an `O_DIRECTORY | O_NOFOLLOW` descriptor and the `*at` calls, Python's
`dir_fd=`): an atomic write's temporary and rename go through one handle on its folder, a run folder's parts, a study
folder, the data cache's staging folder and an export's staging and commit through theirs, so a folder swapped for a
link while a command works is never followed, and `Folder.check` says so in one line (`FolderChanged`).
`publishing` stages an output beside its target and moves it into place only at the end: replacing (`--force`) or
only while the target is still absent, so of two processes writing one new target, the second is refused.

`read_jsonl` is the only reader of `metrics.jsonl`: a process killed while appending leaves a torn last line,
which is dropped with a one-line notice; a bad line anywhere else is a real corruption and an error.
A write the file system refuses (no space left, quota, read-only, permission, a file where a folder should be)
becomes one `SnganError` line naming the path (`cannot write X: no space left on device`); nothing half-written
stays behind. `Folder.remove_stale_temps` clears the temporaries of a process that was killed mid-write.
This module imports nothing from the package but its errors.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from sngan.errors import FolderChanged, SnganError

MAX_JSONL_BYTES = 1 << 30  # a run's metrics.jsonl: a record a step for millions of steps
TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_write's temporary files look like


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.EFBIG, errno.EIO}  # what a full, read-only or misnamed destination raises


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a refused write (`WRITE_ERRORS`) inside the block into one SnganError line naming `path`."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SnganError(f"cannot write {path}: it is a symbolic link; sngan never writes through links "
                             f"(remove the link or choose another path)") from None
        if exc.errno not in WRITE_ERRORS:
            raise
        reason = (exc.strerror or os.strerror(exc.errno)).lower()
        raise SnganError(f"cannot write {path}: {reason}") from None


def check_can_create(path: str | Path) -> None:
    """Raise SnganError unless `path` (file or folder) could be created: its nearest existing ancestor must be a
    folder this process may write (checked before work whose result would have nowhere to go)."""
    path = Path(path)
    existing = next(p for p in path.parents if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise SnganError(f"cannot write {path}: '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SnganError(f"cannot write {path}: permission denied in '{existing}'")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(fh)` on a temporary binary file beside `path`, then move it into place atomically.

    Args:
        path: destination; its folder is created if needed.
        write: fills the open file (e.g. `lambda fh: torch.save(state, fh)`).

    Returns:
        The path written. On any failure the temporary file is removed and the old `path` is untouched.
    """
    path = Path(path)
    with writing(path):
        refuse_link(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # the folder is the user's choice (a link there is followed once, here); the temporary and the rename then
        # go through its handle, so both land in the same folder even if the name is swapped meanwhile
        folder = Folder.open(path.parent, follow=True)
        try:
            folder.write(path.name, write)
        finally:
            folder.close()
    return path


def refuse_link(path: Path) -> None:
    """Raise SnganError when `path` is a symbolic link (dangling or not): sngan never writes through one."""
    if path.is_symlink():
        raise SnganError(f"cannot write {path}: it is a symbolic link; sngan never writes through links (remove the "
                         f"link or choose another path)")


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _what(info: os.stat_result | None) -> str:
    if info is None:
        return "gone"
    mode = info.st_mode
    return "another folder" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else file_kind(mode)


class Folder:
    """A handle on a folder sngan writes (a run's folder and its parts, a study, the data cache, an export): an
    `O_DIRECTORY | O_NOFOLLOW` descriptor opened once. Every write, rename, delete and listing goes through it with
    the `*at` calls (Python's `dir_fd=`), so a folder moved away mid-command and replaced by a link (or a file) is
    never followed: the bytes land only in the folder that was opened, and `check` refuses with one line
    (`FolderChanged`) once the name no longer leads to that folder. Child folders (`folder`) are opened through their
    parent's handle, never through a link.
    """

    def __init__(self, path: Path, fd: int, parent: Folder | None = None):
        self.path, self.fd, self.parent = path, fd, parent
        opened = os.fstat(fd)
        self.identity = (opened.st_dev, opened.st_ino)

    @classmethod
    def open(cls, path: str | Path, create: bool = False, follow: bool = False, parent: Folder | None = None) -> Folder:
        """A handle on `path` (created when `create`: with its parents, or through `parent`, the handle on its
        folder, when given); its last component must be a real folder, not a link (the folders above it are the
        user's choice), unless `follow`: a folder the user named (`data.cache_dir`, an export's parent), which may
        be a link, followed once, here."""
        path = Path(path)
        name, dir_fd = (path.name, parent.fd) if parent is not None else (str(path), None)
        with writing(path):
            if create and parent is None:
                path.parent.mkdir(parents=True, exist_ok=True)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=dir_fd)
            try:
                fd = os.open(name, FOLDER_FLAGS & ~os.O_NOFOLLOW if follow else FOLDER_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if follow or exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = None
                with contextlib.suppress(OSError):
                    info = os.stat(path, follow_symlinks=False)
                raise SnganError(f"'{path}' is {_what(info)}, not a folder: sngan writes only into real folders, "
                                 f"never through links (move it aside)") from None
        return cls(path, fd, parent)

    def folder(self, name: str, create: bool = True) -> Folder:
        """A handle on the child folder `name`, opened through this one (created when `create` and absent)."""
        return Folder.open(self.path / name, create, parent=self)

    def lstat(self, name: str) -> os.stat_result | None:
        """`name`'s own status in this folder (a link is not followed), or None when there is none."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def check(self) -> None:
        """Raise FolderChanged unless this folder's name still leads to it: not moved, deleted, or replaced by a link,
        a file or another folder (looked up through the parent's handle, or the path for a top folder)."""
        try:
            info: os.stat_result | None = (self.parent.lstat(self.path.name) if self.parent is not None
                                           else os.stat(self.path, follow_symlinks=False))
        except OSError:
            info = None
        if info is None or (info.st_dev, info.st_ino) != self.identity:
            raise FolderChanged(f"'{self.path}' changed while sngan was writing in it (it is now {_what(info)}); "
                                f"sngan never writes through a link or into a folder it did not open")

    def names(self) -> list[str]:
        """The entries of the folder that was opened (wherever it is now), sorted."""
        return sorted(os.listdir(self.fd))

    def write(self, name: str, data: bytes | Callable[[IO[bytes]], Any]) -> Path:
        """`atomic_write` of `name` inside this folder: `data`, or what `data(fh)` writes, goes to a temporary created
        here exclusively, renamed over `name` through the handle, the folder fsynced. A link or a special file at
        `name` is refused."""
        path = self.path / name
        with writing(path):
            self._refuse_odd(name)
            fd, tmp = _create_temp_at(self.fd, name)
            try:
                with os.fdopen(fd, "wb") as fh:
                    if isinstance(data, bytes):
                        fh.write(data)
                    else:
                        data(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=self.fd)
                raise
            os.fsync(self.fd)
        return path

    def write_all(self, files: list[tuple[str, bytes]]) -> None:
        """Write several files of this folder so that a refused write (full disk) changes none of them: every
        temporary is written and fsynced before the first rename (renames need no space)."""
        staged: list[tuple[str, str]] = []
        try:
            for name, data in files:
                with writing(self.path / name):
                    self._refuse_odd(name)
                    fd, tmp = _create_temp_at(self.fd, name)
                    staged.append((tmp, name))
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
            for tmp, name in staged:
                with writing(self.path / name):
                    os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        finally:
            for tmp, _ in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=self.fd)
        os.fsync(self.fd)

    def open_append(self, name: str) -> IO[str]:
        """`name` opened for appending text (line-buffered), created if absent, never through a link and only as a
        regular file (a FIFO there is refused, not waited on)."""
        path = self.path / name
        with writing(path):
            self._refuse_odd(name)
            fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         0o666, dir_fd=self.fd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise SnganError(f"'{path}' is not a regular file: sngan writes only regular files (move it aside)")
            return open(fd, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (the caller closes)

    def append(self, name: str, text: str) -> None:
        """Append `text` to `name` (one record line: a crash can tear only the last line)."""
        with self.open_append(name) as fh, writing(self.path / name):
            fh.write(text)

    def unlink(self, name: str) -> None:
        """Delete the file `name` of this folder (the folder that was opened, never a link's target)."""
        with writing(self.path / name), contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def rename(self, name: str, into: Folder, new_name: str | None = None) -> Path:
        """Move `name` from this folder to `into` (both through their handles), never over an existing entry."""
        new_name = new_name or name
        with writing(into.path / new_name):
            if into.lstat(new_name) is not None:
                raise SnganError(f"cannot move {self.path / name} to {into.path / new_name}: it exists")
            os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=into.fd)
        return into.path / new_name

    def remove_tree(self, name: str) -> None:
        """Delete the folder `name` and everything in it, through handles: a link inside is removed, never
        followed (a staging folder's clean-up; errors are ignored, as the clean-up of a failed write)."""
        try:
            child = self.folder(name, create=False)
        except (OSError, SnganError):
            return
        try:
            for entry in child.names():
                info = child.lstat(entry)
                if info is not None and stat.S_ISDIR(info.st_mode):
                    child.remove_tree(entry)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry, dir_fd=child.fd)
        finally:
            child.close()
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=self.fd)

    def remove_stale_temps(self) -> list[str]:
        """Delete `atomic_write` temporaries (`TEMP_FILE` names) a killed process left here; only where no other
        process can be writing (under the folder's lock). Returns the names removed."""
        stale = [n for n in self.names() if TEMP_FILE.match(n) and (i := self.lstat(n)) and stat.S_ISREG(i.st_mode)]
        for name in stale:
            self.unlink(name)
        return stale

    def _refuse_odd(self, name: str) -> None:
        info = self.lstat(name)
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise SnganError(f"cannot write {self.path / name}: it is {_what(info)}; sngan writes only regular "
                             f"files, never through links (move it aside)")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _create_temp_at(dir_fd: int, name: str) -> tuple[int, str]:
    """A new `.<name>.<random>.tmp` in the folder of handle `dir_fd`, created exclusively and never through a link
    (mode 0666 & ~umask, as `open()` gives)."""
    while True:
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                           dir_fd=dir_fd), tmp
        except FileExistsError:
            continue


def write_text(path: str | Path, text: str) -> Path:
    """`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def publishing(target: str | Path, replace: bool) -> Iterator[Path]:
    """Yield where to write an output (a file or a folder named like `target`, in a new staging folder beside it,
    `stage_name`), then move it into place when the block ends without an error. Staging folders a killed process
    of this host left for the same output are removed first.

    With `replace`, an existing target is swapped out: a file by one rename, a folder by renaming the old one aside,
    the new one in, then deleting the old (a crash between the two renames leaves the old export in the staging
    folder, never neither). Without `replace`, the target must still be absent (or an empty folder) at that moment:
    a target another process published meanwhile is refused with one line, and its result kept. The staging folder
    is made through a handle on the target's folder and every rename goes through the two handles (`Folder`), so
    the output lands beside where it was asked for even if a name on the way is swapped meanwhile.
    """
    target = Path(target)
    with writing(target):
        refuse_link(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_stages(target.parent, target.name)
        parent = Folder.open(target.parent, follow=True)  # the user's choice, followed once, here
        while True:
            name = stage_name(target.name)
            try:
                os.mkdir(name, 0o700, dir_fd=parent.fd)
                break
            except FileExistsError:
                continue
        stage = parent.folder(name, create=False)
    try:
        try:
            yield stage.path / target.name
        except SnganError as exc:  # a refused write names the output, not its staging path
            raise type(exc)(str(exc).replace(str(stage.path / target.name), str(target))) from None
        with writing(target):
            stage.check()
            _commit(stage, parent, target, replace)
    finally:
        stage.close()
        parent.remove_tree(stage.path.name)
        parent.close()


STAGE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.\s]+)-(?P<pid>\d+)-[0-9a-f]{8}\.stage$")


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "host"


def stage_name(name: str) -> str:
    """A staging folder's name for an output called `name`: `.<name>.<host>-<pid>-<random>.stage`, so the next
    writer of the same output can tell one a dead process left (`remove_dead_stages`)."""
    return f".{name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}.stage"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_stages(folder: Path, name: str) -> list[Path]:
    """Delete the staging folders of output `name` in `folder` that a process of this host left when it was killed
    (its PID is gone); another host's, or a live process's, are left alone. Returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = STAGE.match(entry.name)
        if (m and m["name"] == name and m["host"] == _host() and int(m["pid"]) != os.getpid()
                and not _alive(int(m["pid"])) and entry.is_dir() and not entry.is_symlink()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _commit(stage: Folder, parent: Folder, target: Path, replace: bool) -> None:
    """Move the staged output `stage/<name>` to `parent/<name>` (`publishing`'s rules), through the two handles."""
    taken = SnganError(f"'{target}' was written by another process while this one worked; its result is kept: "
                       f"choose another --out or add --force")
    name = target.name
    staged, there = stage.lstat(name), parent.lstat(name)
    refuse_link(target)
    refuse_special(target)
    is_folder = staged is not None and stat.S_ISDIR(staged.st_mode)
    if is_folder and there is not None and stat.S_ISDIR(there.st_mode) and _has_entries(parent, name):
        if not replace:
            raise taken
        os.rename(name, ".replaced", src_dir_fd=parent.fd, dst_dir_fd=stage.fd)  # out of reach from now on
        foreign = export_foreign(stage.path / ".replaced")
        if foreign:
            os.rename(".replaced", name, src_dir_fd=stage.fd, dst_dir_fd=parent.fd)
            raise SnganError(f"'{target}' changed while this export ran: it holds '{foreign[0]}', which its "
                             f"manifest.json does not list as sngan wrote it; the folder is kept as it is (choose a "
                             f"new folder)")
        try:
            os.rename(name, name, src_dir_fd=stage.fd, dst_dir_fd=parent.fd)
        except OSError:
            os.rename(".replaced", name, src_dir_fd=stage.fd, dst_dir_fd=parent.fd)
            raise
    elif is_folder or replace:
        try:
            os.replace(name, name, src_dir_fd=stage.fd, dst_dir_fd=parent.fd)  # a folder replaces only an empty one
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise taken from None
            raise
    else:
        try:
            os.link(name, name, src_dir_fd=stage.fd, dst_dir_fd=parent.fd, follow_symlinks=False)  # never replaces
        except FileExistsError:
            raise taken from None
        except OSError as exc:  # a file system without hard links
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if parent.lstat(name) is not None:
                raise taken from None
            os.rename(name, name, src_dir_fd=stage.fd, dst_dir_fd=parent.fd)
    os.fsync(parent.fd)


def _has_entries(parent: Folder, name: str) -> bool:
    child = parent.folder(name, create=False)
    try:
        return bool(child.names())
    finally:
        child.close()


def write_staged(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a new file of a folder export inside its private staging folder (`publishing`), created exclusively
    and never through a link, without a sync of its own: `finish_export` makes the whole folder durable once."""
    path = Path(path)
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
    return path


def finish_export(folder: str | Path, files: list[Path], *, extra: dict | None = None) -> Path:
    """Make a folder export durable once: every file's data and every folder on disk, then `manifest.json` (name,
    bytes and sha256 of each file, and the plain-data `extra` fields) written last, so a folder with a manifest is
    complete. Returns the manifest."""
    folder = Path(folder)
    entries = []
    with writing(folder):
        for path in files:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            data = path.read_bytes()
            entries.append({"file": path.relative_to(folder).as_posix(), "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()})
        for sub in sorted({p.parent for p in files} | {folder}):
            _fsync_dir(sub)
    manifest = {"count": len(entries), "files": entries, **(extra or {})}
    return write_text(folder / "manifest.json", json.dumps(manifest, indent=1) + "\n")


def real_folders(root: Path, folder: Path) -> Path:
    """Make `folder` (inside `root`) exist as real folders: every component below `root` that exists must be a
    folder and not a symbolic link (a link `root/fid-stats -> elsewhere` would make sngan write elsewhere); missing
    ones are created one at a time. `root` itself is the user's choice and may be a link. Returns `folder`."""
    relative = folder.relative_to(root)
    with writing(root):
        root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in relative.parts:
        current = current / part
        with writing(current):
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                current.mkdir(exist_ok=True)
                mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            raise SnganError(f"'{current}' is a symbolic link: sngan never writes through links inside its cache "
                             f"and run folders (remove the link, or point data.cache_dir at the real folder)")
        if not stat.S_ISDIR(mode):
            raise SnganError(f"'{current}' is not a folder; sngan keeps its files there (move it aside)")
    return folder


def refuse_special(path: Path) -> None:
    """Raise SnganError when `path` exists and is neither a regular file nor a folder (a device, a FIFO, a
    socket): sngan never replaces or opens one, with or without --force."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        raise SnganError(f"'{path}' is {file_kind(mode)}, not a regular file: sngan writes only regular files "
                         f"(choose another path)")


def file_kind(mode: int) -> str:
    """What a file of `mode` (an `st_mode`) is, in words with its article: 'a folder', 'a regular file', 'a symbolic
    link', 'a FIFO', 'a character device', ...; every message about a file of the wrong kind names it this way."""
    return ("a folder" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode) else "a symbolic link"
            if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")


def check_new_output(target: Path, replace: bool) -> None:
    """Refuse an output path that exists (a link counts) unless `replace` (`--force`), and one that is not a regular
    file even then, before any work is done."""
    refuse_special(target)
    if target.is_dir() and not target.is_symlink():
        raise SnganError(f"'{target}' is a folder; give a file name")
    if not replace and os.path.lexists(target):
        raise SnganError(f"'{target}' exists; choose another --out or add --force to overwrite it")
    check_can_create(target)


MAX_MANIFEST_BYTES = 64 << 20  # a manifest lists at most a few million files


def export_foreign(folder: Path) -> list[str]:
    """What in an earlier folder export is not sngan's to replace: entries its manifest.json does not list, listed
    files whose size or sha256 no longer match (edited since), links and anything not a regular file or folder.
    Everything counts when there is no readable manifest. Paths relative to `folder`, sorted."""
    entries = sorted(p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())
    if not entries:
        return []
    listed: dict[str, tuple[int, str]] = {}
    try:
        manifest = folder / "manifest.json"
        if manifest.is_symlink() or not manifest.is_file() or manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError("no manifest")
        for entry in json.loads(manifest.read_text())["files"]:
            listed[str(entry["file"])] = (int(entry["bytes"]), str(entry["sha256"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        listed = {}
    foreign = []
    for path in entries:
        name = path.relative_to(folder).as_posix()
        if name == "manifest.json" and listed:
            continue
        if path.is_symlink() or not path.is_file() or name not in listed:
            foreign.append(name)
            continue
        size, digest = listed[name]
        if path.stat().st_size != size or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            foreign.append(name)
    return foreign


def open_regular(path: str | Path, limit: int | None = None, folder: Folder | None = None) -> bytes:
    """The bytes of a regular file, never blocking on a FIFO or a device (opened non-blocking, checked with fstat
    before any read) and never through a link; with `limit`, a larger file is one SnganError line. With `folder`,
    the file `path.name` is opened through that folder's handle (`path` then only names it in messages)."""
    path = Path(path)
    try:
        fd = os.open(path if folder is None else path.name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=None if folder is None else folder.fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SnganError(f"{path}: is a symbolic link; sngan does not read through links here") from None
        raise SnganError(f"{path}: cannot read ({(exc.strerror or str(exc)).lower()})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SnganError(f"{path}: is {file_kind(info.st_mode)}, not a regular file")
        if limit is not None and info.st_size > limit:
            raise SnganError(f"{path}: {info.st_size} bytes, more than the {limit} such a file may have")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if limit is not None and total > limit:
                raise SnganError(f"{path}: more than the {limit} bytes such a file may have")
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_input(path: str | Path) -> IO[bytes]:
    """An input file (an image, an archive, weights) opened for reading, after fstat says it is a regular file: a
    FIFO or a device is one SnganError line, never a read that blocks or never ends. Links are followed (inputs may
    live anywhere); the check is made on what was opened, so a swap after a listing is caught too."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SnganError(f"{path}: cannot read ({(exc.strerror or str(exc)).lower()})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise SnganError(f"{path}: is {file_kind(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of an input file (read as `open_input` opens it, in 16 MiB blocks)."""
    digest = hashlib.sha256()
    with open_input(path) as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON object as one line (a log grows by appends; a crash can tear only the last line)."""
    refuse_special(Path(path))
    with writing(path), open(path, "a", opener=_no_follow) as fh:
        fh.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path, notice: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, in order ([] when it does not exist).

    Args:
        path: the file.
        notice: told, in one line, when a torn last line (a crash while appending) is dropped.

    Returns:
        One dict per complete line. Raises SnganError naming the line when any other line is not a JSON object.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return []
    try:
        lines = open_regular(path, MAX_JSONL_BYTES).decode().splitlines()
    except UnicodeDecodeError as exc:
        raise SnganError(f"{path}: cannot read ({exc.reason})") from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    records = []
    for k, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # a line nested past Python's recursion limit
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif k == len(numbered) - 1:
            if notice is not None:
                notice(f"{path}: dropped an incomplete last line (line {number}, written by a process that stopped "
                       f"mid-write)")
        else:
            raise SnganError(f"{path}: line {number} is not a JSON object; the log is corrupt (move the file aside "
                             f"to continue)")
    return records
