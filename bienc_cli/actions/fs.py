"""File operations the actions rely on never to lose data: hashes, durable moves and writes.

Each one either happens whole or leaves the file where it was: a move across file systems
copies, checks the copy's bytes, and only then removes the original.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from bienc_cli.errors import StorageError
from bienc_cli.util.fs import fsync_dir


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def same_bytes(path: str | Path, sha256: str) -> bool:
    try:
        return os.path.isfile(path) and file_sha256(path) == sha256
    except OSError:
        return False


def free_name(path: Path) -> Path:
    """``path``, or ``path~2``, ``path~3``... whichever does not exist yet."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}~{n}")
    return candidate


def missing_folders(folder: Path, root: Path, *, including_root: bool) -> list[str]:
    """The folders from ``root`` down to ``folder`` that do not exist yet, outermost first.

    The trash is bienc's own and may go when empty; a --to folder the user named stays.
    """
    missing: list[str] = []
    current = folder
    while not os.path.lexists(current) and (including_root or current != root):
        missing.append(str(current))
        if current == root or current.parent == current:
            break
        current = current.parent
    return missing[::-1]


def move_file(src: str, dest: Path) -> None:
    """Rename ``src`` to ``dest`` (parents created), copying across file systems; durable."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(src, dest)
        os.unlink(src)
    sync_folder(dest.parent)
    sync_folder(Path(src).parent)


def _copy_across(src: str, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".bienc-partial")
    if os.path.islink(src):
        os.symlink(os.readlink(src), partial)
    else:
        shutil.copy2(src, partial)
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        if file_sha256(partial) != file_sha256(src):
            os.unlink(partial)
            raise OSError(errno.EIO, f"copy of {src} differs from the original")
    os.rename(partial, dest)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (StorageError): a reader never sees half."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8") as fh:  # a name of its own, never replaced
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc


def sync_folder(path: Path) -> None:
    """fsync_dir, best effort: the move or copy it follows has happened either way."""
    with contextlib.suppress(OSError):
        fsync_dir(path)
