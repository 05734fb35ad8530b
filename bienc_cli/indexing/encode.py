"""Chunk the documents a run adds and find each chunk's vector: from the live generation
(unchanged chunk text), from the embedding cache of an interrupted run, or by encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bienc_cli.encoding.chunking import Chunk, Chunker
from bienc_cli.encoding.model import ModelInfo, load_tokenizer
from bienc_cli.indexing.plan import Previous, text_hash
from bienc_cli.indexing.request import EncoderFactory, IndexRequest, ProgressFn, RunReport
from bienc_cli.inputs.documents import Document, Skipped
from bienc_cli.inputs.tables import ROW_REPORT_LIMIT
from bienc_cli.store import generations as store
from bienc_cli.store.cache import EmbeddingCache

if TYPE_CHECKING:
    import numpy as np


# Chunks encoded between two saves to the embedding cache: what a crash can cost at most.
_CACHE_BLOCK = 512


@dataclass
class Row:
    doc: Document
    chunk: Chunk
    doc_hash: str
    chunk_hash: str
    n_chunks: int


def reusable(previous: Previous | None, request: IndexRequest) -> dict[str, int]:
    """chunk_hash -> the previous graph item whose vector a chunk of that text takes (none
    on a rebuild, which encodes everything again)."""
    return previous.chunk_label if previous and not request.rebuild else {}


def chunk_and_encode(
    docs: list[Document],
    model: ModelInfo,
    request: IndexRequest,
    previous: Previous | None,
    report: RunReport,
    encoder_factory: EncoderFactory,
    progress: ProgressFn | None,
) -> tuple[list[Row], np.ndarray | None]:
    import numpy as np

    if not docs:
        return [], None
    chunker = Chunker.for_model(
        load_tokenizer(model), model.max_seq_length, request.settings.overlap
    )
    rows: list[Row] = []
    empty: dict[str, int] = {}  # path -> documents without chunks, for flood control
    for doc in docs:
        chunks = chunker.chunk(doc.text)
        if not chunks:
            empty[doc.path] = empty.get(doc.path, 0) + 1
            if empty[doc.path] <= ROW_REPORT_LIMIT:
                report.skipped.append(Skipped(doc.path, "no text to index", row_id=doc.row_id))
            continue
        doc_hash = text_hash(doc.text)
        for chunk in chunks:
            rows.append(Row(doc, chunk, doc_hash, text_hash(chunk.text), len(chunks)))
    for path, count in empty.items():
        if count > ROW_REPORT_LIMIT:  # one line for the rest, as the table readers do
            more = count - ROW_REPORT_LIMIT
            report.skipped.append(
                Skipped(path, f"{more} more rows with no text to index", row_id="*")
            )
    vectors = np.zeros((len(rows), model.dim), dtype=np.float32)
    reuse = reusable(previous, request)
    reused = [i for i, r in enumerate(rows) if r.chunk_hash in reuse]
    if reused:
        labels = [reuse[rows[i].chunk_hash] for i in reused]
        vectors[reused] = store.row_vectors(previous.generation, labels)  # type: ignore[union-attr]
    cache = EmbeddingCache(request.root, model.vector_space)
    cached = cache.load()
    from_cache = [
        i for i, r in enumerate(rows) if r.chunk_hash not in reuse and r.chunk_hash in cached
    ]
    for i in from_cache:
        vectors[i] = cached[rows[i].chunk_hash]
    to_encode = [
        i for i, r in enumerate(rows) if r.chunk_hash not in reuse and r.chunk_hash not in cached
    ]
    if to_encode:
        _encode_blocks(
            rows, to_encode, vectors, model, request, cache, encoder_factory, progress, report
        )
    report.chunks_resumed = len(from_cache)
    report.chunks_encoded = len(to_encode)
    report.chunks_reused = len(reused)
    return rows, vectors


def _encode_blocks(
    rows, to_encode, vectors, model, request, cache, encoder_factory, progress, report
):
    """Encode in blocks, saving each block to the embedding cache as soon as it is done.

    Chunks are sorted by length first, so each block, and each batch in it, carries little
    padding; a crash loses at most the block in progress.
    """
    encoder = encoder_factory(model)
    report.backend = getattr(encoder, "backend", model.backend)
    order = sorted(to_encode, key=lambda i: len(rows[i].chunk.text))
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("encode", done, len(order))

    for start in range(0, len(order), _CACHE_BLOCK):
        block = order[start : start + _CACHE_BLOCK]
        encoded = encoder.encode(
            [rows[i].chunk.text for i in block],
            batch_size=request.settings.batch_size,
            progress=advance,
        )
        vectors[block] = encoded
        cache.append([rows[i].chunk_hash for i in block], encoded)
