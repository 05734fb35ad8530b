"""`bienc cluster --organize DIR`: one folder per cluster, of links to (or copies of) its documents.

The originals are only read; nothing outside DIR is written, and nothing in it is replaced.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import re
import shutil
import stat
import unicodedata
from dataclasses import dataclass, field
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
    # documents whose file vanished or could not be read when it was copied, and why (the
    # stale ones, ClusterReport.stale, are left out before)
    left_out: list[tuple[DocumentAssignment, str]] = field(default_factory=list)

    @property
    def filed(self) -> int:
        return self.linked + self.copied + self.written + self.unchanged


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
    is written. Documents whose file changed or is gone since it was indexed
    (``report.stale``) are left out, and those that cannot be read when they are copied are
    left out and named in ``left_out``: a folder of topics must not file a document by text
    it no longer holds.
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
    stale = {i for i, _ in report.stale}
    used: dict[int, set[str]] = {c: set() for c in folders}
    try:
        for i, (doc, text) in enumerate(zip(report.documents, report.texts)):
            if i in stale:  # its file no longer holds what was clustered
                continue
            folder = target / folders[doc.cluster]
            folder.mkdir(parents=True, exist_ok=True)
            if doc.row_id is not None:
                wanted = f"{slug(doc.row_id, 80) or 'row'}.txt"
            else:
                wanted = os.path.basename(doc.path)
            try:
                how = _place(folder, wanted, used[doc.cluster], doc, text, copy)
            except _SourceUnreadable as exc:
                result.left_out.append((doc, exc.reason))
                continue
            setattr(result, how, getattr(result, how) + 1)
    except OSError as exc:
        raise StorageError(f"--organize {target}: {exc.strerror or exc}") from exc
    return result


class _SourceUnreadable(Exception):
    """A document's own file vanished or could not be read while it was being copied."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _place(
    folder: Path, wanted: str, used: set[str], doc: DocumentAssignment, text: str, copy: bool
) -> str:
    """File ``doc`` in ``folder`` as ``wanted`` or the next free name; return how ("linked",
    "copied", "written" or "unchanged").

    Every name is created exclusively, never replaced and never written through: a name
    that is taken, even one that appears between the look and the write, is left as it is
    and the next one tried.
    """
    while True:
        destination = folder / _unique(wanted, used)
        if os.path.lexists(destination):
            if _already_there(destination, doc, text, copy):
                return "unchanged"
            continue  # not ours: keep it
        try:
            if doc.row_id is not None:
                _write_new(destination, text)
                return "written"
            if copy:
                _copy_new(doc.path, destination)
                return "copied"
            os.symlink(os.path.abspath(doc.path), destination)
            return "linked"
        except FileExistsError:
            continue  # taken since it was looked at: not ours either


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


def _copy_new(source: str, destination: Path) -> None:
    """Copy ``source`` with its mode and times (as ``shutil.copy2``) to ``destination``,
    which must not exist yet.

    The copy is created exclusively at its name (O_EXCL: an existing name is not opened, a
    link there is not followed), so nothing that appears there meanwhile is written into or
    through; this needs no hard links (a temporary name linked into place would), so it
    works on FAT and exFAT drives too. Raises _SourceUnreadable when ``source`` cannot be
    opened (nothing is written then); a copy that fails half-way is removed.
    """
    try:
        src = open(source, "rb")
    except FileNotFoundError:
        raise _SourceUnreadable("is gone since it was indexed") from None
    except OSError as exc:
        raise _SourceUnreadable(f"cannot be read ({exc.strerror})") from None
    with src, open(destination, "xb") as out:
        try:
            shutil.copyfileobj(src, out)
            out.flush()
            st = os.fstat(src.fileno())
            os.chmod(out.fileno(), stat.S_IMODE(st.st_mode))
            os.utime(out.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
        except BaseException:
            os.unlink(destination)  # ours: created above, and not whole
            raise


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
