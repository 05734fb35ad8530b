"""Matching the corpus ids users write in judgements to the documents of an index."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bienc_cli.store import generations as store
from bienc_cli.store.documents import first_chunk_rows
from bienc_cli.util.paths import is_under

_DOC_COLUMNS = ("doc_id", "path", "row_id", "kind", "meta")


class DocumentMatcher:
    """Maps the corpus ids users write in judgements onto the index's documents.

    A table row is known by its row id (``--id-column``, else the 0-based row number), alone
    or as ``FILE#ROW`` with FILE written as for files below. A file is known by its path:
    absolute, relative to the folder it was indexed from, to that folder's parent, or to the
    current folder; by its file name; or by its file name without the extension. The most
    specific form that matches wins; a form that fits several documents (``README.md`` in
    two folders) matches none, and is reported as ambiguous.
    """

    def __init__(self, generation: store.Generation, cwd: str | None = None) -> None:
        rows = first_chunk_rows(generation, _DOC_COLUMNS)
        self.documents = {row["doc_id"]: row for row in rows}
        self._roots = _root_folders(generation.manifest["sources"]["roots"])
        self._levels: list[dict[str, set[str]]] = [defaultdict(set) for _ in range(4)]
        cwd = cwd or os.getcwd()
        for doc_id, row in self.documents.items():
            for level, key in self._keys(row, cwd):
                self._levels[level][key].add(doc_id)

    def _keys(self, row: dict[str, Any], cwd: str) -> Iterable[tuple[int, str]]:
        path, row_id = row["path"], row["row_id"]
        relatives = {os.path.relpath(path, base) for base in self._bases(path, cwd)}
        name = os.path.basename(path)
        if row_id is None:
            yield 0, path
            for relative in relatives:
                yield 1, relative
            yield 2, name
            yield 3, os.path.splitext(name)[0]
        else:
            yield 0, row["doc_id"]
            for relative in relatives:
                yield 1, f"{relative}#{row_id}"
            yield 2, row_id
            yield 2, f"{name}#{row_id}"
            yield 3, f"{os.path.splitext(name)[0]}#{row_id}"

    def _bases(self, path: str, cwd: str) -> Iterable[str]:
        for root in (*self._roots, cwd):
            if is_under(path, root, strictly=True):
                yield root
                if root != cwd:
                    yield os.path.dirname(root.rstrip(os.sep)) or os.sep

    def match(self, corpus_id: str) -> tuple[str | None, bool]:
        """The index document ``corpus_id`` names, and whether it was ambiguous."""
        key = corpus_id.strip()
        key = key[2:] if key.startswith("./") else key
        for level in self._levels:
            found = level.get(key)
            if found:
                return (next(iter(found)), False) if len(found) == 1 else (None, True)
        return None, False

    def relative(self, path: str) -> str:
        """``path`` relative to the deepest folder the index was built from, else absolute."""
        root = next((r for r in self._roots if is_under(path, r, strictly=True)), None)
        return os.path.relpath(path, root) if root else path

    def user_id(self, doc_id: str) -> str:
        """How a user names a document: its row id, or its path as ``relative`` gives it."""
        row = self.documents[doc_id]
        return row["row_id"] if row["row_id"] is not None else self.relative(row["path"])

    def top_folder(self, path: str) -> str:
        """The first folder below the indexed root ("." for files directly in it)."""
        relative = self.relative(path)
        if os.path.isabs(relative):
            return os.path.dirname(relative)
        parts = Path(relative).parts
        return parts[0] if len(parts) > 1 else "."

    def example_ids(self, n: int = 2) -> list[str]:
        return [self.user_id(doc_id) for doc_id in list(self.documents)[:n]]


def _root_folders(roots: Sequence[str]) -> list[str]:
    """The folders the index's sources were found under (a glob's fixed prefix; a file's folder)."""
    import glob as globlib

    folders = []
    for root in roots:
        if globlib.has_magic(root):
            parts = []
            for part in Path(root).parts:
                if globlib.has_magic(part):
                    break
                parts.append(part)
            folder = str(Path(*parts)) if parts else os.sep
        else:
            folder = root if os.path.isdir(root) else os.path.dirname(root)
        folders.append(os.path.normpath(folder))
    # Deepest first: a path relative to the innermost root is the one users write.
    return sorted(set(folders), key=len, reverse=True)
