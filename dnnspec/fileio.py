"""Writing files: one atomic writer for every file dnnspec writes (checkpoints, exports, model code),
and the rules that keep a user's files safe: what may be overwritten, outputs checked before work
starts, stale temporary files cleaned, one writer per checkpoint (an advisory lock).

A leaf module: it imports the standard library, `errors` and (for the lock) filelock.

`atomic_write(path)` yields a temporary path in the target's folder (named `.NAME.<random>.tmp`);
whatever the caller writes there is flushed to disk and renamed over `path` only if the block
ends without an exception. So a crash, a full disk or Ctrl-C mid-write never leaves a half-written
file at `path`: the previous file (if any) stays intact, and the temporary file is removed. The
file ends up with the mode an ordinary `open(path, "w")` gives (0o666 minus the umask), not the
0o600 of `tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserError

__all__ = ["atomic_write", "write_text", "write_bytes", "append_line", "OutputError", "check_output",
           "check_writable", "clean_stale", "RunLock"]

STALE_SECONDS = 3600.0  # a temporary file of a dead writer (or of unknown writer, this old) is removed


class OutputError(UserError):
    """An output cannot be written: it would replace someone else's file, the folder is not
    writable, the disk is full, or another run holds it."""


def _write_error(path: Path, e: OSError, size: int | None = None) -> OutputError:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        need = f" (needs ~{max(size / 1e6, 0.1):.1f} MB)" if size else ""
        return OutputError(f"disk full while writing {path}{need}; the previous file, if any, is intact")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: {e.strerror} (the folder {path.parent} is not writable)")
    return OutputError(f"cannot write {path}: {e.strerror or e}")


def _create(folder: Path, name: str) -> tuple[Path, int]:
    """A new, empty, uniquely named file in `folder`; (its path, the mode it got).

    Created with mode 0o666 so the kernel applies the umask itself: its mode is what an ordinary
    file gets, read back without touching the process-wide umask (os.umask is not thread-safe).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # the pid says who may clean it
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        try:
            try:
                mode = stat.S_IMODE(os.fstat(fd).st_mode)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o600)  # writable by its writers while being written, even under a strict umask
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return tmp, mode
    raise FileExistsError(f"{folder}: cannot find an unused temporary file name for {name}")


def _fsync_file(path: Path) -> None:
    # a read-only descriptor suffices for fsync on POSIX; Windows needs a writable one
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; best effort: some file systems refuse)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: int | None = None, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`.

    Creates the parent folder. On any exception (KeyboardInterrupt included) the temporary file
    is removed, `path` is left as it was, and the exception propagates. `mode` (e.g. the mode of
    the file being rewritten) replaces the ordinary 0o666 & ~umask; `size` (bytes, if known) is
    named when the disk is full.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        tmp, ordinary = _create(path.parent, path.name)
    except OSError as e:
        raise _write_error(path, e) from None
    mode = ordinary if mode is None else mode
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)  # 0o666 & ~umask, even if the writer replaced or re-created the file
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and not isinstance(e, UserError):
            raise _write_error(path, e, size) from None
        raise
    _fsync_folder(path.parent)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", mode: int | None = None) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_write(path, mode) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write a binary file atomically."""
    path = Path(path)
    with atomic_write(path, size=len(data)) as tmp:
        tmp.write_bytes(data)
    return path


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log and flush it to disk (a log is appended to, never replaced)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise _write_error(path, e, len(line)) from None


# ---------------------------------------------------------------- what may be replaced
def check_output(path: str | os.PathLike, ours: Callable[[Path], bool], what: str, force: bool = False,
                 replace_ours: bool = False) -> Path:
    """Refuse to write `path` over a file dnnspec cannot identify as its own kind (`ours`), and
    over any existing file unless `force` (or `replace_ours`: a run replacing its own checkpoint).
    Also refuse a folder, and an output whose folder cannot be written. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name for the {what}")
    if path.exists() or path.is_symlink():
        if not ours(path):
            raise OutputError(f"{path} exists and is not a {what} dnnspec wrote; refusing to replace it "
                              "(choose another name, or move the file away)")
        if not (force or replace_ours):
            raise OutputError(f"{path} exists; refusing to replace it without --force")
    check_writable(path)
    return path


def check_writable(path: str | os.PathLike) -> None:
    """The file can be created: its nearest existing folder is writable (before any work is done)."""
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: the folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied")


# ---------------------------------------------------------------- stale temporary files
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files that earlier writers of `path` left behind (killed mid-save): ours
    by name (`.NAME.<pid>.<hex>.tmp`), of a process that is gone or older than STALE_SECONDS; the
    `.NAME.<random>.tmp` of older dnnspec versions when older than STALE_SECONDS."""
    path = Path(path)
    pattern = re.compile(r"\." + re.escape(path.name) + r"\.(?:(\d+)\.[0-9a-f]{8}|[A-Za-z0-9_]{8})\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if pid == os.getpid():
            continue  # a save of this process in progress
        if age > STALE_SECONDS or (pid is not None and not _alive(pid)):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


# ---------------------------------------------------------------- one writer per output
class RunLock:
    """An advisory lock on an output (filelock: flock on a `.NAME.lock` file beside it), so that
    two runs never write the same checkpoint. The holder's pid is written beside the lock so
    the refused run can name it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_file = self.path.with_name(f".{self.path.name}.lock")
        self.owner_file = self.path.with_name(f".{self.path.name}.owner")
        self._lock = None

    def acquire(self) -> "RunLock":
        from filelock import FileLock, Timeout

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.lock_file), timeout=0)
            self._lock.acquire()
        except Timeout:
            self._lock = None
            try:
                holder = self.owner_file.read_text().strip()
            except OSError:
                holder = "another process"
            raise OutputError(f"{self.path} is being written by another dnnspec run ({holder}); refusing to "
                              "write it too (wait for that run, or choose another checkpoint path)") from None
        except OSError as e:
            raise _write_error(self.lock_file, e) from None
        with contextlib.suppress(OSError):
            self.owner_file.write_text(f"pid {os.getpid()}\n")
        return self

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self.owner_file.unlink()
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
