"""The records that flow from the readers to the indexer.

Readers turn sources into a stream of these; nothing here touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth reporting about an item that was indexed anyway (e.g. a Latin-1 fallback)."""

    path: str
    message: str
