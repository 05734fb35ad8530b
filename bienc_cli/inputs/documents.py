"""The records that flow from the readers to the indexer.

Readers turn sources into a stream of these; nothing here touches the disk.

Paths are ``str`` as ``os.fsdecode`` makes them: a file name whose bytes are not UTF-8 keeps
them as surrogate escapes (``b"caf\\xe9"`` is ``"caf\\udce9"``), so that it can be opened,
compared and stored without loss. ``stored_path`` and ``real_path`` carry it through the
index, whose strings must be UTF-8, and through dedup plans and journals; ``real_path`` is the
one way back from a stored path to the file. ``escape_text`` is bienc's one rule for showing
text and names (``caf\\xe9``).
"""

from __future__ import annotations

import os
import re
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


def os_reason(exc: OSError) -> str:
    """The reason a Skipped gives for an OSError met while finding files."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth reporting about an item that was indexed anyway (e.g. a Latin-1 fallback)."""

    path: str
    message: str


# What must never reach a TSV line or a terminal as it is: C0 controls (tab and newline split
# fields and lines; ESC starts terminal escape sequences), DEL, C1 controls (U+009B is CSI on
# some terminals), the Unicode line and paragraph separators (line breaks to str.splitlines),
# lone surrogates (the undecodable bytes of a non-UTF-8 file name, kept by surrogateescape),
# and the backslash itself, so that an escape cannot be mistaken for the characters it shows.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_text(text: str) -> str:
    """``text`` as one field of one line, safe to print: the one escaping rule of bienc.

    Every renderer (tables, TSV, lists of paths, messages) calls this. As in
    PostgreSQL's COPY text format, a backslash becomes ``\\\\``; tab, newline and carriage
    return become ``\\t``, ``\\n``, ``\\r``; any other control character becomes ``\\xNN``,
    one per UTF-8 byte, and so does each byte of a file name that is not UTF-8. The result
    is unambiguous: a name with a literal ``\\xff`` prints as ``\\\\xff``.
    """
    return _UNSAFE.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    try:
        raw = char.encode("utf-8", "surrogateescape")  # U+DC80..U+DCFF: the byte it stands for
    except UnicodeEncodeError:
        raw = char.encode("utf-8", "surrogatepass")
    return "".join(f"\\x{byte:02x}" for byte in raw)


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
