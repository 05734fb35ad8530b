"""The writer lock: one writer per index at a time, and a failed first run leaves nothing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from bienc_cli.errors import IndexLocked
from bienc_cli.store.layout import LOCK, check_index_folder, entries, storage_error


@contextlib.contextmanager
def write_lock(root: Path, *, wait: float | None) -> Iterator[None]:
    """Hold the index's writer lock. ``wait``: None = as long as it takes, 0 = not at all.

    Refuses (``check_index_folder``) a folder that is neither new, empty nor a bienc index,
    before creating anything. When the body fails, what this call created (the folder, its
    parents, the lock) is removed again while nothing else has been put there.
    """
    check_index_folder(root)
    created = _missing_folders(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        had_lock = (root / LOCK).exists()
        fd = _acquire(root, wait)
    except BaseException as exc:
        _remove_if_empty(created)
        if isinstance(exc, OSError):
            raise storage_error(root, exc) from exc
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    except BaseException:
        if not had_lock and entries(root) == {LOCK}:  # a failed first run leaves nothing
            with contextlib.suppress(OSError):
                (root / LOCK).unlink()
            _remove_if_empty(created)
        raise
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(root: Path, wait: float | None) -> int:
    """The lock file's descriptor, flocked. A failed first run removes its lock file: a
    process that was waiting on it then holds a lock nobody else sees, so it checks that
    the file it locked is still the one at the path, and starts again if not."""
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        holder = _lock_holder(fd)
                        raise IndexLocked(
                            f"index at {root} is being written by another bienc process"
                            f"{holder}; try again later or pass --wait SECONDS"
                        ) from None
                    time.sleep(0.1)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(root / LOCK).st_ino == os.fstat(fd).st_ino:
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and those of its parents that do not exist yet, innermost first."""
    missing = []
    current = root.absolute()
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first; stops at the first that is not empty
        try:
            folder.rmdir()
        except OSError:
            return


def _lock_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
