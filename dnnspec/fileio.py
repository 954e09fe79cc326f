"""Writing files: one atomic writer for every file dnnspec writes (checkpoints, exports, model code).

A leaf module: it imports the standard library only.

`atomic_write(path)` yields a temporary path in the target's folder (named `.NAME.<random>.tmp`);
whatever the caller writes there is flushed to disk and renamed over `path` only if the block
ends without an exception. So a crash, a full disk or Ctrl-C mid-write never leaves a half-written
file at `path`: the previous file (if any) stays intact, and the temporary file is removed. The
file ends up with the mode an ordinary `open(path, "w")` gives (0o666 minus the umask), not the
0o600 of `tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "write_text", "write_bytes"]


def _create(folder: Path, name: str) -> tuple[Path, int]:
    """A new, empty, uniquely named file in `folder`; (its path, the mode it got).

    Created with mode 0o666 so the kernel applies the umask itself: its mode is what an ordinary
    file gets, read back without touching the process-wide umask (os.umask is not thread-safe).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
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
def atomic_write(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`.

    Creates the parent folder. On any exception (KeyboardInterrupt included) the temporary file
    is removed, `path` is left as it was, and the exception propagates. `mode` (e.g. the mode of
    the file being rewritten) replaces the ordinary 0o666 & ~umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, ordinary = _create(path.parent, path.name)
    mode = ordinary if mode is None else mode
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)  # 0o666 & ~umask, even if the writer replaced or re-created the file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
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
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return path
