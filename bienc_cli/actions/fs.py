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
    """Move ``src`` to ``dest`` (parents created), copying across file systems; durable.

    ``dest`` must not exist, and is never replaced: a file that appears there between the
    choice of the name and the move (``free_name`` looks first) makes the move fail with
    FileExistsError, leaving both files as they are. A rename would replace it silently, so
    the file is hard-linked to its new name (which fails on an existing name) and then
    unlinked from the old one; where hard links cannot be made (FAT, exFAT, some network
    file systems, a source owned by another user under protected_hardlinks), the name is
    checked again just before the rename.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            _copy_across(src, dest)
        elif exc.errno in _NO_HARD_LINKS:
            _rename_unless_taken(src, dest)
            _sync_both(src, dest)
            return
        else:
            raise
    os.unlink(src)
    _sync_both(src, dest)


# What link(2) says where a file system (or its policy) allows no hard link.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def _rename_unless_taken(src: str, dest: Path) -> None:
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest))
    os.rename(src, dest)


def _sync_both(src: str, dest: Path) -> None:
    sync_folder(dest.parent)
    sync_folder(Path(src).parent)


def _copy_across(src: str, dest: Path) -> None:
    """Copy ``src`` to ``dest`` on another file system, verified, never onto an existing
    name: the copy is made at a temporary name of its own (created exclusively, so a link
    planted there is not followed) and then linked into place."""
    partial = dest.with_name(f".{dest.name}.bienc-partial-{uuid.uuid4().hex[:8]}")
    if os.path.islink(src):
        os.symlink(os.readlink(src), partial)
    else:
        with open(src, "rb") as source, open(partial, "xb") as out:
            try:  # from here on the partial copy is ours: removed if anything fails
                shutil.copyfileobj(source, out)
                out.flush()
                os.fsync(out.fileno())
            except BaseException:
                os.unlink(partial)
                raise
        try:
            shutil.copystat(src, partial)
            if file_sha256(partial) != file_sha256(src):
                raise OSError(errno.EIO, f"copy of {src} differs from the original")
        except BaseException:
            os.unlink(partial)
            raise
    try:
        os.link(partial, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            os.unlink(partial)
            raise
        try:
            _rename_unless_taken(str(partial), dest)
        except OSError:
            os.unlink(partial)
            raise
        return
    os.unlink(partial)


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
