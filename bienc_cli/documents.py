"""The records that flow from the readers to the indexer.

Readers turn sources into a stream of these; nothing here touches the disk.

Paths are ``str`` as ``os.fsdecode`` makes them: a file name whose bytes are not UTF-8 keeps
them as surrogate escapes (``b"caf\\xe9"`` is ``"caf\\udce9"``), so that it can be opened,
compared and stored without loss. ``printable`` shows such a name as ``caf\\xe9``;
``stored_path`` and ``real_path`` carry it through the index, whose strings must be UTF-8.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

# A stored path with this prefix is a file:// URL holding the bytes of a name that is not
# UTF-8, percent-encoded. Real paths are absolute (they start with "/"), so the two forms
# never meet.
_STORED_URL = "file://"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file found by source discovery, before it is read."""

    path: str  # absolute, normalised (os.path.abspath), str
    size: int  # bytes
    mtime_ns: int  # st_mtime_ns
    root: str  # the source argument it was found under (absolute); the file itself for file sources


@dataclass(frozen=True, slots=True)
class Document:
    """One unit of retrieval: a whole file, or one row of a table."""

    doc_id: str  # stable identity: the absolute path for files, "path#row_id" for table rows
    path: str  # absolute path of the source file
    text: str  # the text to chunk and encode (for tables: the text columns joined by a blank line)
    kind: str  # text | markdown | rst | code | html | pdf | table
    size: int  # source file size in bytes
    mtime_ns: int  # source file st_mtime_ns
    row_id: str | None = None  # table rows: value of --id-column, or the 0-based row number
    encoding: str | None = None  # how the bytes were decoded, e.g. "utf-8", "utf-16", "latin-1"
    meta: dict[str, Any] = field(default_factory=dict)  # table rows: the non-text columns


@dataclass(frozen=True, slots=True)
class Skipped:
    """A source item that was not indexed, and why.

    ``error`` tells a deliberate skip (binary, empty, too large: the run is still clean)
    from an item that could not be read (permission denied, corrupt table, vanished):
    those make `bienc index` exit with PARTIAL.
    """

    path: str
    reason: str
    error: bool = False
    row_id: str | None = None  # None: the whole file; "*": a summary of several rows
    # A path that could not be examined (a folder that cannot be listed, an entry that cannot
    # be stat'ed): the index keeps its previous documents at or under it, unchanged.
    keep: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth reporting about an item that was indexed anyway (e.g. a Latin-1 fallback)."""

    path: str
    message: str


def printable(path: str) -> str:
    """``path`` fit to print: bytes of a name that are not UTF-8 shown as ``\\xNN`` (as
    ``os.fsencode(path).decode("utf-8", "backslashreplace")``); takes stored paths too."""
    path = real_path(path)
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (e.g. from JSON)
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def stored_path(path: str) -> str:
    """``path`` as the index stores it (Parquet and SQLite strings must be valid UTF-8).

    A UTF-8 path is stored as it is. A name with bytes that are not UTF-8 becomes a file://
    URL with those bytes percent-encoded: lossless (``real_path`` reverses it), and never
    equal to a real path, which is absolute.
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    from urllib.parse import quote

    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not from the file system: nothing to keep byte for byte
        return path.encode("utf-8", "replace").decode("utf-8")
    return _STORED_URL + quote(raw, safe="/")


def real_path(stored: str) -> str:
    """The path that ``stored_path`` stored (any other string is returned as it is)."""
    if not stored.startswith(_STORED_URL):
        return stored
    from urllib.parse import unquote_to_bytes

    return os.fsdecode(unquote_to_bytes(stored[len(_STORED_URL) :]))
