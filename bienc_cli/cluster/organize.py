"""`bienc cluster --organize DIR`: one folder per cluster, of links to (or copies of) its documents.

The originals are only read; nothing outside DIR is written, and nothing in it is replaced.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from bienc_cli.cluster.algorithms import OUTLIER, Cluster
from bienc_cli.cluster.corpus import ClusterReport, DocumentAssignment
from bienc_cli.errors import StorageError, UsageError


@dataclass
class OrganizeReport:
    target: str
    folders: dict[int, str]  # cluster id -> folder name
    linked: int = 0
    copied: int = 0
    written: int = 0  # table rows, written as text files (there is no file to link)
    unchanged: int = 0  # already there from an earlier run (--force), left as they were


def folder_name(cluster: Cluster, width: int) -> str:
    """``03-basil-watering-pots``: the cluster id and its first three keywords, filename-safe."""
    if cluster.id == OUTLIER:
        return "outliers"
    return f"{cluster.id:0{width}d}-{slug(' '.join(cluster.keywords[:3])) or 'cluster'}"


def slug(text: str, max_length: int = 60) -> str:
    """Lower-case ASCII words joined by hyphens: safe on every filesystem."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    return "-".join(words)[:max_length].strip("-")


def organize(
    report: ClusterReport, target: Path, *, copy: bool = False, force: bool = False
) -> OrganizeReport:
    """Make one folder per cluster under ``target`` holding symlinks (or copies) of its documents.

    Originals are only read, never moved or changed. Table rows have no file of their own:
    each is written as ``ROW_ID.txt`` holding its text. ``target`` must be empty or new,
    unless ``force``. Nothing already there is removed or overwritten, and nothing is
    written outside ``target``: an entry that is what bienc would write (the same link, the
    same bytes, the document itself) is left as it is; any other takes the next free name
    (``name-2.md``); a cluster folder that is a link or a file is refused before anything
    is written.
    """
    if target.exists() and not target.is_dir():
        raise UsageError(f"--organize {target}: not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UsageError(f"--organize {target}: the folder is not empty; pass --force to add to it")
    width = max(2, len(str(report.clustering.n_clusters - 1)))
    folders = {c.id: folder_name(c, width) for c in report.clustering.clusters}
    for name in folders.values():
        folder = target / name
        if os.path.islink(folder) or (os.path.lexists(folder) and not os.path.isdir(folder)):
            raise UsageError(
                f"--organize: {folder} is a link or a file, not a folder; bienc writes only "
                "inside DIR: choose an empty target"
            )
    result = OrganizeReport(target=str(target), folders=folders)
    used: dict[int, set[str]] = {c: set() for c in folders}
    try:
        for doc, text in zip(report.documents, report.texts):
            folder = target / folders[doc.cluster]
            folder.mkdir(parents=True, exist_ok=True)
            if doc.row_id is not None:
                wanted = f"{slug(doc.row_id, 80) or 'row'}.txt"
            else:
                wanted = os.path.basename(doc.path)
            destination = folder / _unique(wanted, used[doc.cluster])
            while os.path.lexists(destination):
                if _already_there(destination, doc, text, copy):
                    break
                destination = folder / _unique(wanted, used[doc.cluster])  # not ours: keep it
            else:
                if doc.row_id is not None:
                    _write_new(destination, text)
                    result.written += 1
                elif copy:
                    shutil.copy2(doc.path, destination)
                    result.copied += 1
                else:
                    os.symlink(os.path.abspath(doc.path), destination)
                    result.linked += 1
                continue
            result.unchanged += 1
    except OSError as exc:
        raise StorageError(f"--organize {target}: {exc.strerror or exc}") from exc
    return result


def _already_there(destination: Path, doc: DocumentAssignment, text: str, copy: bool) -> bool:
    """Whether ``destination`` already is what organize would write for ``doc``."""
    with contextlib.suppress(OSError):
        if os.path.realpath(destination) == os.path.realpath(doc.path) and doc.row_id is None:
            return True  # the document itself (a DIR inside the corpus, an earlier --copy)
        if doc.row_id is None and not copy:
            return os.path.islink(destination) and os.readlink(destination) == os.path.abspath(
                doc.path
            )
        if os.path.islink(destination) or not destination.is_file():
            return False
        if doc.row_id is not None:
            return destination.read_bytes() == text.encode("utf-8")
        return filecmp.cmp(destination, doc.path, shallow=False)
    return False


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to a file that must not exist yet (never through a link)."""
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext`` ... if a document of that name is in already."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}{dot}{ext}"
    used.add(candidate)
    return candidate
