"""The documents `bienc dedup` compares: from an index (its stored vectors, no model) or from
SOURCES (read into a temporary index, removed afterwards), as records with their vectors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bienc_cli.dedup.detect import ChunkLookup, DocRecord
from bienc_cli.errors import UsageError
from bienc_cli.inputs.documents import real_path
from bienc_cli.store import documents as stored
from bienc_cli.store import generations as store
from bienc_cli.store.layout import index_path
from bienc_cli.util.paths import is_under
from bienc_cli.util.text import shorten

if TYPE_CHECKING:
    from bienc_cli.indexing.request import EncoderFactory, ProgressFn, RunReport


@dataclass
class Corpus:
    """Documents to deduplicate: records, their vectors, and where they came from."""

    records: list[DocRecord]
    vectors: np.ndarray
    roots: list[str]  # the folders, files or patterns the documents were taken from
    id_column: str | None = None
    text_columns: tuple[str, ...] = ()  # as the index read tables (empty: found per table)
    chunks: ChunkLookup | None = None
    index_report: RunReport | None = None  # when the sources were indexed for this run
    model: str = ""


@dataclass
class DedupRequest:
    """What `bienc dedup` was asked to look at: SOURCE arguments, or an existing index."""

    sources: Sequence[str] = ()
    stdin_paths: Sequence[str] = ()
    index: Path | None = None  # used when no sources are given
    model: str | None = None
    index_options: dict[str, Any] = field(default_factory=dict)  # as for IndexRequest.options
    batch_size: int = 32


@contextlib.contextmanager
def open_corpus(
    request: DedupRequest,
    *,
    reference: Sequence[str] = (),
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[Corpus]:
    """The documents to deduplicate, with their vectors.

    With sources, they are indexed into a temporary index (removed on exit), and so are the
    reference folders not under a source: their files are compared too, never acted on. The
    roots (where actions may happen) are the sources alone. Without sources, the vectors
    stored in ``request.index`` are used and no model is loaded.
    """
    from bienc_cli.indexing.request import IndexRequest, IndexSettings
    from bienc_cli.indexing.temporary import temporary_index

    reference = [_absolute(r) for r in reference]
    for folder in reference:
        if not os.path.exists(folder):
            raise UsageError(f"--reference {folder}: no such file or folder")
    if not request.sources and not request.stdin_paths:
        if request.model or request.index_options:
            raise UsageError(
                "--model and the input options apply to SOURCE arguments; an index keeps "
                "its own (re-index it with `bienc index` to change them)"
            )
        generation = store.open_index(request.index or index_path(None))
        yield _corpus(generation, generation.manifest["sources"]["roots"], reference)
        return
    roots = [_absolute(s) for s in request.sources] + [_absolute(p) for p in request.stdin_paths]
    extra = [r for r in reference if not any(is_under(r, root) for root in roots)]
    index_request = IndexRequest(
        root=Path(),  # replaced by a temporary folder
        sources=[*request.sources, *extra],
        stdin_paths=list(request.stdin_paths),
        model=request.model,
        options=request.index_options,
        settings=IndexSettings(batch_size=request.batch_size),
    )
    with temporary_index(
        index_request, prefix="bienc-dedup-", encoder_factory=encoder_factory, progress=progress
    ) as (report, generation):
        corpus = _corpus(generation, roots, reference)
        corpus.index_report = report
        yield corpus


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _corpus(generation: store.Generation, roots: Sequence[str], reference: Sequence[str]) -> Corpus:
    columns = ["path", "row_id", "kind", "doc_hash", "size", "mtime_ns", "n_chunks", "text"]
    docs = stored.read_documents(generation, columns)
    data = docs.columns
    data["path"] = [real_path(path) for path in data["path"]]
    root_rank = _root_ranker(roots)
    keys = []
    for k, label in enumerate(docs.first_labels):
        keys.append((root_rank(data["path"][k]), data["path"][k], label))
    order = {k: rank for rank, k in enumerate(sorted(range(len(keys)), key=keys.__getitem__))}
    records = [
        DocRecord(
            doc_id=doc_id,
            path=data["path"][k],
            kind=data["kind"][k],
            row_id=data["row_id"][k],
            doc_hash=data["doc_hash"][k],
            size=data["size"][k],
            mtime_ns=data["mtime_ns"][k],
            length=docs.lengths[k],
            n_chunks=data["n_chunks"][k],
            order=order[k],
            reference=any(is_under(data["path"][k], folder) for folder in reference),
            snippet=shorten(data["text"][k], 200),
        )
        for k, doc_id in enumerate(docs.doc_ids)
    ]
    options = generation.manifest["sources"].get("options", {})
    multi = [k for k, r in enumerate(records) if r.n_chunks > 1]
    chunks = _chunk_lookup(generation, docs.doc_ids, multi) if multi else None
    return Corpus(
        records=records,
        vectors=docs.vectors,
        roots=list(roots),
        id_column=options.get("id_column"),
        text_columns=tuple(options.get("text_columns") or ()),
        chunks=chunks,
        model=generation.manifest["model"]["name"],
    )


def _chunk_lookup(
    generation: store.Generation, doc_ids: list[str], wanted: list[int]
) -> ChunkLookup:
    """Chunk vectors of the documents with several chunks, read once, on first use."""
    cache: dict[int, np.ndarray] = {}

    def load() -> None:
        ids = [doc_ids[k] for k in wanted]
        found = stored.chunk_vectors(generation, ids)
        cache.update((k, found[doc_id]) for k, doc_id in zip(wanted, ids))

    def lookup(k: int) -> np.ndarray:
        if not cache:
            load()
        return cache[k]

    return lookup


def _root_ranker(roots: Sequence[str]) -> Callable[[str], int]:
    """The position of the first root that holds ``path`` (sources are ranked as given)."""
    import fnmatch
    import glob

    def rank(path: str) -> int:
        for position, root in enumerate(roots):
            if glob.has_magic(root):
                if fnmatch.fnmatch(path, root) or fnmatch.fnmatch(path, os.path.join(root, "*")):
                    return position
            elif is_under(path, root):
                return position
        return len(roots)

    return rank
