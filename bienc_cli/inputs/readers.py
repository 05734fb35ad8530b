"""Turning a found file into Documents: text, Markdown, code, HTML, PDF, and table rows.

``read_file`` is the one entry point. It never raises for anything about the file itself:
unreadable, vanished, undecodable or corrupt files become ``Skipped(error=True)``; binary and
empty files become ``Skipped(error=False)``. pypdf and pyarrow are imported lazily.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from html.parser import HTMLParser

from bienc_cli.inputs.documents import Document, FileEntry, Note, Skipped
from bienc_cli.inputs.tables import (
    TABLE_SUFFIXES,
    TableOptions,
    TableProblem,
    bom_codec,
    first_line,
    is_table,
    read_table,
)

__all__ = ["TABLE_SUFFIXES", "TableOptions", "is_table", "read_file", "html_to_text"]

SNIFF_BYTES = 8192  # binary detection looks at this much of the file, as git and grep do

_CODE_SUFFIXES = """
.py .pyi .js .mjs .cjs .ts .tsx .jsx .java .c .h .cpp .hpp .cc .hh .cxx .go .rs .rb .php .sh
.bash .zsh .fish .ps1 .sql .r .scala .kt .kts .swift .cs .fs .lua .pl .pm .hs .ml .ex .exs
.erl .clj .dart .jl .m .vue .svelte .toml .yaml .yml .json .ini .cfg .conf .css .scss .sass
.less .tex .bib .xml .proto .graphql .gradle .cmake .mk .dockerfile .nix .tf .ipynb
""".split()
_KINDS = {
    **dict.fromkeys(_CODE_SUFFIXES, "code"),
    **dict.fromkeys((".md", ".markdown"), "markdown"),
    ".rst": "rst",
    **dict.fromkeys((".txt", ".text"), "text"),
    **dict.fromkeys((".html", ".htm", ".xhtml"), "html"),
    ".pdf": "pdf",
}
_CODE_NAMES = {"makefile", "dockerfile", "jenkinsfile", "gemfile", "rakefile", "cmakelists.txt"}

DEFAULT_TABLE_OPTIONS = TableOptions()


def read_file(
    entry: FileEntry, table: TableOptions = DEFAULT_TABLE_OPTIONS
) -> Iterator[Document | Skipped | Note]:
    """The Documents in ``entry``: one for a file, one per row for a table; or why not."""
    try:
        with open(entry.path, "rb") as f:
            before = os.fstat(f.fileno())
            if is_table(entry.path):
                yield from read_table(entry, f, table)
            else:
                data = f.read()
            changed = _changed(before, os.fstat(f.fileno()))
        if changed:
            yield Skipped(entry.path, "changed while reading", error=True)
        elif not is_table(entry.path):
            yield from _document(entry, data)
    except MemoryError:
        raise
    except TableProblem as exc:
        yield Skipped(entry.path, str(exc), error=True)
    except Exception as exc:  # the boundary: nothing about one file may stop the run
        yield Skipped(entry.path, _reason(exc), error=True)


def cannot_open(path: str) -> Skipped | None:
    """Why the file at ``path`` cannot be opened now, or None when it can.

    The indexer opens (without reading) each file it leaves unread because its size and
    mtime did not change: a file made unreadable since (chmod changes neither) is then
    reported every run while it stays so, as a file that is read would be.
    """
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return Skipped(path, _reason(exc), error=True)


def kind_of(path: str) -> str | None:
    """The Document kind for ``path`` by its name; None when the name does not say."""
    name = os.path.basename(path).lower()
    if name in _CODE_NAMES:
        return "code"
    suffix = os.path.splitext(name)[1]
    if not suffix:
        return "text"
    return _KINDS.get(suffix)


def _document(entry: FileEntry, data: bytes) -> Iterator[Document | Skipped | Note]:
    if not data:
        yield Skipped(entry.path, "empty", error=False)
        return
    kind = kind_of(entry.path)
    if kind == "pdf":
        yield from _pdf_document(entry, data)
        return
    by_bom = bom_codec(data)
    if by_bom is None and _looks_binary(data[:SNIFF_BYTES], strict=kind is None):
        yield Skipped(entry.path, "binary file", error=False)
        return
    if kind == "html":
        text, encoding, note = _decode(data, by_bom, declared=_declared_charset(data))
        text = html_to_text(_normalise_newlines(text))
    else:
        text, encoding, note = _decode(data, by_bom)
        text = _normalise_newlines(text)
    if not text.strip():
        yield Skipped(entry.path, "empty", error=False)
        return
    if note:
        yield Note(entry.path, note)
    yield _make_document(entry, text, kind or "text", encoding)


def _make_document(entry: FileEntry, text: str, kind: str, encoding: str | None) -> Document:
    return Document(
        doc_id=entry.path,
        path=entry.path,
        text=text,
        kind=kind,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        encoding=encoding,
    )


# -- bytes to text -----------------------------------------------------------------------------


def _looks_binary(head: bytes, strict: bool) -> bool:
    """A NUL byte means binary. ``strict`` (unknown extensions): many control bytes, too."""
    if b"\0" in head:
        return True
    if not strict or not head:
        return False
    controls = sum(1 for byte in head if byte < 32 and byte not in b"\t\n\r\f\v\b\x1b")
    return controls > len(head) * 0.1


def _decode(
    data: bytes, bom_codec: str | None, declared: str | None = None
) -> tuple[str, str, str | None]:
    """(text, encoding, note): by BOM, else UTF-8, else ``declared``, else cp1252, else latin-1."""
    if bom_codec is not None:
        try:
            return data.decode(bom_codec), bom_codec, None
        except UnicodeDecodeError:
            note = f"not valid {bom_codec}; undecodable bytes replaced"
            return data.decode(bom_codec, "replace"), bom_codec, note
    try:
        return data.decode("utf-8"), "utf-8", None
    except UnicodeDecodeError:
        pass
    if declared is not None:
        try:
            return data.decode(declared), declared, None
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("cp1252"), "cp1252", "not valid UTF-8; decoded as cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1", "not valid UTF-8; decoded as latin-1"


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _declared_charset(data: bytes) -> str | None:
    """The codec named by ``<meta charset>`` (or http-equiv) near the top, if Python knows it."""
    match = _META_CHARSET.search(data[:SNIFF_BYTES])
    if match is None:
        return None
    try:
        return codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return None


# -- HTML --------------------------------------------------------------------------------------

_INVISIBLE = frozenset({"script", "style", "noscript", "template", "head"})
# Elements that start a new line (1) or a new paragraph (2) of the visible text.
_BREAKS = {
    **dict.fromkeys("div li tr dt dd caption figcaption summary address option".split(), 1),
    **dict.fromkeys(
        """p h1 h2 h3 h4 h5 h6 ul ol dl table thead tbody tfoot section article aside header
        footer nav main pre blockquote figure form fieldset details hr""".split(),
        2,
    ),
}
_CELLS = frozenset({"td", "th"})


class _VisibleText(HTMLParser):
    """Collects the text a browser would show; breaks between blocks merge, br lines add up."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities arrive unescaped in handle_data
        self.parts: list[str] = []
        self.title: list[str] = []
        self.hidden: dict[str, int] = {}  # open invisible elements, by tag
        self.pending = 0  # newlines owed before the next text
        self.in_title = False
        self.seen_title = False
        self.in_pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.hidden.pop("head", None)  # <head> is often left unclosed
        if tag in _INVISIBLE:
            self.hidden[tag] = self.hidden.get(tag, 0) + 1
        elif tag == "title":
            self.in_title = not self.seen_title
        elif tag == "br":
            self.pending = min(self.pending + 1, 2)
        elif tag in _BREAKS:
            self.pending = max(self.pending, _BREAKS[tag])
            if tag == "pre":
                self.in_pre += 1
        elif tag in _CELLS and not self.pending:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            if self.hidden.get(tag):
                self.hidden[tag] -= 1
                if not self.hidden[tag]:
                    del self.hidden[tag]
        elif tag == "title":
            if self.in_title:
                self.seen_title = True
            self.in_title = False
        elif tag in _BREAKS:
            self.pending = max(self.pending, _BREAKS[tag])
            if tag == "pre" and self.in_pre:
                self.in_pre -= 1

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
            return
        if self.hidden:
            return
        if not self.in_pre:
            data = re.sub(r"\s+", " ", data)
            if not data.strip() and (self.pending or not self.parts):
                return  # whitespace between blocks
        if self.pending:
            self.parts.append("\n" * self.pending)
            self.pending = 0
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML page: title first, blocks on their own lines."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip()
    lines = [
        re.sub(r"[ \t\f\v\u00a0]+", " ", line).strip() for line in "".join(parser.parts).split("\n")
    ]
    if title:
        lines[:0] = [title, ""]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):  # at most one blank line in a row
            out.append(line)
    return "\n".join(out).strip()


# -- PDF ---------------------------------------------------------------------------------------


def _pdf_document(entry: FileEntry, data: bytes) -> Iterator[Document | Skipped | Note]:
    import pypdf

    # pypdf logs a warning for every irregularity it repairs; they must not reach stderr.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                reason = "unreadable PDF: encrypted (needs a password)"
                yield Skipped(entry.path, reason, error=True)
                return
            pages = [page.extract_text() or "" for page in reader.pages]
    except MemoryError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        yield Skipped(entry.path, f"unreadable PDF: {first_line(exc)}", error=True)
        return
    if not any(page.strip() for page in pages):
        yield Skipped(entry.path, "PDF has no text layer (scanned?)", error=False)
        return
    text = "\n\f\n".join(_normalise_newlines(page) for page in pages)
    yield _make_document(entry, text, "pdf", None)


# -- errors ------------------------------------------------------------------------------------


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)


def _reason(exc: Exception) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "vanished while reading"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid {exc.encoding}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"read error: {exc.strerror.lower()}"
    return f"could not read: {first_line(exc)}"
