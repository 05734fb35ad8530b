"""Where an index keeps what: the names in an index folder, and how to tell a folder bienc
owns from one it must not touch.

Layout of an index folder (docs/format.md describes each file)::

    INDEX/
      CURRENT            name of the live generation, replaced atomically (write + rename)
      lock               writers hold an exclusive flock on it; it holds the writer's pid
      g000007/           one complete generation (the previous one is kept one step)
        vectors.hnsw     hnswlib graph, cosine space: one item per distinct vector
        chunks.parquet   the sidecar: one row per chunk, keyed by ``label``
        lookup.sqlite    the columns a query shows, by label (read without pyarrow)
        manifest.json    written last: everything hnswlib does not record, and file checksums
      models/<fingerprint>[-int8]/  the model's ONNX export, shared by generations
      cache/<fingerprint>[-int8]/   vectors of a run that has not published yet
      .tmp-g000008-*/    a generation being written (a killed run's is removed by the next)
      .CURRENT.tmp       CURRENT being replaced

store/ is the only package that knows this layout; the modules beside this one read and
write its parts (generations, manifest, sidecar, graph, cache, lock).
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
from pathlib import Path

from bienc_cli.errors import StorageError, UsageError

FORMAT = "bienc-index"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
LOCK = "lock"
MANIFEST = "manifest.json"
VECTORS = "vectors.hnsw"
SIDECAR = "chunks.parquet"
LOOKUP = "lookup.sqlite"
DEFAULT_INDEX = ".bienc"
CACHE = "cache"
MODELS = "models"  # INDEX/models/<fingerprint>/: the model's ONNX export, shared by generations
# What a writer names its folders: g000001 ... (more digits past a million generations), and
# the temporary folder a generation is written in (tempfile.mkdtemp's random suffix).
_GENERATION = re.compile(r"g\d{6,}")
_TMP_GENERATION = re.compile(r"\.tmp-g\d{6,}-\w+")
TMP_CURRENT = f".{CURRENT}.tmp"
_LOCK_TEXT = re.compile(rb"\d*\n?")  # what write_lock writes into the lock: a pid, or nothing yet


def onnx_dir(root: Path, fingerprint: str, backend: str | None = None) -> Path:
    """Where the index keeps its ONNX export of a model (the int8 copy beside the fp32 one)."""
    return root / MODELS / (f"{fingerprint}-int8" if backend == "onnx-int8" else fingerprint)


def index_path(option: str | None) -> Path:
    """The index folder: --index, else $BIENC_INDEX, else ./.bienc."""
    return Path(option or os.environ.get("BIENC_INDEX") or DEFAULT_INDEX)


def check_index_folder(root: Path) -> None:
    """Refuse to write an index into a folder that holds anything but a bienc index.

    A writer only ever removes what it can prove is its own, but a user's folder given as
    ``--index`` (``bienc index . --index .``) must not even receive a lock file. Accepted: a
    path that does not exist yet, an empty folder, a bienc index (``is_bienc_index``), and
    what a first run killed before it published leaves behind (``_first_run_leftovers``).
    Raises UsageError, having touched nothing.
    """
    try:
        names = set(os.listdir(root))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise UsageError(f"--index {root} is a file, not a folder: give a folder") from None
    except OSError as exc:
        raise storage_error(root, exc) from exc
    if names and not is_bienc_index(str(root), names) and not _first_run_leftovers(root, names):
        raise UsageError(
            f"--index {root} is not empty and not a bienc index; bienc writes an index only "
            "into a new or empty folder or an existing index: give another --index"
        )


def is_bienc_index(directory: str, names: set[str] | None = None) -> bool:
    """Whether ``directory`` holds a bienc index: its CURRENT names a generation whose
    manifest carries the format marker, or (CURRENT lost) some generation's manifest does.
    ``names``: the directory's entries, when the caller has listed it already."""
    try:
        with open(os.path.join(directory, CURRENT), "rb") as fh:
            current = fh.read(64).decode("ascii", "replace").strip()
    except OSError:
        current = ""
    if _GENERATION.fullmatch(current) and _has_index_manifest(Path(directory, current)):
        return True
    if names is None:
        try:
            names = set(os.listdir(directory))
        except OSError:
            return False
    generations = sorted((n for n in names if _GENERATION.fullmatch(n)), key=generation_number)
    return any(_has_index_manifest(Path(directory, n)) for n in generations[-3:])


def _has_index_manifest(generation: Path) -> bool:
    try:
        with open(generation / MANIFEST, "rb") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def _first_run_leftovers(root: Path, names: set[str]) -> bool:
    """Whether ``names`` are what a first run killed before publishing leaves: its lock
    (holding a pid, as write_lock writes it), temporary generation folders, the embedding
    cache of what it encoded, the ONNX export it made; or an export copied in ahead of the
    first run. Either the lock or an export (``models/*/bienc_onnx.json``) must be there."""
    if not all(
        name == LOCK
        or is_temporary(root / name)
        or (name in (CACHE, MODELS) and is_folder(root / name))
        for name in names
    ):
        return False
    return _is_own_lock(root / LOCK) or any((root / MODELS).glob("*/bienc_onnx.json"))


def _is_own_lock(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    try:
        with open(path, "rb") as fh:
            return _LOCK_TEXT.fullmatch(fh.read(32)) is not None
    except OSError:
        return False


def is_temporary(path: Path) -> bool:
    """A writer's temporary file or folder, left by a run killed midway."""
    if _TMP_GENERATION.fullmatch(path.name):
        return is_folder(path)
    return path.name == TMP_CURRENT and path.is_file() and not path.is_symlink()


def is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def entries(folder: Path) -> set[str] | None:
    try:
        return set(os.listdir(folder))
    except OSError:
        return None


def current_name(root: Path) -> str | None:
    try:
        return (root / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def generation_number(name: str) -> int:
    return int(name[1:])


def generation_names(root: Path) -> list[str]:
    """Entries named like generations, oldest first: numbering goes past all of them."""
    return sorted((n for n in os.listdir(root) if _GENERATION.fullmatch(n)), key=generation_number)


def generation_dirs(root: Path) -> list[Path]:
    """The generation folders of the index at ``root`` (named so, holding a manifest),
    newest first."""
    names = reversed(generation_names(root)) if root.is_dir() else ()
    return [root / n for n in names if is_folder(root / n) and _has_index_manifest(root / n)]


def disk_usage(root: Path) -> int:
    """Bytes used by the live and kept generations."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def storage_error(root: Path, exc: OSError | sqlite3.Error) -> StorageError:
    if isinstance(exc, sqlite3.Error):
        full = "full" in str(exc)
        exc = OSError(errno.ENOSPC if full else errno.EIO, str(exc))
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return StorageError(
        f"cannot write the index at {root}: {reason}; the previous index is unchanged"
    )
